"""Result parsing (ansible-runner events -> per-host results), exit codes and secret scrubbing."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlops_provision.reports import verify_junit
from mlops_provision.runner import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    HostResult,
    RunTracker,
    exit_code_for,
)
from mlops_provision.secrets import MASK, Scrubber
from mlops_provision.verify import CheckResult, VerifyReport


def _event(kind, host=None, **data):
    if host:
        data["host"] = host
    return {"event": kind, "event_data": data}


def test_tracker_counts_and_reasons():
    tracker = RunTracker(["a", "b", "c"], Scrubber([]))
    tracker.handle(_event("playbook_on_play_start", play="Base | Common node setup"))
    tracker.handle(_event("playbook_on_task_start", task="Base | Install the base packages"))
    tracker.handle(_event("runner_on_ok", "a", res={"changed": True}))
    tracker.handle(_event("runner_on_ok", "b", res={"changed": False}))
    tracker.handle(_event("runner_on_failed", "b", task="Base | Configure chrony",
                          res={"msg": "Destination   directory\n missing"}))
    tracker.handle(_event("runner_on_failed", "a", ignore_errors=True, res={"msg": "ignored"}))
    tracker.handle(_event("runner_on_unreachable", "c",
                          res={"msg": "ssh: connect to host 127.0.0.1 port 1: Connection refused"}))
    tracker.handle(_event("runner_on_skipped", "a"))
    a, b, c = (tracker.hosts[x] for x in "abc")
    assert (a.ok, a.changed, a.ignored, a.skipped, a.failed) == (1, 1, 1, 1, 0)
    assert b.status == "failed" and b.task == "Base | Configure chrony"
    assert b.message == "Destination directory missing"
    assert c.status == "unreachable" and "Connection refused" in c.message
    assert tracker.play == "Base | Common node setup"
    assert len(tracker.log) == 2


def test_failed_loop_items_give_their_messages():
    tracker = RunTracker(["a"], Scrubber([]))
    tracker.handle(_event("runner_on_failed", "a", task="t", res={
        "msg": "One or more items failed",  # what ansible-core puts on top of a failed loop
        "results": [{"failed": False, "msg": "fine"}, {"failed": True, "msg": "item 2 broke"}]}))
    assert tracker.hosts["a"].message == "item 2 broke"


def test_settle_status():
    for kwargs, status in (({"ok": 3}, "ok"), ({"ok": 3, "changed": 1}, "changed"),
                           ({"failed": 1, "ok": 2}, "failed"), ({"unreachable": 1}, "unreachable"),
                           ({}, "not run")):
        h = HostResult("x", **kwargs)
        h.settle()
        assert h.status == status, kwargs


def test_exit_codes():
    ok = HostResult("a", ok=5)
    failed = HostResult("b", failed=1)
    dark = HostResult("c", unreachable=1)
    assert exit_code_for([ok], 0) == EXIT_OK
    assert exit_code_for([ok, dark], 4) == EXIT_UNREACHABLE
    assert exit_code_for([ok, failed], 2) == EXIT_FAILED
    assert exit_code_for([ok, failed, dark], 2) == EXIT_FAILED
    assert exit_code_for([ok], 1) == EXIT_FAILED  # ansible failed before any host did


def test_scrubber_masks_text_json_and_files(tmp_path):
    secret = 'pa"ss\\word-42'
    s = Scrubber([secret, "abc"])  # too short to mask safely: left alone
    assert s.text(f"x {secret} y") == f"x {MASK} y"
    encoded = json.dumps({"diff": f"proxy = {secret}"})
    assert secret not in json.loads(s.text(encoded))["diff"]
    assert s.data({"a": [f"{secret}!", 3]}) == {"a": [f"{MASK}!", 3]}
    assert s.text("abc") == "abc"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "events.json").write_text(encoded)
    (tmp_path / "clean.txt").write_text("nothing here")
    assert s.tree(tmp_path) == 1
    assert secret not in (tmp_path / "d" / "events.json").read_text()


def test_empty_scrubber_is_a_no_op():
    s = Scrubber([])
    assert not s and s.text("anything") == "anything"


def test_junit_report(tmp_path):
    report = VerifyReport(inventory="inv.yml", results=[
        CheckResult("n1", "base", "chrony running and enabled", "passed", duration_s=0.5),
        CheckResult("n1", "base", "site CA certificates installed and trusted", "failed",
                    message="CA certificate missing", detail="trace"),
        CheckResult("n2", "base", "apt uses the site mirror", "skipped", message="empty"),
    ])
    assert report.exit_code == 1
    verify_junit(report, tmp_path / "r.xml")
    root = ET.parse(tmp_path / "r.xml").getroot()
    n1 = root.find("testsuite[@name='n1']")
    assert n1.get("tests") == "2" and n1.get("failures") == "1"
    assert n1.find("testcase/failure").get("message") == "CA certificate missing"
    assert root.find("testsuite[@name='n2']/testcase/skipped") is not None


def test_verify_report_with_no_results_fails():
    assert VerifyReport(inventory="x").exit_code == 1
    passed = VerifyReport(inventory="x", results=[CheckResult("n", "base", "c", "passed")])
    assert passed.exit_code == 0


def test_reports_print_ansible_text_literally():
    """Ansible messages contain brackets; they must never be read as terminal markup."""
    import io

    from rich.console import Console

    from mlops_provision.reports import print_run
    from mlops_provision.runner import RunSummary

    summary = RunSummary(verb="up", inventory="i", playbook="p", check=False, limit=None, tags=None, started="now")
    summary.hosts = [HostResult("a", status="not run"),
                     HostResult("b", failed=1, status="failed", task="t", message="bad [/] value [bold]x")]
    out = io.StringIO()
    print_run(summary, Console(file=out, width=200))
    assert "bad [/] value [bold]x" in out.getvalue() and "not run" in out.getvalue()


PLANTED = "PLANTED-s3cr3t-7f9q"


def _children(pid: int) -> list[int]:
    """Every descendant of pid, from /proc (the run's ansible-playbook and its workers)."""
    from pathlib import Path

    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *_children(kid)]
    return out


