"""The site as written: which files, which blocks of variables in them, and the line of every
key. This is the line index that messages point into, and where the shape of the inventory is
checked (Ansible accepts shapes it then ignores, such as a misspelt ``host:`` key). What the
variables resolve to, and which host is in which group, is Ansible's answer
(:mod:`mlops_provision.site.resolve`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_provision.site import yamlfile
from mlops_provision.site.problems import Problems
from mlops_provision.site.roles import allowed_groups, platform_groups
from mlops_provision.site.values import got, is_hostname, is_ip, is_template, suggest, type_name
from mlops_provision.site.vault import Vault
from mlops_provision.site.yamlfile import line_of

GROUP_KEYS: tuple[str, ...] = ("hosts", "vars", "children")
VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")  # Ansible's search order for vars files


@dataclass(eq=False)
class Block:
    """One set of variables and where it was written."""

    file: Path
    where: str  # "host 'gpu1'", "group 'mlflow'"
    vars: dict[Any, Any]
    vault_file: bool = False
    owner: tuple[str, str] = ("", "")  # ("group"|"host", name)
    inline: bool = True  # in the inventory file (else a group_vars/host_vars file)
    checked: bool = False  # another block holds the same mapping (a host range): check once

    def line(self, key: Any) -> int | None:
        return line_of(self.vars, key)


@dataclass
class Layout:
    """The files and blocks of a site, and the line of each host."""

    inventory: Path  # the first inventory file (the site's name in messages and records)
    site_dir: Path
    sources: list[Path] = field(default_factory=list)  # as given: files and directories
    files: list[Path] = field(default_factory=list)  # the inventory files read (line index)
    blocks: list[Block] = field(default_factory=list)
    host_lines: dict[str, int | None] = field(default_factory=dict)
    host_files: dict[str, Path] = field(default_factory=dict)
    #: files of a source directory that no inventory plugin reads (Ansible skips them, warning)
    unparsed: list[Path] = field(default_factory=list)
    children: dict[str, set[str]] = field(default_factory=dict)  # group -> child groups
    #: structure so broken that Ansible cannot be asked about the site
    fatal: bool = False

    def blocks_of(self, kind: str, name: str) -> list[Block]:
        return [b for b in self.blocks if b.owner == (kind, name)]


def inventory_sources(given: list[Path], problems: Problems) -> list[Path] | None:
    """The inventory sources as given (``-i``, repeatable, or ``ANSIBLE_INVENTORY``): files or
    directories, each as Ansible reads it. None (problems recorded) when one is missing."""
    if not given:
        problems.add(Path("."), "inventory", "-i", "no inventory given: expected -i FILE or DIR "
                                                   "(repeatable), or ANSIBLE_INVENTORY")
        return None
    missing = [p for p in given if not p.exists()]
    for path in missing:
        problems.add(path, "inventory", "(file)", "no such file or directory: expected an "
                                                  "inventory file (YAML or INI) or a directory "
                                                  "of them")
    return None if missing else list(given)


def source_files(sources: list[Path]) -> list[Path]:
    """The files Ansible parses for these sources: a directory stands for every entry in it, in
    sorted order and recursively, less what Ansible's InventoryManager skips (hidden files,
    group_vars/, host_vars/, and its ignored extensions and patterns)."""
    from ansible.inventory.manager import IGNORED

    out: list[Path] = []
    for source in sources:
        if source.is_dir():
            entries = sorted(os.listdir(source))
            out += source_files([source / e for e in entries if not IGNORED.search(e.encode())])
        elif source.is_file():
            out.append(source)
    return out


def _base_dirs(sources: list[Path]) -> list[Path]:
    """Where Ansible looks for group_vars/ and host_vars/: beside each source (in a source
    directory, inside it), once per directory, in the order of the sources."""
    dirs: list[Path] = []
    for source in sources:
        base = source if source.is_dir() else source.parent
        if base.resolve() not in [d.resolve() for d in dirs]:
            dirs.append(base)
    return dirs


def site_groups() -> list[str]:
    """The platform's groups (those the playbooks name), sorted."""
    return sorted(platform_groups())


def unknown_group(name: str) -> str:
    return (f"unknown group '{name}': expected one of {', '.join(site_groups())}"
            f"{suggest(name, site_groups(), 0.6)}")


