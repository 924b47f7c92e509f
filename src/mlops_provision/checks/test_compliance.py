"""Compliance scoring with Lynis (run by `mlops-provision verify --compliance` only)."""

from __future__ import annotations

import os
import re

import pytest

pytestmark = pytest.mark.compliance


def test_lynis_hardening_index(host, node, record_property):
    """Lynis hardening index meets the target"""
    if not host.exists("lynis"):
        pytest.fail("lynis is not installed (os_hardening_install_lynis: true installs it)")
    target = int(os.environ.get("MLOPS_LYNIS_MIN_INDEX", "85"))
    run = host.run("lynis audit system --quick --no-colors --quiet --report-file /var/log/lynis-report.dat")
    report = host.file("/var/log/lynis-report.dat").content_string
    match = re.search(r"^hardening_index=(\d+)", report, re.M)
    assert match, f"no hardening index in the Lynis report (lynis rc {run.rc})"
    index = int(match.group(1))
    record_property("lynis_hardening_index", index)
    warnings = len(re.findall(r"^warning\[\]=", report, re.M))
    record_property("lynis_warnings", warnings)
    assert index >= target, f"Lynis hardening index {index} < target {target} ({warnings} warnings)"
