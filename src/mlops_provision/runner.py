"""Run a playbook through ansible-runner (in-process), with live progress and a run record.

The run record (``SITE/.mlops-provision/runs/<stamp>-<verb>/``) is private and clean from its
first byte, so that a run killed hard (SIGKILL, the OOM killer, a power cut) leaves nothing
behind that a finished run would not:

- the directory is created mode 0700 (and ``runs/`` too) before ansible-runner writes into it;
- ansible-playbook gets an allow-listed environment (:func:`child_env`), not the admin's whole
  one; ansible-runner's copy of it in ``artifacts/ansible/command`` is dropped as soon as it is
  written (before ansible-playbook starts), and its ``env/`` files are never written;
- every event is scrubbed in memory before ansible-runner writes it (:meth:`RunTracker.handle`),
  and ansible-runner's raw ``stdout`` file is not written (``stdout`` is rebuilt from the
  scrubbed events when the run is sealed);
- records of runs that never returned are sealed by the next run (:func:`seal_abandoned`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import ansible_runner

from mlops_provision import paths
from mlops_provision.errors import EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE
from mlops_provision.records import OWNER, new_run_dir, private_dir, seal, seal_abandoned
from mlops_provision.records import drop_recorded_env as _drop_recorded_env
from mlops_provision.secrets import Scrubber

if TYPE_CHECKING:
    from mlops_provision.site import Site as Inventory

# Exit codes of `up` (and of every command that converges hosts): mlops_provision.errors.
__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "NOTES_STAT", "NO_ROLE", "OWNER",
           "RunSummary", "RunTracker", "TaskProgress", "new_run_dir", "notes_from_stats", "reports_change",
           "run_playbook", "seal_abandoned", "task_role"]


@dataclass
class HostResult:
    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    status: str = "pending"
    message: str = ""
    task: str = ""

    def settle(self) -> None:
        if self.unreachable:
            self.status = "unreachable"
        elif self.failed:
            self.status = "failed"
        elif self.changed:
            self.status = "changed"
        elif self.ok or self.skipped:
            self.status = "ok"
        else:
            self.status = "not run"


@dataclass
class RunSummary:
    verb: str
    inventory: str
    playbook: str
    check: bool
    limit: str | None
    tags: str | None
    started: str
    duration_s: float = 0.0
    ansible_rc: int | None = None
    exit_code: int = EXIT_OK
    run_dir: str = ""
    hosts: list[HostResult] = field(default_factory=list)
    #: What the roles hand the operator per host (:data:`NOTES_STAT`), e.g.
    #: ``{"gpu1": [{"kind": "reboot", "reason": "..."}, {"kind": "mok_enrolment", ...}]}``.
    notes: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    #: The tasks (handlers included) that changed, or in check mode would change, per host and
    #: role (the job event's ``role``, :data:`NO_ROLE` for a play's own tasks), in run order, each
    #: name once: ``{"node1": {"base": ["Base | Configure chrony", ...]}}``. Hosts with no change
    #: are left out.
    changed_tasks: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: Each play (layer) in run order with its duration, from the events' timestamps (a play's
    #: start to the next play's start or the run's stats): ``[{"play": "Base | ...", "duration_s": 12.3}]``.
    plays: list[dict[str, object]] = field(default_factory=list)
    #: Ansible's warnings during the run (``warning`` events and modules' ``warnings``), each once.
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def totals(self) -> dict[str, int]:
        keys = ("ok", "changed", "failed", "unreachable", "skipped")
        return {k: sum(getattr(h, k) for h in self.hosts) for k in keys}


#: The ``set_stats`` key under which roles hand per-host notes to the run summary (e.g.
#: roles/nvidia_driver/tasks/outcome.yml: a reboot needed and why, MOK enrolment pending). Each
#: host sets ``{NOTES_STAT: {inventory_hostname: [{"kind": ..., "reason": ...}]}}`` run-wide
#: (``per_host: false``: ansible-runner hands on only the run-wide stats, as the
#: ``playbook_on_stats`` event's ``artifact_data``) and ``aggregate: true`` (Ansible merges the
#: hosts' mappings into one; a host that sets it again replaces its own list).
NOTES_STAT = "mlops_host_notes"


def notes_from_stats(artifact_data: object) -> dict[str, list[dict[str, str]]]:
    """The per-host notes in a ``playbook_on_stats`` event's ``artifact_data``: each a mapping
    with ``kind`` and ``reason`` (a bare string is a note of kind "note"); anything else left
    out."""
    raw = artifact_data.get(NOTES_STAT) if isinstance(artifact_data, dict) else None
    notes: dict[str, list[dict[str, str]]] = {}
    for host, items in (raw or {}).items() if isinstance(raw, dict) else ():
        found = []
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, str) and item:
                found.append({"kind": "note", "reason": item})
            elif isinstance(item, dict) and item.get("kind"):
                found.append({"kind": str(item["kind"]), "reason": str(item.get("reason") or "")})
        if found:
            notes[str(host)] = found
    return dict(sorted(notes.items()))


#: The role of a task that belongs to no role (a play's own tasks and handlers), as drift names it.
NO_ROLE = "site"
#: Warnings that are the platform's normal case, not something to act on: a play for a group the
#: site leaves empty (gpu_workers on a site without GPUs; the upgrade group when nothing is due).
#: They stay in the run record's events.
EXPECTED_WARNINGS = ("Could not match supplied host pattern",)
#: At most this many distinct warnings are kept (the run record's events hold them all).
MAX_WARNINGS = 20


def task_role(event_data: dict) -> str:
    """A task's role from its job event: the role's short name (``ns.coll.base`` -> ``base``),
    :data:`NO_ROLE` for a play's own tasks."""
    role = str(event_data.get("role") or "")
    return role.rsplit(".", 1)[-1] if role else NO_ROLE


