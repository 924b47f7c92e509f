"""The platform's cross-field rules, each in one place. ``mlops-provision validate`` (and so
every ``up``) runs them before any host is contacted; the roles rely on them.

A host rule takes a :class:`~mlops_provision.site.hostview.HostView` (the host's variables as
Ansible resolved them, the roles it runs) and reports problems through ``host.problem``. A site
rule takes every host. To add a rule, write the function and append it to :data:`HOST_RULES`
or :data:`SITE_RULES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import yaml

from mlops_provision import paths
from mlops_provision.gpu.rules import gpu_rules
from mlops_provision.site.hostview import HostView
from mlops_provision.site.values import is_ip, is_template, normal_address

#: Secrets every host of a group must have, vault-encrypted (the sandbox uses this table too).
GROUP_SECRETS: dict[str, tuple[str, ...]] = {
    "mlflow": ("mlflow_admin_password", "mlflow_db_password"),
}
#: Passwords people log in with, checked for strength: password variable -> user name variable.
STRONG_PASSWORDS: dict[str, str] = {"mlflow_admin_password": "mlflow_admin_username"}
MIN_PASSWORD_LENGTH = 12
#: Well-known passwords (defaults shipped by software, the most common choices), lower case.
WEAK_PASSWORDS: frozenset[str] = frozenset({
    "password1234", "password12345", "password123456", "passwordpassword", "123456789012",
    "1234567890123", "12345678901234", "qwertyuiopas", "qwerty123456", "administrator",
    "administrator1", "adminadminadmin", "admin1234567", "admin12345678", "changeme1234",
    "changemechangeme", "letmein12345", "iloveyou1234", "welcome12345", "mlflow123456",
    "mlflowmlflow", "mlflow-admin", "mlflowadmin123", "p@ssw0rd1234", "passw0rd1234",
    "secretsecret", "default12345", "trustno12345",
})
#: ``*_port`` variables naming a port a role connects to, not one it listens on.
CLIENT_PORTS: frozenset[str] = frozenset({"mlflow_db_port"})
#: ``*_port`` variables of different roles naming the same service's port (sshd's: configured by
#: os_hardening, opened by firewall): one service, so equal values are no clash.
SHARED_PORTS: tuple[frozenset[str], ...] = (frozenset({"os_hardening_ssh_port", "firewall_ssh_port"}),)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def tang_settings(host: HostView) -> None:
    """Tang binding removes the node's keyfile: the escrow must stay on, the threshold fit."""
    servers = host.value("disk_encryption_tang_servers", [])
    if not isinstance(servers, list) or not servers:
        return
    if host.vars.get("disk_encryption_escrow", True) is False:
        host.problem("disk_encryption_escrow",
                     "expected true while disk_encryption_tang_servers is set: the keyfile "
                     "leaves the node, and the escrowed key is the only key besides Tang")
    threshold = host.vars.get("disk_encryption_tang_threshold", 1)
    if _is_int(threshold) and not 1 <= threshold <= len(servers):
        host.problem("disk_encryption_tang_threshold",
                     f"expected 1 to {len(servers)} (the number of disk_encryption_tang_servers), "
                     f"got {threshold}")


def group_secrets(host: HostView) -> None:
    """The secrets a host's groups need are set and vault-encrypted; login passwords strong."""
    for group in sorted(set(host.groups) & set(GROUP_SECRETS)):
        for key in GROUP_SECRETS[group]:
            role = host.specs.options.get(key, ("?",))[0]
            how = (f"expected a vault-encrypted str (`ansible-vault encrypt_string --name {key}`, "
                   "or a variable of a vault-encrypted file)")
            if key not in host.vars:
                host.problem(key, f"required for hosts in group '{group}' (role {role}): {how}",
                             at_host=True)
                continue
            kind, value, block = host.source(key)
            if kind == "missing" and not host.vault_failed:  # else: likely in what failed
                host.problem_in(block, key, f"refers to '{value}', which is not set: {how}")
            elif kind == "plain":
                host.problem_in(block, key, f"is plain text: {how}; a password must never be "
                                            "written in clear")
            elif kind == "vault" and isinstance(value, str) and key in STRONG_PASSWORDS:
                weak = password_weakness(value, host.value(STRONG_PASSWORDS[key]))
                if weak:
                    host.problem_in(block, key, f"is too weak ({weak}): expected at least "
                                      f"{MIN_PASSWORD_LENGTH} characters, not a well-known "
                                      "password, not the user name")


