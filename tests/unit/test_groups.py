"""The platform's groups are written once, in the playbooks' ``hosts:`` patterns: the groups a
site may declare, the sandbox's groups and the groups named in validate's messages are read
from there (site/roles.py), never listed again in Python."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_provision import paths
from mlops_provision.site.roles import (
    allowed_groups,
    pattern_terms,
    platform_groups,
    role_groups,
    runtime_groups,
)


def test_the_platforms_groups_are_those_the_playbooks_name() -> None:
    assert allowed_groups() == ("all", "ungrouped", "control_plane", "cpu_workers", "gpu_workers", "mlflow",
                                "monitoring")
    assert platform_groups() == allowed_groups()[2:]
    # made by role kubernetes_node during a run (group_by), named in kubernetes.yml, never declared
    assert runtime_groups(paths.roles_dir(), paths.playbook().parent) == {"kubernetes_upgrade_pending"}
    assert role_groups("kubernetes_control_plane") == ("control_plane",)
    assert role_groups("kubernetes_worker") == ("cpu_workers", "gpu_workers")
    assert role_groups("nvidia_driver") == ("gpu_workers",)


def test_the_site_package_still_exports_the_groups() -> None:
    from mlops_provision.site import ALLOWED_GROUPS

    assert allowed_groups() == ALLOWED_GROUPS
    with pytest.raises(AttributeError):
        from mlops_provision.site import roles

        roles.NO_SUCH_NAME  # noqa: B018


@pytest.mark.parametrize(("pattern", "terms"), [
    ("all", [("", "all")]),
    ("control_plane:cpu_workers:gpu_workers", [("", "control_plane"), ("", "cpu_workers"), ("", "gpu_workers")]),
    ("cpu_workers:gpu_workers:!control_plane:&kubernetes_upgrade_pending",
     [("", "cpu_workers"), ("", "gpu_workers"), ("!", "control_plane"), ("&", "kubernetes_upgrade_pending")]),
    ("a, b", [("", "a"), ("", "b")]),
    (("a", "!b"), [("", "a"), ("!", "b")]),
    ("gpu*:~^cp[0-9]$:web[1:3]", []),
])
def test_pattern_terms(pattern, terms) -> None:
    assert pattern_terms(pattern) == terms


def test_a_new_group_in_a_playbook_is_a_group_a_site_may_declare(tmp_path: Path) -> None:
    """Derived, not listed: a play for a new group makes the group known; a group a task makes
    with group_by does not."""
    books, roles = tmp_path / "playbooks", tmp_path / "roles"
    (roles / "demo" / "tasks").mkdir(parents=True)
    books.mkdir()
    (books / "site.yml").write_text(
        "---\n- name: Storage\n  hosts: storage:&all:!quarantine\n  roles: [demo]\n"
        "- name: Later\n  hosts: storage:&demo_pending\n  tasks: []\n")
    (roles / "demo" / "tasks" / "main.yml").write_text(
        "---\n- name: Mark\n  ansible.builtin.group_by:\n    key: demo_pending\n")
    assert allowed_groups(books, roles) == ("all", "ungrouped", "storage", "quarantine")
    assert role_groups("demo", books) == ("storage",)


def test_the_sandbox_declares_the_platforms_groups(tmp_path: Path) -> None:
    """The sandbox's inventory can hold each group the playbooks name, in their order."""
    import yaml

    from mlops_provision.sandbox.core import InventoryLoader, Node, Sandbox, State

    box = Sandbox(tmp_path)
    box.dir.mkdir(parents=True)
    box.write_inventory(State(kind="container", image="test", nodes=[
        Node(name="node1", ssh_port=2201, address="10.213.7.11", groups=list(platform_groups()), ports={})]))
    data = yaml.load(box.inventory.read_text(), Loader=InventoryLoader)
    assert tuple(data["all"]["children"]) == platform_groups()


def test_an_unknown_group_names_the_playbooks_groups(tmp_path: Path) -> None:
    from mlops_provision.site import InventoryInvalid, load

    (tmp_path / "hosts.yml").write_text("---\nall:\n  children:\n    gpu_worker:\n      hosts:\n        g1:\n"
                                        "          ansible_host: 192.0.2.1\n")
    with pytest.raises(InventoryInvalid) as info:
        load(tmp_path / "hosts.yml")
    (problem,) = [p for p in info.value.problems if p.key == "gpu_worker"]
    assert f"expected one of {', '.join(sorted(platform_groups()))}" in problem.expected
