"""The platform's cross-field rules, each in one place. ``mlops-provision validate`` (and so
every ``up``) runs them before any host is contacted; the roles rely on them.

A host rule takes a :class:`~mlops_provision.site.hostview.HostView` (the host's variables as
Ansible resolved them, the roles it runs) and reports problems through ``host.problem``, or
warnings (reported, the site stays valid) through ``host.warn``. A site rule takes every host.
To add a rule, write the function and append it to :data:`HOST_RULES` or :data:`SITE_RULES`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mlops_provision import paths
from mlops_provision.gpu.rules import gpu_rules
from mlops_provision.site import ansiblevars, yamlfile
from mlops_provision.site.hostview import HostView
from mlops_provision.site.kubeadm import upgrade_problem, version_of
from mlops_provision.site.problems import Problems
from mlops_provision.site.roles import role_groups
from mlops_provision.site.values import is_ip, is_template, normal_address

#: Secrets every host of a group must have, vault-encrypted (the sandbox uses this table too).
GROUP_SECRETS: dict[str, tuple[str, ...]] = {
    "mlflow": ("mlflow_admin_password", "mlflow_db_password"),
    "monitoring": ("prometheus_web_password",),
}
#: Passwords people log in with, checked for strength: password variable -> user name variable.
STRONG_PASSWORDS: dict[str, str] = {"mlflow_admin_password": "mlflow_admin_username",
                                    "prometheus_web_password": "prometheus_web_username"}
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


def _where() -> tuple[Any, Any, str | None]:
    """What the project's directories depend on (a cache key)."""
    return paths.roles_dir, paths.project_root, os.environ.get("MLOPS_PROVISION_HOME")


@lru_cache(maxsize=8)
def _roles_dir_of(where: tuple[Any, Any, str | None]) -> str:
    return str(where[0]())


def _roles_dir() -> str:
    """``paths.roles_dir()``, found once (per project): rules run per host."""
    return _roles_dir_of(_where())


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
    pattern = re.compile(protected_modules_regex(_roles_dir()))
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
    ``kubernetes_node_sysctl``, ``kubernetes_node_max_minor_skew``,
    ``kubernetes_node_min_version``."""
    return yaml.safe_load((Path(roles_dir) / "kubernetes_node" / "vars" / "main.yml")
                          .read_text()) or {}


def _kubernetes_node_var(name: str) -> Any:
    return kubernetes_node_vars(_roles_dir())[name]


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


CLUSTER_NETWORKS = ("kubernetes_pod_cidr", "kubernetes_service_cidr")


def node_address(host: HostView) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    """The variable holding the address kubeadm gives the node, and the address: the roles take
    mlops_node_address, else the node's own (ansible_host here, when an IP address)."""
    for var in ("mlops_node_address", "ansible_host"):
        value = host.vars.get(var)
        if isinstance(value, str) and is_ip(value):
            return var, ipaddress.ip_address(value)
    return None


def kubernetes_networks(hosts: list[HostView]) -> None:
    """The pod and service networks are CIDRs that overlap neither each other nor the nodes'
    addresses (ansible_host, mlops_node_address), of one address family, the nodes' (kubeadm
    runs a single-stack cluster: it cannot mix IPv4 and IPv6)."""
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
    clashes: dict[tuple[str, str], list[str]] = {}  # one look at the nodes per network
    # (key, network) -> the cluster hosts whose node address is of the other family
    mixed: dict[tuple[str, str], list[tuple[HostView, str, Any]]] = {}
    for host in cluster:
        nets = {}
        for key in CLUSTER_NETWORKS:
            value = host.value(key)
            if not isinstance(value, str) or is_template(value):
                continue
            try:
                nets[key] = ipaddress.ip_network(value, strict=True)
            except ValueError:
                continue  # not a CIDR: reported by the type check (values.with_conventions)
            ident = (key, str(value))
            if ident not in clashes:
                clashes[ident] = [f"{n}'s {v} {a}" for n, v, a in nodes if a in nets[key]]
            clash = clashes[ident]
            if clash and ident not in reported:
                reported.add(ident)
                host.problem(key, f"{value} contains {', '.join(clash[:3])}: expected a network "
                                  "apart from the nodes' addresses")
        pod, svc = nets.get("kubernetes_pod_cidr"), nets.get("kubernetes_service_cidr")
        if pod and svc and pod.version != svc.version:
            if ("families", f"{pod} {svc}") not in reported:
                reported.add(("families", f"{pod} {svc}"))
                host.problem("kubernetes_service_cidr",
                             f"{svc} is IPv{svc.version} and kubernetes_pod_cidr {pod} is "
                             f"IPv{pod.version}: expected both networks of one address family "
                             "(kubeadm cannot mix IPv4 and IPv6 here)")
            continue
        if pod and svc and pod.overlaps(svc) and ("overlap", str(pod)) not in reported:
            reported.add(("overlap", str(pod)))
            host.problem("kubernetes_service_cidr", f"{svc} overlaps kubernetes_pod_cidr {pod}: "
                                                    "expected two separate networks")
        node = node_address(host)
        for key, net in nets.items():
            if node is not None and node[1].version != net.version:
                mixed.setdefault((key, str(net)), []).append((host, *node))
    _mixed_families(mixed)