def _start_run(tmp_path):
    """Start a run (in its own process) whose first task prints a vault secret and whose second
    waits; return the process and the site's runs/ directory once the second task started."""
    import os
    import subprocess
    import sys
    import time

    from ansible.parsing.vault import VaultLib, VaultSecret

    (tmp_path / "vault-pw").write_text("pw-for-the-kill-test\n")
    token = VaultLib([("default", VaultSecret(b"pw-for-the-kill-test"))]).encrypt(PLANTED).decode()
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
        "  vars:\n    demo_token: !vault |\n" + "".join(f"      {line}\n" for line in token.splitlines()))
    (tmp_path / "play.yml").write_text(
        "- name: Demo\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Show the secret\n      ansible.builtin.debug:\n        msg: \"token={{ demo_token }}\"\n"
        "    - name: Wait to be killed\n      ansible.builtin.command: sleep 60\n      changed_when: false\n")
    script = (
        "import sys\nfrom pathlib import Path\nfrom mlops_provision.site import load\n"
        "from mlops_provision.runner import run_playbook\n"
        "inv = load(Path(sys.argv[1]), vault_password_file=sys.argv[2], strict=False)\n"
        "assert sys.argv[4] in inv.secrets()\n"
        "run_playbook(inv, playbook=Path(sys.argv[3]), vault_password_file=Path(sys.argv[2]))\n")
    env = {**os.environ, "MLOPS_KILL_TEST_SECRET_ENV": PLANTED, "AWS_SECRET_ACCESS_KEY": PLANTED}
    proc = subprocess.Popen([sys.executable, "-c", script, tmp_path / "hosts.yml", tmp_path / "vault-pw",
                             tmp_path / "play.yml", PLANTED], env=env, cwd=tmp_path)
    runs = tmp_path / ".mlops-provision" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        events = list(runs.glob("*/artifacts/ansible/job_events/*.json"))
        if any("Wait to be killed" in e.read_text() for e in events if "-partial" not in e.name):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    return proc, runs


