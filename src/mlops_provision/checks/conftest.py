"""Fixtures shared by the checks: the node's role variables, as Ansible resolves them, and the
site's nodes."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

from mlops_provision import paths
from mlops_provision.site import Site, load


def pytest_configure(config):
    config.addinivalue_line("markers", "compliance: Lynis scoring, only with MLOPS_COMPLIANCE=1 (verify --compliance)")
    config.addinivalue_line(
        "markers", "roles(*names): the role(s) whose tasks make the state the check proves (every check has one; "
                   "the closest wins: a test's own replaces its module's pytestmark). drift calls a failed "
                   "check repairable when one of them has a pending change on the host")


def pytest_collection_modifyitems(config, items):
    """Compliance scoring takes minutes per node: it runs only when asked for."""
    if os.environ.get("MLOPS_COMPLIANCE") == "1":
        return
    deselected = [item for item in items if item.get_closest_marker("compliance")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("compliance")]


@lru_cache(maxsize=1)
def _inventory() -> Site | None:
    path = os.environ.get("MLOPS_INVENTORY")
    if not path:
        return None
    strict = os.environ.get("MLOPS_INVENTORY_STRICT", "1") != "0"
    # every -i of the run, comma-separated as ANSIBLE_INVENTORY writes them
    sources = [Path(p) for p in path.split(",") if p]
    return load(sources, vault_password_file=os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE"),
                strict=strict)


def _site_for(name: str) -> Site:
    """The site holding host ``name``: the inventory under test, or (a node outside it) a
    one-host inventory, so that Ansible still resolves the roles' variables."""
    inv = _inventory()
    if inv is not None and name in inv.hosts:
        return inv
    scratch = Path(tempfile.mkdtemp(prefix="mlops-checks-")) / "hosts.yml"
    scratch.write_text(f"all:\n  hosts:\n    {name}:\n      ansible_connection: local\n")
    return load(scratch, strict=False)


@dataclass
class Node:
    name: str
    vars: dict
    groups: list[str] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # inventory name -> cluster address
    in_container: bool = False

    def __getitem__(self, key: str):
        return self.vars[key]


_NODES: dict[str, Node] = {}


def node_for(host) -> Node:
    """The node's variables as the roles see them: Ansible resolves a play of every role on
    the node (role defaults and vars, the OS vars file each role includes, the inventory,
    group_vars, host_vars, vault) and templates them, with the node's own facts. Resolved once
    per node and session."""
    name = getattr(host.backend, "hostname", None) or host.backend.get_hostname()
    if name not in _NODES:
        _NODES[name] = _resolve_node(host, name)
    return _NODES[name]


def _resolve_node(host, name: str) -> Node:
    distribution = host.system_info.distribution.capitalize()
    in_container = host.run("systemd-detect-virt --container").rc == 0
    facts = {
        "distribution": distribution, "os_family": distribution,
        "distribution_major_version": str(host.system_info.release or "").split(".")[0],
        "distribution_release": host.system_info.codename or "",
        "fqdn": host.check_output("hostname --fqdn 2>/dev/null || hostname").strip() or name,
        "virtualization_tech_guest": ["container"] if in_container else [],
    }
    site = _site_for(name)
    roles = sorted(p.parent.parent.name for p in paths.roles_dir().glob("*/meta/argument_specs.yml"))
    variables = site.role_vars(name, facts=facts, roles=roles)
    groups = site.host_groups(name) if name in site.hosts else []
    nodes: dict[str, str] = {}
    inv = _inventory()
    if inv is not None and name in inv.hosts:
        for other in inv.hosts:
            hv = inv.hostvars(other)
            nodes[other] = str(hv.get("mlops_node_address") or hv.get("ansible_host") or other)
    return Node(name=name, vars=variables, groups=groups, nodes=nodes, in_container=in_container)


@pytest.fixture(scope="module")
def node(host) -> Node:
    return node_for(host)


@pytest.fixture(scope="module")
def kernel_node(node) -> Node:
    """The node, for checks that need a kernel of its own: skipped (with the reason) in containers."""
    if node.in_container:
        pytest.skip("container: shares the host's kernel (nftables, auditd, LUKS, sysctls are VM/bare-metal only)")
    return node


def peer_host(node: Node):
    """Another inventory node reachable over the same Ansible connection details, or None."""
    import testinfra

    inventory = os.environ.get("MLOPS_INVENTORY")
    others = [n for n in sorted(node.nodes) if n != node.name]
    if not inventory or not others:
        return None
    # testinfra reads one -i; several sources come as ANSIBLE_INVENTORY, which verify sets
    return testinfra.get_host(f"ansible://{others[0]}",
                              ansible_inventory=inventory if "," not in inventory else None,
                              ssh_config=os.environ.get("MLOPS_SSH_CONFIG"))


def listeners(host, port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port``."""
    out = host.check_output(f"ss -Hltn 'sport = :{port}'")
    return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines() if line.strip()}