def _event_time(event: dict) -> float:
    """When an event happened (its ``created`` timestamp), else now."""
    created = event.get("created")
    if isinstance(created, str):
        with contextlib.suppress(ValueError):
            stamp = datetime.fromisoformat(created)
            return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return time.time()


def _warning_text(text: object) -> str:
    """A warning's first line, without Ansible's ``[WARNING]:`` prefix."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0].removeprefix("[WARNING]:").strip()[:300] if lines else ""


def reports_change(event: dict, data: dict) -> bool:
    """Whether an ``ok`` event is a change: its result says so, or (a ``no_log`` task's result is
    censored, ``changed`` included) its line does."""
    res = data.get("res")
    return bool(isinstance(res, dict) and res.get("changed")) or \
        str(event.get("stdout") or "").lstrip().startswith("changed:")


def exit_code_for(hosts: list[HostResult], ansible_rc: int | None) -> int:
    """A failed host outranks an unreachable one; a run that failed before any host ran is 1."""
    if any(h.failed for h in hosts):
        return EXIT_FAILED
    if any(h.unreachable for h in hosts):
        return EXIT_UNREACHABLE
    if ansible_rc not in (0, None):
        return EXIT_FAILED
    return EXIT_OK


#: The action of the task Ansible adds at the start of a role that has an argument spec
#: (``Validating arguments against arg spec 'main' - ...``): the progress display folds it away.
ARG_SPEC_ACTIONS = ("ansible.builtin.validate_argument_spec", "validate_argument_spec")
#: A host's result of a task, by its ``runner_on_*`` event (``changed``: an ``ok`` that changed;
#: ``ignored``: a failure the task ignores).
TASK_RESULTS = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
                "runner_on_unreachable": "unreachable"}


@dataclass
class TaskProgress:
    """One task (or handler) as the progress display follows it: the hosts it started on (its
    ``runner_on_start`` events: only the hosts the task runs on, not all the play's) and each
    one's result. Times are ``time.monotonic()``."""

    name: str
    uuid: str = ""
    #: The implicit argument-spec validation of a role (:data:`ARG_SPEC_ACTIONS`).
    folded: bool = False
    started: float = field(default_factory=time.monotonic)
    #: host -> when it started the task
    hosts: dict[str, float] = field(default_factory=dict)
    #: host -> ok, changed, failed, ignored, skipped or unreachable
    results: dict[str, str] = field(default_factory=dict)
    #: When the last result came (None: none yet).
    last_result: float | None = None

    def start(self, host: str, now: float | None = None) -> None:
        self.hosts.setdefault(host, time.monotonic() if now is None else now)

    def result(self, host: str, result: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.start(host, now)
        self.results[host] = result
        self.last_result = now

    def running(self) -> list[str]:
        """The hosts that started the task and have no result yet, by name."""
        return sorted(h for h in list(self.hosts) if h not in self.results)

    def ran_on(self) -> list[str]:
        """The hosts the task runs (or ran) on: started and not skipped."""
        results = dict(self.results)
        return sorted(h for h in list(self.hosts) if results.get(h) != "skipped")

    def skipped(self) -> list[str]:
        return sorted(h for h, r in list(self.results.items()) if r == "skipped")


class RunTracker:
    """Folds ansible-runner events into per-host state; feeds the progress display."""

    def __init__(self, hosts: list[str], scrubber: Scrubber,
                 on_change: Callable[[RunTracker], None] | None = None,
                 echo: Callable[[str], None] | None = None):
        self.hosts = {h: HostResult(h) for h in hosts}
        self.echo = echo  # -v: each event's ansible-playbook lines, scrubbed
        self.play = ""
        self.task = ""
        self.started = time.monotonic()
        self.scrub = scrubber
        self.on_change = on_change
        self.log: list[str] = []
        self.pid: int | None = None  # ansible-playbook's, from its events
        self.notes: dict[str, list[dict[str, str]]] = {}  # from the run's stats (NOTES_STAT)
        self.changed_tasks: dict[str, dict[str, list[str]]] = {}  # host -> role -> tasks
        self._warned: dict[tuple[str, str], list[str]] = {}  # (task, warning) -> hosts
        self._item_changes: set[tuple[str, object]] = set()  # (host, task) whose items changed
        self._plays: list[dict[str, object]] = []  # {"play", "start", "end"} (epoch seconds)
        self._last_event: float | None = None
        #: The task (or handler) running now, for the progress display; None before the first.
        self.current: TaskProgress | None = None

    def _host(self, name: str) -> HostResult:
        return self.hosts.setdefault(name, HostResult(name))

    @staticmethod
    def _why(res: dict) -> str:
        msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
        items = [r for r in res.get("results") or [] if isinstance(r, dict) and r.get("failed")]
        if items:  # a loop: the per-item reasons say more than "One or more items failed"
            msg = "; ".join(str(r.get("msg") or r.get("stderr") or "") for r in items) or msg
        return " ".join(str(msg).split())[:500]

    def handle(self, event: dict) -> bool:
        """ansible-runner's event handler: scrubs the event in place (ansible-runner writes what
        this leaves), then folds it into the per-host state. Returns True: write the event."""
        if self.scrub:
            clean = self.scrub.data(event)
            event.clear()
            event.update(clean)
        self.pid = self.pid or event.get("pid")
        kind = event.get("event", "")
        if self.echo and event.get("stdout"):
            self.echo(str(event["stdout"]))
        data = event.get("event_data", {}) or {}
        host = data.get("host")
        self._timing(kind, data, event)
        self._warnings(kind, data, event)
        self._task_progress(kind, data, event)
        if kind == "playbook_on_play_start":
            self.play = data.get("play", "")
        elif kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            self.task = data.get("task", "")
            for h in self.hosts.values():
                if h.status == "pending":
                    h.status = "running"
        elif host and kind == "runner_on_ok":
            h = self._host(host)
            h.ok += 1
            # a no_log loop says it changed only in its items' lines (its result is censored):
            # the host's count, check mode's exit code 4 and the changed tasks read the same
            if reports_change(event, data) or (host, data.get("task")) in self._item_changes:
                h.changed += 1
                self._changed(host, data)
        elif host and kind == "runner_item_on_ok" and reports_change(event, data):
            self._item_changes.add((host, data.get("task")))
        elif host and kind == "runner_on_skipped":
            self._host(host).skipped += 1
        elif host and kind == "runner_on_failed":
            h = self._host(host)
            if data.get("ignore_errors"):
                h.ignored += 1
            else:
                h.failed += 1
                h.status = "failed"
                h.task = data.get("task", self.task)
                h.message = self.scrub.text(self._why(data.get("res", {})))
                self.log.append(f"FAILED {host}: {h.task}: {h.message}")
        elif kind == "playbook_on_stats":
            self.notes = notes_from_stats(data.get("artifact_data"))
        elif host and kind == "runner_on_unreachable":
            h = self._host(host)
            h.unreachable += 1
            h.status = "unreachable"
            h.task = data.get("task", self.task)
            h.message = self.scrub.text(self._why(data.get("res", {})))
            self.log.append(f"UNREACHABLE {host}: {h.message}")
        if self.on_change:
            self.on_change(self)
        return True

    def _task_progress(self, kind: str, data: dict, event: dict) -> None:
        """Follows the current task: which hosts started it, which finished and how."""
        if kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            name = str(data.get("task") or data.get("name") or "")
            self.current = TaskProgress(
                name=name, uuid=str(data.get("task_uuid") or ""),
                folded=data.get("task_action") in ARG_SPEC_ACTIONS
                or name.startswith("Validating arguments against arg spec"))
            return
        if kind in ("playbook_on_play_start", "playbook_on_stats"):
            self.current = None  # the last task of the play (or run) is over
            return
        task, host = self.current, data.get("host")
        if task is None or not host or (data.get("task_uuid") and task.uuid
                                        and data["task_uuid"] != task.uuid):
            return
        if kind == "runner_on_start":
            task.start(host)
        elif kind in TASK_RESULTS:
            result = TASK_RESULTS[kind]
            if result == "ok" and reports_change(event, data):
                result = "changed"
            elif result == "failed" and data.get("ignore_errors"):
                result = "ignored"
            task.result(host, result)

    def _changed(self, host: str, data: dict) -> None:
        task = str(data.get("task") or self.task or "")
        tasks = self.changed_tasks.setdefault(host, {}).setdefault(task_role(data), [])
        if task and task not in tasks:
            tasks.append(task)

    def _timing(self, kind: str, data: dict, event: dict) -> None:
        now = _event_time(event)
        self._last_event = now
        if kind in ("playbook_on_play_start", "playbook_on_stats") and self._plays:
            self._plays[-1].setdefault("end", now)
        if kind == "playbook_on_play_start":
            self._plays.append({"play": str(data.get("play") or data.get("name") or ""), "start": now})

    def _warnings(self, kind: str, data: dict, event: dict) -> None:
        found: list[tuple[str, str]] = []  # (where, text)
        if kind == "warning":
            found.append((str(data.get("task") or ""), _warning_text(event.get("stdout"))))
        res = data.get("res")
        if kind.startswith("runner_on_") and isinstance(res, dict) and isinstance(res.get("warnings"), list):
            where = str(data.get("task") or self.task or "")
            found += [(where, _warning_text(w.get("msg") if isinstance(w, dict) else w)) for w in res["warnings"]]
        for where, text in found:
            if not text or text.startswith(EXPECTED_WARNINGS):
                continue
            hosts = self._warned.get((where, text))
            if hosts is None and len(self._warned) < MAX_WARNINGS:
                hosts = self._warned[(where, text)] = []
            if hosts is not None and data.get("host") and data["host"] not in hosts:
                hosts.append(str(data["host"]))

    @property
    def warnings(self) -> list[str]:
        """Each warning once: ``TASK: TEXT (HOSTS)`` (task and hosts where the warning has them)."""
        return [f"{where + ': ' if where else ''}{text}{' (' + ', '.join(hosts) + ')' if hosts else ''}"
                for (where, text), hosts in self._warned.items()]

    def play_durations(self) -> list[dict[str, object]]:
        """Each play in run order with its duration in seconds; the last one open ends at the
        last event seen."""
        out = []
        for play in self._plays:
            end = play.get("end", self._last_event)
            out.append({"play": play["play"], "duration_s": round(max(0.0, float(end) - float(play["start"])), 1)})
        return out

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def hosts_matching(inventory: Inventory, limit: str | None) -> list[str]:
    """The hosts an Ansible ``--limit`` selects, as Ansible's ``InventoryManager`` selects them
    (``a:&b`` is an intersection, ``a:!b`` a difference): see
    :func:`mlops_provision.site.hosts_matching`."""
    return inventory.matching(limit)


#: What ansible-playbook inherits from the admin's environment (besides ansible_env()): what a
#: login shell needs, the locale, the SSH agent, and ANSIBLE_*/MLOPS_* settings whose names do not
#: look secret. Nothing else reaches it, or ansible-runner's record of it.
CHILD_ENV_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
                   "SSH_AUTH_SOCK", "VIRTUAL_ENV", "PYTHONPATH")
CHILD_ENV_PREFIXES = ("LC_", "ANSIBLE_", "MLOPS_")
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|_KEY$", re.IGNORECASE)


def child_env(environ: dict[str, str], ours: dict[str, str]) -> dict[str, str]:
    """ansible-playbook's environment: the allow-listed part of ``environ`` plus ``ours``."""
    keep = {k: v for k, v in environ.items()
            if k in CHILD_ENV_NAMES or k in CHILD_ENV_PATHS
            or (k.startswith(CHILD_ENV_PREFIXES) and not SECRET_NAME.search(k))}
    return {**keep, **ours}


#: Paths (not secrets) an admin sets for Ansible whose names look secret: passed through.
CHILD_ENV_PATHS = ("ANSIBLE_BECOME_PASSWORD_FILE", "ANSIBLE_CONNECTION_PASSWORD_FILE",
                   "ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_PRIVATE_KEY_FILE")


def ansible_env(vault_password_file: Path | None = None) -> dict[str, str]:
    """ansible-playbook's settings: the admin's ansible.cfg as environment variables (less
    what the toolkit keeps: :mod:`mlops_provision.ansible_config`), then ours."""
    from mlops_provision.ansible_config import admin_config

    root = paths.project_root()
    env = {**admin_config(root / "ansible.cfg").env}
    env.update({
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(paths.roles_dir()),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DISPLAY_ARGS_TO_STDOUT": "False",
        "ANSIBLE_NO_TARGET_SYSLOG": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # ansible-playbook, ansible-inventory and pytest come from the environment this tool is
        # installed in, also when it is called as .venv/bin/mlops-provision without activation.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
    })
    # Host keys are checked unless the admin says otherwise (ansible.cfg, the environment, or
    # ansible_host_key_checking per host): ansible-runner would switch it off.
    if "ANSIBLE_HOST_KEY_CHECKING" not in os.environ:
        env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "True")
    if vault_password_file:
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(Path(vault_password_file).resolve())
    if "ANSIBLE_STRATEGY" not in os.environ and "ANSIBLE_STRATEGY" not in env:
        env.update(mitogen_strategy())
    return env


