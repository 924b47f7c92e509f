"""`verify`: run the package's Testinfra checks against inventory hosts over Ansible's SSH details.

The checks run in a pytest subprocess (isolated from the caller's pytest/testinfra state);
the ``mlops_provision.verify_plugin`` plugin writes one JSON record per check and host, with the
roles the check proves and whether what a failed check found is state `up` manages.

A check that does not apply to a host (it skipped because the host is not in the group of the
role it proves: see :mod:`mlops_provision.verify_plugin`) is no result: it stays in
:attr:`VerifyReport.results` with that outcome (drift's merge and the exit code read only
"passed", "failed" and "error", and the roles it would prove still count as the host's, at 0, as
before), but counts nowhere, and the report's JSON lists it apart, under ``not_applicable``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlops_provision import paths
from mlops_provision.runner import ansible_env, hosts_matching
from mlops_provision.secrets import Scrubber
from mlops_provision.site import Site as Inventory
from mlops_provision.sshmux import close_masters, mux_config

#: A result's outcome when its check does not apply to its host (mlops_provision.verify_plugin).
NOT_APPLICABLE = "not_applicable"
#: The role a result without one is counted under (the checks' unit test keeps this from happening).
NO_ROLE = "unassigned"


def normalise_reason(reason: str, host: str) -> str:
    """A skip reason with the host's own name replaced by ``<host>``, so that hosts' identical
    reasons group together; no reason: "no reason given"."""
    text = " ".join((reason or "").split())
    if host and host != "-":
        text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "<host>", text)
    return text or "no reason given"


@dataclass
class CheckResult:
    host: str
    module: str  # the check's file (test_<module>.py): where it is, not what it proves
    check: str
    outcome: str  # passed | failed | skipped | error | not_applicable (the host is not in the role's group)
    message: str = ""
    detail: str = ""
    duration_s: float = 0.0
    #: the role(s) whose tasks make the state the check proves (its ``roles`` marker)
    roles: list[str] = field(default_factory=list)
    #: False when the failed check found state `up` does not manage (it would not repair it)
    managed: bool = True
    hint: str = ""  # with managed False: what to do instead


@dataclass
class VerifyReport:
    inventory: str
    results: list[CheckResult] = field(default_factory=list)
    duration_s: float = 0.0
    pytest_rc: int | None = None
    output_tail: str = ""
    #: files the checks left for the run record (e.g. OpenSCAP's HTML report per node), by name
    artifacts: dict[str, bytes] = field(default_factory=dict)
    #: the run record (``runs/<stamp>-verify/``), once saved
    run_dir: str = ""

    @property
    def applicable(self) -> list[CheckResult]:
        """The results that count: every one but the checks that do not apply to their host."""
        return [r for r in self.results if r.outcome != NOT_APPLICABLE]

    @property
    def not_applicable(self) -> list[CheckResult]:
        return [r for r in self.results if r.outcome == NOT_APPLICABLE]

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for r in self.applicable:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out

    def counts_line(self) -> str:
        c = self.counts()
        return (f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, "
                f"{c['skipped']} skipped on {len({r.host for r in self.results})} host(s)")

    @property
    def exit_code(self) -> int:
        c = self.counts()
        if c["failed"] or c["error"] or not self.results:
            return 1
        return 0

    def to_dict(self) -> dict:
        """The report as JSON data: ``results`` the results that count, ``not_applicable`` the
        checks that do not apply to their host (apart, counted nowhere), ``counts``,
        ``matrix`` (host -> role -> outcome -> count, a result under its first role) and
        ``skipped_reasons`` (``[{"reason", "count", "hosts"}]``, the host's name in a reason
        replaced by ``<host>``)."""
        d = asdict(self)
        d["results"] = [asdict(r) for r in self.applicable]
        d["not_applicable"] = [asdict(r) for r in self.not_applicable]
        d["artifacts"] = sorted(self.artifacts)
        d["counts"] = self.counts()
        d["matrix"] = self.matrix()
        d["skipped_reasons"] = self.skipped_reasons()
        d["exit_code"] = self.exit_code
        if not self.run_dir:
            d.pop("run_dir")
        return d

    def matrix(self) -> dict[str, dict[str, dict[str, int]]]:
        """Counts per host and role (a result under its first role, :data:`NO_ROLE` without one):
        ``{"node1": {"base": {"passed": 12, "failed": 1, "error": 0, "skipped": 3}}}``."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for r in self.applicable:
            role = r.roles[0] if r.roles else NO_ROLE
            cell = out.setdefault(r.host, {}).setdefault(role, {"passed": 0, "failed": 0, "error": 0, "skipped": 0})
            cell[r.outcome] = cell.get(r.outcome, 0) + 1
        return {h: dict(sorted(out[h].items())) for h in sorted(out)}

    def skipped_reasons(self, outcome: str = "skipped") -> list[dict]:
        """The results of ``outcome`` grouped by reason (the host's name in it replaced by
        ``<host>``), most frequent first: ``[{"reason": ..., "count": 112, "hosts": [...]}]``."""
        groups: dict[str, list[CheckResult]] = {}
        for r in self.results:
            if r.outcome == outcome:
                groups.setdefault(normalise_reason(r.message, r.host), []).append(r)
        return [{"reason": reason, "count": len(rs), "hosts": sorted({r.host for r in rs})}
                for reason, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))]


