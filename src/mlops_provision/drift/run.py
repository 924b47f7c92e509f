"""Run a drift check: check mode with diffs and the verify checks at once; records and history.

The check run (ansible-runner, in this thread: it owns SIGTERM handling) and the checks (pytest
processes, in a worker thread) run concurrently; the hosts are resolved once, before either
starts (and host matching is thread safe: :meth:`mlops_provision.site.resolve.AnsibleSite.matching`).
The drift run's record is the check run's own directory, ``SITE/.mlops-provision/runs/<stamp>-drift/``:
``summary.json`` is the drift report, ``check.json`` the check run's summary (the ``summary.json``
the runner sealed the record with, renamed), ``verify.json`` the checks' results, ``artifacts/``
the check run's events (diffs included, secrets scrubbed).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from mlops_provision import paths
from mlops_provision.drift.model import DriftReport, exit_code, merge, pending_changes
from mlops_provision.records import private_dir
from mlops_provision.runner import RunSummary, run_playbook
from mlops_provision.secrets import Scrubber
from mlops_provision.site import Site
from mlops_provision.verify import VerifyReport, run_checks


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def run_drift(site: Site, *, limit: str | None = None, vault_password_file: Path | None = None,
              on_change: Callable | None = None) -> DriftReport:
    """Check mode with diffs and every verify check on the selected hosts, merged per host."""
    hosts = site.matching(limit)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def checks() -> VerifyReport:
        t = time.monotonic()
        try:
            return run_checks(site, limit=limit, hosts=hosts, vault_password_file=vault_password_file)
        finally:
            timings["verify"] = round(time.monotonic() - t, 1)

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(checks)
        # run_playbook resolves ``limit`` itself (through the same, locked, host matching).
        summary: RunSummary = run_playbook(site, verb="drift", limit=limit, check=True,
                                           vault_password_file=vault_password_file, on_change=on_change)
        verify = future.result()
    run_dir = Path(summary.run_dir)
    changes = pending_changes(run_dir / "artifacts" / "ansible")
    report = DriftReport(inventory=str(site.path), started=started, run_dir=str(run_dir),
                         check_s=summary.duration_s, verify_s=timings.get("verify", 0.0))
    report.hosts = merge(summary, changes, verify, hosts)
    report.exit_code = exit_code(report.hosts, verify)
    report.duration_s = round(time.monotonic() - t0, 1)
    scrub = Scrubber(site.secrets())
    keep_check_summary(run_dir, summary, scrub)
    _write_private(run_dir / "verify.json", json.dumps(scrub.data(verify.to_dict()), indent=2))
    _write_private(run_dir / "summary.json", json.dumps(scrub.data(report.to_dict()), indent=2))
    return report


def keep_check_summary(run_dir: Path, summary: RunSummary, scrub: Scrubber) -> None:
    """The check run's summary as ``check.json``: the runner sealed the record with it as
    ``summary.json`` (the name the drift report takes next), so that file is renamed; written
    from ``summary`` only where the runner left none."""
    sealed = run_dir / "summary.json"
    if sealed.is_file():
        os.replace(sealed, run_dir / "check.json")
        os.chmod(run_dir / "check.json", 0o600)
    else:
        _write_private(run_dir / "check.json", json.dumps(scrub.data(summary.to_dict()), indent=2))


def save_verify_record(site: Site, report: VerifyReport) -> Path:
    """`verify`'s record: ``runs/<stamp>-verify/summary.json`` (private, secrets scrubbed)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    runs = paths.site_state_dir(site.path) / "runs"
    private_dir(runs)
    run_dir = runs / f"{stamp}-verify"
    private_dir(run_dir)
    data = {"verb": "verify", **report.to_dict()}
    scrub = Scrubber(site.secrets())
    _write_private(run_dir / "summary.json", json.dumps(scrub.data(data), indent=2))
    for name, content in report.artifacts.items():  # e.g. OpenSCAP's HTML report per node
        _write_private(run_dir / name, scrub.text(content.decode("utf-8", "replace")))
    return run_dir


def history(inventory: Path, last: int = 10) -> list[dict]:
    """The last ``last`` drift runs of a site, newest first: when, exit code, items per host."""
    runs = paths.site_state_dir(inventory) / "runs"
    out = []
    for run_dir in sorted(runs.glob("*-drift"), reverse=True) if runs.is_dir() else []:
        try:
            data = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            out.append({"run_dir": str(run_dir), "started": run_dir.name.split("-")[0],
                        "exit_code": None, "total": None, "hosts": {}, "note": "no summary (killed?)"})
        else:
            # The check run's own summary (its verb is drift too, it has no total): the drift run
            # died between the check run's end and its report.
            if data.get("verb") != "drift" or "total" not in data:
                data = {"started": data.get("started"), "exit_code": None, "total": None, "counts": {}}
            out.append({"run_dir": str(run_dir), "started": data.get("started"),
                        "exit_code": data.get("exit_code"), "total": data.get("total"),
                        "duration_s": data.get("duration_s"),
                        "hosts": {h: sum(c.values()) for h, c in (data.get("counts") or {}).items()}})
        if len(out) >= last:
            break
    return out
