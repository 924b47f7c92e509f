"""End to end on the session's 3 sandbox systemd containers (tests/integration/conftest.py): the
fresh converge, verify, idempotence, an unreachable host, and secrets kept out of every record
(check mode: the agreement test in test_drift.py). The hosts are shared with test_mlflow (which
runs first): these tests read the converged hosts, and the one that breaks two of them repairs
them and proves it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from mlops_provision import paths
from mlops_provision.sandbox.containers import container_name
from mlops_provision.sandbox.core import Sandbox, VaultText, free_port
from tests.conftest import mp
from tests.integration.conftest import (
    by_host,
    node_ssh,
    sandbox_vault,
    ssh_audit_failures,
    tls_audit_findings,
    variant,
    vault_password,
)

pytestmark = pytest.mark.integration
NODES = ["node1", "node2", "node3"]


@pytest.fixture(scope="module")
def inventory(container_inventory):
    return container_inventory


@pytest.fixture(scope="module")
def first_up(converged_containers):
    """The hosts converged at the sandbox inventory's settings (the shared converge)."""
    return converged_containers


def test_first_up_converges_every_host(fresh_converge):
    hosts = by_host(fresh_converge)
    assert sorted(hosts) == NODES
    for name, h in hosts.items():
        assert h["failed"] == 0 and h["unreachable"] == 0, name
        assert h["changed"] > 0, f"{name}: a fresh node must need changes"
    run_dir = Path(fresh_converge["run_dir"])
    assert (run_dir / "summary.json").is_file()
    assert any((run_dir / "artifacts").rglob("job_events/*.json"))


def test_verify_passes_with_junit(verify_report):
    rc, report, junit = verify_report
    assert rc == 0, report
    assert report["counts"]["failed"] == 0 and report["counts"]["error"] == 0
    assert {r["host"] for r in report["results"]} == set(NODES)
    assert report["counts"]["passed"] >= 8 * len(NODES)
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert sorted(s.get("name") for s in suites) == NODES
    assert all(s.get("failures") == "0" for s in suites)


def test_second_up_changes_nothing(noop_up, inventory):
    changed = {h["host"]: h["changed"] for h in noop_up["hosts"]}
    assert changed == dict.fromkeys(NODES, 0)
    # apt stamped the fresh converge's index update (the base role's hook), and the second run,
    # within base_apt_cache_valid_time of it, read the stamp and refreshed no index.
    base_vars = yaml.safe_load((paths.roles_dir() / "base" / "vars" / "Debian.yml").read_text())
    for node in NODES:
        node_ssh(inventory, node, f"test -f {base_vars['base_os_apt_update_stamp']}")
    refreshed = {}
    for path in (Path(noop_up["run_dir"]) / "artifacts").rglob("job_events/*.json"):
        data = json.loads(path.read_text()).get("event_data", {})
        if data.get("task") == "Base | Install the base packages" and "res" in data:
            refreshed[data["host"]] = data["res"].get("cache_updated")
    assert refreshed == dict.fromkeys(NODES, False)


def test_human_output_has_per_host_table(inventory, first_up):
    res = mp("up", "-i", inventory, "--limit", "node1")
    assert res.rc == 0, res.stderr
    assert "node1" in res.stdout and "node2" not in res.stdout
    assert "run record:" in res.stdout


def test_broken_nodes_fail_verify_then_up_repairs(inventory, first_up):
    node_ssh(inventory, "node2", "systemctl stop chrony")
    node_ssh(inventory, "node3", "rm -f /usr/local/share/ca-certificates/mlops-provision/*.crt")
    res = mp("verify", "-i", inventory, "--output", "json")
    assert res.rc == 1
    failed = {(r["host"], r["check"]) for r in res.json()["results"] if r["outcome"] == "failed"}
    # The CA file removed by hand leaves its certificate in the bundle: the effective trust
    # store no longer matches its sources, and the trusted-CA check says so too.
    assert failed == {("node2", "chrony running and enabled"),
                      ("node3", "site CA certificates installed and trusted"),
                      ("node3", "trusted CAs: the distribution's and the site's, no other")}
    human = mp("verify", "-i", inventory, "--limit", "node2")  # the human report of the same failure
    assert human.rc == 1 and "chrony running and enabled" in human.stdout
    # The repair and its proof on the broken nodes (node1 was found clean above).
    assert mp("up", "-i", inventory, "--limit", "node2,node3").rc == 0
    assert mp("verify", "-i", inventory, "--limit", "node2,node3").rc == 0


def test_unreachable_host_does_not_stop_the_others(inventory, first_up):
    """node3 unreachable: node2 still runs the whole site to the end (node1, which only adds its
    own layers, is left out: --limit)."""
    def close_node3(data):
        data["all"]["hosts"]["node3"]["ansible_port"] = free_port()

    res = mp("up", "-i", variant(inventory, "unreachable", close_node3), "--limit", "node2,node3",
             "--output", "json", "--vault-password-file", vault_password(inventory))
    assert res.rc == 3, res.stdout + res.stderr
    hosts = by_host(res.json())
    assert hosts["node3"]["status"] == "unreachable"
    assert "Connection refused" in hosts["node3"]["message"] or "ssh" in hosts["node3"]["message"]
    assert hosts["node2"]["status"] == "ok" and hosts["node2"]["ok"] > 10, hosts["node2"]


PLANTED = "S3cr3t-planted-7f9q"