#: Hosts checked at once (one pytest process per batch of hosts). The checks mostly wait on SSH
#: round trips and the nodes' commands, so a few more processes than cores pay off.
DEFAULT_JOBS = max(2, 2 * (os.cpu_count() or 1))


def batches(hosts: list[str], jobs: int) -> list[list[str]]:
    """Split hosts into at most ``jobs`` batches of near-equal size, keeping their order inside."""
    jobs = max(1, min(jobs, len(hosts)))
    return [hosts[i::jobs] for i in range(jobs)] if hosts else []


def progress_line(elapsed: float, progress_files: list[Path], results_files: list[Path],
                  started: dict[tuple[str, str], float], now: float) -> str:
    """A heartbeat of a verify run: results so far, and each check still running and for how
    long (a batch's last started check that has no result yet)."""
    def lines(path: Path) -> list[dict]:
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, ValueError):
            return []

    done = 0
    running: list[str] = []
    for progress, results in zip(progress_files, results_files, strict=True):
        starts, ends = lines(progress), lines(results)
        done += len(ends)
        if len(starts) > len(ends):  # each check writes one result, at its end
            key = (starts[-1].get("host", "-"), starts[-1].get("check", "?"))
            since = started.setdefault(key, now)
            running.append(f"{key[0]}: {key[1]} ({now - since:.0f}s)")
    text = f"[{elapsed:6.1f}s] verify: {done} check result(s) so far"
    return text + (f"; running: {'; '.join(running)}" if running else "")


