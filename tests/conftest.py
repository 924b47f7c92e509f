"""Shared helpers: run the real CLI as a subprocess, the way an admin does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "mlops_provision.cli"]


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def json(self):
        return json.loads(self.stdout)


def mp(*args: str | Path, timeout: int = 900, env: dict | None = None) -> Result:
    """Run `mlops-provision ARGS` and report its wall time (shown with pytest -s / -rA)."""
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})})
    seconds = time.monotonic() - t0
    sys.stderr.write(f"\n[wall] mlops-provision {' '.join(map(str, args))}: {seconds:.1f}s rc={proc.returncode}\n")
    return Result(proc.returncode, proc.stdout, proc.stderr, seconds)


@pytest.fixture
def cli():
    return mp