def password_weakness(password: str, user: object) -> str:
    """Why ``password`` is too weak to log in with, or "" if it is not."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"{len(password)} characters"
    if password.lower() in WEAK_PASSWORDS or len(set(password)) == 1:
        return "a well-known password"
    if isinstance(user, str) and password.lower() == user.lower():
        return "the same as the user name"
    return ""


@lru_cache(maxsize=4)
def protected_modules_regex(roles_dir: str) -> str:
    """``os_hardening_protected_modules_regex``, as the os_hardening role defines it."""
    data = yaml.safe_load((Path(roles_dir) / "os_hardening" / "vars" / "main.yml")
                          .read_text()) or {}
    return str(data.get("os_hardening_protected_modules_regex") or "^$")


def protected_modules(host: HostView) -> None:
    """Kernel modules the platform needs (overlay, br_netfilter, NVIDIA, RDMA...) are never
    blacklisted."""
    if "os_hardening" not in host.roles:
        return
    listed = host.value("os_hardening_blacklisted_modules", [])
    if not isinstance(listed, list):
        return
    pattern = re.compile(protected_modules_regex(str(paths.roles_dir())))
    needed = [m for m in listed if isinstance(m, str) and not is_template(m) and pattern.match(m)]
    if needed:
        host.problem("os_hardening_blacklisted_modules",
                     f"lists {', '.join(needed)}: expected none of the modules the platform "
                     "needs (containers, Kubernetes networking, NVIDIA GPUs, RDMA, UEFI boot: "
                     f"{pattern.pattern})")


def port_clashes(host: HostView) -> None:
    """The ``*_port`` services of the roles a host runs listen on different ports."""
    ports: dict[int, list[str]] = {}
    for name, (role, _spec) in sorted(host.specs.options.items()):
        if role in host.roles and name.endswith("_port") and name not in CLIENT_PORTS:
            value = host.value(name)
            if _is_int(value):
                ports.setdefault(value, []).append(name)
    for port, names in sorted(ports.items()):
        services = {next((min(s) for s in SHARED_PORTS if n in s), n) for n in names}
        if len(services) < 2:
            continue
        for name in names:
            others = ", ".join(f"{o} (role {host.specs.options[o][0]})" for o in names if o != name)
            if name in host.vars:
                host.problem(name, f"port {port} is also {others} on host '{host.name}': "
                                   "expected each service a host runs to have its own port")
        if not any(n in host.vars for n in names):  # two roles' defaults: a defect of the roles
            host.problem(names[0], f"port {port} is the default of {', '.join(names)}: "
                                   "expected different ports", at_host=True)


def unique_addresses(hosts: list[HostView]) -> None:
    """No two hosts share an ansible_host/ansible_port pair or a mlops_node_address."""
    seen: dict[tuple[str, ...], str] = {}

    def claim(host: HostView, var: str, key: tuple[str, ...], what: str, own: str) -> None:
        if key in seen:
            host.problem(var, f"{what} is also used by host '{seen[key]}': expected each host "
                              f"to have its own {own}")
        else:
            seen[key] = host.name

    for host in hosts:
        address, port = host.vars.get("ansible_host"), host.vars.get("ansible_port", 22)
        if (host.vars.get("ansible_connection") != "local" and isinstance(address, str)
                and address and not is_template(address) and _is_int(port)):
            claim(host, "ansible_host", ("ssh", normal_address(address), str(port)),
                  f"address {address} port {port}", "ansible_host/ansible_port pair")
        node = host.vars.get("mlops_node_address")
        if isinstance(node, str) and is_ip(node):
            claim(host, "mlops_node_address", ("node", normal_address(node)), f"address {node}",
                  "mlops_node_address")


#: Rules run for each host, in order.
HOST_RULES: list[Callable[[HostView], None]] = [
    tang_settings, group_secrets, protected_modules, port_clashes, gpu_rules,
]
#: Rules run once over all hosts.
SITE_RULES: list[Callable[[list[HostView]], None]] = [unique_addresses]
