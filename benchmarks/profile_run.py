"""Where a run's time went, task by task, from its record (no re-run needed).

    .venv/bin/python benchmarks/profile_run.py SITE/.mlops-provision/runs/<stamp>-up
    .venv/bin/python benchmarks/profile_run.py RUN_DIR --top 40

A task's time is from its start to the next task's start (the last one's to the end of the
playbook): every host of the play ran it in that time, so the figure is what the task cost the
run, changes, reads and skips alike. Prints the number of task starts, the slowest tasks, and
the totals per role and per play. Reads the run's ``artifacts/ansible/job_events``, which every
`up`, `up --check` and `drift` run keeps (scrubbed of vault values).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from mlops_provision.records import events as run_events


def _time(event: dict) -> float:
    return datetime.fromisoformat(event["created"]).timestamp()


def task_times(run_dir: Path) -> tuple[list[tuple[str, str, str, float, int]], float]:
    """(play, role, task, seconds, hosts that ran it) per task start, and the playbook's span."""
    events = run_events(run_dir / "artifacts" / "ansible")
    if not events:
        raise SystemExit(f"{run_dir}: no job events (artifacts/ansible/job_events): not a run record")
    starts = [e for e in events if e["event"] == "playbook_on_task_start"]
    end = _time(events[-1])
    hosts: dict[str, set[str]] = defaultdict(set)
    for e in events:
        data = e.get("event_data") or {}
        if e["event"].startswith("runner_on_") and data.get("task_uuid"):
            hosts[data["task_uuid"]].add(data.get("host", ""))
    rows = []
    for i, e in enumerate(starts):
        data = e["event_data"]
        stop = _time(starts[i + 1]) if i + 1 < len(starts) else end
        rows.append((data.get("play", ""), data.get("role", "") or "(play)", data.get("task", ""),
                     stop - _time(e), len(hosts.get(data.get("task_uuid", ""), ()))))
    return rows, end - _time(events[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--top", type=int, default=25, help="how many of the slowest tasks to list")
    args = parser.parse_args(argv)
    rows, span = task_times(args.run_dir)
    print(f"{args.run_dir.name}: {len(rows)} task starts, {span:.1f} s from the first event to the last")
    print(f"\nslowest {args.top} tasks (seconds, hosts that ran it, role, task):")
    for _play, role, task, seconds, hosts in sorted(rows, key=lambda r: -r[3])[:args.top]:
        print(f"{seconds:7.2f}  {hosts:3d}  {role:26.26}  {task[:90]}")
    for label, index in (("role", 1), ("play", 0)):
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for row in rows:
            totals[row[index]][0] += row[3]
            totals[row[index]][1] += 1
        print(f"\nper {label} (seconds, task starts):")
        for name, (seconds, count) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
            print(f"{seconds:7.1f}  {count:4d}  {name[:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
