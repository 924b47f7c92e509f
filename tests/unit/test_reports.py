"""What the operator sees: `up`'s summary (changed tasks per host and role, NEEDS ATTENTION, play
durations) and `verify`'s report (a host x role matrix, failures in full, skips grouped by reason,
checks that do not apply to a host counted apart, one name per parametrized check)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from mlops_provision import reports, runner
from mlops_provision.drift import model
from mlops_provision.runner import NOTES_STAT, HostResult, RunSummary, RunTracker
from mlops_provision.secrets import Scrubber
from mlops_provision.verify import NOT_APPLICABLE, CheckResult, VerifyReport, normalise_reason
from mlops_provision.verify_plugin import NOT_APPLICABLE as PLUGIN_NOT_APPLICABLE


def _render(fn, *args, **kwargs) -> str:
    out = io.StringIO()
    fn(*args, Console(file=out, width=200), **kwargs)
    return out.getvalue()


def _event(kind, host=None, created=None, **data):
    if host:
        data["host"] = host
    event = {"event": kind, "event_data": data}
    if created:
        event["created"] = f"2026-01-01T10:{created}+00:00"
    return event


#: A run as ansible-runner hands its events over: two plays, roles' tasks and handlers, a play's
#: own task, a loop, an unchanged task, a failed one ignored, a module warning, the roles' notes.
EVENTS = [
    _event("playbook_on_start", created="00:00.000"),
    _event("playbook_on_play_start", play="Preflight", created="00:00.500"),
    _event("playbook_on_task_start", task="Check the site as mlops-provision validate does", created="00:01.000"),
    _event("runner_on_ok", "node1", task="Check the site as mlops-provision validate does", res={"changed": False},
           created="00:02.000"),
    _event("playbook_on_play_start", play="Base | Common node setup", created="00:02.500"),
    _event("runner_on_ok", "node1", task="Base | Configure chrony", role="base", res={"changed": True},
           created="00:10.000"),
    _event("runner_on_ok", "node2", task="Base | Configure chrony", role="base", res={"changed": True},
           created="00:10.000"),
    _event("runner_on_ok", "node1", task="Base | Install the base packages", role="base", res={"changed": False},
           created="00:20.000"),
    _event("runner_on_ok", "node1", task="Os_hardening | Set kernel parameters", role="mlops.platform.os_hardening",
           res={"changed": True, "results": [{"changed": True, "item": "kernel.sysrq"}],
                "warnings": ["sysctl kernel.sysrq: set at run time"]}, created="00:30.000"),
    _event("runner_on_ok", "node2", task="Os_hardening | Set kernel parameters", role="os_hardening",
           res={"changed": True, "warnings": ["sysctl kernel.sysrq: set at run time"]}, created="00:30.000"),
    _event("runner_on_failed", "node2", task="Base | Probe", role="base", ignore_errors=True, res={"msg": "no"},
           created="00:31.000"),
    _event("runner_on_ok", "node1", task="Record the layer", res={"changed": True}, created="00:32.000"),
    _event("runner_on_ok", "node1", task="Base | Restart chrony", role="base", res={"changed": True},
           created="00:40.000"),  # a handler: its event names its role
    _event("runner_on_ok", "node2", task="Base | Restart chrony", role="base", res={"changed": True},
           created="00:40.000"),
    _event("runner_on_ok", "node1", task="Base | Configure chrony", role="base", res={"changed": True},
           created="00:41.000"),  # the same task again (an include run twice): named once
    _event("playbook_on_play_start", play="MLflow layer", created="01:02.500"),
    _event("runner_on_skipped", "node1", task="Mlflow | Install", role="mlflow", created="01:03.000"),
    _event("playbook_on_stats", created="01:12.500", ok={"node1": 5, "node2": 3}, changed={"node1": 4, "node2": 3},
           artifact_data={NOTES_STAT: {"node2": [{"kind": "reboot", "reason": "kernel parameters need a reboot"}]}}),
]


class _FakeRunner:
    """ansible-runner's Runner as run_playbook drives it: events to the handler, then rc and stats."""

    def __init__(self, event_handler, **kwargs):
        self.handler = event_handler
        self.config = SimpleNamespace(env={}, suppress_output_file=False, suppress_ansible_output=False)
        self.rc, self.stats = 0, None

    def run(self):
        for event in EVENTS:
            self.handler(json.loads(json.dumps(event)))
        self.stats = {"ok": {"node1": 5, "node2": 3}, "changed": {"node1": 4, "node2": 3}}


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """run_playbook over the fake event stream, on a two-host site in tmp_path."""
    monkeypatch.setattr(runner.ansible_runner.interface, "init_runner", lambda **kw: _FakeRunner(**kw))
    monkeypatch.setenv("ANSIBLE_STRATEGY", "linear")  # no Mitogen lookup
    (tmp_path / "hosts.yml").write_text("all: {}\n")
    site = SimpleNamespace(path=tmp_path / "hosts.yml", sources=[tmp_path / "hosts.yml"], secrets=lambda: [],
                           matching=lambda limit: ["node1", "node2"])
    return lambda **kw: runner.run_playbook(site, playbook=tmp_path / "site.yml", **kw)