def mitogen_strategy() -> dict[str, str]:
    """Run playbooks under Mitogen's ``mitogen_linear`` strategy: the same task order and results
    as Ansible's ``linear``, in half the time of a no-op run (docs/performance.md), because each
    host keeps one Python interpreter for the whole run instead of a module upload and a fresh
    interpreter per task. An admin who sets ``ANSIBLE_STRATEGY`` (``linear``: stock Ansible)
    gets that instead; playbooks run with plain ``ansible-playbook`` (Molecule) are stock too."""
    import ansible_mitogen

    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


def run_playbook(
    inventory: Inventory,
    *,
    verb: str = "up",
    playbook: Path | None = None,
    limit: str | None = None,
    tags: str | None = None,
    check: bool = False,
    vault_password_file: Path | None = None,
    on_change: Callable[[RunTracker], None] | None = None,
    extra_secrets: tuple[str, ...] = (),
    extravars: dict[str, object] | None = None,
    args: list[str] | None = None,
    verbosity: int = 0,
    echo: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run ``playbook`` (default site.yml) on the inventory's hosts (``limit``: an Ansible
    ``--limit``); ``extravars`` are the run's parameters, passed as Ansible extra vars (``-e``:
    a plain ``ansible-playbook`` user passes the same ones). ``args``: more ansible-playbook
    flags as the admin typed them (``-e``, ``--skip-tags``, ``--diff``:
    :class:`mlops_provision.ansible_args.PlaybookArgs`); ``verbosity`` (``-v``...) hands each
    result's ansible-playbook lines, scrubbed, to ``echo``."""
    playbook = playbook or paths.playbook("site.yml")
    scrubber = Scrubber([*inventory.secrets(), *extra_secrets])
    targets = hosts_matching(inventory, limit)
    run_dir = new_run_dir(inventory.path, verb)
    summary = RunSummary(
        verb=verb, inventory=str(inventory.path), playbook=str(playbook), check=check,
        limit=limit, tags=tags, started=datetime.now(UTC).isoformat(timespec="seconds"),
        run_dir=str(run_dir),
    )
    tracker = RunTracker(targets, scrubber, on_change, echo if verbosity else None)
    cmdline = [arg for source in inventory.sources for arg in ("-i", str(Path(source).resolve()))]
    cmdline += ["--check", "--diff"] if check else []
    cmdline += [a for a in args or [] if not (check and a in ("--check", "--diff"))]
    env = ansible_env(vault_password_file)
    artifact_dir = run_dir / "artifacts"

    def on_status(data: dict, runner_config=None) -> None:
        # "running" comes after ansible-runner wrote artifacts/ansible/command, before the
        # playbook starts: drop the environment recorded there.
        if data.get("status") == "running":
            _drop_recorded_env(artifact_dir / "ansible")

    seal_abandoned(run_dir.parent, scrubber)
    t0 = time.monotonic()
    private_dir(artifact_dir)
    runner = ansible_runner.interface.init_runner(
        private_data_dir=str(run_dir / "runner"),
        artifact_dir=str(artifact_dir),
        ident="ansible",
        project_dir=str(paths.project_root()),
        playbook=str(playbook),
        limit=limit,
        tags=tags,
        verbosity=verbosity or None,
        cmdline=shlex.join(cmdline),
        extravars=extravars or None,
        envvars=env,
        quiet=True,
        event_handler=tracker.handle,
        status_handler=on_status,
        suppress_env_files=True,
        json_mode=False,
    )
    # Settings are read from env/settings, which suppress_env_files leaves unwritten: set them here.
    # No raw stdout file (verbose lines bypass the event handler); _seal rebuilds it from the events.
    runner.config.suppress_output_file = True
    runner.config.suppress_ansible_output = True
    # ansible-runner seeds the child's environment with all of ours: keep the allow-listed part.
    runner.config.env = child_env(runner.config.env, {k: v for k, v in runner.config.env.items()
                                                      if k not in os.environ or os.environ[k] != v})
    with _sigterm_as_exit():
        try:
            runner.run()
        except BaseException:  # Ctrl-C, SIGTERM, a crash: stop ansible-playbook, seal, go on failing
            _stop_playbook(tracker.pid)
            seal(run_dir, None, scrubber)
            raise
    result = runner
    summary.duration_s = round(time.monotonic() - t0, 1)
    summary.ansible_rc = result.rc
    stats = result.stats or {}
    for name, host in tracker.hosts.items():
        for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"),
                          ("dark", "unreachable"), ("skipped", "skipped"),
                          ("rescued", "rescued"), ("ignored", "ignored")):
            if name in stats.get(key, {}):
                setattr(host, attr, stats[key][name])
        host.settle()
    summary.hosts = sorted(tracker.hosts.values(), key=lambda h: h.host)
    summary.notes = tracker.notes
    summary.changed_tasks = {h: tracker.changed_tasks[h] for h in sorted(tracker.changed_tasks)}
    summary.plays = tracker.play_durations()
    summary.warnings = list(tracker.warnings)
    summary.exit_code = exit_code_for(summary.hosts, result.rc)
    if check and summary.exit_code == EXIT_OK and any(h.changed for h in summary.hosts):
        summary.exit_code = EXIT_DRIFT  # check mode: changes are pending
    seal(run_dir, summary, scrubber)
    return summary