def run_checks(inventory: Inventory, *, limit: str | None = None,
               vault_password_file: Path | None = None, select: str | None = None,
               compliance: bool = False, lynis_min_index: int = 85, scap_profile: str | None = None,
               jobs: int | None = None, hosts: list[str] | None = None,
               on_progress: Callable[[str], None] | None = None) -> VerifyReport:
    """Run every check on every selected host: hosts in parallel, one pytest process per batch
    (``jobs``, default MLOPS_VERIFY_JOBS or :data:`DEFAULT_JOBS`), each over SSH connections that
    testinfra keeps open (ControlMaster) for all of a host's checks. The hosts are those ``limit``
    selects, or ``hosts`` where the caller resolved them already. ``on_progress`` gets a line
    every :func:`mlops_provision.progress.heartbeat_s` seconds while the checks run (results so
    far, the checks running and for how long: a compliance scan takes minutes)."""
    hosts = hosts_matching(inventory, limit) if hosts is None else list(hosts)
    report = VerifyReport(inventory=str(inventory.path))
    jobs = jobs or int(os.environ.get("MLOPS_VERIFY_JOBS") or DEFAULT_JOBS)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlops-verify-") as tmp:
        checks = paths.checks_dir()
        # testinfra opens a new SSH connection per command unless told where masters live: one
        # master per host for all its checks (a handshake per command costs most under emulation).
        control_dir = Path(tmp) / "cp"
        control_dir.mkdir()
        ssh_config = Path(tmp) / "ssh_config"
        ssh_config.write_text(mux_config(control_dir))
        artifacts = Path(tmp) / "artifacts"
        artifacts.mkdir()
        # every -i, as Ansible's ANSIBLE_INVENTORY lists them (testinfra's ansible-inventory reads it)
        sources = ",".join(str(Path(p).resolve()) for p in getattr(inventory, "sources", [inventory.path]))
        env = {**os.environ, **ansible_env(vault_password_file), "MLOPS_SSH_CONFIG": str(ssh_config),
               "MLOPS_INVENTORY": sources, "ANSIBLE_INVENTORY": sources, "PYTHONDONTWRITEBYTECODE": "1",
               "MLOPS_LYNIS_MIN_INDEX": str(lynis_min_index), "MLOPS_COMPLIANCE": "1" if compliance else "0",
               "MLOPS_ARTIFACTS_DIR": str(artifacts), "MLOPS_SCAP_PROFILE": scap_profile or ""}
        procs = []
        progress_files: list[Path] = []
        for index, batch in enumerate(batches(hosts, jobs) or [[]]):
            results_file = Path(tmp) / f"results-{index}.jsonl"
            progress_files.append(Path(tmp) / f"started-{index}.jsonl")
            cmd = [
                sys.executable, "-m", "pytest", str(checks), "-c", os.devnull, "--rootdir", str(checks),
                "-p", "no:cacheprovider", "-p", "mlops_provision.verify_plugin",
                f"--mlops-results={results_file}", f"--mlops-progress={progress_files[-1]}",
                "-q", "--no-header", "--tb=short",
                "--hosts=" + ",".join(f"ansible://{h}" for h in batch),
                f"--ssh-config={ssh_config}",
            ]
            if select:
                cmd += ["-k", select]
            workdir = Path(tmp) / f"run-{index}"
            workdir.mkdir()
            procs.append((results_file, subprocess.Popen(cmd, env=env, cwd=workdir, text=True,
                                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        outputs, rcs = [], []
        stop = threading.Event()
        beat = None
        if on_progress is not None:
            from mlops_provision.progress import heartbeat_s

            def heartbeat() -> None:
                started: dict[tuple[str, str], float] = {}
                while not stop.wait(heartbeat_s()):
                    now = time.monotonic()
                    on_progress(progress_line(now - t0, progress_files, [r for r, _ in procs], started, now))

            beat = threading.Thread(target=heartbeat, name="verify-heartbeat", daemon=True)
            beat.start()
        try:
            for _results_file, proc in procs:
                out, _ = proc.communicate()
                outputs.append(out)
                rcs.append(proc.returncode)
        finally:
            stop.set()
            if beat is not None:
                beat.join()
            close_masters(control_dir)
        # 0 all passed, 1 some failed; anything else (usage error, nothing collected) wins.
        report.pytest_rc = next((rc for rc in rcs if rc not in (0, 1)), max(rcs))
        scrub = Scrubber(inventory.secrets())
        report.output_tail = scrub.text("".join(outputs)[-4000:])
        for results_file, _proc in procs:
            if results_file.exists():
                for line in results_file.read_text().splitlines():
                    rec = scrub.data(json.loads(line))
                    report.results.append(CheckResult(**rec))
        report.artifacts = {p.name: p.read_bytes() for p in sorted(artifacts.iterdir()) if p.is_file()}
    report.results.sort(key=lambda r: (r.host, r.module, r.check))
    report.duration_s = round(time.monotonic() - t0, 1)
    return report
