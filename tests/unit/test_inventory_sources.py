"""Inventories as Ansible reads them: a directory is every inventory file in it (YAML and INI,
merged), ``-i`` repeats, ``ANSIBLE_INVENTORY`` stands for ``-i``, a host without
``ansible_host`` connects by its name. A differential test: over a corpus of sites, the hosts,
groups and variables the site model sees equal ``ansible-inventory --list`` (vault values
compared decrypted). No host is contacted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlops_provision.cli import main
from mlops_provision.site import InventoryInvalid, load

BIN = Path(sys.executable).parent

YAML_MAIN = """\
all:
  vars:
    ansible_connection: local
    base_apt_cache_valid_time: 3600
  children:
    gpu_workers:
      vars:
        base_manage_hostname: false
      hosts:
        gpu1:
        gpu2:
          base_apt_cache_valid_time: 60
    control_plane:
      hosts:
        cp1:
"""

YAML_MORE = """\
all:
  children:
    cpu_workers:
      hosts:
        cpu3:
          base_packages: [curl, jq]
"""

INI = """\
# an INI inventory, as Ansible's ini plugin reads it
admin1 ansible_connection=local

[gpu_workers]
gpu1 base_apt_cache_valid_time=60
gpu2.example.internal

[cpu_workers]
cpu[1:2]

[cpu_workers:children]
gpu_workers

[control_plane]
cp1 ansible_host=192.0.2.10 ansible_port=2222

[all:vars]
ansible_connection=local
base_apt_cache_valid_time=3600

[gpu_workers:vars]
base_manage_hostname=False
"""

INI_EDGES = """\
[cpu_workers]
node1 base_apt_cache_valid_time=60 ansible_connection=local
[2001:db8::1]:2222 ansible_connection=local
node1 base_packages="['curl', 'jq']"

[cpu_workers:vars]
base_ntp_servers="('ntp1.example.com', 'ntp2.example.com')"
"""

NO_ADDRESS = """\
all:
  children:
    cpu_workers:
      hosts:
        node7.example.internal:
        192.0.2.77:
        legacy1:
          ansible_ssh_host: 192.0.2.78
"""


def corpus(root: Path) -> dict[str, list[Path]]:
    """Sites, each as the list of sources given with -i."""
    def write(rel: str, text: str) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    write("two-yaml/hosts.yml", YAML_MAIN)
    write("two-yaml/more.yml", YAML_MORE)
    write("two-yaml/group_vars/cpu_workers.yml", "---\nbase_apt_upgrade: false\n")
    write("two-yaml/README.md", "Ansible skips *.md in an inventory directory\n")
    write("ini/hosts.ini", INI)
    write("ini/group_vars/control_plane.yml", "---\nbase_apt_upgrade: false\n")
    write("mixed/hosts", INI)  # INI without an extension
    write("mixed/zz-extra.yml", YAML_MORE)
    write("noaddr/hosts.yml", NO_ADDRESS)
    write("ini-edges/hosts", INI_EDGES)
    a = write("two-sources/a/hosts.yml", YAML_MAIN)
    b = write("two-sources/b/hosts.ini", "[cpu_workers]\ncpu9 ansible_connection=local\n")
    write("two-sources/b/host_vars/cpu9.yml", "---\nbase_packages: [htop]\n")
    return {"dir-of-two-yaml-files": [root / "two-yaml"], "ini-file": [root / "ini" / "hosts.ini"],
            "dir-of-ini-and-yaml": [root / "mixed"], "hosts-without-ansible_host": [root / "noaddr"],
            "two-sources": [a, b.parent], "ini-edge-cases": [root / "ini-edges" / "hosts"]}


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return corpus(tmp_path_factory.mktemp("sources"))


def ansible_inventory(sources: list[Path], env: dict[str, str] | None = None) -> dict:
    cmd = [str(BIN / "ansible-inventory"), "--list"]
    for source in sources:
        cmd += ["-i", str(source)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "ANSIBLE_NOCOLOR": "1", **(env or {})})
    return json.loads(run.stdout)


def members(listed: dict) -> dict[str, set[str]]:
    """group -> every host in it or its children, from ansible-inventory's listing."""
    def hosts(group: str) -> set[str]:
        body = listed.get(group, {})
        out = set(body.get("hosts", []))
        for child in body.get("children", []):
            out |= hosts(child)
        return out

    return {g: hosts(g) for g in listed if g != "_meta"}


@pytest.mark.parametrize("name", ["dir-of-two-yaml-files", "ini-file", "dir-of-ini-and-yaml",
                                  "hosts-without-ansible_host", "two-sources", "ini-edge-cases"])
def test_the_site_model_sees_what_ansible_inventory_lists(sites: dict[str, list[Path]], name: str) -> None:
    sources = sites[name]
    site = load(sources)  # valid: no problem raised
    listed = ansible_inventory(sources)
    hostvars = listed["_meta"]["hostvars"]  # the hosts that have variables
    theirs = members(listed)
    assert site.hosts == sorted(theirs["all"])
    for host in site.hosts:
        assert site.hostvars(host) == hostvars.get(host, {}), host
    for group, hosts in site.groups.items():
        if group in theirs:
            assert set(hosts) == theirs[group], group
    assert {g for g, h in theirs.items() if h} <= set(site.groups)


