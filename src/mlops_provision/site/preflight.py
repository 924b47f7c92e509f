"""The preflight of ``playbooks/site.yml``: the checks of ``mlops-provision validate`` on the
inventory a running ``ansible-playbook`` loaded, with the vault secrets it was given, so that a
plain ``ansible-playbook``, Molecule and AWX/AAP refuse what ``validate`` refuses, with the same
lines, before any host is touched. The action plugin ``playbooks/action_plugins/mlops_preflight.py``
calls :func:`check`.

Which files: each source Ansible was given (``-i``, ``ANSIBLE_INVENTORY``, ansible.cfg's
``inventory``) that is a YAML inventory file or a directory holding ``hosts.yml``; a directory
without one (Molecule's) gives the one YAML file Ansible parsed in it. An executable source (an
inventory script, as AWX hands its inventories to ``ansible-playbook``) or a host list cannot be
read as a site: the caller names the site's inventory instead (``mlops_preflight_inventory``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlops_provision.site.load import load
from mlops_provision.site.problems import InventoryInvalid, Problem

YAML_SUFFIXES = (".yml", ".yaml")
NAME_THE_SITE = ("expected a YAML inventory file or a directory holding hosts.yml: set "
                 "mlops_preflight_inventory (an extra variable; AWX: the job template's) to the "
                 "site's inventory in the project, e.g. inventories/<site>")
STRANGERS = ("the run's inventory has host(s) {} that this inventory does not declare: expected "
             "mlops_preflight_inventory to name the inventory the run uses (AWX: the file its "
             "inventory source reads)")
ALSO_READ = ("Ansible reads every file of an inventory directory as inventory, this one too, "
             "and no check does: expected only the site's hosts.yml there (keep other files, "
             "such as a vault password file, out of it, or give -i DIR/hosts.yml)")


def invalid_lines(path: object, problems: Sequence[Problem]) -> list[str]:
    """What ``mlops-provision validate`` prints for an invalid inventory: a header, then one
    indented line per problem."""
    return [f"inventory {path} is invalid: {len(problems)} problem(s)",
            *(f"  {p}" for p in problems)]


def valid_line(path: object, hosts: Sequence[str]) -> str:
    """What ``mlops-provision validate`` prints for a valid inventory."""
    return f"{path}: valid ({len(hosts)} host(s): {', '.join(hosts)})"


@dataclass
class Result:
    """The preflight's answer: ``ok``, and the lines that say why (validate's lines)."""

    ok: bool
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Source:
    """One inventory source of the run: as given, the inventory ``load`` reads for it (None: it
    cannot be read as a site), and what is wrong with it besides that inventory."""

    given: str
    path: str | None
    problems: list[Problem] = field(default_factory=list)


def sources_to_check(sources: Iterable[str], parsed: Iterable[str | None] = ()) -> list[Source]:
    """The inventories to check for Ansible's ``sources`` (as given, relative paths kept, so
    that messages read as validate's for the same ``-i``); ``parsed`` is what Ansible read as
    inventory (``InventoryData.processed_sources``). A source that cannot be read as a site
    (a script, a host list), and a file of an inventory directory that Ansible reads as
    inventory besides the site's (a vault password file next to hosts.yml becomes a host
    named after the password), are problems of their source."""
    files = [Path(p).resolve() for p in parsed if p]
    out: list[Source] = []
    for given in sources:
        given = str(given or "").strip()
        if not given:
            continue
        path = Path(os.path.expanduser(given))
        if "," in given and not path.exists():
            out.append(Source(given, None, [Problem(given, "inventory", "(host list)", NAME_THE_SITE)]))
        elif path.is_dir():
            out.append(_directory(given, path, files))
        elif path.is_file() and os.access(path, os.X_OK) and path.suffix not in YAML_SUFFIXES:
            out.append(Source(given, None, [Problem(given, "inventory", "(script)", NAME_THE_SITE)]))
        else:
            out.append(Source(given, given))  # a file (or nothing there): load() says what is wrong
    return out


def _directory(given: str, path: Path, files: list[Path]) -> Source:
    """A directory source: its hosts.yml, else (Molecule's) the one YAML file Ansible read in it;
    any other file Ansible read in it is a problem."""
    here = path.resolve()
    site = next((path / n for n in ("hosts.yml", "hosts.yaml") if (path / n).is_file()), None)
    if site is not None:
        source = Source(given, given)  # load() finds hosts.yml in it, as validate -i DIR does
    else:
        yamls = [f for f in files if f.suffix in YAML_SUFFIXES and f.parent == here]
        site = path / yamls[0].name if len(yamls) == 1 else None
        source = (Source(given, str(site)) if site is not None else
                  Source(given, None, [Problem(given, "inventory", "hosts.yml", NAME_THE_SITE)]))
    for other in sorted(f for f in files if here in f.parents):
        if site is None or other != site.resolve():
            source.problems.append(Problem(str(path / other.relative_to(here)), "inventory",
                                           "(inventory source)", ALSO_READ))
    return source


def check(sources: Iterable[str], vault_secrets: list, parsed: Iterable[str | None] = (),
          base: str | os.PathLike[str] | None = None, hosts: Iterable[str] | None = None) -> Result:
    """``validate`` of each inventory in ``sources`` with Ansible's ``vault_secrets`` (a list
    of ``(vault_id, VaultSecret)``; empty: no vault password). ``base``: the directory that
    relative sources are relative to (default: the working directory). ``hosts``: the hosts
    of the run, when ``sources`` are not its inventory but name the site's (AWX): each must be
    a host of those sources."""
    lines: list[str] = []
    ok = True
    checked = sources_to_check(_under(sources, base), _under(parsed, base))
    declared: set[str] = set()
    for n, source in enumerate(checked):
        problems = list(source.problems)
        site = None
        if source.path is not None:
            try:
                site = load(source.path, vault_secrets=list(vault_secrets), strict=True)
                declared.update(site.hosts)
            except InventoryInvalid as exc:
                problems = list(exc.problems) + problems
        if hosts is not None and n == len(checked) - 1 and ok and not problems:
            strangers = sorted(set(hosts) - declared - {"localhost"})
            if strangers:
                problems.append(Problem(source.given, "inventory", "(hosts)", STRANGERS.format(
                    ", ".join(strangers[:10]) + (" ..." if len(strangers) > 10 else ""))))
        if problems:
            ok = False
            lines += invalid_lines(source.given, problems)
        elif site is not None:
            lines.append(valid_line(site.path, site.hosts))
    return Result(ok, lines or ["no inventory source to check"])


def _under(paths: Iterable[str | None], base: str | os.PathLike[str] | None) -> list[str]:
    paths = [str(p) for p in paths if p]
    if base is None:
        return paths
    return [p if "," in p else str(Path(base) / os.path.expanduser(p)) for p in paths]
