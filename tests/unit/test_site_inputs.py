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
from tests.conftest import example_copy

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


# --------------------------------------------------------------------------- YAML's own types
# A string option that YAML read as a boolean or a number: Ansible's validator converts it
# silently (True -> "True", or back to "on" among choices; 12.10 -> "12.1"), the role's tasks
# see the boolean or the number. validate judges the value as loaded and asks for quotes.

def gpu_site(root: Path, gpu_vars: str, hosts: str = HOSTS) -> Path:
    return write(root, {"hosts.yml": hosts, "group_vars/gpu_workers.yml": "---\n" + gpu_vars})


@pytest.mark.parametrize(("word", "boolean"), [("on", "true"), ("off", "false"), ("yes", "true")])
def test_unquoted_on_for_a_string_choice_is_a_boolean(tmp_path: Path, word: str, boolean: str) -> None:
    (problem,) = problems(gpu_site(tmp_path, f"nvidia_driver_secure_boot: {word}\n"))
    assert (Path(problem.file).name, problem.line, problem.key) == (
        "gpu_workers.yml", 2, "nvidia_driver_secure_boot")
    assert f"got the boolean {boolean}" in problem.expected
    assert f"YAML reads an unquoted {word} as a boolean; quote it (\"{word}\")" in problem.expected
    assert 'expected one of auto, "on", "off"' in problem.expected


def test_quoted_on_is_the_string(tmp_path: Path) -> None:
    found = problems(gpu_site(tmp_path, 'nvidia_driver_secure_boot: "on"\n'))
    assert {p.key for p in found} == {"nvidia_driver_mok_key", "nvidia_driver_mok_cert",
                                      "nvidia_driver_mok_password"}, found  # on's requirements


def test_unquoted_version_is_a_number(tmp_path: Path) -> None:
    found = problems(gpu_site(tmp_path, 'cuda_toolkits: [12.2, "12.10"]\ncuda_default: 12.10\n'))
    toolkit = next(p for p in found if p.key == "cuda_toolkits[0]")
    assert toolkit.line == 2 and 'quote it ("12.2")' in toolkit.expected
    default = next(p for p in found if p.key == "cuda_default")
    assert default.line == 3
    assert ("expected a string, got the number 12.1: YAML reads an unquoted 12.10 as the number "
            '12.1; quote it ("12.10")') in default.expected


def test_strings_numbers_and_booleans_where_meant_are_fine(tmp_path: Path) -> None:
    load(gpu_site(tmp_path, 'nvidia_driver_branch: 550\ncuda_toolkits: ["12.4"]\ncuda_default: "12.4"\n'
                            "nvidia_driver_reboot: yes\nnvidia_driver_secure_boot: auto\n"))


# --------------------------------------------------------------------------- one line, one problem

def many_gpus(n: int) -> str:
    return HOSTS.replace("        gpu2:\n          ansible_host: 192.0.2.22\n", "".join(
        f"        gpu{i}:\n          ansible_host: 192.0.2.{20 + i}\n" for i in range(2, n + 1)))


def test_one_group_vars_line_is_one_problem_on_50_hosts(tmp_path: Path) -> None:
    """secure_boot "on" in group_vars/gpu_workers.yml asks each of 50 hosts for the MOK keys: one
    problem per key, at the line that asks, the hosts counted (not 150 at the hosts' lines)."""
    found = problems(gpu_site(tmp_path, 'nvidia_driver_secure_boot: "on"\n', many_gpus(50)))
    assert [(Path(p.file).name, p.line) for p in found] == [("gpu_workers.yml", 2)] * 3, found
    for problem in found:
        assert problem.where == "group 'gpu_workers'"
        assert problem.expected.endswith("(50 hosts: gpu1, gpu10, gpu11 and 47 more)"), problem


def test_a_group_line_with_the_host_in_the_message_is_one_problem(tmp_path: Path) -> None:
    """A message that names its host (a port clash "on host 'x'") is merged too."""
    site = write(tmp_path, {"hosts.yml": many_gpus(50), "group_vars/gpu_workers.yml":
                            "---\nkubernetes_cni_vxlan_port: 22\n"})  # sshd's port
    clashes = [p for p in problems(site) if p.key == "kubernetes_cni_vxlan_port"]
    assert len(clashes) == 1 and clashes[0].line == 2, clashes
    assert "on host" not in clashes[0].expected and "(50 hosts:" in clashes[0].expected


