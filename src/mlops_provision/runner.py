"""Run a playbook through ansible-runner (in-process), with live progress and a run record."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import ansible_runner

from mlops_provision import paths
from mlops_provision.inventory import Inventory
from mlops_provision.secrets import Scrubber

# Exit codes of `up` (and of every command that converges hosts). Documented in docs/cli.md.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3


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

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def totals(self) -> dict[str, int]:
        keys = ("ok", "changed", "failed", "unreachable", "skipped")
        return {k: sum(getattr(h, k) for h in self.hosts) for k in keys}


def exit_code_for(hosts: list[HostResult], ansible_rc: int | None) -> int:
    """A failed host outranks an unreachable one; a run that failed before any host ran is 1."""
    if any(h.failed for h in hosts):
        return EXIT_FAILED
    if any(h.unreachable for h in hosts):
        return EXIT_UNREACHABLE
    if ansible_rc not in (0, None):
        return EXIT_FAILED
    return EXIT_OK


class RunTracker:
    """Folds ansible-runner events into per-host state; feeds the progress display."""

    def __init__(self, hosts: list[str], scrubber: Scrubber,
                 on_change: Callable[[RunTracker], None] | None = None):
        self.hosts = {h: HostResult(h) for h in hosts}
        self.play = ""
        self.task = ""
        self.started = time.monotonic()
        self.scrub = scrubber
        self.on_change = on_change
        self.log: list[str] = []

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
        kind = event.get("event", "")
        data = event.get("event_data", {}) or {}
        host = data.get("host")
        if kind == "playbook_on_play_start":
            self.play = data.get("play", "")
        elif kind == "playbook_on_task_start":
            self.task = data.get("task", "")
            for h in self.hosts.values():
                if h.status == "pending":
                    h.status = "running"
        elif host and kind == "runner_on_ok":
            h = self._host(host)
            h.ok += 1
            if data.get("res", {}).get("changed"):
                h.changed += 1
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

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def hosts_matching(inventory: Inventory, limit: str | None) -> list[str]:
    """The hosts an Ansible ``--limit`` selects: names, groups or globs; ``!x`` excludes."""
    if not limit:
        return list(inventory.hosts)
    selected: set[str] = set()
    excluded: set[str] = set()
    for term in filter(None, re.split(r"[,:]", limit)):
        into = excluded if term.startswith("!") else selected
        term = term.lstrip("!&")
        if term in inventory.groups:
            into.update(inventory.groups[term])
        else:
            into.update(fnmatch.filter(inventory.hosts, term))
    if not selected and excluded:
        selected = set(inventory.hosts)
    return sorted(selected - excluded)


def new_run_dir(inventory: Path, verb: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    run_dir = paths.site_state_dir(inventory) / "runs" / f"{stamp}-{verb}"
    (run_dir / "runner").mkdir(parents=True)
    return run_dir


def ansible_env(vault_password_file: Path | None = None) -> dict[str, str]:
    root = paths.project_root()
    env = {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(paths.roles_dir()),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DISPLAY_ARGS_TO_STDOUT": "False",
        "ANSIBLE_NO_TARGET_SYSLOG": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # ansible-playbook, ansible-inventory and pytest come from the environment this tool is
        # installed in, also when it is called as .venv/bin/mlops-provision without activation.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
    }
    if vault_password_file:
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(Path(vault_password_file).resolve())
    return env


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
) -> RunSummary:
    playbook = playbook or paths.playbook("site.yml")
    scrubber = Scrubber([*inventory.secrets(), *extra_secrets])
    targets = hosts_matching(inventory, limit)
    run_dir = new_run_dir(inventory.path, verb)
    summary = RunSummary(
        verb=verb, inventory=str(inventory.path), playbook=str(playbook), check=check,
        limit=limit, tags=tags, started=datetime.now(UTC).isoformat(timespec="seconds"),
        run_dir=str(run_dir),
    )
    tracker = RunTracker(targets, scrubber, on_change)
    cmdline = ["--check", "--diff"] if check else []
    env = ansible_env(vault_password_file)
    t0 = time.monotonic()
    result = ansible_runner.run(
        private_data_dir=str(run_dir / "runner"),
        artifact_dir=str(run_dir / "artifacts"),
        ident="ansible",
        project_dir=str(paths.project_root()),
        playbook=str(playbook),
        inventory=str(inventory.path.resolve()),
        limit=limit,
        tags=tags,
        cmdline=" ".join(cmdline) if cmdline else None,
        envvars=env,
        quiet=True,
        event_handler=tracker.handle,
        settings={"suppress_ansible_output": True},
        json_mode=False,
    )
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
    summary.exit_code = exit_code_for(summary.hosts, result.rc)
    _seal(run_dir, summary, scrubber)
    return summary


def _seal(run_dir: Path, summary: RunSummary, scrubber: Scrubber) -> None:
    """Write summary.json and scrub every secret out of the run record."""
    command = run_dir / "artifacts" / "ansible" / "command"
    if command.exists():  # ansible-runner records the whole process environment there
        data = json.loads(command.read_text())
        data.pop("env", None)
        command.write_text(json.dumps(data))
    (run_dir / "summary.json").write_text(json.dumps(scrubber.data(summary.to_dict()), indent=2))
    scrubber.tree(run_dir)
    os.chmod(run_dir, 0o700)