class _Reader:
    def __init__(self, layout: Layout, vault: Vault, problems: Problems, strict: bool):
        self.layout, self.vault, self.problems, self.strict = layout, vault, problems, strict
        self.inv = layout.inventory

    def read(self, file: Path, where: str) -> tuple[bool, Any, bool]:
        """(ok, data, vault_file) after recording why the file cannot be read."""
        try:
            raw = file.read_bytes()
        except OSError as exc:
            self.problems.add(file, where, "(file)", f"cannot be read: {exc.strerror}")
            return False, None, False
        vault_file = yamlfile.is_vault_file(raw)
        if vault_file:
            text = self.vault.decrypt(raw.decode("ascii", "replace"))
            if text is None:
                self.problems.add(file, where, "(whole file)", f"the file {self.vault.error}")
                self.vault.failed = True
                return False, None, True
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.problems.add(file, where, "(file)", "expected UTF-8 text")
                return False, None, False
        try:
            data, duplicates = yamlfile.parse(text)
        except yamlfile.YamlError as exc:
            self.problems.add(file, where, "(syntax)", str(exc), exc.line)
            self.layout.fatal = True
            return False, None, vault_file
        for key, line, first in duplicates:
            self.problems.add(file, where, key, f"repeated key (first at line {first}): expected "
                                                "each key once in a mapping; Ansible keeps only "
                                                "the last", line)
        if vault_file:
            self.vault.secrets.update(s for s in _strings(data) if s and not is_template(s))
        return True, data, vault_file

    # -- the inventory file

    def inventory(self, file: Path, listed: bool = False) -> None:
        """One inventory file: YAML (the yaml plugin's extensions, or a file that reads as a
        mapping) or INI (what Ansible's ini plugin reads). A file of an inventory plugin
        (``plugin:``) or a script is Ansible's alone: its hosts come from Ansible, unindexed.
        ``listed``: found in a source directory, where Ansible skips (with a warning) a file that
        no inventory plugin reads, such as a playbook."""
        self.inv = file
        if os.access(file, os.X_OK) and file.suffix not in (".yml", ".yaml", ".json", ".ini"):
            return  # an inventory script: Ansible runs it
        if listed and not _ansible_parses(file) and not _meant_as_yaml_inventory(file):
            # Ansible skips it with a warning (a certificate, a vault-encrypted key, a playbook
            # next to the inventory): so does the line index, saying so
            self.problems.warn(file, "inventory", "(inventory source)",
                               f"not an inventory: Ansible skips this file of the inventory directory "
                               f"{file.parent} (with a warning); expected only inventory files there, "
                               "or hide others with a leading '.'")
            self.layout.unparsed.append(file)
            return
        if file.suffix not in (".yml", ".yaml", ".json"):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = ""
            try:
                data, _ = yamlfile.parse(text)
            except yamlfile.YamlError:
                data = None
            if not isinstance(data, dict) or file.suffix == ".ini":
                self.ini(file, text)
                return
        ok, data, _ = self.read(file, "inventory")
        if not ok:
            self.layout.fatal = True
            return
        if isinstance(data, dict) and "plugin" in data and "all" not in data:
            return  # an inventory plugin's configuration: Ansible reads it
        self.top(data)

    def ini(self, file: Path, text: str) -> None:
        from mlops_provision.site import inifile

        try:
            data = inifile.parse(text)
        except yamlfile.YamlError as exc:
            self.problems.add(file, "inventory", "(syntax)", str(exc), exc.line)
            self.layout.fatal = True
            return
        self.top(data)

    def top(self, data: Any) -> None:
        if data is None:
            self.problems.add(self.inv, "inventory", "all", "the inventory is empty: expected a "
                                                            "mapping with the single key 'all'")
            self.layout.fatal = True
            return
        if not isinstance(data, dict):
            self.problems.add(self.inv, "inventory", "(top level)",
                              "expected a mapping with the single key 'all' (an Ansible YAML "
                              f"inventory), got {type_name(data)}")
            self.layout.fatal = True
            return
        if "all" in data:
            self.group("all", data["all"], None, line_of(data, "all"))
        for key in data:
            if key == "all":
                continue
            if key in allowed_groups():  # a group at the top level is a child of all, to Ansible
                self.group(key, data[key], "all", line_of(data, key))  # (Molecule writes these)
                continue
            self.problems.add(self.inv, "inventory", key,
                              f"unexpected top-level key '{key}': expected 'all' or one of "
                              f"{', '.join(site_groups())}{suggest(str(key), site_groups(), 0.6)}",
                              line_of(data, key))
            if not self.strict:  # read it as Ansible does
                self.group(key, data[key], "all", line_of(data, key))

    def group(self, name: Any, body: Any, parent: str | None, line: int | None) -> None:
        name, inv, add = str(name), self.inv, self.problems.add
        where = f"group '{name}'"
        if parent is not None:
            if name not in allowed_groups():
                add(inv, f"group '{parent}'", name, unknown_group(name), line)
            elif name == "all":
                add(inv, f"group '{parent}'", name, "'all' cannot be a child group: expected one "
                                                    f"of {', '.join(site_groups())}", line)
                self.layout.fatal = True
                return
            self.layout.children.setdefault(parent, set()).add(name)
        self.layout.children.setdefault(name, set())
        if body is None:
            return
        if not isinstance(body, dict):
            add(inv, where, name, "expected a mapping with hosts, vars and/or children "
                                  f"(or nothing), got {got(body, False)}", line)
            self.layout.fatal = True
            return
        for key in body:
            if key not in GROUP_KEYS:
                add(inv, where, key, f"unknown key '{key}': expected one of "
                                     f"{', '.join(GROUP_KEYS)}{suggest(key, GROUP_KEYS, 0.6)}",
                    line_of(body, key))
        hosts = self.mapping(body, "hosts", where, "expected a mapping of host names, each with "
                                                  "its variables or nothing")
        for host, hvars in (hosts or {}).items():
            self.host(host, hvars, name, line_of(hosts, host))
        gvars = self.mapping(body, "vars", where, "expected a mapping of variable names to values")
        if gvars is not None:
            self.layout.blocks.append(Block(inv, where, gvars, owner=("group", name)))
        children = self.mapping(body, "children", where, "expected a mapping of group names")
        for child, cbody in (children or {}).items():
            self.group(child, cbody, name, line_of(children, child))

    def mapping(self, body: dict, key: str, where: str, expected: str) -> dict | None:
        """``body[key]`` if it is a mapping; else None, reporting anything but nothing."""
        value = body.get(key)
        if isinstance(value, dict):
            return value
        if value is not None:
            self.problems.add(self.inv, where, key, f"{expected}, got {got(value, False)}",
                              line_of(body, key))
            self.layout.fatal = True
        return None

    def host(self, pattern: Any, hvars: Any, group: str, line: int | None) -> None:
        from ansible.parsing.utils.addresses import parse_address
        from ansible.plugins.inventory import detect_range, expand_hostname_range

        pattern = str(pattern)
        port = None
        try:
            name, port = parse_address(pattern, allow_ranges=True)
        except Exception:
            name = pattern
        try:
            names = expand_hostname_range(name) if detect_range(name) else [name]
        except Exception as exc:
            self.problems.add(self.inv, f"group '{group}'", pattern,
                              f"invalid host range: {exc}", line)
            self.layout.fatal = True
            return
        bad = [n for n in names if not (is_hostname(n) or is_ip(n))]
        if bad:
            self.problems.add(self.inv, f"group '{group}'", pattern or "''",
                              f"invalid host name {bad[0]!r}: expected an RFC 1123 host name "
                              "(letters, digits and '-', dot-separated labels of 1-63 "
                              "characters, 253 in all) or an IP address", line)
        where = f"host '{pattern}'"
        if port is not None:
            self.layout.blocks += [Block(self.inv, f"host '{n}'", {"ansible_port": port},
                                         owner=("host", n)) for n in names]
        if isinstance(hvars, dict):
            # a range's variables: checked once (the first host's block), located per host
            self.layout.blocks += [Block(self.inv, f"host '{n}'" if len(names) > 1 else where,
                                         hvars, owner=("host", n), checked=i > 0)
                                   for i, n in enumerate(names)]
        elif hvars is not None:
            self.problems.add(self.inv, where, pattern, "expected a mapping of the host's "
                                                        f"variables (or nothing), got "
                                                        f"{got(hvars, False)}", line)
            self.layout.fatal = True
        for n in names:
            if n not in self.layout.host_lines:
                self.layout.host_lines[n] = line
                self.layout.host_files[n] = self.inv

    # -- group_vars/ and host_vars/

    def vars_files(self, site_dir: Path, dirname: str, kind: str) -> None:
        base = site_dir / dirname
        if not base.is_dir():
            return
        names: dict[str, list[Path]] = {}
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(".") or entry.name.endswith("~"):
                continue
            stem, ext = os.path.splitext(entry.name)
            if entry.is_dir() and not ext:
                names.setdefault(entry.name, []).append(entry)
            elif entry.is_file() and ext in VARS_EXTENSIONS:
                names.setdefault(stem if ext else entry.name, []).append(entry)
        known = self.layout.children if kind == "group" else self.layout.host_lines
        for name, found in sorted(names.items()):
            where = f"{kind} '{name}'"
            if name not in known and not (kind == "group" and name in allowed_groups()):
                for f in found:
                    self.problems.add(f, where, name, unknown_group(name) if kind == "group" else
                                      f"no host '{name}' in the inventory: expected a file named "
                                      f"after one of its hosts"
                                      f"{suggest(name, self.layout.host_lines, 0.6)}")
                continue
            # Ansible takes the first of name, name.yml, name.yaml, name.json that exists
            found.sort(key=lambda p: VARS_EXTENSIONS.index(os.path.splitext(p.name)[1]
                                                          if p.is_file() else ""))
            used = found[0]
            for f in found[1:]:
                self.problems.add(f, where, name, f"ignored by Ansible because {used} is used: "
                                                  f"expected only one vars file or directory per "
                                                  f"{kind}")
            for f in (_dir_files(used) if used.is_dir() else [used]):
                ok, data, vault_file = self.read(f, where)
                if not ok or data is None:
                    continue
                if not isinstance(data, dict):
                    self.problems.add(f, where, "(top level)", "expected a mapping of variable "
                                                               f"names to values, got "
                                                               f"{got(data, False)}")
                    self.layout.fatal = True
                    continue
                self.layout.blocks.append(Block(f, where, data, vault_file, (kind, name), False))


