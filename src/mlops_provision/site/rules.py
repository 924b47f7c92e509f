"""The platform's cross-field rules, each in one place. ``mlops-provision validate`` (and so
every ``up``) runs them before any host is contacted; the roles rely on them.

A host rule takes a :class:`~mlops_provision.site.hostview.HostView` (the host's variables as
Ansible resolved them, the roles it runs) and reports problems through ``host.problem``. A site
rule takes every host. To add a rule, write the function and append it to :data:`HOST_RULES`
or :data:`SITE_RULES`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mlops_provision import paths
from mlops_provision.gpu.rules import gpu_rules
from mlops_provision.site.hostview import HostView
from mlops_provision.site.kubeadm import upgrade_problem, version_of
from mlops_provision.site.roles import role_groups
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



# --------------------------------------------------------------------------- Kubernetes
# The kernel needs and kubeadm's upgrade skew are the kubernetes_node role's data
# (roles/kubernetes_node/vars/main.yml), read here; kubeadm's upgrade rule is
# mlops_provision.site.kubeadm, which the role runs as a filter. Which hosts are control planes
# and workers is the playbooks' answer (the roles a host runs), not a list of groups here.


@lru_cache(maxsize=4)
def kubernetes_node_vars(roles_dir: str) -> dict:
    """The kubernetes_node role's ``vars/main.yml``: ``kubernetes_node_modules``,
    ``kubernetes_node_sysctl``, ``kubernetes_node_max_minor_skew``."""
    return yaml.safe_load((Path(roles_dir) / "kubernetes_node" / "vars" / "main.yml")
                          .read_text()) or {}


def _kubernetes_node_var(name: str) -> Any:
    return kubernetes_node_vars(str(paths.roles_dir()))[name]


def _cluster(hosts: list[HostView]) -> list[HostView]:
    return [h for h in hosts if "kubernetes_node" in h.roles]


kubernetes_version_of = version_of


def kubernetes_upgrade_problem(current: tuple[int, int, int], target: tuple[int, int, int]) -> str:
    """Why kubeadm cannot go from ``current`` to ``target`` ("" when it can): kubeadm's rule
    (:func:`mlops_provision.site.kubeadm.upgrade_problem`) with the role's skew."""
    return upgrade_problem(current, target, int(_kubernetes_node_var("kubernetes_node_max_minor_skew")))


def kubernetes_topology(hosts: list[HostView]) -> None:
    """Workers need a control plane; several control planes need an API endpoint in front."""
    cluster = _cluster(hosts)
    planes = [h for h in cluster if "kubernetes_control_plane" in h.roles]
    workers = [h for h in cluster if "kubernetes_worker" in h.roles]
    # A site without a control plane and without any kubernetes_* setting declares no cluster
    # (GPU or CPU nodes only): accepted, and kubernetes_worker says on each worker that it joins
    # no cluster. Once any kubernetes_* setting declares one, workers need a control plane.
    declares = any(k.startswith("kubernetes_") for h in hosts for k in h.vars)
    if workers and not planes and declares:
        groups = role_groups("kubernetes_control_plane")  # the playbooks': control_plane
        workers[0].problem(groups[0] if groups else "kubernetes_control_plane",
                           f"{len(workers)} worker(s) ({', '.join(w.name for w in workers)}) but no host "
                           f"in group {' or '.join(groups) or '(none runs kubernetes_control_plane)'}: "
                           "expected at least one control plane for the workers to join", at_host=True)
    if len(planes) > 1:
        endpoint = planes[1].value("kubernetes_api_endpoint", "")
        if not endpoint:
            planes[1].problem("kubernetes_api_endpoint",
                              f"{len(planes)} control planes ({', '.join(p.name for p in planes)}): "
                              "expected the address of a load balancer or virtual IP in front of "
                              "them (\"host\" or \"host:port\")", at_host=planes[1].block(
                                  "kubernetes_api_endpoint") is None)