WANT_CHANGED = {
    "node1": {"base": ["Base | Configure chrony", "Base | Restart chrony"],
              "os_hardening": ["Os_hardening | Set kernel parameters"],
              "site": ["Record the layer"]},
    "node2": {"base": ["Base | Configure chrony", "Base | Restart chrony"],
              "os_hardening": ["Os_hardening | Set kernel parameters"]},
}


def test_changed_tasks_per_host_and_role_reach_the_json_summary(fake_run):
    summary = fake_run()
    assert summary.changed_tasks == WANT_CHANGED
    printed = json.loads(reports.run_json(summary))
    sealed = json.loads((Path(summary.run_dir) / "summary.json").read_text())
    for data in (printed, sealed):
        assert data["changed_tasks"] == WANT_CHANGED
        assert data["plays"] == [{"play": "Preflight", "duration_s": 2.0},
                                 {"play": "Base | Common node setup", "duration_s": 60.0},
                                 {"play": "MLflow layer", "duration_s": 10.0}]
        assert data["warnings"] == ["Os_hardening | Set kernel parameters: sysctl kernel.sysrq: set at run time "
                                    "(node1, node2)"]
        assert data["notes"] == {"node2": [{"kind": "reboot", "reason": "kernel parameters need a reboot"}]}
    assert summary.exit_code == 0  # exit codes as before


def test_human_summary_of_a_run(fake_run):
    summary = fake_run()
    out = _render(reports.print_run, summary)
    lines = [line.rstrip() for line in out.splitlines()]
    changed = lines.index("CHANGED")
    # each task once, with the hosts it changed on (every host alike: "all"); the role's prefix
    # not repeated
    assert lines[changed + 1:changed + 4] == [
        "  base (all 2 hosts):         Configure chrony; Restart chrony",
        "  os_hardening (all 2 hosts): Set kernel parameters",
        "  site (node1):               Record the layer"]
    attention = lines.index("NEEDS ATTENTION")
    assert lines[attention + 1:attention + 3] == [
        "  REBOOT NEEDED: node2: kernel parameters need a reboot",
        "  WARNING: Os_hardening | Set kernel parameters: sysctl kernel.sysrq: set at run time (node1, node2)"]
    plays = lines.index("PLAYS")
    assert [line.split() for line in lines[plays + 1:plays + 4]] == [
        ["Preflight", "2.0s"], ["Base", "|", "Common", "node", "setup", "1m00s"], ["MLflow", "layer", "10s"]]
    assert lines[-1] == f"exit 0; run record: {summary.run_dir}"
    assert "WOULD CHANGE" not in out and out.count("Configure chrony") == 1
    # a log gets whole lines with nothing padded after them (a grid pads every row to the longest)
    changed_lines = out.splitlines()[changed + 1:changed + 4]
    assert all(line == line.rstrip() for line in changed_lines), changed_lines


def test_check_mode_lists_what_would_change_and_hosts_alike_together():
    summary = RunSummary(verb="check", inventory="i", playbook="p", check=True, limit=None, tags=None, started="now",
                         run_dir="/runs/1-check", exit_code=4,
                         hosts=[HostResult(h, ok=3, changed=1, status="changed") for h in ("a", "b", "c")])
    summary.changed_tasks = {"a": {"base": ["Base | Configure chrony"]}, "b": {"base": ["Base | Configure chrony"]},
                             "c": {"mlflow": ["Mlflow | Write the unit"]}}
    out = _render(reports.print_run, summary)
    lines = [line.rstrip() for line in out.splitlines()]
    title = lines.index("WOULD CHANGE")
    assert lines[title + 1:title + 3] == ["  base (a, b): Configure chrony", "  mlflow (c):  Write the unit"]
    assert "CHANGED" not in lines and "NEEDS ATTENTION" not in out and "PLAYS" not in out
    assert "mlops-provision check --check: 3 host(s)" in out and lines[-1] == "exit 4; run record: /runs/1-check"