def test_nothing_in_a_directory_is_dropped(sites: dict[str, list[Path]]) -> None:
    """The second file of a directory adds its host; the INI file of a directory counts."""
    assert "cpu3" in load(sites["dir-of-two-yaml-files"]).hosts
    mixed = load(sites["dir-of-ini-and-yaml"])
    assert {"admin1", "cpu1", "cpu2", "cp1", "cpu3", "gpu2.example.internal"} <= set(mixed.hosts)
    assert mixed.hostvars("cpu3")["base_packages"] == ["curl", "jq"]
    assert load(sites["two-sources"]).hostvars("cpu9")["base_packages"] == ["htop"]


def test_an_ini_problem_names_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(INI.replace("base_apt_cache_valid_time=60",
                                                "base_apt_cache_valid_time=soon"))
    with pytest.raises(InventoryInvalid) as info:
        load(tmp_path)
    (problem,) = [p for p in info.value.problems if p.key == "base_apt_cache_valid_time"]
    assert problem.file.endswith("hosts") and problem.line == 5, problem
    assert "expected int" in problem.expected


def test_files_ansible_skips_in_the_inventory_directory_are_skipped_with_a_warning(tmp_path: Path) -> None:
    """A playbook, the MLflow site CA's certificate and vault-encrypted key next to hosts.yml:
    Ansible's plugins cannot read them and Ansible skips them; the site stays valid, each named
    in a warning."""
    (tmp_path / "hosts.yml").write_text(YAML_MAIN)
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    (tmp_path / "mlflow-ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n"
                                            "-----END CERTIFICATE-----\n")
    (tmp_path / "mlflow-ca.key.vault").write_text("$ANSIBLE_VAULT;1.2;AES256;filter_default\n"
                                                  "3432326539373866386638613737303465\n")
    site = load(tmp_path)
    assert site.hosts == sorted(members(ansible_inventory([tmp_path]))["all"])
    assert sorted(Path(w.file).name for w in site.warnings if w.key != "monitoring") == [
        "mlflow-ca.crt", "mlflow-ca.key.vault", "site.yml"]


def test_a_host_reached_by_name_needs_no_ansible_host(sites: dict[str, list[Path]]) -> None:
    site = load(sites["hosts-without-ansible_host"])
    assert site.hosts == ["192.0.2.77", "legacy1", "node7.example.internal"]
    assert "ansible_host" not in site.hostvars("node7.example.internal")
    assert site.hostvars("legacy1")["ansible_ssh_host"] == "192.0.2.78"


def test_repeated_i_and_ansible_inventory_on_the_command_line(sites: dict[str, list[Path]],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = sites["two-sources"]
    runner = CliRunner()
    given = runner.invoke(main, ["validate", "-i", str(a), "-i", str(b)])
    assert given.exit_code == 0, given.output
    assert "cpu9" in given.output and "gpu1" in given.output
    monkeypatch.setenv("ANSIBLE_INVENTORY", f"{a},{b}")
    from_env = runner.invoke(main, ["validate", "--output", "json"])
    assert from_env.exit_code == 0, from_env.output
    result = json.loads(from_env.output)
    theirs = ansible_inventory([], env={"ANSIBLE_INVENTORY": f"{a},{b}"})
    assert result["valid"] and result["hosts"] == sorted(members(theirs)["all"])
    monkeypatch.delenv("ANSIBLE_INVENTORY")
    none = runner.invoke(main, ["validate"])
    assert none.exit_code == 2 and "ANSIBLE_INVENTORY" in none.output


def test_validate_json_lists_each_problem(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(YAML_MAIN.replace("base_apt_cache_valid_time: 60",
                                                          "base_apt_cache_valid_time: soon"))
    run = CliRunner().invoke(main, ["validate", "-i", str(tmp_path / "hosts.yml"), "--output", "json"])
    assert run.exit_code == 2, run.output
    result = json.loads(run.output)
    assert not result["valid"]
    (problem,) = result["problems"]
    assert problem["key"] == "base_apt_cache_valid_time" and problem["line"] == 12
    assert problem["file"].endswith("hosts.yml")


def test_warnings_are_shown_and_refuse_only_with_strict(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(YAML_MAIN.replace("    ansible_connection: local\n",
                                                          "    ansible_connection: local\n"
                                                          "    ansible_become_password: hunter2-plain\n", 1))
    runner = CliRunner()
    lax = runner.invoke(main, ["validate", "-i", str(tmp_path / "hosts.yml")])
    assert lax.exit_code == 0, lax.output
    # (and the one of a site without a monitoring server: test_site_inputs)
    assert "2 warning(s)" in lax.output and "ansible_become_password" in lax.output
    strict = runner.invoke(main, ["validate", "-i", str(tmp_path / "hosts.yml"), "--strict"])
    assert strict.exit_code == 2 and "ansible_become_password" in strict.output, strict.output
    as_json = json.loads(runner.invoke(main, ["validate", "-i", str(tmp_path / "hosts.yml"),
                                              "--output", "json"]).output)
    assert as_json["valid"] and [w["key"] for w in as_json["warnings"]] == ["ansible_become_password", "monitoring"]