def kubernetes_networks(hosts: list[HostView]) -> None:
    """The pod and service networks are CIDRs that overlap neither each other nor the nodes'
    addresses (ansible_host, mlops_node_address)."""
    cluster = _cluster(hosts)
    if not cluster:
        return
    nodes: list[tuple[str, str, ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
    for host in hosts:
        for var in ("ansible_host", "mlops_node_address"):
            value = host.vars.get(var)
            if isinstance(value, str) and is_ip(value) and not ipaddress.ip_address(value).is_loopback:
                nodes.append((host.name, var, ipaddress.ip_address(value)))
    reported: set[tuple[str, str]] = set()
    for host in cluster:
        nets = {}
        for key in ("kubernetes_pod_cidr", "kubernetes_service_cidr"):
            value = host.value(key)
            if not isinstance(value, str) or is_template(value):
                continue
            try:
                nets[key] = ipaddress.ip_network(value, strict=True)
            except ValueError:
                continue  # not a CIDR: reported by the type check (values.with_conventions)
            clash = [f"{n}'s {v} {a}" for n, v, a in nodes if a in nets[key]]
            if clash and (key, str(value)) not in reported:
                reported.add((key, str(value)))
                host.problem(key, f"{value} contains {', '.join(clash[:3])}: expected a network "
                                  "apart from the nodes' addresses")
        pod, svc = nets.get("kubernetes_pod_cidr"), nets.get("kubernetes_service_cidr")
        if pod and svc and pod.version == svc.version and pod.overlaps(svc) \
                and ("overlap", str(pod)) not in reported:
            reported.add(("overlap", str(pod)))
            host.problem("kubernetes_service_cidr", f"{svc} overlaps kubernetes_pod_cidr {pod}: "
                                                    "expected two separate networks")


def kubernetes_versions(host: HostView) -> None:
    """One pinned MAJOR.MINOR.PATCH; from the declared current version, an upgrade kubeadm can do."""
    if "kubernetes_node" not in host.roles:
        return
    target_text = host.value("kubernetes_version")
    if target_text is None or is_template(target_text):
        return
    target = kubernetes_version_of(target_text)
    if target is None:
        host.problem("kubernetes_version", f"'{target_text}' is not a pinned version: expected "
                                           "MAJOR.MINOR.PATCH, e.g. 1.33.1")
        return
    current_text = host.value("kubernetes_current_version", "")
    if not current_text or is_template(current_text):
        return
    current = kubernetes_version_of(current_text)
    if current is None:
        host.problem("kubernetes_current_version", f"'{current_text}' is not a version: expected "
                                                   "MAJOR.MINOR.PATCH (what the cluster runs now) or empty")
        return
    why = kubernetes_upgrade_problem(current, target)
    if why:
        host.problem("kubernetes_version", f"{target_text} from the running {current_text} "
                                           f"(kubernetes_current_version) is {why}")


def kubernetes_kernel(host: HostView) -> None:
    """os_hardening keeps loading the modules and setting the parameters a cluster node needs."""
    if "kubernetes_node" not in host.roles or "os_hardening" not in host.roles:
        return
    needed = [str(m) for m in _kubernetes_node_var("kubernetes_node_modules")]
    modules = host.value("os_hardening_modules_load")
    if isinstance(modules, list) and not any(is_template(m) for m in modules):
        gone = [m for m in needed if m not in modules]
        if gone:
            host.problem("os_hardening_modules_load", f"lacks {', '.join(gone)} on a Kubernetes node: "
                                                      f"expected {', '.join(needed)} in it")
    params = {str(k): str(v) for k, v in _kubernetes_node_var("kubernetes_node_sysctl").items()}
    sysctl = host.value("os_hardening_sysctl", {})
    if isinstance(sysctl, dict):
        wrong = [f"{k}={sysctl[k]}" for k, v in params.items()
                 if k in sysctl and not is_template(sysctl[k]) and str(sysctl[k]) != v]
        if wrong:
            host.problem("os_hardening_sysctl", f"sets {', '.join(wrong)} on a Kubernetes node: "
                                                "expected " + ", ".join(f"{k}={v}" for k, v in params.items()))


def kubernetes_encryption_key(host: HostView) -> None:
    """The Secrets encryption key, when set, is vault-encrypted and 32 bytes in base64."""
    key = "kubernetes_control_plane_encryption_key"
    if "kubernetes_control_plane" not in host.roles or key not in host.vars:
        return
    kind, value, block = host.source(key)
    expected = ("expected 32 random bytes in base64, vault-encrypted (`ansible-vault encrypt_string "
                f"--name {key} \"$(head -c 32 /dev/urandom | base64)\"`)")
    if kind == "plain":
        host.problem_in(block, key, f"is plain text: {expected}")
    elif kind == "vault" and isinstance(value, str):
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) != 32:
            host.problem_in(block, key, f"does not decode to 32 bytes: {expected}")


#: Rules run for each host, in order.
HOST_RULES: list[Callable[[HostView], None]] = [
    tang_settings, group_secrets, protected_modules, port_clashes, gpu_rules,
    kubernetes_versions, kubernetes_kernel, kubernetes_encryption_key,
]
#: Rules run once over all hosts.
SITE_RULES: list[Callable[[list[HostView]], None]] = [
    unique_addresses, kubernetes_topology, kubernetes_networks,
]