def test_needs_attention_from_notes_failures_and_warnings():
    summary = RunSummary(verb="up", inventory="i", playbook="p", check=False, limit=None, tags=None, started="now",
                         run_dir="/runs/2-up", exit_code=1)
    summary.hosts = [HostResult("cpu1", ok=9, status="ok"),
                     HostResult("gpu1", ok=20, changed=3, status="changed"),
                     HostResult("gpu2", failed=1, status="failed", task="Nvidia_driver | Build the module",
                                message="dkms build failed [exit 10]"),
                     HostResult("gpu3", unreachable=1, status="unreachable", task="Gathering Facts",
                                message="ssh: connect to host 10.0.0.3 port 22: No route to host")]
    summary.notes = {"gpu1": [{"kind": "reboot", "reason": "the nvidia module is not loaded"},
                              {"kind": "mok_enrolment", "reason": "confirm the MOK enrolment at the console"}],
                     "gpu4": [{"kind": "note", "reason": "a plain note"}, {"kind": "firmware_update", "reason": "x"}]}
    summary.warnings = ["Could not match supplied host pattern, ignoring: cpu_workers"]
    assert reports.attention_lines(summary) == [
        "FAILED: gpu2: Nvidia_driver | Build the module: dkms build failed [exit 10]",
        "UNREACHABLE: gpu3: Gathering Facts: ssh: connect to host 10.0.0.3 port 22: No route to host",
        "REBOOT NEEDED: gpu1: the nvidia module is not loaded",
        "MOK ENROLMENT PENDING: gpu1: confirm the MOK enrolment at the console",
        "NOTE: gpu4: a plain note",
        "FIRMWARE UPDATE: gpu4: x",
        "WARNING: Could not match supplied host pattern, ignoring: cpu_workers"]
    out = _render(reports.print_run, summary)
    lines = [line.rstrip() for line in out.splitlines()]
    start = lines.index("NEEDS ATTENTION")
    assert lines[start + 1:start + 8] == ["  " + line for line in reports.attention_lines(summary)]
    # each message once: the table has no message column
    assert out.count("dkms build failed [exit 10]") == 1 and out.count("No route to host") == 1
    assert lines[-1] == "exit 1; run record: /runs/2-up"


def test_a_real_run_names_roles_and_handlers_and_times_its_plays(tmp_path):
    """The job events' fields the summary reads, as a real (local) run writes them: a role's task
    and its handler under the role, a play's own tasks under "site" (no_log ones too), one entry
    per play."""
    import yaml

    from mlops_provision.site import load

    role = tmp_path / "roles" / "demo"
    (role / "tasks").mkdir(parents=True)
    (role / "handlers").mkdir()
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump([
        {"name": "Demo | Change", "ansible.builtin.command": "true", "changed_when": True, "notify": "Demo | Restart"},
        {"name": "Demo | Keep", "ansible.builtin.command": "true", "changed_when": False}]))
    (role / "handlers" / "main.yml").write_text(yaml.safe_dump([
        {"name": "Demo | Restart", "ansible.builtin.command": "true"}]))
    (tmp_path / "hosts.yml").write_text(f"all:\n  hosts:\n    h1:\n      ansible_connection: local\n"
                                        f"      ansible_python_interpreter: {sys.executable}\n")
    (tmp_path / "play.yml").write_text(yaml.safe_dump([
        {"name": "First layer", "hosts": "all", "gather_facts": False, "roles": ["demo"],
         "tasks": [{"name": "Own task", "ansible.builtin.command": "true"},
                   {"name": "Secret task", "ansible.builtin.command": "true", "no_log": True},
                   {"name": "Secret loop", "ansible.builtin.command": "echo {{ item }}", "loop": [1, 2],
                    "no_log": True, "changed_when": "item == 2"}]},
        {"name": "Second layer", "hosts": "all", "gather_facts": False,
         "tasks": [{"name": "Nothing", "ansible.builtin.debug": {"msg": "hi"}}]}], sort_keys=False))
    summary = runner.run_playbook(load(tmp_path / "hosts.yml", strict=False), playbook=tmp_path / "play.yml")
    assert summary.exit_code == 0, summary
    # no_log results are censored, "changed" too: their change is read from their lines
    assert summary.changed_tasks == {"h1": {"demo": ["Demo | Change", "Demo | Restart"],
                                            "site": ["Own task", "Secret task", "Secret loop"]}}
    # and the host's count (check mode's exit code 4 reads it) counts the same five changes
    assert summary.hosts[0].changed == 5, summary.hosts[0]
    assert [p["play"] for p in summary.plays] == ["First layer", "Second layer"]
    assert all(0 <= p["duration_s"] <= summary.duration_s for p in summary.plays), summary.plays


