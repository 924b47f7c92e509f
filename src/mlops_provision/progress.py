"""Live progress of a run on stderr: a rich panel on a terminal, plain lines otherwise.

On a terminal: the hosts' table under the play, the current task with the hosts it runs on, and
the elapsed time, which ticks on its own (rich's Live redraws on a timer, not only on events).

Off a terminal (a pipe, a CI log), one line per task, once it is over or has run for
:data:`START_LINE_S`, counting only the hosts the task runs on (the hosts that skip it apart)::

    [  12.3s] Base | Install the base packages  (3 hosts: 2 ok, 1 changed)
    [  14.0s] Mlflow | Install MLflow into its virtualenv  (1 host: 1 running; 2 skipped)
    [  44.0s] still running: Mlflow | Install MLflow into its virtualenv on node1 (30s)
    [  54.1s] done in 40.1s: Mlflow | Install MLflow into its virtualenv  (1 host: 1 changed; 2 skipped)

While a task runs, a line at least every :func:`heartbeat_s` seconds names the hosts still running
it; a task that took :data:`DONE_LINE_S` or more says so when it ends on its last host. The
argument-spec validations Ansible runs at the start of a role are not shown.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import IO

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mlops_provision.runner import HostResult, RunTracker, TaskProgress

STATUS_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold magenta",
                "running": "cyan", "pending": "dim", "not run": "dim"}


#: Above this many hosts the live table shows the hosts in trouble and one line for the rest
#: (50 nodes: one screen). Plain progress lines always count states (state_counts).
MAX_HOST_ROWS = 15
#: The states a host is named in even when the others are only counted.
TROUBLE = ("failed", "unreachable")

#: Off a terminal: while a task runs, a line at least this often (seconds) names the hosts still
#: running it (a DKMS build takes minutes). :data:`HEARTBEAT_ENV` overrides it.
HEARTBEAT_S = 30.0
HEARTBEAT_ENV = "MLOPS_PROVISION_HEARTBEAT_S"
#: Off a terminal: a task's line comes when the task is over (its counts are final then), or once
#: it has run this long (seconds; its line then says which hosts are still running it).
START_LINE_S = 2.0
#: Off a terminal: a task that took this long (seconds) or longer gets a "done in" line when it
#: ends; the others only their one line (a 300-task run does not double its output).
DONE_LINE_S = 10.0
#: Off a terminal (a pipe, a CI log) lines are never wrapped: rich's consoles are this wide and
#: soft-wrapping (80 columns would cut error messages and tables mid-word).
LOG_WIDTH = 4096


def on_terminal(console: Console) -> bool:
    """Whether ``console`` writes to a terminal someone watches: rich says so (it honours
    FORCE_COLOR and TTY_COMPATIBLE) and the stream is a tty (a CI log with FORCE_COLOR is not)."""
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(console.is_terminal and isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


def output_console(stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A rich Console for stdout (or stderr, or ``file``): on a terminal, the terminal's width;
    otherwise :data:`LOG_WIDTH` and soft wrap, so that a pipe or a CI log gets whole lines."""
    console = Console(stderr=stderr, file=file)
    return console if on_terminal(console) else Console(stderr=stderr, file=file, width=LOG_WIDTH, soft_wrap=True)


def fit_title(table: Table) -> Table:
    """The table at least as wide as its title and caption: rich wraps them to the table's own
    width, mid-word (a long site path in a narrow table)."""
    widest = max((cell_len(str(t)) for t in (table.title, table.caption) if t), default=0)
    table.min_width = max(table.min_width or 0, widest) or None
    return table


def heartbeat_s() -> float:
    """The heartbeat interval: :data:`HEARTBEAT_ENV` if it is a positive number, else :data:`HEARTBEAT_S`."""
    try:
        value = float(os.environ.get(HEARTBEAT_ENV, ""))
    except ValueError:
        return HEARTBEAT_S
    return value if value > 0 else HEARTBEAT_S


def _secs(seconds: float, decimals: int = 1) -> str:
    """``40.1s`` (``40s`` with no decimals), ``1m30s`` from a minute on."""
    if seconds < 60:
        return f"{seconds:.{decimals}f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _names(hosts: list[str], most: int = 10) -> str:
    return ", ".join(hosts[:most]) + (f", … ({len(hosts)} hosts)" if len(hosts) > most else "")


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


def task_counts(task: TaskProgress) -> str:
    """The hosts a task runs on and how each is doing, the hosts that skip it apart:
    ``3 hosts: 1 running, 1 ok, 1 failed (node3)``, ``1 host: 1 changed; 2 skipped``,
    ``0 hosts; 3 skipped``."""
    results = dict(task.results)
    ran = task.ran_on()
    by_state: dict[str, list[str]] = {}
    for h in ran:
        by_state.setdefault(results.get(h, "running"), []).append(h)
    parts = [f"{len(names)} {state}" + (f" ({_names(names)})" if state in TROUBLE else "")
             for state, names in sorted(by_state.items(), key=lambda item: (item[0] in TROUBLE, item[0]))]
    text = f"{len(ran)} host{'' if len(ran) == 1 else 's'}" + (f": {', '.join(parts)}" if parts else "")
    skipped = task.skipped()
    return text + (f"; {len(skipped)} skipped" if skipped else "")


