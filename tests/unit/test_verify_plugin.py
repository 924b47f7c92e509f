"""The verify plugin and the checks' structure, without hosts: every check declares the roles it
proves (roles that exist), and the plugin writes roles, managed and hint as fields of each record,
the message left clean; drift reads those fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mlops_provision import paths
from mlops_provision.drift import model
from mlops_provision.verify import CheckResult, VerifyReport

COLLECTOR = '''
import json, os
from mlops_provision.verify_plugin import check_roles

def pytest_collection_finish(session):
    with open(os.environ["ROLES_OUT"], "w") as fh:
        json.dump({item.nodeid: check_roles(item) for item in session.items}, fh)
'''


def _pytest(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-c", os.devnull, "-p", "no:cacheprovider", "-q",
                           *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})})


def _collected_roles(tmp_path: Path) -> dict[str, list[str]]:
    """Every check of the package as pytest collects it (compliance included), with its roles."""
    (tmp_path / "roles_collector.py").write_text(COLLECTOR)
    out = tmp_path / "roles.json"
    checks = paths.checks_dir()
    res = _pytest([str(checks), "--rootdir", str(checks), "--collect-only", "-p", "roles_collector"], tmp_path,
                  {"ROLES_OUT": str(out), "MLOPS_COMPLIANCE": "1",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_check_declares_roles_that_exist(tmp_path):
    found = _collected_roles(tmp_path)
    modules = {nodeid.split("::")[0] for nodeid in found}
    assert len(found) > 50 and len(modules) >= 12, sorted(modules)
    unmarked = sorted(nodeid for nodeid, roles in found.items() if not roles)
    assert not unmarked, f"checks without a roles marker: {unmarked}"
    roles_dir = paths.roles_dir()
    # A role that makes state has tasks; one without (the defaults-only `mlops`) proves nothing.
    unknown = {nodeid: roles for nodeid, roles in found.items()
               if not all((roles_dir / r / "tasks" / "main.yml").is_file() for r in roles)}
    assert not unknown, f"roles that do not exist under {roles_dir}: {unknown}"
    kubernetes = {r for nodeid, roles in found.items() if nodeid.startswith("test_kubernetes.py") for r in roles}
    assert {"kubernetes_node", "kubernetes_control_plane", "kubernetes_worker"} <= kubernetes, kubernetes
    sysctl = [roles for nodeid, roles in found.items() if "test_sysctl_effective_values" in nodeid]
    assert sysctl and all(r == ["os_hardening"] for r in sysctl), sysctl


CHECKS = '''
import pytest

from mlops_provision.checks.unmanaged import PROPERTY, Unmanaged, assert_only_ours

pytestmark = pytest.mark.roles("base")


def test_passes():
    """a check that passes"""


@pytest.mark.roles("kubernetes_worker", "kubernetes_control_plane")
def test_managed_failure(record_property):
    """nodes labelled"""
    record_property("lynis_hardening_index", 70)
    assert 1 == 2, "node3 lacks its labels"


def test_file_next_to_ours():
    """sudoers.d holds only ours"""
    assert_only_ours("/etc/sudoers.d", ["/etc/sudoers.d/evil"], "base_purge_unmanaged", False)


def test_file_next_to_ours_purged():
    """sudoers.d holds only ours, purging"""
    assert_only_ours("/etc/sudoers.d", ["/etc/sudoers.d/evil"], "base_purge_unmanaged", True)


def test_raised():
    """a CA added by hand"""
    raise Unmanaged("a CA was added to the bundle by hand", "run update-ca-certificates --fresh")


def test_property(record_property):
    """a setting from another file"""
    record_property(PROPERTY, "remove the file by hand")
    record_property("file", "/etc/x.conf")
    assert False, "settings from other files"


def test_property_but_passes(record_property):
    """nothing found"""
    record_property(PROPERTY, "remove the file by hand")
'''


def _records(tmp_path: Path) -> dict[str, dict]:
    (tmp_path / "test_demo.py").write_text(textwrap.dedent(CHECKS))
    results = tmp_path / "results.jsonl"
    res = _pytest(["test_demo.py", "--rootdir", str(tmp_path), "-p", "mlops_provision.verify_plugin",
                   f"--mlops-results={results}"], tmp_path)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]  # some checks failed
    return {rec["check"]: rec for rec in map(json.loads, results.read_text().splitlines())}


def test_plugin_writes_roles_and_unmanaged_as_fields(tmp_path):
    recs = _records(tmp_path)
    assert len(recs) == 7
    for rec in recs.values():
        CheckResult(**rec)  # verify reads each record back as it is
        assert "not managed" not in rec["message"] and "[" not in rec["message"].split(":")[0], rec
    assert recs["a check that passes"] | {"duration_s": 0} == {
        "host": "-", "module": "demo", "check": "a check that passes", "outcome": "passed", "message": "",
        "detail": "", "duration_s": 0, "roles": ["base"], "managed": True, "hint": ""}
    labelled = recs["nodes labelled"]  # its own marker wins over the module's
    assert labelled["roles"] == ["kubernetes_worker", "kubernetes_control_plane"]
    assert labelled["managed"] and labelled["hint"] == ""
    assert labelled["message"] == "lynis_hardening_index=70; node3 lacks its labels"
    stranger = recs["sudoers.d holds only ours"]
    assert (stranger["outcome"], stranger["managed"], stranger["roles"]) == ("failed", False, ["base"])
    assert stranger["message"] == "not written by mlops-provision nor a package, in /etc/sudoers.d: /etc/sudoers.d/evil"
    assert stranger["hint"] == "remove them by hand, or set base_purge_unmanaged: true and run up to remove them"
    purged = recs["sudoers.d holds only ours, purging"]
    assert purged["managed"] and purged["outcome"] == "failed" and "base_purge_unmanaged is on" in purged["message"]
    raised = recs["a CA added by hand"]
    assert (raised["managed"], raised["hint"]) == (False, "run update-ca-certificates --fresh")
    assert raised["message"] == "a CA was added to the bundle by hand"
    prop = recs["a setting from another file"]
    assert (prop["managed"], prop["hint"]) == (False, "remove the file by hand")
    assert prop["message"] == "file=/etc/x.conf; settings from other files"
    passed = recs["nothing found"]
    assert passed["outcome"] == "passed" and passed["managed"] and passed["hint"] == ""


def test_drift_reads_the_plugins_fields(tmp_path):
    """End to end without hosts: the records as verify reads them, merged with pending changes of
    base and kubernetes_worker on their host."""
    results = [CheckResult(**{**rec, "host": "node1"}) for rec in _records(tmp_path).values()]
    changes = [model.DriftItem("node1", "base", "change", "Base | sudoers", "", True),
               model.DriftItem("node1", "kubernetes_worker", "change", "Kubernetes_worker | Label", "", True)]
    host, = model.merge(None, changes, VerifyReport(inventory="i", results=results), ["node1"])
    checks = {i.what: i for i in host.items if i.kind == "check"}
    assert checks["nodes labelled"].repairable and checks["nodes labelled"].role == "kubernetes_worker"
    assert checks["sudoers.d holds only ours, purging"].repairable
    for what in ("sudoers.d holds only ours", "a CA added by hand", "a setting from another file"):
        assert not checks[what].repairable and not checks[what].managed, checks[what]
        assert checks[what].hint.startswith("not managed by `up`: "), checks[what]
    assert checks["a CA added by hand"].hint == "not managed by `up`: run update-ca-certificates --fresh"
    assert "demo" not in host.counts()  # the module's name is no role
    assert host.counts() == {"base": 5, "kubernetes_control_plane": 0, "kubernetes_worker": 2}


TIMEOUT_PROBE = '''
import json, os

def test_timeout(host):
    name = host.backend.host
    ssh = host.backend.ansible_runner.get_host(name)
    cmd, args = ssh.backend._build_ssh_command("true")
    with open(os.environ["TIMEOUT_OUT"], "a") as fh:
        fh.write(json.dumps([name, ssh.backend.timeout, " ".join(cmd) % tuple(args)]) + "\\n")
'''


def test_verify_waits_for_ssh_as_long_as_ansible(tmp_path: Path) -> None:
    """Testinfra's own SSH timeout is 10 s: under the plugin each host gets Ansible's, from its
    ansible_timeout or ansible_ssh_timeout, else ANSIBLE_TIMEOUT (no host is contacted)."""
    (tmp_path / "test_probe.py").write_text(TIMEOUT_PROBE)
    (tmp_path / "hosts.yml").write_text(textwrap.dedent("""\
        all:
          hosts:
            slow: {ansible_host: 192.0.2.1, ansible_timeout: 37}
            older: {ansible_host: 192.0.2.2, ansible_ssh_timeout: 41}
            plain: {ansible_host: 192.0.2.3}
            templated: {ansible_host: 192.0.2.4, ansible_timeout: "{{ wait }}"}
        """))
    out = tmp_path / "timeouts.jsonl"
    hosts = ["slow", "older", "plain", "templated"]
    res = _pytest(["test_probe.py", "--rootdir", str(tmp_path), "-p", "mlops_provision.verify_plugin",
                   "--hosts=" + ",".join(f"ansible://{h}" for h in hosts),
                   f"--ansible-inventory={tmp_path / 'hosts.yml'}"], tmp_path,
                  {"TIMEOUT_OUT": str(out), "ANSIBLE_TIMEOUT": "23"})
    assert res.returncode == 0, res.stdout + res.stderr
    got = {name: (seconds, cmd) for name, seconds, cmd in map(json.loads, out.read_text().splitlines())}
    assert {name: seconds for name, (seconds, _) in got.items()} == {
        "slow": 37, "older": 41, "plain": 23, "templated": 23}
    assert "-o ConnectTimeout=37" in got["slow"][1] and "ConnectTimeout=10" not in got["slow"][1]