def test_vault_secret_never_reaches_terminal_summary_or_artifacts(inventory, first_up):
    password = vault_password(inventory)  # the sandbox's: its MLflow secrets must decrypt too
    secret = sandbox_vault(inventory)
    token = secret.encrypt(f"http://svc:{PLANTED}@proxy.invalid:3128").decode()

    def plant(data):
        data["all"]["vars"]["base_pip_proxy"] = VaultText(token)

    inv = variant(inventory, "secret", plant)
    # check mode with --diff renders pip.conf with the proxy URL: the secret is in the diff.
    res = mp("up", "-i", inv, "--check", "--limit", "node1", "--output", "json",
             "--vault-password-file", password)
    assert res.rc == 4, res.stdout + res.stderr  # changes pending (the planted proxy)
    run_dir = Path(res.json()["run_dir"])
    assert PLANTED not in res.stdout + res.stderr
    leaks = [p for p in run_dir.rglob("*") if p.is_file() and PLANTED in p.read_text(errors="replace")]
    assert not leaks, f"secret found in {leaks}"
    masked = [p for p in run_dir.rglob("*.json") if "********" in p.read_text(errors="replace")]
    assert masked, "the diff holding the secret should be in the record, masked"
    human = mp("up", "-i", inv, "--check", "--limit", "node1", "--vault-password-file", password)
    assert PLANTED not in human.stdout + human.stderr


BECOME_PASSWORD = "Sud0-planted-Qx7m!vault"


def test_an_admin_with_sudo_and_a_vaulted_password_finds_nothing_to_change(inventory, first_up):
    """How real sites connect (inventories/example): as a member of the admin group with sudo and
    its password in the vault, not as root. Under the default strategy (Mitogen) `up --check` of
    a converged node through sudo finds nothing to change, and the password is in no record."""
    password = vault_password(inventory)
    vault = sandbox_vault(inventory)
    node_ssh(inventory, "node3",
             "useradd -m -s /bin/bash -G mlops opsadmin && "
             f"echo 'opsadmin:{BECOME_PASSWORD}' | chpasswd && "
             "install -d -m 0700 -o opsadmin -g opsadmin ~opsadmin/.ssh && "
             "install -m 0600 -o opsadmin -g opsadmin /root/.ssh/authorized_keys ~opsadmin/.ssh/")
    try:
        def as_admin(data):
            node = data["all"]["hosts"]["node3"]
            node.update(ansible_user="opsadmin", ansible_become=True,
                        ansible_become_password=VaultText(vault.encrypt(BECOME_PASSWORD).decode()))

        res = mp("up", "-i", variant(inventory, "sudo", as_admin), "--check", "--limit", "node3",
                 "--output", "json", "--vault-password-file", password)
        assert res.rc == 0, res.stdout + res.stderr
        assert by_host(res.json())["node3"]["changed"] == 0
        # sudo really ran: its log names the account that became root
        sudo_log = node_ssh(inventory, "node3", "{ journalctl -q --no-pager -t sudo; cat /var/log/sudo.log; } "
                            "2>/dev/null | tail -n 50", check=False).stdout
        assert "opsadmin" in sudo_log, sudo_log
        run_dir = Path(res.json()["run_dir"])
        assert BECOME_PASSWORD not in res.stdout + res.stderr
        assert not [p for p in run_dir.rglob("*") if p.is_file() and BECOME_PASSWORD in p.read_text(errors="replace")]
    finally:
        node_ssh(inventory, "node3", "pkill -u opsadmin; userdel -r opsadmin", check=False)


def test_compliance_reports_the_lynis_index(inventory, first_up):
    # Lynis takes minutes per node under TCG; on a container it shows that --compliance works.
    res = mp("verify", "-i", inventory, "--limit", "node1", "--compliance", "-k", "lynis", "--lynis-min-index", "0",
             "--output", "json", timeout=1800)
    results = res.json()["results"]
    assert res.rc == 0, results
    lynis = next(r for r in results if r["check"] == "Lynis hardening index meets the target")
    index = int(lynis["message"].split("lynis_hardening_index=")[1].split(";")[0])
    print(f"\n[lynis] node1 (container) hardening index: {index}")
    assert 0 < index <= 100
    plain = mp("verify", "-i", inventory, "--limit", "node1", "-k", "lynis", "--output", "json")
    assert plain.json()["results"] == [] and plain.rc == 1, "without --compliance Lynis must not run"


def test_container_names_are_site_scoped(inventory):
    box = Sandbox(inventory.parent.parent.parent)
    names = {container_name(box, n) for n in box.state().nodes}
    assert len(names) == 3 and all(n.startswith("mlops-sandbox-") for n in names)


def test_second_container_sandbox_is_refused_while_one_is_up(inventory, tmp_path):
    res = mp("sandbox", "up", "--site", str(tmp_path), "--nodes", "1")
    assert res.rc == 2 and "another container sandbox is up" in res.stdout + res.stderr
    assert str(inventory.parent.parent.parent) in (res.stdout + res.stderr).replace("\n", "")
    assert not (tmp_path / ".mlops-provision").exists(), "the refused sandbox left files behind"


def test_third_party_auditors_find_nothing(inventory, first_up):
    """testssl.sh against MLflow's endpoint, ssh-audit against a hardened sshd (Debian 12)"""
    assert tls_audit_findings(inventory, "node1") == []
    assert ssh_audit_failures(inventory, "node2") == []