def test_warning_events_are_kept_once():
    tracker = RunTracker(["a"], Scrubber(["s3cr3t"]))
    for _ in range(2):
        tracker.handle({"event": "warning", "event_data": {"warning": True},
                        "stdout": "[WARNING]: Found variable using reserved name 's3cr3t'.\r\nOrigin: x.yml:10"})
    tracker.handle({"event": "deprecated", "event_data": {}, "stdout": "[WARNING]: Deprecation warnings can be ..."})
    assert tracker.warnings == ["Found variable using reserved name '********'."]


# --------------------------------------------------------------------------- verify
SAMPLE = '''
import pytest

pytestmark = pytest.mark.roles("os_hardening")


class NotHere(pytest.skip.Exception):
    mlops_not_applicable = True


@pytest.fixture(scope="module")
def server():
    pytest.skip("not in group mlflow: no MLflow server here")


@pytest.fixture(scope="module")
def workloads():
    pytest.skip("runs no workloads (not in control_plane, cpu_workers or gpu_workers): no containerd")


@pytest.mark.parametrize("directory", ["/etc/modprobe.d", "/etc/sysctl.d"])
def test_dropin_dirs_only_ours(host, directory):
    """drop-in directories hold only our and the packages' files"""
    assert directory != "/etc/sysctl.d", f"not ours in {directory}: zz-evil.conf"


@pytest.mark.parametrize(("key", "value"), [("kernel.sysrq", 0), ("net.ipv4.ip_forward", 1)])
def test_sysctl(host, key, value):
    """kernel parameters have their effective values"""


@pytest.mark.roles("mlflow")
def test_mlflow_active(host, server):
    """MLflow server active"""


@pytest.mark.roles("mlflow")
def test_mlflow_tls(host, server):
    """certificate valid"""


@pytest.mark.roles("containerd")
def test_containerd_running(host, workloads):
    """containerd enabled and running"""


@pytest.mark.roles("nvidia_driver")
def test_gpu_runtime(host):
    """the NVIDIA runtime on GPU nodes"""
    pytest.skip("not a GPU node")


@pytest.mark.roles("cuda")
def test_structured(host):
    """a check that says so itself"""
    raise NotHere("cuda is for another group")


def test_container_skip(host):
    """auditd loaded rules"""
    pytest.skip("container: shares the host's kernel")


def test_not_in_the_middle(host):
    """a reason that only mentions groups"""
    pytest.skip("base_apt_mirror is empty: the node is not configured for a mirror")
'''


@pytest.fixture(scope="module")
def plugin_records(tmp_path_factory) -> list[dict]:
    """The verify plugin's records of SAMPLE on a testinfra host (local://, as verify passes
    ansible:// hosts)."""
    tmp = tmp_path_factory.mktemp("checks")
    (tmp / "test_sample.py").write_text(textwrap.dedent(SAMPLE))
    results = tmp / "results.jsonl"
    res = subprocess.run([sys.executable, "-m", "pytest", "-c", os.devnull, "-p", "no:cacheprovider", "-q",
                          "test_sample.py", "--rootdir", str(tmp), "-p", "mlops_provision.verify_plugin",
                          f"--mlops-results={results}", "--hosts=local://"],
                         capture_output=True, text=True, cwd=tmp, timeout=300,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]  # one check fails
    return [json.loads(line) for line in results.read_text().splitlines()]


def test_parametrized_checks_get_their_parameters_in_their_names(plugin_records):
    names = sorted(r["check"] for r in plugin_records)
    assert len(names) == len(set(names)) == 11, names  # one name per (host, check)
    assert "drop-in directories hold only our and the packages' files [/etc/modprobe.d]" in names
    assert "kernel parameters have their effective values [net.ipv4.ip_forward, 1]" in names
    assert "MLflow server active" in names  # not parametrized: the docstring alone, no host in it
    failed = [r for r in plugin_records if r["outcome"] == "failed"]
    assert [r["check"] for r in failed] == ["drop-in directories hold only our and the packages' files "
                                            "[/etc/sysctl.d]"]


