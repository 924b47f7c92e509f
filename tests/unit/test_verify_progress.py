"""verify proves liveness while checks run (a compliance scan takes minutes per node): a line
every heartbeat naming the results so far and each check still running, with how long. A real
verify run on this machine (a local connection) of a check that sleeps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from mlops_provision import paths, verify
from mlops_provision.site import load

SLOW_CHECK = '''
import time


def test_quick(host):
    """Quick check"""


def test_slow(host):
    """Slow scan"""
    time.sleep(4)
'''


def test_a_long_check_gets_heartbeats_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_demo.py").write_text(SLOW_CHECK)
    (tmp_path / "hosts.yml").write_text(f"all:\n  hosts:\n    here:\n      ansible_connection: local\n"
                                        f"      ansible_python_interpreter: {sys.executable}\n")
    monkeypatch.setattr(paths, "checks_dir", lambda: checks)
    monkeypatch.setenv("MLOPS_PROVISION_HEARTBEAT_S", "1")
    lines: list[str] = []
    report = verify.run_checks(load(tmp_path / "hosts.yml", strict=False), on_progress=lines.append)
    assert sorted((r.check, r.outcome) for r in report.results) == [("Quick check", "passed"),
                                                                     ("Slow scan", "passed")], report.output_tail
    beats = [m for line in lines if (m := re.search(r"running: here: Slow scan \((\d+)s\)", line))]
    assert len(beats) >= 2, lines
    assert [int(m.group(1)) for m in beats] == sorted(int(m.group(1)) for m in beats)  # it ticks
    assert all(re.match(r"\[ *[\d.]+s\] verify: \d+ check result\(s\) so far", line) for line in lines), lines
