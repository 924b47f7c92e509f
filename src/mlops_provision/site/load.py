"""Load a site: read its files (line index, shape, vault), ask Ansible what they mean (hosts,
groups, variables), then check variables and run the platform's rules. See
:func:`mlops_provision.site.load`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlops_provision import paths
from mlops_provision.secrets import secret_values
from mlops_provision.site import check, rules
from mlops_provision.site.hostview import HostView, host_blocks
from mlops_provision.site.layout import Layout, inventory_sources, read_layout
from mlops_provision.site.problems import InventoryInvalid, Problem, Problems
from mlops_provision.site.resolve import AnsibleSite
from mlops_provision.site.roles import load_role_specs, roles_of, roles_run
from mlops_provision.site.values import plain
from mlops_provision.site.vault import VAULT_IDS_ENV, Vault, identity_secrets


class Site:
    """A validated site: hosts, groups and each host's variables, all as Ansible sees them."""

    def __init__(self, path: Path, layout: Layout, ansible: AnsibleSite | None,
                 hostvars: dict[str, dict[str, Any]], secrets: set[str],
                 warnings: list[Problem] | None = None):
        self.path = path  # the first inventory file: the site's name in messages and records
        self.site_dir = layout.site_dir
        self.sources: list[Path] = list(layout.sources) or [path]  # every -i, as given
        self.layout = layout
        self.ansible = ansible
        self.hosts: list[str] = sorted(hostvars)
        self.groups: dict[str, list[str]] = ansible.groups() if ansible else {}
        self._hostvars = hostvars
        self._secrets = secrets
        #: What validate reports without refusing the site (sorted by file and line): a role's
        #: variable where the role never runs, a host in GPU and CPU worker groups, an ansible_*
        #: variable Ansible ignores, an SSH or sudo password in clear.
        self.warnings: list[Problem] = list(warnings or [])

    def hostvars(self, host: str) -> dict[str, Any]:
        """The host's inventory variables in Ansible's precedence, vault decrypted, not
        templated."""
        return plain(self._hostvars[host])

    def host_groups(self, host: str) -> list[str]:
        """Ansible's ``group_names`` of the host: its groups and their parents, without all."""
        return self.ansible.host_groups(host) if self.ansible else []

    def secrets(self) -> set[str]:
        """Every vault plaintext, the vault password, and the value of every
        password/secret/token variable, Jinja expressions excepted: for scrubbing records."""
        return set(self._secrets)

    def matching(self, pattern: str | None) -> list[str]:
        """The hosts ``--limit pattern`` selects, as Ansible selects them."""
        return self.ansible.matching(pattern) if self.ansible else []

    def roles(self, host: str) -> list[str]:
        """The roles the host runs: those of every play whose ``hosts:`` pattern selects it, the
        pattern resolved by Ansible."""
        if self.ansible is None:
            return []
        return sorted(roles_of(host, self.ansible.play_hosts, paths.playbook().parent))

    def role_vars(self, host: str, facts: dict[str, Any] | None = None,
                  roles: list[str] | None = None) -> dict[str, Any]:
        """The variables the roles the host runs see there, templated by Ansible."""
        if self.ansible is None:
            return {}
        if roles is None:
            roles = self.roles(host)
        return self.ansible.role_vars(host, roles, facts)

    def __repr__(self) -> str:
        return f"Site({str(self.path)!r}, hosts={self.hosts!r})"


