"""The monitoring layer's Prometheus rules (roles/prometheus/files/rules): promtool checks them and
runs their unit tests, and every alert must be shown firing by at least one of those tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

RULES = ROOT / "roles" / "prometheus" / "files" / "rules"
ALERTS = RULES / "mlops-alerts.yml"
RECORDING = RULES / "mlops-recording.yml"
TEST_FILES = sorted((RULES / "tests").glob("*.yml"))
# Alerts about a whole job's absence: no series, so no `host` label to name.
HOSTLESS = {"NodeTargetsMissing"}


def _promtool() -> str | None:
    """MLOPS_PROMTOOL when set (no fallback then), else promtool on PATH, else the one setup.sh puts in .venv."""
    candidates = [os.environ["MLOPS_PROMTOOL"]] if os.environ.get("MLOPS_PROMTOOL") else [
        shutil.which("promtool"), ROOT / ".venv" / "bin" / "promtool"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def promtool() -> str:
    found = _promtool()
    if not found:
        pytest.fail("promtool not found (MLOPS_PROMTOOL, PATH, .venv/bin/promtool): `bash scripts/setup.sh` "
                    "installs it into .venv/bin from Debian's prometheus package "
                    "(the rules must be proven, never skipped)")
    return found


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _alert_rules() -> list[dict]:
    return [rule for group in _load(ALERTS)["groups"] for rule in group["rules"]]


def _recording_rules() -> list[dict]:
    return [rule for group in _load(RECORDING)["groups"] for rule in group["rules"]]


def _tests(path: Path) -> list[dict]:
    return _load(path).get("tests") or []


def test_rule_files_pass_promtool_check(promtool):
    result = _run(promtool, "check", "rules", ALERTS, RECORDING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_promtool_unit_tests_pass(promtool, test_file):
    result = _run(promtool, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_unit_tests():
    assert len(TEST_FILES) >= 2


@pytest.mark.parametrize("test_file", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_unit_test_files_use_the_servers_interval_and_the_shipped_rules(test_file):
    data = _load(test_file)
    assert data["evaluation_interval"] == "15s"
    assert data["rule_files"], test_file
    for rule_file in data["rule_files"]:
        assert re.fullmatch(r"\.\./mlops-[a-z]+\.yml", rule_file), rule_file
        assert (test_file.parent / rule_file).is_file(), rule_file


def test_every_alert_is_shown_firing():
    """Each alerting rule (name and severity: GpuXidErrors has a warning and a critical rule) must appear in a
    non-empty exp_alerts of some unit test: a rule never shown firing may be unable to fire."""
    shown = set()
    for path in TEST_FILES:
        for group in _tests(path):
            for case in group.get("alert_rule_test") or []:
                for alert in case.get("exp_alerts") or []:
                    shown.add((case["alertname"], (alert.get("exp_labels") or {}).get("severity")))
    rules = {(rule["alert"], rule["labels"]["severity"]) for rule in _alert_rules()}
    assert rules, "no alerting rule found"
    assert not rules - shown, f"alerts no unit test shows firing: {sorted(rules - shown)}"
    assert not shown - rules, f"tests expect alerts the rules do not have: {sorted(shown - rules)}"


def test_every_alert_has_a_healthy_case_too():
    """Each alert also appears with an empty exp_alerts (not yet firing, healthy or absent series)."""
    quiet = {case["alertname"] for path in TEST_FILES for group in _tests(path)
             for case in group.get("alert_rule_test") or [] if not case.get("exp_alerts")}
    missing = {rule["alert"] for rule in _alert_rules()} - quiet
    assert not missing, f"alerts without a test that shows them quiet: {sorted(missing)}"


def test_every_recording_rule_is_tested_with_values():
    tested = set()
    for path in TEST_FILES:
        for group in _tests(path):
            for case in group.get("promql_expr_test") or []:
                if case.get("exp_samples"):
                    tested.update(re.findall(r"mlops:[a-z0-9_]+:[a-z0-9_]+", case["expr"]))
    records = {rule["record"] for rule in _recording_rules()}
    assert records, "no recording rule found"
    assert not records - tested, f"recording rules no unit test evaluates: {sorted(records - tested)}"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_labels_and_annotations(rule):
    name = rule["alert"]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    notes = rule["annotations"]
    assert set(notes) == {"summary", "description", "runbook"}, name
    assert notes["runbook"] == f"docs/monitoring.md#{name.lower()}"
    if name not in HOSTLESS:
        assert "$labels.host" in notes["summary"] and "$labels.host" in notes["description"], name


def test_rule_files_are_plain_and_commented():
    for path in (ALERTS, RECORDING):
        text = path.read_text()
        assert "{%" not in text and "{#" not in text, f"{path.name}: Jinja has no place in a rule file"
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.lstrip().startswith("- name:"):
                assert lines[i - 1].lstrip().startswith("#"), f"{path.name}: group without a comment header: {line}"
        for group in _load(path)["groups"]:
            assert "interval" not in group, f"{path.name}: {group['name']} must use the server's interval"


def test_every_runbook_link_has_its_section_in_the_operator_guide():
    """Each alert's runbook annotation points at an anchor docs/monitoring.md has."""
    guide = (ROOT / "docs" / "monitoring.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', guide))
    rules = yaml.safe_load((RULES / "mlops-alerts.yml").read_text())
    missing = sorted({r["annotations"]["runbook"] for g in rules["groups"] for r in g["rules"] if "alert" in r
                      if r["annotations"]["runbook"].split("#", 1)[1] not in anchors})
    assert not missing, missing
