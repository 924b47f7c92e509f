"""Live progress of a run on stderr: a rich panel on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mlops_provision.runner import HostResult, RunTracker

STATUS_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold magenta",
                "running": "cyan", "pending": "dim", "not run": "dim"}


#: Above this many hosts the live table shows the hosts in trouble and one line for the rest
#: (50 nodes: one screen). Plain progress lines always count states (state_counts).
MAX_HOST_ROWS = 15
#: The states a host is named in even when the others are only counted.
TROUBLE = ("failed", "unreachable")


def _state(h: HostResult) -> str:
    return h.status if h.status in TROUBLE else (
        "changed" if h.changed and h.status != "pending" else h.status)


def state_counts(tracker: RunTracker) -> str:
    """``10 hosts: 8 running, 1 failed (node3), 1 unreachable (node7)``: hosts in trouble by name."""
    by_state: dict[str, list[str]] = {}
    for h in sorted(tracker.hosts.values(), key=lambda h: h.host):
        by_state.setdefault(h.status, []).append(h.host)
    parts = []
    for state in sorted(by_state, key=lambda s: (s in TROUBLE, s)):
        names = by_state[state]
        named = f" ({', '.join(names[:10])}{', …' if len(names) > 10 else ''})" \
            if state in TROUBLE else ""
        parts.append(f"{len(names)} {state}{named}")
    return f"{len(tracker.hosts)} hosts: {', '.join(parts)}"


def host_table(tracker: RunTracker, max_rows: int = MAX_HOST_ROWS) -> Table:
    table = Table(title=f"{tracker.play} | {tracker.task}  [{tracker.elapsed():.0f}s]",
                  title_justify="left", expand=False)
    for col in ("host", "state", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(col, justify="left" if col in ("host", "state") else "right")
    hosts = sorted(tracker.hosts.values(), key=lambda h: h.host)
    rest = []
    if len(hosts) > max_rows:  # the hosts in trouble first, then one line for the others
        trouble = [h for h in hosts if h.status in TROUBLE][:max_rows - 1]
        rest = [h for h in hosts if h not in trouble]
        hosts = trouble
    for h in hosts:
        state = _state(h)
        table.add_row(h.host, Text(state, style=STATUS_STYLE.get(state, "")), str(h.ok), str(h.changed),
                      str(h.failed), str(h.unreachable), str(h.skipped))
    if rest:
        states = sorted({_state(h) for h in rest})
        table.add_row(f"{len(rest)} other hosts", Text("/".join(states)),
                      *(str(sum(getattr(h, col) for h in rest))
                        for col in ("ok", "changed", "failed", "unreachable", "skipped")))
    return table


class Progress:
    """Use as a context manager; pass ``progress.update`` as the runner's on_change."""

    def __init__(self, enabled: bool = True):
        self.console = Console(stderr=True)
        self.enabled = enabled
        self.live: Live | None = None
        self._last_task = ""
        self._logged = 0
        self._last_refresh = 0.0

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def update(self, tracker: RunTracker) -> None:
        if not self.enabled:
            return
        if self.live:
            now = time.monotonic()
            if now - self._last_refresh > 0.2:
                self.live.update(host_table(tracker))
                self._last_refresh = now
        elif tracker.task != self._last_task:
            self._last_task = tracker.task
            print(f"[{tracker.elapsed():6.1f}s] {tracker.task}  ({state_counts(tracker)})", file=sys.stderr,
                  flush=True)
        for line in tracker.log[self._logged:]:
            self.console.print(Text(f"  {line}", style="red"), highlight=False)
        self._logged = len(tracker.log)