def list_playbook(inventory: Inventory, run: object, *, limit: str | None = None,
                  vault_password_file: Path | None = None, playbook: Path | None = None) -> int:
    """``ansible-playbook --list-hosts`` / ``--list-tasks`` with the run's flags: Ansible's own
    listing on stdout, nothing run, no record. Returns its exit code."""
    import subprocess

    playbook = playbook or paths.playbook("site.yml")
    cmd = ["ansible-playbook", str(playbook)]
    cmd += [arg for source in inventory.sources for arg in ("-i", str(Path(source).resolve()))]
    cmd += ["--limit", limit] if limit else []
    cmd += run.cmdline()  # type: ignore[attr-defined]
    cmd += ["--list-hosts"] if run.list_hosts else []  # type: ignore[attr-defined]
    cmd += ["--list-tasks"] if run.list_tasks else []  # type: ignore[attr-defined]
    env = child_env(dict(os.environ), ansible_env(vault_password_file))
    return subprocess.run(cmd, env=env, cwd=paths.project_root(), check=False).returncode


def _stop_playbook(pid: int | None, grace: float = 5.0) -> None:
    """Stop ansible-playbook and its workers (its own process group, under ansible-runner's pty)."""
    import signal

    if not pid:
        return
    try:
        group = os.getpgid(pid)
        if group == os.getpgrp():  # never our own group
            os.kill(pid, signal.SIGTERM)
            return
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.killpg(group, 0)
            time.sleep(0.1)
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextlib.contextmanager
def _sigterm_as_exit():
    """While a run is in progress, SIGTERM exits like Ctrl-C does (the record gets sealed)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