def _task_time(task: TaskProgress, now: float | None = None) -> float:
    """How long the task has run (until its last result, once no host runs it)."""
    now = time.monotonic() if now is None else now
    end = now if task.running() or task.last_result is None else task.last_result
    return max(0.0, end - task.started)


def host_table(tracker: RunTracker, max_rows: int = MAX_HOST_ROWS, task: TaskProgress | None = None) -> Table:
    """The hosts' table; ``task`` (the one shown as current): its hosts and time as the caption."""
    name = task.name if task else tracker.task
    table = Table(title=f"{tracker.play} | {name}  [{tracker.elapsed():.0f}s]",
                  caption=f"this task: {task_counts(task)}, {_secs(_task_time(task), 0)}" if task else None,
                  title_justify="left", caption_justify="left", expand=False)
    for col in ("host", "state", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(col, justify="left" if col in ("host", "state") else "right")
    hosts = sorted(list(tracker.hosts.values()), key=lambda h: h.host)
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
    return fit_title(table)


class Progress:
    """Use as a context manager; pass ``progress.update`` as the runner's on_change. ``file``:
    where to write (default stderr)."""

    def __init__(self, enabled: bool = True, file: IO[str] | None = None):
        self.console = output_console(stderr=file is None, file=file)
        self.enabled = enabled
        self.live: Live | None = None
        self.heartbeat_s = heartbeat_s()
        self._lock = threading.RLock()
        self._tracker: RunTracker | None = None
        self._logged = 0
        # on a terminal: the task shown as current (the last one not folded away)
        self._shown: TaskProgress | None = None
        self._view: RenderableType = Text("starting…")
        # off a terminal: the task the lines are about, whether its line is out, when a line last was
        self._task: TaskProgress | None = None
        self._task_line = False
        self._last_line = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        if on_terminal(self.console):
            # get_renderable: each of Live's refreshes (4 a second) draws anew, so the time ticks
            self.live = Live(console=self.console, refresh_per_second=4, transient=True,
                             get_renderable=self._render)
            self.live.__enter__()
        else:
            self._ticker = threading.Thread(target=self._tick_loop, name="mlops-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._ticker:
            self._stop.set()
            self._ticker.join(timeout=5)
        with self._lock:
            if not self.live and self._tracker is not None:
                self._end_task(self._tracker)
                self._task = None
        if self.live:
            self.live.__exit__(*exc)

    def update(self, tracker: RunTracker) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._tracker = tracker
            current = tracker.current
            if self.live:
                if current is not None and not current.folded:
                    self._shown = current
            elif current is not self._task:
                self._end_task(tracker)
                self._task, self._task_line = current, False
            if len(tracker.log) > self._logged:
                if not self.live:
                    self._start_line(tracker)  # the task's line before its failures
                for line in tracker.log[self._logged:]:
                    self.console.print(Text(f"  {line}", style="red"), highlight=False)
                self._logged = len(tracker.log)
                self._last_line = time.monotonic()

    # -- on a terminal
    def _render(self) -> RenderableType:
        tracker = self._tracker
        if tracker is not None:
            with contextlib.suppress(RuntimeError):  # the tracker changed under us: the last view
                self._view = host_table(tracker, task=self._shown)
        return self._view

    # -- off a terminal
    def _emit(self, line: str) -> None:
        print(line, file=self.console.file, flush=True)
        self._last_line = time.monotonic()

    def _start_line(self, tracker: RunTracker) -> None:
        """The current task's line, if it is due and not out yet."""
        task = self._task
        if task is None or task.folded or self._task_line:
            return
        self._task_line = True
        self._emit(f"[{task.started - tracker.started:6.1f}s] {task.name}  ({task_counts(task)})")

    def _end_task(self, tracker: RunTracker) -> None:
        """The task is over: its line if not out yet, and how long it took if that was long."""
        task = self._task
        if task is None or task.folded:
            return
        self._start_line(tracker)
        took = _task_time(task)
        if took >= DONE_LINE_S:
            end = task.started + took
            self._emit(f"[{end - tracker.started:6.1f}s] done in {_secs(took)}: {task.name}  ({task_counts(task)})")

    def _tick(self) -> None:
        with self._lock:
            task, tracker = self._task, self._tracker
            if task is None or task.folded or tracker is None:
                return
            running = task.running()
            if not running:
                return
            now = time.monotonic()
            if now - task.started >= min(START_LINE_S, self.heartbeat_s):
                self._start_line(tracker)
            if self._task_line and now - self._last_line >= self.heartbeat_s:
                starts = dict(task.hosts)
                since = now - min(starts.get(h, task.started) for h in running)
                self._emit(f"[{now - tracker.started:6.1f}s] still running: {task.name} on {_names(running)} "
                           f"({_secs(since, 0)})")

    def _tick_loop(self) -> None:
        while not self._stop.wait(min(0.5, self.heartbeat_s / 4)):
            try:
                self._tick()
            except RuntimeError:  # the tracker changed under us (the runner's thread): next tick
                continue
