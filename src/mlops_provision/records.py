"""Run records (``SITE/.mlops-provision/runs/<stamp>-<verb>/``): private from their first byte,
sealed when a run returns, and sealed by a later run when a run was killed hard. See
:mod:`mlops_provision.runner` for what the record holds."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_provision import paths
from mlops_provision.secrets import Scrubber

if TYPE_CHECKING:
    from mlops_provision.runner import RunSummary


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) mode 0700; an existing one is made 0700."""
    old = os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(old)
    os.chmod(path, 0o700)


def new_run_dir(inventory: Path, verb: str) -> Path:
    """A new run record directory, private (0700) before anything is written into it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    runs = paths.site_state_dir(inventory) / "runs"
    private_dir(runs)
    run_dir = runs / f"{stamp}-{verb}"
    private_dir(run_dir)
    private_dir(run_dir / "runner")
    (run_dir / OWNER).write_text(f"{os.getpid()}\n")
    return run_dir


#: The pid of the process running a record's run; gone once the run is sealed.
OWNER = "owner.pid"


def _running(run_dir: Path) -> bool:
    try:
        os.kill(int((run_dir / OWNER).read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def drop_recorded_env(artifact_dir: Path) -> None:
    """Remove the environment from ansible-runner's ``command`` record, if it is there."""
    command = artifact_dir / "command"
    try:
        data = json.loads(command.read_text())
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and "env" in data:
        data.pop("env")
        tmp = command.with_name(".command.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, command)


def events(artifact_dir: Path) -> list[dict]:
    """A run's (scrubbed) ansible-runner events in the order they happened. Raw partial files
    (unscrubbed, removed when the record is sealed) and unreadable files are left out."""
    found = []
    for path in Path(artifact_dir).glob("job_events/*.json"):
        if "-partial" in path.name:
            continue
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda e: e.get("counter", 0))


def _events_stdout(artifact_dir: Path) -> str:
    """The run's stdout, rebuilt from its (scrubbed) events in order."""
    return "\n".join(text for e in events(artifact_dir) if (text := e.get("stdout", ""))) + "\n"


def seal(run_dir: Path, summary: RunSummary | None, scrubber: Scrubber) -> None:
    """Finish a run record: no environment, no partial events, stdout from the scrubbed
    events, summary.json (if the run returned), every known secret scrubbed, mode 0700."""
    os.chmod(run_dir, 0o700)
    artifact_dir = run_dir / "artifacts" / "ansible"
    drop_recorded_env(artifact_dir)
    for partial in artifact_dir.glob("job_events/*-partial.json*"):  # raw, unscrubbed: never merged
        partial.unlink(missing_ok=True)
    if artifact_dir.is_dir():
        (artifact_dir / "stdout").write_text(_events_stdout(artifact_dir))
        (artifact_dir / "stdout").chmod(0o600)
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(scrubber.data(summary.to_dict()), indent=2))
    scrubber.tree(run_dir)
    (run_dir / OWNER).unlink(missing_ok=True)


def seal_abandoned(runs: Path, scrubber: Scrubber) -> list[Path]:
    """Seal the records of earlier runs that never returned (no summary.json: killed hard);
    they keep no summary. Returns the directories sealed."""
    sealed = []
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        if run_dir.is_dir() and (run_dir / OWNER).exists() and not _running(run_dir):
            seal(run_dir, None, scrubber)
            (run_dir / "ABANDONED").write_text("this run never returned (killed); sealed by a later run\n")
            sealed.append(run_dir)
    return sealed
