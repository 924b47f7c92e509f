"""Result parsing (ansible-runner events -> per-host results), exit codes and secret scrubbing."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

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