def test_checks_for_another_group_are_not_applicable(plugin_records):
    outcome = {r["check"]: r["outcome"] for r in plugin_records}
    assert PLUGIN_NOT_APPLICABLE == NOT_APPLICABLE
    for check in ("MLflow server active", "certificate valid", "containerd enabled and running",
                  "the NVIDIA runtime on GPU nodes", "a check that says so itself"):
        assert outcome[check] == NOT_APPLICABLE, (check, outcome)
    assert outcome["auditd loaded rules"] == "skipped"
    assert outcome["a reason that only mentions groups"] == "skipped"
    for rec in plugin_records:
        CheckResult(**rec)  # verify reads each record back as it is


def test_not_applicable_counts_nowhere_and_leaves_exit_code_and_drift_alone(plugin_records, tmp_path):
    results = [CheckResult(**{**rec, "host": "node1"}) for rec in plugin_records]
    report = VerifyReport(inventory="i", results=results)
    assert report.counts() == {"passed": 3, "failed": 1, "error": 0, "skipped": 2}
    assert report.counts_line() == "3 passed, 1 failed, 0 errors, 2 skipped on 1 host(s)"
    assert report.exit_code == 1
    data = report.to_dict()
    assert len(data["results"]) == 6 and {r["outcome"] for r in data["results"]} == {"passed", "failed", "skipped"}
    assert sorted(r["check"] for r in data["not_applicable"]) == [
        "MLflow server active", "a check that says so itself", "certificate valid", "containerd enabled and running",
        "the NVIDIA runtime on GPU nodes"]
    assert data["matrix"] == {"node1": {"os_hardening": {"passed": 3, "failed": 1, "error": 0, "skipped": 2}}}
    # drift reads the same as when these were skipped: nothing drifted for them, their roles at 0
    as_skipped = VerifyReport(inventory="i", results=[
        CheckResult(**{**vars(r), "outcome": "skipped"}) if r.outcome == NOT_APPLICABLE else r for r in results])
    assert model.merge(None, [], report, ["node1"]) == model.merge(None, [], as_skipped, ["node1"])
    assert model.exit_code(model.merge(None, [], report, ["node1"]), report) == model.EXIT_DRIFT
    # only not-applicable results: exit code as before (0: no failure), none counted
    only = VerifyReport(inventory="i", results=[r for r in results if r.outcome == NOT_APPLICABLE])
    assert only.exit_code == 0 and only.counts() == {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    reports.verify_junit(report, tmp_path / "r.xml")
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("skipped"), suite.get("failures")) == ("6", "2", "1")


def _report() -> VerifyReport:
    r = []
    for host in ("node1", "node2", "node3"):
        r += [CheckResult(host, "base", "chrony running and enabled", "passed", roles=["base"]),
              CheckResult(host, "base", "site CA installed", "passed", roles=["base", "os_hardening"]),
              CheckResult(host, "audit", "auditd loaded rules", "skipped",
                          message="container: shares the host's kernel", roles=["audit"]),
              CheckResult(host, "base", "the node's name", "skipped", roles=["base"],
                          message=f"base_manage_hostname is false for {host}"),
              CheckResult(host, "mlflow", "MLflow server active", NOT_APPLICABLE, roles=["mlflow"],
                          message="not in group mlflow: no MLflow server here")]
    r[0] = CheckResult("node1", "base", "chrony running and enabled", "failed", message="chrony is not running",
                       roles=["base"])
    r += [CheckResult("node2", "os_hardening", "sudoers.d holds only ours", "failed", roles=["os_hardening"],
                      message="not written by mlops-provision: /etc/sudoers.d/evil", managed=False,
                      hint="remove them by hand, or set base_purge_unmanaged: true"),
          CheckResult("node3", "os_hardening", "sysctl", "error", message="ssh: connection reset",
                      roles=["os_hardening"]),
          CheckResult("node3", "mlflow", "MLflow TLS", "passed", roles=["mlflow"])]
    return VerifyReport(inventory="i", results=r, duration_s=84.2, run_dir="/runs/3-verify")