def load(path: str | os.PathLike[str] | list[str | os.PathLike[str]],
         vault_password_file: str | os.PathLike[str] | None = None,
         roles_dir: str | os.PathLike[str] | None = None, strict: bool = True,
         vault_secrets: list | None = None, *, strict_warnings: bool = False) -> Site:
    """Load and validate the inventory at ``path``: one source or a list of them (``-i``
    repeated), each a file (YAML or INI) or a directory of them, merged as Ansible merges
    them. Raises :class:`InventoryInvalid` listing every problem found.

    ``strict=False`` only reads: it returns what could be loaded despite problems (the checks
    use it on inventories that other tools generate, such as Molecule's).

    ``vault_secrets``: the ``(vault_id, VaultSecret)`` pairs of a running Ansible (the
    preflight play, :mod:`mlops_provision.site.preflight`), used instead of a password file;
    an empty list means Ansible was given no vault password."""
    problems = Problems()
    if vault_secrets is not None:
        vault_password_file = None
    elif vault_password_file is None and os.environ.get(VAULT_IDS_ENV):
        vault_secrets = identity_secrets(os.environ[VAULT_IDS_ENV], problems)
    elif vault_password_file is None:
        vault_password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE") or None
    roles_dir = Path(roles_dir) if roles_dir is not None else paths.roles_dir()
    given = [Path(p) for p in path] if isinstance(path, list | tuple) else [Path(path)]
    sources = inventory_sources(given, problems)
    if sources is None:
        raise InventoryInvalid(problems)
    if not roles_dir.is_dir():
        problems.add(roles_dir, "roles", "(directory)",
                     "expected the roles directory (with roles/*/meta/argument_specs.yml)")
    specs = load_role_specs(roles_dir)
    for file, role, msg in specs.broken:
        problems.add(file, f"role '{role}'", "argument_specs", msg)
    vault = Vault(vault_password_file, problems, vault_secrets)
    layout = read_layout(sources, vault, problems, strict)
    if layout.fatal and strict:
        raise InventoryInvalid(_scrubbed(problems.sorted(), vault.secrets))
    for block in layout.blocks:
        if not block.checked:
            check.decrypt_block(block, vault, problems)
            check.check_block(block, specs, problems)
    ansible, views = _resolve(layout, vault, specs, problems, strict)
    views = _without_secret_hosts(views, layout, vault, problems)
    if ansible is not None and not views and not problems:
        problems.add(layout.inventory, "inventory", "hosts",
                     f"no host in {', '.join(str(p) for p in layout.sources)}: expected at least "
                     "one host (Ansible reads every YAML or INI file of a directory, less hidden "
                     "files, group_vars/, host_vars/ and *.md, *.txt, *.cfg)")
    if ansible is not None:
        run = roles_run(paths.playbook().parent)
        for view in views:
            check.check_required(view, run)
            for rule in rules.HOST_RULES:
                rule(view)
        for site_rule in rules.SITE_RULES:
            site_rule(views)
        rules.published_vault_password(vault.password, vault_password_file or "(vault secrets)",
                                       layout.site_dir, problems)
    warnings = problems.sorted_warnings()
    if strict_warnings:  # validate --strict: a warning refuses the site too
        for warning in warnings:
            problems.add(warning.file, warning.where, warning.key, warning.expected, warning.line)
        warnings = []
    if problems and strict:
        raise InventoryInvalid(_scrubbed(problems.sorted(), vault.secrets),
                               _scrubbed(warnings, vault.secrets))
    hostvars = {v.name: v.vars for v in views}
    secrets = vault.secrets | secret_values(plain(b.vars) for b in layout.blocks)
    return Site(layout.inventory, layout, ansible, hostvars, secrets, warnings)


#: A host named after a secret: a file of an inventory directory that Ansible reads as an
#: inventory although it is none (a vault password file read as INI names a host after the
#: password). Its name is never shown.
SECRET_HOST = ("Ansible reads this file as an inventory (every file of an inventory directory "
               "is one, less hidden files and *.md, *.txt, *.cfg) and a host in it is named after "
               "a secret (a vault password file?): expected only inventory files there: move it "
               "out of the directory, or hide it with a leading '.'")


def _without_secret_hosts(views: list[HostView], layout: Layout, vault: Vault,
                          problems: Problems) -> list[HostView]:
    secret = [v for v in views if v.name in vault.secrets]
    for view in secret:
        problems.add(layout.host_files.get(view.name, layout.inventory), "inventory",
                     "(inventory source)", SECRET_HOST)
    return [v for v in views if v not in secret]


def _scrubbed(found: list, secrets: set[str]) -> list:
    """Problems with every secret (a vault password, a plaintext) masked, as in the records."""
    import dataclasses
    import re

    shown = sorted((s for s in secrets if s and len(s) >= 8), key=len, reverse=True)
    # a secret as a whole token (a host named after a password), not a word that contains it
    pattern = re.compile("|".join(rf"(?<![\w.-]){re.escape(s)}(?![\w-])" for s in shown)) if shown else None

    def clean(text: object) -> object:
        if not isinstance(text, str) or pattern is None:
            return text
        return pattern.sub("********", text)

    return [dataclasses.replace(p, **{f.name: clean(getattr(p, f.name))
                                      for f in dataclasses.fields(p)}) for p in found]


def _resolve(layout: Layout, vault: Vault, specs: Any, problems: Problems,
             strict: bool) -> tuple[AnsibleSite | None, list[HostView]]:
    from ansible.errors import AnsibleError

    names = {k for b in layout.blocks for k in b.vars if isinstance(k, str)}
    try:
        ansible = AnsibleSite(layout.sources, vault.ansible_secrets(), vault.decrypt)
        views = []
        for host in ansible.hosts():
            groups = ansible.host_groups(host)
            views.append(HostView(
                name=host, vars=ansible.host_vars(host, names), groups=groups,
                roles=roles_of(host, ansible.play_hosts, paths.playbook().parent), specs=specs,
                inventory=layout.host_files.get(host, layout.inventory), line=layout.host_lines.get(host),
                blocks=host_blocks(layout, host, ansible.group_order(host)),
                vault_failed=vault.failed, problems=problems))
    except AnsibleError as exc:
        if not vault.failed:  # a vault failure is reported where it happened
            problems.add(layout.inventory, "inventory", "(ansible)",
                         f"Ansible cannot read the inventory: {exc.message}")
        return None, []
    return ansible, views
