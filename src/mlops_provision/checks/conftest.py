"""Fixtures shared by the checks: the node's effective role variables and the site's nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2
import pytest
import yaml

from mlops_provision import paths
from mlops_provision.inventory import Inventory, load


def pytest_configure(config):
    config.addinivalue_line("markers", "compliance: Lynis scoring, only with MLOPS_COMPLIANCE=1 (verify --compliance)")


def pytest_collection_modifyitems(config, items):
    """Compliance scoring takes minutes per node: it runs only when asked for."""
    if os.environ.get("MLOPS_COMPLIANCE") == "1":
        return
    deselected = [item for item in items if item.get_closest_marker("compliance")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("compliance")]


@lru_cache(maxsize=1)
def _inventory() -> Inventory | None:
    path = os.environ.get("MLOPS_INVENTORY")
    if not path:
        return None
    strict = os.environ.get("MLOPS_INVENTORY_STRICT", "1") != "0"
    return load(Path(path), vault_password_file=os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE"),
                strict=strict)


def _read_vars(path: Path) -> dict:
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def _render(value, context: dict):
    """Render the simple Jinja a role default may hold; leave what needs Ansible as it is."""
    if isinstance(value, str) and "{{" in value:
        try:
            return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(**context)
        except jinja2.TemplateError:
            return value
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    return value


@dataclass
class Node:
    name: str
    vars: dict
    groups: list[str] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # inventory name -> cluster address
    in_container: bool = False

    def __getitem__(self, key: str):
        return self.vars[key]


def node_for(host) -> Node:
    name = getattr(host.backend, "hostname", None) or host.backend.get_hostname()
    os_family = host.system_info.distribution.capitalize()
    merged: dict = {}
    for role in sorted(paths.roles_dir().iterdir()):
        merged.update(_read_vars(role / "defaults" / "main.yml"))
        merged.update(_read_vars(role / "vars" / f"{os_family}.yml"))
    role_keys = set(merged)
    inv = _inventory()
    groups: list[str] = []
    nodes: dict[str, str] = {}
    if inv is not None and name in inv.hosts:
        merged.update(inv.hostvars(name))
        groups = inv.host_groups(name)
        for other in inv.hosts:
            hv = inv.hostvars(other)
            nodes[other] = str(hv.get("mlops_node_address") or hv.get("ansible_host") or other)
    extra = {"inventory_hostname": name, "group_names": groups}
    if inv is not None:
        extra["inventory_dir"] = str(inv.path.resolve().parent)
    # A default may refer to another (mlflow_artifacts_dir -> mlflow_data_dir -> mlops_data_dir):
    # render until nothing changes.
    for _ in range(5):
        rendered = {k: _render(v, {**merged, **extra}) if k in role_keys else v for k, v in merged.items()}
        if rendered == merged:
            break
        merged = rendered
    in_container = host.run("systemd-detect-virt --container").rc == 0
    return Node(name=name, vars=merged, groups=groups, nodes=nodes, in_container=in_container)


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
    return testinfra.get_host(f"ansible://{others[0]}", ansible_inventory=inventory)