def _stop(proc, signum) -> list[int]:
    """Send signum to the run's process; return its descendants (to clean up afterwards)."""
    import os

    orphans = _children(proc.pid)
    os.kill(proc.pid, signum)
    proc.wait(timeout=60)
    return orphans


def _cleanup(proc, orphans) -> None:
    import contextlib
    import os
    import signal

    if proc.poll() is None:
        proc.kill()
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _secret_files(run_dir) -> list:
    return [p for p in run_dir.rglob("*") if p.is_file() and PLANTED in p.read_text(errors="replace")]


def test_a_run_killed_hard_leaves_a_private_record_without_secret_or_environment(tmp_path):
    """SIGKILL in the middle of a run (after a task printed a vault secret): the record is 0700,
    holds no secret, no copy of the process environment and no env/ files; the next run seals
    what the killed one left (raw partial events)."""
    import signal

    from mlops_provision.runner import OWNER, seal_abandoned

    proc, runs = _start_run(tmp_path)
    orphans: list[int] = []
    try:
        orphans = _stop(proc, signal.SIGKILL)
        (run_dir,) = runs.iterdir()
        assert (run_dir.stat().st_mode & 0o777) == 0o700
        assert (runs.stat().st_mode & 0o777) == 0o700
        files = [p for p in run_dir.rglob("*") if p.is_file()]
        assert any("token=********" in p.read_text() for p in files), "the masked event is recorded"
        assert not _secret_files(run_dir)
        command = json.loads((run_dir / "artifacts" / "ansible" / "command").read_text())
        assert "env" not in command
        assert not list((run_dir / "runner").rglob("env/*")), "ansible-runner's env/ files were written"
        assert not (run_dir / "artifacts" / "ansible" / "stdout").exists(), "raw stdout is not written"

        # What the killed run could not clean: raw partial events (an orphaned ansible-playbook
        # may still write them). The next run in this site seals the record.
        partial = run_dir / "artifacts" / "ansible" / "job_events" / "x-partial.json"
        partial.write_text(json.dumps({"res": {"msg": PLANTED}}))
        assert seal_abandoned(runs, Scrubber([PLANTED])) == [run_dir]
        assert not _secret_files(run_dir)
        assert not (run_dir / OWNER).exists() and (run_dir / "ABANDONED").exists()
        assert "token=********" in (run_dir / "artifacts" / "ansible" / "stdout").read_text()
    finally:
        _cleanup(proc, orphans)


def test_sigterm_seals_the_record(tmp_path):
    import signal

    from mlops_provision.runner import OWNER

    proc, runs = _start_run(tmp_path)
    orphans: list[int] = []
    try:
        orphans = _stop(proc, signal.SIGTERM)
        assert proc.returncode == 128 + signal.SIGTERM
        (run_dir,) = runs.iterdir()
        assert not (run_dir / OWNER).exists(), "sealed"
        assert not _secret_files(run_dir)
        assert not list(run_dir.rglob("*-partial.json"))
        assert "token=********" in (run_dir / "artifacts" / "ansible" / "stdout").read_text()
    finally:
        _cleanup(proc, orphans)


def test_child_env_keeps_only_what_ansible_needs():
    from mlops_provision.runner import child_env

    env = child_env({"PATH": "/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "ANSIBLE_HOST_KEY_CHECKING": "False",
                     "ANSIBLE_BECOME_PASSWORD": "x", "AWS_SECRET_ACCESS_KEY": "x", "GITHUB_TOKEN": "x",
                     "MLOPS_PROVISION_CACHE": "/c", "ANSIBLE_PRIVATE_KEY_FILE": "/k"},
                    {"ANSIBLE_CONFIG": "/a.cfg"})
    assert env == {"PATH": "/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "ANSIBLE_HOST_KEY_CHECKING": "False",
                   "MLOPS_PROVISION_CACHE": "/c", "ANSIBLE_PRIVATE_KEY_FILE": "/k", "ANSIBLE_CONFIG": "/a.cfg"}


