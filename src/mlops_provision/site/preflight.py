"""The preflight of ``playbooks/site.yml``: the checks of ``mlops-provision validate`` on the
inventory a running ``ansible-playbook`` loaded, with the vault secrets it was given, so that a
plain ``ansible-playbook``, Molecule and AWX/AAP refuse what ``validate`` refuses, with the same
lines, before any host is touched. The action plugin ``playbooks/action_plugins/mlops_preflight.py``
calls :func:`check`.

Which files: every source Ansible was given (``-i``, ``ANSIBLE_INVENTORY``, ansible.cfg's
``inventory``), files (YAML or INI) and directories, read together as Ansible merges them, as
``validate`` reads the same ``-i``. An executable source (an inventory script, as AWX hands its
inventories to ``ansible-playbook``) or a host list cannot be read as a site: the caller names
the site's inventory instead (``mlops_preflight_inventory``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlops_provision.site.load import load
from mlops_provision.site.problems import InventoryInvalid, Problem

YAML_SUFFIXES = (".yml", ".yaml")
NAME_THE_SITE = ("expected an inventory file (YAML or INI) or a directory of them: set "
                 "mlops_preflight_inventory (an extra variable; AWX: the job template's) to the "
                 "site's inventory in the project, e.g. inventories/<site>")
STRANGERS = ("the run's inventory has host(s) {} that this inventory does not declare: expected "
             "mlops_preflight_inventory to name the inventory the run uses (AWX: the file its "
             "inventory source reads)")


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
    """One inventory source of the run: as given, whether ``load`` can read it as a site, and
    what is wrong with it besides."""

    given: str
    path: str | None
    problems: list[Problem] = field(default_factory=list)


def sources_to_check(sources: Iterable[str]) -> list[Source]:
    """Ansible's ``sources`` (as given, relative paths kept, so that messages read as
    validate's for the same ``-i``). A source that cannot be read as a site (a script, a host
    list) is a problem of its own."""
    out: list[Source] = []
    for given in sources:
        given = str(given or "").strip()
        if not given:
            continue
        path = Path(os.path.expanduser(given))
        if "," in given and not path.exists():
            out.append(Source(given, None, [Problem(given, "inventory", "(host list)", NAME_THE_SITE)]))
        elif path.is_file() and os.access(path, os.X_OK) and path.suffix not in YAML_SUFFIXES:
            out.append(Source(given, None, [Problem(given, "inventory", "(script)", NAME_THE_SITE)]))
        else:
            out.append(Source(given, given))  # a file or a directory: load() reads it as Ansible does
    return out


def check(sources: Iterable[str], vault_secrets: list, base: str | os.PathLike[str] | None = None,
          hosts: Iterable[str] | None = None) -> Result:
    """``validate`` of the inventory ``sources`` together (every ``-i``, as Ansible merges
    them) with Ansible's ``vault_secrets`` (a list of ``(vault_id, VaultSecret)``; empty: no
    vault password). ``base``: the directory that relative sources are relative to (default:
    the working directory). ``hosts``: the hosts of the run, when ``sources`` are not its
    inventory but name the site's (AWX): each must be a host of those sources."""
    checked = sources_to_check(_under(sources, base))
    if not checked:
        return Result(False, ["no inventory source to check"])
    name = ", ".join(s.given for s in checked)
    problems = [p for s in checked for p in s.problems]
    loadable = [s.path for s in checked if s.path is not None]
    site = None
    if loadable and not problems:
        try:
            site = load(loadable, vault_secrets=list(vault_secrets), strict=True)
        except InventoryInvalid as exc:
            problems = list(exc.problems)
    if site is not None and hosts is not None:
        strangers = sorted(set(hosts) - set(site.hosts) - {"localhost"})
        if strangers:
            problems.append(Problem(name, "inventory", "(hosts)", STRANGERS.format(
                ", ".join(strangers[:10]) + (" ..." if len(strangers) > 10 else ""))))
    if problems or site is None:
        return Result(False, invalid_lines(name, problems))
    return Result(True, [valid_line(name, site.hosts)])


def _under(paths: Iterable[str | None], base: str | os.PathLike[str] | None) -> list[str]:
    paths = [str(p) for p in paths if p]
    if base is None:
        return paths
    return [p if "," in p else str(Path(base) / os.path.expanduser(p)) for p in paths]
