"""The live progress stays one screen at fleet size and names the hosts in trouble."""

from __future__ import annotations

from rich.console import Console

from mlops_provision.progress import host_table, state_counts
from mlops_provision.runner import RunTracker


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