def test_verify_batches_split_hosts_evenly_and_keep_every_host():
    from mlops_provision.verify import batches

    hosts = [f"node{i}" for i in range(1, 11)]
    split = batches(hosts, 4)
    assert len(split) == 4 and sorted(h for b in split for h in b) == sorted(hosts)
    assert max(map(len, split)) - min(map(len, split)) <= 1
    assert batches(hosts[:2], 8) == [["node1"], ["node2"]]
    assert batches(hosts, 1) == [hosts]
    assert batches([], 4) == []


def test_ansible_env_runs_mitogen_unless_the_admin_chose_a_strategy(monkeypatch):
    from mlops_provision.runner import ansible_env

    monkeypatch.delenv("ANSIBLE_STRATEGY", raising=False)
    env = ansible_env()
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    monkeypatch.setenv("ANSIBLE_STRATEGY", "linear")
    assert "ANSIBLE_STRATEGY" not in ansible_env() and "ANSIBLE_STRATEGY_PLUGINS" not in ansible_env()


@pytest.mark.parametrize(("strategy", "in_mitogen"), [(None, True), ("linear", False)])
def test_a_run_executes_its_modules_under_the_strategy_in_force(tmp_path, monkeypatch, strategy, in_mitogen):
    """A real run on localhost: under the default, a module runs inside Mitogen's long-lived
    interpreter on the host (its process title says so); with ANSIBLE_STRATEGY=linear, in a
    fresh stock interpreter."""
    import sys

    from mlops_provision.runner import run_playbook
    from mlops_provision.site import load

    if strategy:
        monkeypatch.setenv("ANSIBLE_STRATEGY", strategy)
    else:
        monkeypatch.delenv("ANSIBLE_STRATEGY", raising=False)
    out = tmp_path / "parent"
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n")
    (tmp_path / "play.yml").write_text(
        "- name: Where modules run\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Record the module's process\n      ansible.builtin.shell: "
        f"\"tr '\\\\0' ' ' < /proc/$PPID/cmdline > {out}\"\n      changed_when: false\n")
    summary = run_playbook(load(tmp_path / "hosts.yml", strict=False), playbook=tmp_path / "play.yml")
    assert summary.exit_code == 0, summary
    assert ("(mitogen:" in out.read_text()) is in_mitogen, out.read_text()


# --------------------------------------------------------------------------- per-host notes
def test_notes_come_from_the_run_wide_stats():
    """The roles' set_stats notes (NOTES_STAT) reach the tracker from the playbook_on_stats
    event's artifact_data, per host; malformed entries are left out, secrets scrubbed."""
    from mlops_provision.runner import NOTES_STAT

    tracker = RunTracker(["gpu1", "gpu2", "cpu1"], Scrubber(["s3cr3t-value"]))
    tracker.handle(_event("runner_on_ok", "gpu1", res={"changed": True}))
    tracker.handle(_event("playbook_on_stats", ok={"gpu1": 1}, artifact_data={NOTES_STAT: {
        "gpu2": [{"kind": "reboot", "reason": "the nvidia module of s3cr3t-value"},
                 {"kind": "mok_enrolment", "reason": "confirm it at the console"}],
        "gpu1": [{"kind": "reboot", "reason": "new kernel"}, "a plain note", 42, {"reason": "no kind"}],
        "cpu1": [],
        "bad": "not a list"}, "other_stat": {"x": 1}}))
    assert tracker.notes == {
        "bad": [{"kind": "note", "reason": "not a list"}],
        "gpu1": [{"kind": "reboot", "reason": "new kernel"}, {"kind": "note", "reason": "a plain note"}],
        "gpu2": [{"kind": "reboot", "reason": f"the nvidia module of {MASK}"},
                 {"kind": "mok_enrolment", "reason": "confirm it at the console"}],
    }
    assert list(tracker.notes) == sorted(tracker.notes)