# --------------------------------------------------------------------------- warnings

CPU = "    cpu_workers:\n      hosts:\n        cpu1:\n          ansible_host: 192.0.2.31\n"


def warnings_of(site: Path, **kwargs) -> list[Problem]:
    """The site's warnings but the one of an empty group monitoring (these sites have no
    monitoring server: test_no_monitoring_server_is_a_warning)."""
    return [w for w in load(site, **kwargs).warnings if w.key != "monitoring"]


def test_no_monitoring_server_is_a_warning(tmp_path: Path) -> None:
    """No host in group monitoring: `up` picks one that validate and verify do not see as one."""
    (warning,) = [w for w in load(write(tmp_path, {"hosts.yml": HOSTS})).warnings if w.key == "monitoring"]
    assert warning.where == "host 'gpu1'" and "no host in group monitoring" in warning.expected
    assert "expected the host in group monitoring" in warning.expected


def test_role_variable_where_the_role_never_runs_is_a_warning(tmp_path: Path) -> None:
    site = write(tmp_path, {"hosts.yml": HOSTS + CPU,
                            "group_vars/cpu_workers.yml": '---\nnvidia_driver_branch: "550"\n',
                            "host_vars/cpu1.yml": '---\ncuda_default: "12.4"\n'})
    found = warnings_of(site)
    assert [(Path(w.file).name, w.line, w.key) for w in found] == [
        ("cpu_workers.yml", 2, "nvidia_driver_branch"), ("cpu1.yml", 2, "cuda_default")], found
    assert found[0].expected == (
        "a variable of role nvidia_driver, which no host of group 'cpu_workers' runs: it has no "
        "effect there; the role runs on group gpu_workers: expected the setting in "
        "group_vars/gpu_workers.yml, or removed")
    assert "host 'cpu1' does not run" in found[1].expected
    assert warnings_of(gpu_site(tmp_path / "gpu", 'nvidia_driver_branch: "550"\n'
                                                  'cuda_toolkits: ["12.4"]\ncuda_default: "12.4"\n')) == []


def test_host_in_gpu_and_cpu_workers_is_a_warning(tmp_path: Path) -> None:
    site = write(tmp_path, {"hosts.yml": HOSTS + CPU + "        gpu2:\n"})
    (warning,) = warnings_of(site)
    assert (Path(warning.file).name, warning.line, warning.where, warning.key) == (
        "hosts.yml", 10, "host 'gpu2'", "cpu_workers")
    assert "is in gpu_workers and in cpu_workers: expected one of them" in warning.expected


def test_ansible_variable_ansible_does_not_read_is_a_warning(tmp_path: Path) -> None:
    hosts = HOSTS.replace("    ansible_user: admin\n", "    ansible_user: admin\n"
                          "    ansible_ssh_comon_args: -v\n    ansible_ssh_extra_args: -v\n"
                          "    ansible_python_interpreter: /usr/bin/python3\n"
                          "    ansible_perl_interpreter: /usr/bin/perl\n    ansible_sudo_flags: -H\n"
                          "    ansible_ssh_timeout: 30\n")
    (warning,) = warnings_of(write(tmp_path, {"hosts.yml": hosts}))
    assert (warning.key, warning.line) == ("ansible_ssh_comon_args", 5)
    assert "Ansible reads no inventory variable 'ansible_ssh_comon_args' (did you mean " \
           "'ansible_ssh_common_args'?)" in warning.expected


def test_connection_password_in_clear_is_a_warning(tmp_path: Path) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    site = write(tmp_path / "plain", {"hosts.yml": HOSTS, "group_vars/all.yml":
                                      "---\nansible_become_password: Plain-sudo-pw\n"})
    (warning,) = warnings_of(site)
    assert (Path(warning.file).name, warning.line, warning.key) == ("all.yml", 2, "ansible_become_password")
    assert warning.expected.startswith("is plain text: expected a vault-encrypted value")
    assert "Plain-sudo-pw" not in str(warning) and "(2 hosts: gpu1, gpu2)" in warning.expected
    text = VaultLib([("default", VaultSecret(b"pw-of-the-test"))]).encrypt(
        "vault_become: Vaulted-sudo-pw\n").decode()
    site = write(tmp_path / "vault", {"hosts.yml": HOSTS, "group_vars/all/main.yml":
                                      '---\nansible_become_password: "{{ vault_become }}"\n',
                                      "group_vars/all/vault.yml": text})
    (tmp_path / "pw").write_text("pw-of-the-test\n")
    assert warnings_of(site, vault_password_file=tmp_path / "pw") == []


