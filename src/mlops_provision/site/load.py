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
from mlops_provision.site.layout import Layout, find_inventory, read_layout
from mlops_provision.site.problems import InventoryInvalid, Problems
from mlops_provision.site.resolve import AnsibleSite
from mlops_provision.site.roles import load_role_specs, roles_of, roles_run
from mlops_provision.site.values import plain
from mlops_provision.site.vault import Vault


class Site:
    """A validated site: hosts, groups and each host's variables, all as Ansible sees them."""

    def __init__(self, path: Path, layout: Layout, ansible: AnsibleSite | None,
                 hostvars: dict[str, dict[str, Any]], secrets: set[str]):
        self.path = path
        self.site_dir = path.parent
        self.layout = layout
        self.ansible = ansible
        self.hosts: list[str] = sorted(hostvars)
        self.groups: dict[str, list[str]] = ansible.groups() if ansible else {}
        self._hostvars = hostvars
        self._secrets = secrets

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


def load(path: str | os.PathLike[str], vault_password_file: str | os.PathLike[str] | None = None,
         roles_dir: str | os.PathLike[str] | None = None, strict: bool = True,
         vault_secrets: list | None = None) -> Site:
    """Load and validate the inventory at ``path`` (a YAML file, or a directory holding
    ``hosts.yml``). Raises :class:`InventoryInvalid` listing every problem found.

    ``strict=False`` only reads: it returns what could be loaded despite problems (the checks
    use it on inventories that other tools generate, such as Molecule's).

    ``vault_secrets``: the ``(vault_id, VaultSecret)`` pairs of a running Ansible (the
    preflight play, :mod:`mlops_provision.site.preflight`), used instead of a password file;
    an empty list means Ansible was given no vault password."""
    if vault_secrets is not None:
        vault_password_file = None
    elif vault_password_file is None:
        vault_password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE") or None
    roles_dir = Path(roles_dir) if roles_dir is not None else paths.roles_dir()
    problems = Problems()
    inventory = find_inventory(Path(path), problems)
    if inventory is None:
        raise InventoryInvalid(problems)
    if not roles_dir.is_dir():
        problems.add(roles_dir, "roles", "(directory)",
                     "expected the roles directory (with roles/*/meta/argument_specs.yml)")
    specs = load_role_specs(roles_dir)
    for file, role, msg in specs.broken:
        problems.add(file, f"role '{role}'", "argument_specs", msg)
    vault = Vault(vault_password_file, problems, vault_secrets)
    layout = read_layout(inventory, vault, problems, strict)
    if layout.fatal and strict:
        raise InventoryInvalid(problems.sorted())
    for block in layout.blocks:
        if not block.checked:
            check.decrypt_block(block, vault, problems)
            check.check_block(block, specs, problems)
    ansible, views = _resolve(layout, vault, specs, problems, strict)
    if ansible is not None:
        run = roles_run(paths.playbook().parent)
        for view in views:
            check.check_required(view, run)
            check.check_address(view)
            for rule in rules.HOST_RULES:
                rule(view)
        for site_rule in rules.SITE_RULES:
            site_rule(views)
    if problems and strict:
        raise InventoryInvalid(problems.sorted())
    hostvars = {v.name: v.vars for v in views}
    secrets = vault.secrets | secret_values(plain(b.vars) for b in layout.blocks)
    return Site(inventory, layout, ansible, hostvars, secrets)


def _resolve(layout: Layout, vault: Vault, specs: Any, problems: Problems,
             strict: bool) -> tuple[AnsibleSite | None, list[HostView]]:
    from ansible.errors import AnsibleError

    names = {k for b in layout.blocks for k in b.vars if isinstance(k, str)}
    try:
        ansible = AnsibleSite(layout.inventory, vault.ansible_secrets(), vault.decrypt)
        views = []
        for host in ansible.hosts():
            groups = ansible.host_groups(host)
            views.append(HostView(
                name=host, vars=ansible.host_vars(host, names), groups=groups,
                roles=roles_of(host, ansible.play_hosts, paths.playbook().parent), specs=specs,
                inventory=layout.inventory, line=layout.host_lines.get(host),
                blocks=host_blocks(layout, host, ansible.group_order(host)),
                vault_failed=vault.failed, problems=problems))
    except AnsibleError as exc:
        if not vault.failed:  # a vault failure is reported where it happened
            problems.add(layout.inventory, "inventory", "(ansible)",
                         f"Ansible cannot read the inventory: {exc.message}")
        return None, []
    return ansible, views