def test_no_stats_no_notes():
    from mlops_provision.runner import notes_from_stats

    tracker = RunTracker(["a"], Scrubber([]))
    tracker.handle(_event("playbook_on_stats", ok={"a": 1}))
    assert tracker.notes == {}
    assert notes_from_stats(None) == {} and notes_from_stats({"mlops_host_notes": ["x"]}) == {}


def test_notes_of_the_nvidia_driver_role_reach_summary_json(tmp_path):
    """A real run on this machine of the nvidia_driver role's own set_stats task (two hosts,
    local connections): each host's notes, merged by Ansible, reach the RunSummary, summary.json
    and what `--output json` prints."""
    import sys

    import yaml

    from mlops_provision import paths
    from mlops_provision.reports import run_json
    from mlops_provision.runner import run_playbook
    from mlops_provision.site import load

    outcome = yaml.safe_load((paths.roles_dir() / "nvidia_driver" / "tasks" / "outcome.yml").read_text())
    hand_over = [t for t in outcome if "ansible.builtin.set_stats" in t]
    assert len(hand_over) == 1
    hosts = {"gpu1": (True, ["the nvidia module is not loaded"]), "gpu2": (False, ["kernel 6.1", "nouveau"]),
             "gpu3": (False, [])}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {
        name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
               "nvidia_driver_mok_pending": mok, "nvidia_driver_reboot_reasons": reasons}
        for name, (mok, reasons) in hosts.items()}}}))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "name": "Notes", "hosts": "all", "gather_facts": False, "tasks": hand_over}], sort_keys=False))
    summary = run_playbook(load(tmp_path / "hosts.yml", strict=False), playbook=tmp_path / "play.yml")
    assert summary.exit_code == 0, summary
    want = {"gpu1": [{"kind": "mok_enrolment", "reason": "confirm the MOK enrolment at the console on the next boot"},
                     {"kind": "reboot", "reason": "the nvidia module is not loaded"}],
            "gpu2": [{"kind": "reboot", "reason": "kernel 6.1; nouveau"}]}
    assert summary.notes == want
    assert json.loads((Path(summary.run_dir) / "summary.json").read_text())["notes"] == want
    assert json.loads(run_json(summary))["notes"] == want


def test_per_host_stats_never_reach_the_summary(tmp_path):
    """Why the roles hand notes over run-wide: ansible-runner passes on only the run-wide custom
    stats (artifact_data); ``per_host: true`` ones are lost."""
    import sys

    from mlops_provision.runner import run_playbook
    from mlops_provision.site import load

    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    gpu1:\n      ansible_connection: local\n"
                                        f"      ansible_python_interpreter: {sys.executable}\n")
    (tmp_path / "play.yml").write_text(
        "- name: Notes\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Per host\n      ansible.builtin.set_stats:\n"
        "        data: {mlops_host_notes: {gpu1: [{kind: reboot, reason: lost}]}}\n        per_host: true\n")
    summary = run_playbook(load(tmp_path / "hosts.yml", strict=False), playbook=tmp_path / "play.yml")
    assert summary.exit_code == 0 and summary.notes == {}


def test_expected_warnings_stay_out_of_the_summary():
    """A play for a group the site leaves empty (gpu_workers without GPUs) is the normal case:
    Ansible's 'Could not match supplied host pattern' is not something the operator can act on.
    Other warnings are kept."""
    from mlops_provision.runner import RunTracker

    tracker = RunTracker(["node1"], scrubber=None)
    empty_group = "[WARNING]: Could not match supplied host pattern, ignoring: gpu_workers"
    tracker.handle({"event": "warning", "stdout": empty_group, "event_data": {}})
    tracker.handle({"event": "warning", "stdout": "[WARNING]: Module remote_tmp /x did not exist",
                    "event_data": {"task": "Base | Something"}})
    assert tracker.warnings == ["Base | Something: Module remote_tmp /x did not exist"]
