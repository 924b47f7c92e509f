"""Inputs a user can get wrong that the site model must answer clearly (issue 13): YAML whose
aliases expand without bound, host names that cannot be host names, empty names and
addresses, and the platform rules kept in site/rules.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlops_provision import paths
from mlops_provision.site import InventoryInvalid, Problem, load
from mlops_provision.site.roles import plays
from mlops_provision.site.rules import GROUP_SECRETS

HOSTS = """\
---
all:
  vars:
    ansible_user: admin
  children:
    gpu_workers:
      hosts:
        gpu1:
          ansible_host: 192.0.2.21
        gpu2:
          ansible_host: 192.0.2.22
"""


@pytest.fixture(autouse=True)
def _no_vault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)


def problems(site: Path) -> list[Problem]:
    with pytest.raises(InventoryInvalid) as info:
        load(site)
    return info.value.problems


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def billion_laughs(levels: int = 9) -> str:
    lines = ["---", 'lol0: &lol0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*lol{i - 1}"] * 10)
        lines.append(f"lol{i}: &lol{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["hosts.yml", "group_vars/all.yml", "host_vars/gpu1.yml"])
def test_billion_laughs_is_refused_quickly_naming_the_file(tmp_path: Path, where: str) -> None:
    files = {"hosts.yml": HOSTS}
    if where == "hosts.yml":
        files["hosts.yml"] = billion_laughs() + "all:\n  hosts:\n    gpu1:\n"
    else:
        files[where] = billion_laughs()
    site = write(tmp_path, files)
    started = time.monotonic()
    found = problems(site)
    assert time.monotonic() - started < 2, "a correctness guard, not a benchmark"
    (problem,) = [p for p in found if p.key == "(syntax)"]
    assert Path(problem.file).name == Path(where).name
    assert "aliases" in problem.expected and "billion laughs" in problem.expected


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    site = write(tmp_path, {"hosts.yml": HOSTS, "group_vars/all.yml": "---\na: &a [*a]\n"})
    found = problems(site)
    assert any(p.key == "(syntax)" and Path(p.file).name == "all.yml" for p in found)


def test_bounded_aliases_are_fine(tmp_path: Path) -> None:
    site = write(tmp_path, {"hosts.yml": HOSTS,
                            "group_vars/all.yml": "---\nbase_ntp_servers: &n [ntp1.example.com]\n"
                                                  "base_ntp_pools: *n\n"})
    assert load(site).hostvars("gpu1")["base_ntp_pools"] == ["ntp1.example.com"]


# "''": the empty name, as YAML spells it.
@pytest.mark.parametrize("name", ["''", "gpu_1", "-gpu1", "gpu1-", "a" * 64, "gpu!1",
                                  ".".join(["a" * 60] * 5)])
def test_host_names_must_be_rfc1123(tmp_path: Path, name: str) -> None:
    site = write(tmp_path, {"hosts.yml": HOSTS.replace("        gpu2:\n", f"        {name}:\n")})
    found = problems(site)
    assert any("RFC 1123" in p.expected and p.line == 10 for p in found), found


def test_ip_addresses_and_dotted_names_are_host_names(tmp_path: Path) -> None:
    hosts = HOSTS.replace("        gpu2:\n", "        gpu2.example.com:\n")
    hosts = hosts.replace("        gpu1:\n", "        192.0.2.77:\n")
    assert sorted(load(write(tmp_path, {"hosts.yml": hosts})).hosts) == ["192.0.2.77",
                                                                         "gpu2.example.com"]


@pytest.mark.parametrize(("line", "key", "text"), [
    ("ansible_host: ''", "ansible_host", "expected an IP address or DNS hostname, got str ''"),
    ("mlops_node_address: ''", "mlops_node_address", "expected an IP address, got str ''"),
    ("mlflow_admin_username: ''", "mlflow_admin_username", "expected a non-empty str"),
    ("mlflow_db_host: ''", "mlflow_db_host", "expected an IP address or DNS hostname"),
])
def test_empty_names_and_addresses(tmp_path: Path, line: str, key: str, text: str) -> None:
    hosts = (HOSTS.replace("ansible_host: 192.0.2.21", line) if key == "ansible_host"
             else HOSTS.replace("        gpu1:\n", f"        gpu1:\n          {line}\n"))
    site = write(tmp_path, {"hosts.yml": hosts})
    assert any(p.key == key and text in p.expected for p in problems(site)), problems(site)


def test_protected_modules_are_never_blacklisted(tmp_path: Path) -> None:
    site = write(tmp_path, {"hosts.yml": HOSTS, "group_vars/all.yml":
                            "---\nos_hardening_blacklisted_modules: [cramfs, overlay, nvidia_uvm]\n"})
    (problem,) = problems(site)
    assert (Path(problem.file).name, problem.key, problem.line) == (
        "all.yml", "os_hardening_blacklisted_modules", 2)
    assert "overlay, nvidia_uvm" in problem.expected and "cramfs" not in problem.expected


def test_roles_come_from_the_playbooks() -> None:
    every_host = [p for p in plays(paths.playbook().parent) if p.hosts == "all"]
    assert {"base", "os_hardening", "disk_encryption", "audit", "firewall"} <= {
        r for p in every_host for r in p.roles}
    assert {"postgresql", "mlflow"} <= {r for p in plays(paths.playbook().parent)
                                        if p.hosts == "mlflow" for r in p.roles}
    assert "nvidia_driver" not in {r for p in plays(paths.playbook().parent)
                                   if p.hosts == "all" for r in p.roles}, \
        "a role included with tasks_from (facts.yml) is not a role the play runs"


def test_play_patterns_are_resolved_by_ansible(tmp_path: Path) -> None:
    """A host in control_plane and gpu_workers does not run kubernetes_worker: its plays'
    pattern is cpu_workers:gpu_workers:!control_plane, and Ansible resolves it."""
    site = load(write(tmp_path, {"hosts.yml": HOSTS + "    control_plane:\n      hosts:\n        gpu2:\n"}))
    assert site.host_groups("gpu2") == ["control_plane", "gpu_workers"]
    assert "kubernetes_worker" not in site.roles("gpu2")
    assert {"kubernetes_control_plane", "nvidia_driver", "cuda", "containerd"} <= set(site.roles("gpu2"))
    assert "kubernetes_worker" in site.roles("gpu1")
    assert "kubernetes_control_plane" not in site.roles("gpu1")
    assert "mlflow" not in site.roles("gpu1")


def test_sandbox_uses_the_one_secret_table() -> None:
    from mlops_provision.sandbox import site_inventory

    assert site_inventory.GROUP_SECRETS is GROUP_SECRETS


def test_list_items_may_leave_optional_sub_options_out(tmp_path: Path) -> None:
    """An item of a list-of-dicts option that leaves out an optional sub-option with choices
    (disk_encryption_volumes[].fstype) is valid, as it is to the role; a wrong choice is not."""
    volume = "---\ndisk_encryption_volumes:\n  - {name: data, device: /dev/vdb, mountpoint: /srv/mlops%s}\n"
    load(write(tmp_path / "ok", {"hosts.yml": HOSTS, "group_vars/all.yml": volume % ""}))
    found = problems(write(tmp_path / "bad", {"hosts.yml": HOSTS, "group_vars/all.yml": volume % ", fstype: btrfs"}))
    assert [p.key for p in found] == ["disk_encryption_volumes[0].fstype"], found
