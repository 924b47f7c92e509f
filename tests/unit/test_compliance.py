"""OpenSCAP results read against the waivers; the waiver data and its documentation in step."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops_provision.compliance import scap
from mlops_provision.compliance.scap import RULE_PREFIX, parse_results, waivers, waivers_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "hardening-waivers.md"


def results_xml(outcomes: dict[str, str], profile: str = "anssi_bp28_intermediary") -> str:
    """The shape `oscap xccdf eval --results` writes: a Benchmark holding one TestResult."""
    rules = "".join(f'<rule-result idref="{RULE_PREFIX}{rule}"><result>{outcome}</result></rule-result>'
                    for rule, outcome in outcomes.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Benchmark xmlns="http://checklists.nist.gov/xccdf/1.2" id="xccdf_org.ssgproject.content_benchmark_DEBIAN-12">'
        '<TestResult id="xccdf_org.open-scap_testresult_x">'
        f'<profile idref="xccdf_org.ssgproject.content_profile_{profile}"/>{rules}</TestResult></Benchmark>')


def test_a_waived_failure_is_waived_not_passed_and_an_undocumented_one_fails():
    scan = parse_results(results_xml({
        "package_audit_installed": "pass", "sysctl_kernel_sysrq": "pass", "sysctl_net_ipv4_ip_forward": "fail",
        "accounts_tmout": "fail", "grub2_password": "notapplicable", "some_rule": "notselected",
        "broken_rule": "error",
    }), waived={"sysctl_net_ipv4_ip_forward": {}, "sysctl_kernel_sysrq": {}})
    assert scan.profile == "anssi_bp28_intermediary"
    assert "some_rule" not in scan.results  # not part of the profile
    assert scan.waived == ["sysctl_net_ipv4_ip_forward"]
    assert scan.failed == ["accounts_tmout", "broken_rule"]  # a rule the scanner could not judge fails too
    assert scan.unused_waivers == ["sysctl_kernel_sysrq"]
    assert scan.summary() == {"profile": "anssi_bp28_intermediary", "pass": 2, "fail": 2, "waived": 1,
                              "notapplicable": 1, "other": 0, "rate": 50.0, "raw_rate": 40.0}


def test_results_without_a_test_result_are_refused():
    with pytest.raises(ValueError, match="no TestResult"):
        parse_results('<Benchmark xmlns="http://checklists.nist.gov/xccdf/1.2"/>')


def test_every_waiver_has_a_kind_a_setting_and_a_reason():
    data = waivers()
    assert data, "no waivers read"
    for rule, entry in data.items():
        assert not rule.startswith(RULE_PREFIX), rule
        assert entry["kind"] in ("deviation", "layout", "scanner"), rule
        assert entry["setting"] and len(entry["reason"]) > 20, rule


def test_a_waiver_holds_on_the_releases_it_names(monkeypatch: pytest.MonkeyPatch):
    """A waiver with `releases` holds there only: the same failure is waived on Debian 12 and a
    failure on 13; one without holds on every release."""
    data = {"sysctl_fs_protected_fifos": {"kind": "scanner", "setting": "x", "reason": "r", "releases": ["12"]},
            "sysctl_net_ipv4_ip_forward": {"kind": "deviation", "setting": "x", "reason": "r"}}
    monkeypatch.setattr(scap, "all_waivers", lambda: data)
    xml = results_xml({"sysctl_fs_protected_fifos": "fail", "sysctl_net_ipv4_ip_forward": "fail"})
    on12, on13 = parse_results(xml, release="12"), parse_results(xml, release="13")
    assert on12.waived == ["sysctl_fs_protected_fifos", "sysctl_net_ipv4_ip_forward"] and on12.failed == []
    assert on13.waived == ["sysctl_net_ipv4_ip_forward"] and on13.failed == ["sysctl_fs_protected_fifos"]
    assert set(waivers("13")) == {"sysctl_net_ipv4_ip_forward"} and set(waivers()) == set(data)


@pytest.mark.parametrize("releases", [[], "12", [12], ["bookworm"]])
def test_a_waivers_releases_are_major_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, releases):
    bad = tmp_path / "waivers.yml"
    bad.write_text(yaml.safe_dump({"waivers": {"some_rule": {"kind": "scanner", "setting": "none",
                                                             "reason": "a reason", "releases": releases}}}))
    monkeypatch.setattr(scap, "WAIVERS_FILE", bad)
    scap.all_waivers.cache_clear()
    try:
        with pytest.raises(ValueError, match="releases must be a list of Debian major versions"):
            scap.all_waivers()
    finally:
        scap.all_waivers.cache_clear()


def test_the_documented_waivers_are_the_data():
    """docs/hardening-waivers.md carries the table generated from waivers.yml, unchanged
    (regenerate it with `python -m mlops_provision.compliance.scap`)."""
    assert waivers_markdown() in DOC.read_text()


REAL_SCAN = Path(__file__).parent / "data" / "oscap-anssi_bp28_intermediary-hardened-vm.xml"


def test_a_real_scan_of_a_hardened_vm_reads_as_measured():
    """The rule results of a real `oscap xccdf eval` of a hardened sandbox VM (trimmed): every
    failure is waived; the counts are the ones docs/hardening-waivers.md gives."""
    scan = parse_results(REAL_SCAN.read_bytes())
    assert scan.profile == "anssi_bp28_intermediary"
    assert scan.failed == []
    assert (scan.count("pass"), len(scan.waived), scan.count("notapplicable")) == (154, 26, 39)
    assert round(scan.raw_rate, 1) == 85.6


REAL_SCAN_13 = Path(__file__).parent / "data" / "oscap-anssi_bp28_intermediary-hardened-vm-debian13.xml"


def test_a_real_scan_of_a_hardened_debian13_vm_reads_as_measured():
    """The same on Debian 13 (SCAP content 0.1.82), read against Debian 13's waivers: one failure
    left, AIDE, which that VM ran without (docs/hardening-waivers.md); /tmp without noexec is
    Debian 13's waiver, 99-protect-links.conf's is Debian 12's."""
    scan = parse_results(REAL_SCAN_13.read_bytes(), release="13")
    assert scan.profile == "anssi_bp28_intermediary"
    assert scan.failed == ["package_aide_installed"]
    assert (scan.count("pass"), len(scan.waived), scan.count("notapplicable")) == (157, 26, 41)
    assert (round(scan.rate, 1), round(scan.raw_rate, 1)) == (99.4, 85.3)
    assert "mount_option_tmp_noexec" not in waivers("12")
    assert "sysctl_fs_protected_fifos" not in waivers("13") and scan.results["sysctl_fs_protected_fifos"] == "pass"


def test_every_waiver_names_a_rule_of_the_profile():
    """A misspelt rule id would waive nothing: each one is a rule a real scan of a release it
    holds on evaluated."""
    evaluated = {"12": set(parse_results(REAL_SCAN.read_bytes()).results),
                 "13": set(parse_results(REAL_SCAN_13.read_bytes()).results)}
    unknown = [rule for rule, entry in waivers().items()
               if not any(rule in evaluated[r] for r in entry.get("releases") or evaluated)]
    assert unknown == []
