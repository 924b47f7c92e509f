"""The live progress stays one screen at fleet size and names the hosts in trouble."""

from __future__ import annotations

import re

from rich.console import Console

from mlops_provision.progress import host_table, state_counts
from mlops_provision.runner import RunTracker
from mlops_provision.secrets import Scrubber


def _tracker(n: int) -> RunTracker:
    tracker = RunTracker([f"node{i}" for i in range(1, n + 1)], scrubber=None)
    tracker.play, tracker.task = "Base | Common node setup", "Base | Install the base packages"
    for h in tracker.hosts.values():
        h.status, h.ok = "running", 3
    return tracker


def _rendered(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_fifty_hosts_one_line_counts_and_names_the_failed():
    tracker = _tracker(50)
    tracker.hosts["node7"].status = "failed"
    tracker.hosts["node42"].status = "unreachable"
    line = state_counts(tracker)
    assert line == "50 hosts: 48 running, 1 failed (node7), 1 unreachable (node42)"


def test_fifty_hosts_table_shows_the_trouble_and_one_line_for_the_rest():
    tracker = _tracker(50)
    tracker.hosts["node7"].status, tracker.hosts["node7"].failed = "failed", 1
    text = _rendered(host_table(tracker))
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) == 2, text  # node7, then one line for the others
    assert "node7" in rows[0] and "failed" in rows[0]
    assert "49 other hosts" in rows[1] and " 147 " in rows[1], rows[1]  # 49 hosts x 3 ok


def test_a_small_site_lists_every_host():
    text = _rendered(host_table(_tracker(3)))
    assert all(f"node{i}" in text for i in (1, 2, 3)) and "other hosts" not in text
    assert state_counts(_tracker(3)) == "3 hosts: 3 running"


# --------------------------------------------------------------------------- per task, off a terminal
def _event(kind: str, host: str | None = None, task: str = "", uuid: str = "", **data) -> dict:
    return {"event": kind, "event_data": {"host": host, "task": task, "task_uuid": uuid, **data}}


def _task(tracker: RunTracker, name: str, uuid: str, starts=(), results=(), action="ansible.builtin.command",
          took: float = 0.0) -> None:
    """A task's events: its start, runner_on_start per host in ``starts``, then (kind, host) ``results``;
    ``took``: how long it ran, in seconds."""
    tracker.handle(_event("playbook_on_task_start", task=name, uuid=uuid, task_action=action))
    tracker.current.started -= took
    for host in starts:
        tracker.handle(_event("runner_on_start", host, name, uuid))
    for kind, host, *extra in results:
        tracker.handle(_event(kind, host, name, uuid, res=extra[0] if extra else {}))


def _plain_run(*tasks) -> str:
    import io

    from mlops_provision.progress import Progress

    out = io.StringIO()
    tracker = RunTracker(["node1", "node2", "node3"], scrubber=Scrubber([]))
    with Progress(file=out) as shown:
        tracker.on_change = shown.update
        tracker.handle(_event("playbook_on_play_start", play="Base | Common node setup"))
        for task in tasks:
            _task(tracker, *task[:2], **task[2])
        tracker.handle(_event("playbook_on_stats"))
    return out.getvalue()


def test_a_task_line_counts_the_hosts_it_runs_on_not_the_play():
    out = _plain_run(
        ("Base | On all", "u1", {"starts": ["node1", "node2", "node3"],
                                "results": [("runner_on_ok", "node1"), ("runner_on_ok", "node2", {"changed": True}),
                                            ("runner_on_ok", "node3")]}),
        ("Gpu | Only the GPU node", "u2", {"starts": ["node1", "node2", "node3"],
                                          "results": [("runner_on_skipped", "node1"), ("runner_on_skipped", "node3"),
                                                      ("runner_on_failed", "node2", {"msg": "dkms build failed"})]}),
        ("Mlflow | Run once", "u3", {"starts": ["node1"], "results": [("runner_on_ok", "node1")]}),
        ("Gpu | Nowhere", "u4", {"starts": ["node1", "node3"],
                                 "results": [("runner_on_skipped", "node1"), ("runner_on_skipped", "node3")]}))
    lines = [line.split("] ", 1)[-1] for line in out.splitlines()]
    assert lines == ["Base | On all  (3 hosts: 1 changed, 2 ok)",
                     "Gpu | Only the GPU node  (1 host: 1 failed (node2); 2 skipped)",
                     "  FAILED node2: Gpu | Only the GPU node: dkms build failed",
                     "Mlflow | Run once  (1 host: 1 ok)",
                     "Gpu | Nowhere  (0 hosts; 2 skipped)"], out