def test_strict_warnings_make_them_problems(tmp_path: Path) -> None:
    site = write(tmp_path, {"hosts.yml": HOSTS + CPU + "        gpu2:\n"})
    with pytest.raises(InventoryInvalid) as info:
        load(site, strict_warnings=True)
    assert [p.key for p in info.value.problems] == ["cpu_workers", "monitoring"] and info.value.warnings == []
    # without --strict, an invalid site still carries its warnings
    bad = write(tmp_path / "bad", {"hosts.yml": HOSTS + CPU + "        gpu2:\n",
                                   "group_vars/all.yml": "---\nbase_apt_cache_valid_time: soon\n"})
    with pytest.raises(InventoryInvalid) as info:
        load(bad)
    assert [p.key for p in info.value.problems] == ["base_apt_cache_valid_time"]
    assert [w.key for w in info.value.warnings] == ["cpu_workers", "monitoring"]


def test_the_example_site_has_no_warning() -> None:
    example = paths.project_root() / "inventories" / "example"
    assert load(example, vault_password_file=example / ".vault-password").warnings == []


# --------------------------------------------------------------------------- published secrets

EXAMPLE = paths.project_root() / "inventories" / "example"
PUBLISHED = "this is the published example secret: generate your own"


def test_a_copy_of_the_example_is_refused(tmp_path: Path) -> None:
    import shutil

    site = tmp_path / "copy"
    shutil.copytree(EXAMPLE, site)
    found = [p for p in problems_with(site, site / ".vault-password") if PUBLISHED in p.expected]
    assert [(Path(p.file).name, p.key) for p in found] == [
        (".vault-password", "--vault-password-file"),
        ("vault.yml", "vault_kubernetes_control_plane_encryption_key"),
        ("vault.yml", "vault_mlflow_admin_password"), ("vault.yml", "vault_mlflow_db_password"),
        ("vault.yml", "vault_prometheus_web_password")], found
    assert all(p.line for p in found[1:])
    assert "mlops-provision init makes a new site with fresh secrets" in found[0].expected
    assert "example-only" not in " ".join(map(str, found)), "the secret itself is not shown"


def test_example_secrets_under_another_password_or_name_are_refused(tmp_path: Path) -> None:
    password = example_copy(tmp_path / "site", b"a-new-password-of-the-site", fresh=False)
    found = problems_with(tmp_path / "site", password)
    assert {p.key for p in found} == {"vault_kubernetes_control_plane_encryption_key",
                                      "vault_mlflow_admin_password", "vault_mlflow_db_password",
                                      "vault_prometheus_web_password"}, found
    # the values are compared, not the names: an example secret inline, under another name
    from ansible.parsing.vault import VaultLib, VaultSecret

    vaulted = VaultLib([("default", VaultSecret(b"a-new-password-of-the-site"))]).encrypt(
        "example-db-password-change-me").decode().replace("\n", "\n      ")
    hosts = tmp_path / "site" / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("    ansible_become: true\n", "    ansible_become: true\n"
                                               f"    ansible_become_password: !vault |\n      {vaulted}\n"))
    line = 1 + hosts.read_text().splitlines().index("    ansible_become_password: !vault |")
    assert any(p.key == "ansible_become_password" and p.line == line and PUBLISHED in p.expected
               for p in problems_with(tmp_path / "site", password))


def test_fresh_secrets_and_the_example_itself_are_valid(tmp_path: Path) -> None:
    password = example_copy(tmp_path / "site", b"a-new-password-of-the-site")
    load(tmp_path / "site", vault_password_file=password)
    load(EXAMPLE, vault_password_file=EXAMPLE / ".vault-password")


def problems_with(site: Path, password: Path) -> list[Problem]:
    with pytest.raises(InventoryInvalid) as info:
        load(site, vault_password_file=password)
    return info.value.problems