def test_skips_group_by_reason_with_the_host_name_taken_out():
    report = _report()
    assert normalise_reason("base_manage_hostname is false for node1", "node1") == \
        "base_manage_hostname is false for <host>"
    assert normalise_reason("node10 is not node1 nor node1.lan", "node1") == "node10 is not <host> nor <host>.lan"
    assert report.skipped_reasons() == [
        {"reason": "base_manage_hostname is false for <host>", "count": 3, "hosts": ["node1", "node2", "node3"]},
        {"reason": "container: shares the host's kernel", "count": 3, "hosts": ["node1", "node2", "node3"]}]
    assert report.skipped_reasons(NOT_APPLICABLE) == [
        {"reason": "not in group mlflow: no MLflow server here", "count": 3, "hosts": ["node1", "node2", "node3"]}]


def test_verify_report_renders_a_host_by_role_matrix():
    report = _report()
    assert report.matrix()["node3"] == {"audit": {"passed": 0, "failed": 0, "error": 0, "skipped": 1},
                                        "base": {"passed": 2, "failed": 0, "error": 0, "skipped": 1},
                                        "mlflow": {"passed": 1, "failed": 0, "error": 0, "skipped": 0},
                                        "os_hardening": {"passed": 0, "failed": 0, "error": 1, "skipped": 0}}
    out = _render(reports.print_verify, report)
    lines = [line.rstrip() for line in out.splitlines()]
    # few hosts: a row per role (whole names), a column per host
    header = next(line for line in lines if "role" in line and "┃" in line)
    assert [c.strip() for c in header.strip().strip("┃").split("┃")] == ["role", "node1", "node2", "node3"]
    rows = {cells[0]: cells[1:] for line in lines
            if (cells := [c.strip() for c in line.strip().strip("│").split("│")])
            and cells[0] in ("audit", "base", "mlflow", "os_hardening")}
    assert rows == {"audit": ["0/0/1", "0/0/1", "0/0/1"], "base": ["1/1/1", "2/0/1", "2/0/1"],
                    "mlflow": ["-", "-", "1/0/0"], "os_hardening": ["-", "0/1/0", "0/1/0"]}
    # many hosts: a row per host
    many = reports.verify_matrix(VerifyReport(inventory="i", results=[
        CheckResult(host=f"n{i:02d}", module="test_base", check="c", outcome="passed", roles=["base"])
        for i in range(reports.MATRIX_HOST_COLUMNS + 1)]))
    assert [c.header for c in many.columns] == ["host", "base"] and many.row_count == reports.MATRIX_HOST_COLUMNS + 1
    assert "mlops-provision verify: 3 host(s), 4 role(s)" in out and reports.MATRIX_LEGEND in lines
    assert lines[-1] == ("6 passed, 2 failed, 1 errors, 6 skipped on 3 host(s) in 1m24s; run record: /runs/3-verify")


def test_verify_report_says_failures_in_full_and_skips_once_per_reason():
    report = _report()
    out = _render(reports.print_verify, report)
    lines = [line.rstrip() for line in out.splitlines()]
    failed = lines.index("FAILED (3)")
    assert lines[failed + 1:failed + 9] == [
        "  FAILED: node1: chrony running and enabled (base)",
        "      chrony is not running",
        "  FAILED: node2: sudoers.d holds only ours (os_hardening)",
        "      not written by mlops-provision: /etc/sudoers.d/evil",
        "      not managed by up: remove them by hand, or set base_purge_unmanaged: true",
        "  ERROR: node3: sysctl (os_hardening)",
        "      ssh: connection reset",
        ""]
    skipped = lines.index("SKIPPED (6)")
    assert lines[skipped + 1:skipped + 3] == [
        "  3 skipped: base_manage_hostname is false for <host> (node1, node2, node3)",
        "  3 skipped: container: shares the host's kernel (node1, node2, node3)"]
    assert "3 check result(s) on 3 host(s) not applicable (the host is not in the role's group): not counted" in lines
    # no row per passed or skipped check, nothing not applicable named
    for quiet in ("site CA installed", "auditd loaded rules", "the node's name", "MLflow server active",
                  "not in group mlflow"):
        assert quiet not in out, quiet


def test_show_skipped_lists_every_skip():
    out = _render(reports.print_verify, _report(), show_skipped=True)
    lines = [line.rstrip() for line in out.splitlines()]
    assert sum("the node's name" in line and "base_manage_hostname is false for node" in line for line in lines) == 3
    assert sum("auditd loaded rules" in line for line in lines) == 3
    assert "  3 not applicable: not in group mlflow: no MLflow server here (node1, node2, node3)" in lines
    assert "site CA installed" not in out  # passed checks stay in the matrix
