"""Ask Ansible about a site: its hosts and groups (``InventoryManager``), each host's variables
in Ansible's precedence with vault decrypted (``VariableManager``), host patterns as
``--limit`` reads them, and the variables a role sees on a host (role defaults, role vars, the
OS vars file the role includes, the inventory), templated by Ansible's ``Templar``."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from mlops_provision import paths


@lru_cache(maxsize=1)
def _init_plugins() -> None:
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader()


def os_vars_files(facts: dict[str, Any]) -> list[str]:
    """The OS vars files a role includes first, in order (later wins): the OS family's, then
    the release's, e.g. ``Debian.yml`` then ``Debian-13.yml`` (roles/*/tasks/main.yml)."""
    files = [f"{facts['os_family']}.yml"] if facts.get("os_family") else []
    if facts.get("distribution") and facts.get("distribution_major_version"):
        files.append(f"{facts['distribution']}-{facts['distribution_major_version']}.yml")
    return files


class AnsibleSite:
    """Ansible's own view of a site's inventory sources (every ``-i``).

    Host matching is thread safe: ``matching`` narrows the shared ``InventoryManager`` for a
    moment (``subset``), so it and every other host listing hold ``_hosts_lock`` (drift resolves
    ``--limit`` in two threads at once: the check run and the checks)."""

    def __init__(self, inventory: Path | list[Path], vault_secrets: list, decrypt: Any = None):
        _init_plugins()
        from ansible.parsing.vault import VaultSecretsContext

        self.decrypt = decrypt  # ciphertext -> plaintext or None, for inline !vault values
        if vault_secrets and VaultSecretsContext.current(optional=True) is None:
            VaultSecretsContext.initialize(VaultSecretsContext(vault_secrets))  # for templating
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.hostvars import HostVars
        from ansible.vars.manager import VariableManager

        self.loader = DataLoader()
        self.loader.set_vault_secrets(vault_secrets)
        sources = inventory if isinstance(inventory, list) else [inventory]
        self.inventory = InventoryManager(loader=self.loader, sources=[str(s) for s in sources])
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        # `hostvars`, as a playbook run has it (Ansible's TaskQueueManager makes the same object):
        # defaults that read other hosts' variables (monitoring_server_addresses) template too.
        HostVars(inventory=self.inventory, variable_manager=self.variables, loader=self.loader)
        self._hosts_lock = threading.RLock()

    def hosts(self) -> list[str]:
        with self._hosts_lock:
            return sorted(h.name for h in self.inventory.get_hosts("all"))

    def groups(self) -> dict[str, list[str]]:
        return {name: sorted(h.name for h in group.get_hosts())
                for name, group in sorted(self.inventory.groups.items())}

    def host_groups(self, host: str) -> list[str]:
        """Ansible's ``group_names``: the host's groups and their parents, without ``all``."""
        return sorted(g.name for g in self.inventory.get_host(host).get_groups()
                      if g.name != "all")

    def group_order(self, host: str) -> list[str]:
        """The host's groups in Ansible's variable precedence, lowest first."""
        from ansible.inventory.helpers import sort_groups

        return [g.name for g in sort_groups(self.inventory.get_host(host).get_groups())]

    def host_vars(self, host: str, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The host's inventory variables (inventory, group_vars, host_vars), as plain Python
        values, vault decrypted, not templated. ``names`` limits them to those keys."""
        found = self.variables.get_vars(host=self.inventory.get_host(host),
                                        include_hostvars=False)
        keys = set(found) if names is None else set(names) & set(found)
        return {k: to_plain(found[k], self.decrypt) for k in sorted(keys)}

    def matching(self, pattern: str | None) -> list[str]:
        """The hosts ``--limit pattern`` selects, as ``ansible-playbook`` selects them."""
        if not pattern:
            return self.hosts()
        with self._hosts_lock:  # the subset is the shared InventoryManager's: one pattern at a time
            self.inventory.subset(pattern)
            try:
                return sorted(h.name for h in self.inventory.get_hosts("all"))
            finally:
                self.inventory.remove_restriction()
                self.inventory.subset(None)

    def play_hosts(self, pattern: str | tuple[str, ...]) -> set[str]:
        """The hosts a play with ``hosts: pattern`` runs on (no ``--limit``), as
        ``ansible-playbook`` selects them."""
        from ansible import constants as C

        hosts = list(pattern) if isinstance(pattern, tuple) else pattern
        # A play may name a group this site does not declare (no GPU workers): that selects no
        # host, as in ansible-playbook, without its warning on the admin's terminal.
        with self._hosts_lock:
            mismatch, C.HOST_PATTERN_MISMATCH = C.HOST_PATTERN_MISMATCH, "ignore"
            try:
                return {h.name for h in self.inventory.get_hosts(hosts)}
            finally:
                C.HOST_PATTERN_MISMATCH = mismatch

    def role_vars(self, host: str, roles: Iterable[str], facts: dict[str, Any] | None = None,
                  roles_dir: Path | None = None) -> dict[str, Any]:
        """What the roles see on ``host``: a play of ``roles`` on the host, with ``facts``
        (e.g. distribution, distribution_major_version, os_family, fqdn) as gathered facts and
        each role's ``vars/<os_family>.yml`` then ``vars/<distribution>-<major version>.yml``
        included as the role's first task does;
        every value templated by Ansible (a value that needs more than these is left as
        written)."""
        from ansible.errors import AnsibleError
        from ansible.template import Templar

        roles_dir = roles_dir or paths.roles_dir()
        target = self.inventory.get_host(host)
        facts = dict(facts or {})
        self.variables.set_host_facts(host, facts)
        names = [str(roles_dir / r) for r in roles if (roles_dir / r).is_dir()]
        for role in names:  # the OS family's file, then the release's, as roles/*/tasks/main.yml
            for stem in os_vars_files(facts):
                vars_file = Path(role) / "vars" / stem
                if vars_file.is_file():
                    # trusted, as include_vars loads them: their templates are resolved
                    for k, v in (self.loader.load_from_file(str(vars_file), trusted_as_template=True)
                                 or {}).items():
                        self.variables.set_host_variable(host, k, v)
        play = self._play(host, names)
        found = self.variables.get_vars(play=play, host=target, include_hostvars=True)
        templar = Templar(loader=self.loader, variables=found)
        out: dict[str, Any] = {}
        for key, value in found.items():
            if key in ("hostvars", "vars", "groups", "ansible_facts"):
                out[key] = value
                continue
            try:
                out[key] = to_plain(templar.template(value), self.decrypt)
            except (AnsibleError, KeyError, TypeError, ValueError):
                out[key] = to_plain(value, self.decrypt)
        return out


    def _play(self, host: str, roles: list[str]) -> Any:
        """A play of ``roles`` on ``host``; a role Ansible cannot load is left out."""
        from ansible.errors import AnsibleError
        from ansible.playbook.play import Play

        def play(names: list[str]) -> Any:
            return Play.load({"hosts": host, "gather_facts": False, "roles": names},
                             variable_manager=self.variables, loader=self.loader)

        try:
            return play(roles)
        except AnsibleError:
            loadable = []
            for role in roles:
                try:
                    play([role])
                    loadable.append(role)
                except AnsibleError:
                    continue
            return play(loadable)


def to_plain(value: Any, decrypt: Any = None) -> Any:
    """Ansible's tagged and vault values as plain Python values (str, int, list, dict...);
    ``decrypt`` turns an inline vault value's ciphertext into its plaintext."""
    if isinstance(value, dict):
        return {to_plain(k, decrypt): to_plain(v, decrypt) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v, decrypt) for v in value]
    ciphertext = getattr(value, "_ciphertext", None)
    if isinstance(ciphertext, str) and decrypt is not None:
        return decrypt(ciphertext)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    try:
        return str(value)
    except Exception:  # a vault value that cannot be decrypted: reported by the line index
        return None
