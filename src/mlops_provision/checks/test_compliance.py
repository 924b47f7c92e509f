"""Compliance scans, run by `mlops-provision verify --compliance` only: the Lynis hardening index
and an OpenSCAP profile (ANSSI BP-028 intermediary by default) read against the documented waivers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mlops_provision.compliance.scap import DEFAULT_PROFILE, PROFILE_PREFIX, parse_results

# The scans measure the hardening as a whole; its scanners and their content are os_hardening's.
pytestmark = [pytest.mark.compliance, pytest.mark.roles("os_hardening")]

#: Where each scan leaves its results and report on the node (kept for the next look).
SCAN_DIR = "/var/lib/mlops-provision/compliance"


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


def test_openscap_profile(host, node, record_property):
    """OpenSCAP profile passes, every failure a documented waiver"""
    if not host.exists("oscap"):
        pytest.fail("oscap is not installed (os_hardening_install_openscap: true installs it)")
    profile = os.environ.get("MLOPS_SCAP_PROFILE") or DEFAULT_PROFILE
    info = host.system_info
    datastream = f"/usr/share/xml/scap/ssg/content/ssg-{info.distribution}{info.release.split('.')[0]}-ds.xml"
    assert host.file(datastream).exists, \
        f"no SCAP content for this system at {datastream} (os_hardening_scap_content_debs)"
    results, report = f"{SCAN_DIR}/{profile}-results.xml", f"{SCAN_DIR}/{profile}-report.html"
    with host.sudo():
        host.run_test(f"install -d -m 0700 {SCAN_DIR}")
        # exit status: 0 every rule passed, 2 some failed, 1 the scan itself failed
        run = host.run(f"oscap xccdf eval --profile {PROFILE_PREFIX}{profile} --results {results} "
                       f"--report {report} {datastream}")
        assert run.rc in (0, 2), f"oscap failed (rc {run.rc}): {(run.stderr or run.stdout).strip()[-500:]}"
        scan = parse_results(host.file(results).content, release=info.release.split(".")[0])
        html = host.file(report).content
    keep = os.environ.get("MLOPS_ARTIFACTS_DIR")
    if keep:  # verify copies these into the run record
        Path(keep, f"{node.name}-openscap-{profile}.html").write_bytes(html)
    for key, value in scan.summary().items():
        record_property(f"openscap_{key}", value)
    assert scan.results, f"profile {profile} selected no rule"
    assert not scan.failed, (f"{len(scan.failed)} rule(s) failed without a waiver (pass rate {scan.rate:.1f}%): "
                             f"{', '.join(scan.failed)}; report: {report}")