def _mixed_families(mixed: dict[tuple[str, str], list[tuple[HostView, str, Any]]]) -> None:
    """Report node addresses of one family with cluster networks of the other: at the network's
    line where the inventory sets it (once, however many nodes), else at the first node's
    address, naming the role default."""
    defaults: dict[int, list[str]] = {}
    firsts: dict[int, list[tuple[HostView, str, Any]]] = {}
    for (key, net), found in mixed.items():
        host, var, address = found[0]
        family = f"IPv{address.version}"
        nodes = ", ".join(f"{h.name}'s {v} {a}" for h, v, a in found[:3])
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        fix = (f"expected kubernetes_pod_cidr and kubernetes_service_cidr of the nodes' family "
               f"({family}), or {'IPv4' if family == 'IPv6' else 'IPv6'} node addresses: kubeadm "
               "cannot mix IPv4 and IPv6 here")
        if host.block(key) is not None:
            host.problem(key, f"{net} is IPv{ipaddress.ip_network(net).version}, but the nodes' "
                              f"addresses are {family} ({nodes}{more}): {fix}")
        else:
            defaults.setdefault(id(host), []).append(f"{key} {net}")
            firsts.setdefault(id(host), found)
    for ident, networks in defaults.items():
        found = firsts[ident]
        host, var, address = found[0]
        nodes = ", ".join(f"{h.name}'s {v} {a}" for h, v, a in found[:3])
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        other = "IPv4" if address.version == 6 else "IPv6"
        verb = "are role mlops defaults" if len(networks) > 1 else "is role mlops' default"
        host.problem(var, f"the nodes' addresses are IPv{address.version} ({nodes}{more}), but "
                          f"{' and '.join(networks)} {verb}, {other}: expected "
                          f"kubernetes_pod_cidr and kubernetes_service_cidr set to "
                          f"IPv{address.version} networks, or {other} node addresses: kubeadm cannot "
                          "mix IPv4 and IPv6 here")


def kubernetes_min_version() -> tuple[int, int, int]:
    """The oldest kubernetes_version the roles install (``kubernetes_node_min_version``)."""
    found = kubernetes_version_of(str(_kubernetes_node_var("kubernetes_node_min_version")))
    if found is None:
        raise ValueError("kubernetes_node_min_version in roles/kubernetes_node/vars/main.yml is "
                         "not MAJOR.MINOR.PATCH")
    return found


def kubernetes_versions(host: HostView) -> None:
    """One pinned MAJOR.MINOR.PATCH, without a leading v (the roles write it: kubeadm's
    ``v{{ kubernetes_version }}``, pkgs.k8s.io's ``/v1.33/``), no older than what the kubeadm
    configuration supports; from the declared current version, an upgrade kubeadm can do."""
    if "kubernetes_node" not in host.roles:
        return
    target_text = host.value("kubernetes_version")
    if target_text is None or is_template(target_text) or isinstance(target_text, bool | float):
        return  # a boolean or a number: the type check asks for quotes
    target_text = str(target_text)
    target = kubernetes_version_of(target_text)
    if target is None:
        host.problem("kubernetes_version", f"'{target_text}' is not a pinned version: expected "
                                           "MAJOR.MINOR.PATCH, e.g. 1.33.1")
        return
    if target_text.startswith("v"):
        host.problem("kubernetes_version", f"'{target_text}' starts with v: expected "
                                           f"MAJOR.MINOR.PATCH without it ({target_text[1:]}); the "
                                           "roles add the v where kubeadm and the package "
                                           "repository want one")
        return
    oldest = kubernetes_min_version()
    if target < oldest:
        shown = ".".join(map(str, oldest))
        host.problem("kubernetes_version", f"{target_text} is older than {shown}, the oldest "
                                           "Kubernetes the roles install (the kubeadm "
                                           "configuration is kubeadm.k8s.io/v1beta4; "
                                           "kubernetes_node_min_version in "
                                           f"roles/kubernetes_node/vars/main.yml): expected "
                                           f"{shown} or newer")
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