def test_argument_spec_validations_are_not_shown():
    spec = "Validating arguments against arg spec 'main' - Common node setup"
    out = _plain_run(
        (spec, "u1", {"starts": ["node1", "node2"], "action": "ansible.builtin.validate_argument_spec",
                      "results": [("runner_on_ok", "node1"), ("runner_on_ok", "node2")], "took": 40}),
        ("Base | Install", "u2", {"starts": ["node1"], "results": [("runner_on_ok", "node1")]}))
    assert "arg spec" not in out and "Validating" not in out, out
    assert out.splitlines()[0].endswith("] Base | Install  (1 host: 1 ok)"), out


def test_only_long_tasks_say_how_long_they_took():
    from mlops_provision.progress import DONE_LINE_S

    out = _plain_run(
        ("Base | Quick", "u1", {"starts": ["node1"], "results": [("runner_on_ok", "node1")], "took": 1}),
        ("Gpu | Build the driver", "u2", {"starts": ["node1", "node2"], "took": DONE_LINE_S + 30,
                                          "results": [("runner_on_ok", "node1", {"changed": True}),
                                                      ("runner_on_ok", "node2", {"changed": True})]}))
    done = [line for line in out.splitlines() if "done in" in line]
    assert len(done) == 1, out
    assert re.search(r"\] done in 40\.\ds: Gpu \| Build the driver  \(2 hosts: 2 changed\)$", done[0]), out


def test_heartbeat_interval_from_the_environment(monkeypatch):
    from mlops_provision.progress import HEARTBEAT_ENV, HEARTBEAT_S, heartbeat_s

    assert HEARTBEAT_S == 30
    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    assert heartbeat_s() == HEARTBEAT_S
    monkeypatch.setenv(HEARTBEAT_ENV, "0.5")
    assert heartbeat_s() == 0.5
    for bad in ("", "soon", "0", "-3"):
        monkeypatch.setenv(HEARTBEAT_ENV, bad)
        assert heartbeat_s() == HEARTBEAT_S


def test_on_a_terminal_the_elapsed_time_ticks_without_events(monkeypatch):
    """rich's Live redraws on its own timer: with no event for over a second, the time shown moves
    on (it used to freeze until the next event, which looked like a hang)."""
    import io
    import time

    from mlops_provision import progress

    monkeypatch.setattr(progress, "on_terminal", lambda console: True)
    out = io.StringIO()
    shown = progress.Progress(file=out)
    shown.console = Console(file=out, force_terminal=True, width=120)
    tracker = RunTracker(["node1", "node2"], scrubber=None, on_change=shown.update)
    tracker.started -= 5.3
    with shown:
        assert shown.live is not None
        tracker.handle(_event("playbook_on_play_start", play="Mlflow"))
        _task(tracker, "Mlflow | Install MLflow", "u1", starts=["node1"])
        _task(tracker, "Validating arguments against arg spec 'main' - x", "u2", starts=["node1"],
              action="ansible.builtin.validate_argument_spec")
        time.sleep(1.6)  # no event meanwhile
    text = out.getvalue()
    shown_s = [int(s) for s in re.findall(r"Install MLflow  \[(\d+)s\]", text)]
    assert shown_s and shown_s[0] >= 5 and shown_s[-1] > shown_s[0], text
    # the argument-spec validation is not shown as the current task; the task's own hosts are
    assert "arg spec" not in text and "Mlflow | Install MLflow" in text, text
    assert "this task: 1 host: 1 running" in text, text
