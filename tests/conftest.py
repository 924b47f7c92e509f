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


EXAMPLE = ROOT / "inventories" / "example"


def example_copy(site: Path, password: bytes = b"a-password-of-this-test-site", fresh: bool = True) -> Path:
    """A copy of ``inventories/example`` at ``site`` whose vault files are encrypted with
    ``password`` (written beside the site, returned), holding new random secrets: validate
    refuses the example's own, which are published (``fresh=False`` keeps them)."""
    import secrets
    import shutil

    import yaml
    from ansible.parsing.vault import VaultLib, VaultSecret

    shutil.copytree(EXAMPLE, site, ignore=shutil.ignore_patterns("*vault-password"))
    example_password = next(EXAMPLE.glob("*vault-password")).read_bytes().strip()
    old = VaultLib([("default", VaultSecret(example_password))])
    new = VaultLib([("default", VaultSecret(password))])
    for file in sorted(site.rglob("*.yml")):
        if not file.read_bytes().startswith(b"$ANSIBLE_VAULT"):
            continue
        text = old.decrypt(file.read_bytes()).decode()
        if fresh:  # a key: 32 random bytes in base64; anything else: a random password
            values = yaml.safe_load(text) or {}
            text = "---\n" + "".join(
                f"{key}: {_key32() if key.endswith('_key') else secrets.token_urlsafe(18)}\n"
                for key in values)
        file.write_bytes(new.encrypt(text))
    password_file = site.parent / f"{site.name}-vault-password"
    password_file.write_bytes(password + b"\n")
    return password_file


def _key32() -> str:
    import base64
    import secrets

    return base64.b64encode(secrets.token_bytes(32)).decode()