# --------------------------------------------------------------------------- published secrets
# inventories/example is published with the project, its vault password and the secrets in its
# vault files with it: a site that uses any of them has secrets everyone knows.

#: The example site, relative to the project root.
EXAMPLE_SITE = Path("inventories") / "example"
PUBLISHED = ("this is the published example secret: generate your own (mlops-provision init "
             "makes a new site with fresh secrets)")
#: Shorter values are not compared (a published secret is long; a short value may be anyone's).
MIN_PUBLISHED_LENGTH = 8


@lru_cache(maxsize=8)
def _example_dir_of(where: tuple[Any, Any, str | None]) -> Path:
    return (where[1]() / EXAMPLE_SITE).resolve()


def example_dir() -> Path:
    return _example_dir_of(_where())


@lru_cache(maxsize=4)
def published_secrets(example: Path) -> frozenset[str]:
    """The example site's vault password and every plaintext of its vault files and ``!vault``
    values, decrypted once with Ansible's VaultLib."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    password_files = sorted(p for p in example.glob("*vault-password") if p.is_file())
    if not password_files:
        return frozenset()
    password = password_files[0].read_bytes().strip()
    lib = VaultLib([("default", VaultSecret(password))])
    found = {password.decode("utf-8", "replace")}

    def decrypt(text: str) -> str | None:
        try:
            return lib.decrypt(text.strip()).decode("utf-8")
        except Exception:  # another password: not the example's secret
            return None

    for file in sorted(example.rglob("*.y*ml")):
        raw = file.read_bytes()
        whole = yamlfile.is_vault_file(raw)
        text = decrypt(raw.decode("ascii", "replace")) if whole else raw.decode("utf-8", "replace")
        try:
            data, _ = yamlfile.parse(text or "")
        except yamlfile.YamlError:
            continue
        for value in _strings(data, whole, decrypt):
            found.add(value)
    return frozenset(v for v in found if len(v) >= MIN_PUBLISHED_LENGTH and not is_template(v))


def _strings(value: Any, whole: bool, decrypt: Callable[[str], str | None]):
    """The secret strings in ``value``: ``!vault`` plaintexts, and every string of a vault file
    (``whole``)."""
    if isinstance(value, yamlfile.VaultValue):
        plaintext = value.plaintext if value.plaintext is not None else decrypt(value.ciphertext)
        if plaintext:
            yield plaintext
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v, whole, decrypt)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, whole, decrypt)
    elif isinstance(value, str) and whole:
        yield value


def _is_example(directories: set[Path]) -> bool:
    """Whether the site is the example itself (its own secrets are the published ones)."""
    return bool(directories) and all(d.resolve() == example_dir() for d in directories)


def published_secrets_used(hosts: list[HostView]) -> None:
    """No value of the site (in a vault file, a ``!vault`` value or in clear) is a secret of the
    published example site. The values are compared, whatever the variables are named."""
    if not hosts or _is_example({h.inventory.parent for h in hosts}):
        return
    published = published_secrets(example_dir())
    if not published:
        return
    seen: set[int] = set()
    for host in hosts:
        for block in host.blocks:
            if id(block) in seen:
                continue
            seen.add(id(block))
            for key, value in block.vars.items():
                if any(v in published for v in _strings(value, True, lambda _: None)):
                    host.problems.add(block.file, block.where, key, PUBLISHED, block.line(key))


def published_vault_password(password: bytes | None, file: object, site_dir: Path,
                             problems: Problems) -> None:
    """The site's vault password is not the example's. (A site rule sees hosts; the password is
    the loader's, so ``load`` calls this beside the site rules.)"""
    if not password or _is_example({site_dir}):
        return
    if password.decode("utf-8", "replace") in published_secrets(example_dir()):
        problems.add(file, "vault password", "--vault-password-file",
                     f"the vault password of {EXAMPLE_SITE}: {PUBLISHED}")


# --------------------------------------------------------------------------- warnings
# Reported, but the site stays valid (``load(..., strict_warnings=True)`` makes them problems).


def _owners(specs: Any) -> dict[str, set[str]]:
    """Variable -> the roles that own it: they declare it in their argument specs, and its name
    starts with the role's (``nvidia_driver_branch``: nvidia_driver). Site-wide variables that a
    role only declares for others (role mlops: kubernetes_version) have no owner here."""
    owners: dict[str, set[str]] = {}
    for role, entries in specs.entry_points.items():
        for options in entries.values():
            for name in options:
                if name.startswith(role + "_"):
                    owners.setdefault(name, set()).add(role)
    return owners


def role_variables_where_the_role_never_runs(hosts: list[HostView]) -> None:
    """Warn about a role's variable set on a group or host none of whose hosts runs the role:
    it has no effect there (usually it belongs to another group)."""
    if not hosts:
        return
    owners = _owners(hosts[0].specs)
    members: dict[int, tuple[Any, list[HostView]]] = {}
    for host in hosts:
        for block in host.blocks:
            members.setdefault(id(block), (block, []))[1].append(host)
    for block, its_hosts in members.values():
        for key in block.vars:
            roles = owners.get(key) if isinstance(key, str) else None
            if not roles or any(r in h.roles for h in its_hosts for r in roles):
                continue
            role = sorted(roles)[0]
            groups = role_groups(role)
            who = (f"no host of {block.where} runs" if block.where.startswith("group ")
                   else f"{block.where} does not run")
            place = (f"the role runs on group {', '.join(groups)}: expected the setting in "
                     f"group_vars/{groups[0]}.yml, or removed" if groups else "no play runs it")
            hosts[0].problems.warn(block.file, block.where, key,
                                   f"a variable of role {role}, which {who}: it has no effect "
                                   f"there; {place}", block.line(key))


@lru_cache(maxsize=8)
def _worker_groups_of(where: tuple[Any, Any, str | None]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    gpu = role_groups("nvidia_driver")
    return gpu, tuple(g for g in role_groups("kubernetes_worker") if g not in gpu)


def worker_groups() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(GPU worker groups, CPU worker groups), as the playbooks name them: the groups whose hosts
    run nvidia_driver, and the other groups whose hosts run kubernetes_worker."""
    return _worker_groups_of(_where())


def gpu_and_cpu_worker(host: HostView) -> None:
    """Warn about a host in a GPU worker group and a CPU worker group at once."""
    gpu, cpu = worker_groups()
    in_gpu = [g for g in gpu if g in host.groups]
    in_cpu = [g for g in cpu if g in host.groups]
    if in_gpu and in_cpu:
        host.warn(in_cpu[0], f"host '{host.name}' is in {in_gpu[0]} and in {in_cpu[0]}: expected "
                             f"one of them ({in_gpu[0]} for a node with NVIDIA GPUs, {in_cpu[0]} for "
                             "one without)", at_host=True)


def alert_receivers(host: HostView) -> None:
    """Warn about a monitoring server whose alerts reach no one (no webhook, no e-mail)."""
    if "monitoring" not in host.groups:
        return
    hooks, mail = host.value("prometheus_alert_webhooks"), host.value("prometheus_alert_email")
    if not hooks and not mail:
        host.warn("prometheus_alert_webhooks", f"host '{host.name}' (group monitoring) sends alerts to no "
                  "one: expected prometheus_alert_webhooks or prometheus_alert_email (without them "
                  "alerts show on the monitoring page only)", at_host=True)


def plain_connection_passwords(host: HostView) -> None:
    """Warn about an SSH or sudo password written in clear (not vault-encrypted)."""
    for key in ansiblevars.PASSWORD_VARS:
        if key not in host.vars:
            continue
        kind, value, block = host.source(key)
        if kind != "plain" or value in ("", None):
            continue
        expected = (f"is plain text: expected a vault-encrypted value (`ansible-vault "
                    f"encrypt_string --name {key}`, or a variable of a vault-encrypted file), "
                    "or no password at all (SSH keys, sudo without a password)")
        if block is None:
            host.warn(key, expected, at_host=True)
        else:
            host.problems.warn(block.file, block.where, key, expected, block.line(key),
                               host=host.name)


def monitoring_server_named(hosts: list[HostView]) -> None:
    """Warn when no host is in group monitoring: `up` then picks the server itself (role mlops's
    monitoring_server_hosts), and validate and verify do not see that host as one."""
    if not hosts or any("monitoring" in h.groups for h in hosts):
        return
    hosts[0].warn("monitoring", "no host in group monitoring: `up` puts Prometheus, Alertmanager and "
                  "the monitoring page on the first control plane, else the first MLflow host, else the "
                  "first host, but validate (the page's password, alert receivers) and verify (the "
                  "server's checks) do not treat that host as a monitoring server: expected the host "
                  "in group monitoring (docs/monitoring.md)", at_host=True)


#: Rules run for each host, in order.
HOST_RULES: list[Callable[[HostView], None]] = [
    tang_settings, group_secrets, protected_modules, port_clashes, gpu_rules,
    kubernetes_versions, kubernetes_kernel, kubernetes_encryption_key,
    gpu_and_cpu_worker, plain_connection_passwords, alert_receivers,
]
#: Rules run once over all hosts.
SITE_RULES: list[Callable[[list[HostView]], None]] = [
    unique_addresses, kubernetes_topology, kubernetes_networks, published_secrets_used,
    role_variables_where_the_role_never_runs, monitoring_server_named,
]