def read_layout(sources: list[Path], vault: Vault, problems: Problems, strict: bool) -> Layout:
    files = source_files(sources)
    first = files[0] if files else sources[0]
    bases = _base_dirs(sources)
    layout = Layout(first, bases[0], sources=list(sources), files=files)
    reader = _Reader(layout, vault, problems, strict)
    for file in files:
        reader.inventory(file, listed=file not in sources)
    reader.inv = first
    _check_cycles(layout, problems)
    for base in bases:
        reader.vars_files(base, "group_vars", "group")
    for base in bases:
        reader.vars_files(base, "host_vars", "host")
    return layout


def _meant_as_yaml_inventory(file: Path) -> bool:
    """``hosts.*``, or a YAML file that is broken (a syntax error) or a mapping: the admin's
    inventory, whose problems are reported, not skipped."""
    if file.stem == "hosts":  # the site's inventory by name: what is wrong with it is reported
        return True
    if file.suffix not in (".yml", ".yaml", ".json"):
        return False
    try:
        data, _ = yamlfile.parse(file.read_text(encoding="utf-8"))
    except yamlfile.YamlError:
        return True
    except (OSError, UnicodeDecodeError):
        return False
    return isinstance(data, dict)


def _ansible_parses(file: Path) -> bool:
    """Whether one of Ansible's enabled inventory plugins reads ``file`` (as InventoryManager
    tries them), on a scratch inventory: Ansible's answer, not ours."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.display import Display

    display = Display()
    quiet, display.verbosity = display.verbosity, 0
    try:
        with _no_ansible_warnings():
            return bool(InventoryManager(loader=DataLoader(), sources=[]).parse_source(str(file)))
    except Exception:
        return False
    finally:
        display.verbosity = quiet


def _no_ansible_warnings():
    """Ansible's "Unable to parse ... as an inventory source" is said by the caller instead."""
    import contextlib

    from ansible import constants as C

    @contextlib.contextmanager
    def off():
        saved = C.INVENTORY_UNPARSED_WARNING if hasattr(C, "INVENTORY_UNPARSED_WARNING") else None
        try:
            if saved is not None:
                C.INVENTORY_UNPARSED_WARNING = False
            yield
        finally:
            if saved is not None:
                C.INVENTORY_UNPARSED_WARNING = saved

    return off()


def _check_cycles(layout: Layout, problems: Problems) -> None:
    reported: set[frozenset[str]] = set()

    def visit(name: str, stack: list[str]) -> None:
        for child in sorted(layout.children.get(name, ())):
            if child in stack:
                loop = [*stack[stack.index(child):], child]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    problems.add(layout.inventory, f"group '{name}'", child,
                                 f"groups nest in a cycle ({' -> '.join(loop)}): expected a tree "
                                 "of groups")
                    layout.fatal = True
                continue
            visit(child, [*stack, child])

    visit("all", ["all"])


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _dir_files(directory: Path) -> list[Path]:
    """Vars files in a group_vars/<group>/ directory, in Ansible's order."""
    out: list[Path] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        ext = os.path.splitext(entry.name)[1]
        if entry.is_dir() and not ext:
            out.extend(_dir_files(entry))
        elif entry.is_file() and ext in VARS_EXTENSIONS:
            out.append(entry)
    return out
