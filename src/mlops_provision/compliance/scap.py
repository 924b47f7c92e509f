"""OpenSCAP XCCDF results, counted against the platform's waivers (``waivers.yml``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

RULE_PREFIX = "xccdf_org.ssgproject.content_rule_"
PROFILE_PREFIX = "xccdf_org.ssgproject.content_profile_"
DEFAULT_PROFILE = "anssi_bp28_intermediary"
WAIVERS_FILE = Path(__file__).with_name("waivers.yml")
_XCCDF = "{http://checklists.nist.gov/xccdf/1.2}"
#: Results that count as failures: the rule failed, or the scanner could not evaluate it.
FAILING = ("fail", "error", "unknown")


@lru_cache(maxsize=1)
def all_waivers() -> dict[str, dict]:
    """Rule id (without the SSG prefix) -> {kind, setting, reason[, releases]}: every waiver."""
    data = yaml.safe_load(WAIVERS_FILE.read_text())["waivers"]
    for rule, entry in data.items():
        missing = {"kind", "setting", "reason"} - set(entry)
        if missing or entry["kind"] not in ("deviation", "layout", "scanner"):
            raise ValueError(f"{WAIVERS_FILE}: waiver {rule}: needs kind (deviation, layout or scanner), "
                             f"setting and reason; has {sorted(entry)}")
        releases = entry.get("releases")
        if releases is not None and not (isinstance(releases, list) and releases
                                         and all(isinstance(r, str) and r.isdigit() for r in releases)):
            raise ValueError(f"{WAIVERS_FILE}: waiver {rule}: releases must be a list of Debian major "
                             f"versions as strings (e.g. [\"12\"]), got {releases!r}")
    return data


def waivers(release: str | None = None) -> dict[str, dict]:
    """The waivers that hold on Debian ``release`` (its major version, e.g. "13"): those without
    ``releases`` and those that name it; every waiver when ``release`` is None."""
    return {rule: entry for rule, entry in all_waivers().items()
            if release is None or entry.get("releases") is None or str(release) in entry["releases"]}


@dataclass
class ScanResult:
    """One node's scan: each selected rule's result, and the waived failures set apart."""

    profile: str
    results: dict[str, str]  # rule id -> pass | fail | notapplicable | notchecked | error | ...
    waived: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failures without a waiver
    unused_waivers: list[str] = field(default_factory=list)  # waived rules that pass here

    def count(self, result: str) -> int:
        return sum(1 for r in self.results.values() if r == result)

    @property
    def rate(self) -> float:
        """pass / (pass + fail), waived rules left out (as the issue and auditors count)."""
        passed = self.count("pass")
        return 100.0 * passed / (passed + len(self.failed)) if passed + len(self.failed) else 100.0

    @property
    def raw_rate(self) -> float:
        """pass / (pass + fail) with waived failures counted as failures."""
        passed, failed = self.count("pass"), len(self.failed) + len(self.waived)
        return 100.0 * passed / (passed + failed) if passed + failed else 100.0

    def summary(self) -> dict[str, object]:
        return {"profile": self.profile, "pass": self.count("pass"), "fail": len(self.failed),
                "waived": len(self.waived), "notapplicable": self.count("notapplicable"),
                "other": sum(1 for r in self.results.values() if r not in ("pass", "notapplicable", *FAILING)),
                "rate": round(self.rate, 1), "raw_rate": round(self.raw_rate, 1)}


def parse_results(xml_text: str | bytes, waived: dict[str, dict] | None = None,
                  release: str | None = None) -> ScanResult:
    """Read ``oscap xccdf eval --results`` output: the rule results of its (single) TestResult,
    against ``waived`` (default: the waivers of Debian ``release``, all when None)."""
    root = ET.fromstring(xml_text)
    test = next(root.iter(f"{_XCCDF}TestResult"), None)
    if test is None:
        raise ValueError("no TestResult in the OpenSCAP results (was the profile evaluated?)")
    profile = test.find(f"{_XCCDF}profile")
    results = {}
    for rr in test.iter(f"{_XCCDF}rule-result"):
        outcome = rr.findtext(f"{_XCCDF}result", "").strip()
        if outcome != "notselected":
            results[rr.get("idref", "").removeprefix(RULE_PREFIX)] = outcome
    waived = waivers(release) if waived is None else waived
    scan = ScanResult(profile=(profile.get("idref", "") if profile is not None else "").removeprefix(PROFILE_PREFIX),
                      results=results)
    for rule, outcome in sorted(results.items()):
        if outcome in FAILING:
            (scan.waived if rule in waived else scan.failed).append(rule)
        elif outcome == "pass" and rule in waived:
            scan.unused_waivers.append(rule)
    return scan


def waivers_markdown() -> str:
    """The waiver table of docs/hardening-waivers.md."""
    lines = ["| rule (SCAP Security Guide) | Debian | kind | setting | why |", "|---|---|---|---|---|"]
    for rule, entry in sorted(all_waivers().items(), key=lambda kv: (kv[1]["kind"], kv[0])):
        reason = " ".join(str(entry["reason"]).split()).replace("|", "\\|")
        releases = ", ".join(entry["releases"]) if entry.get("releases") else "all"
        lines.append(f"| `{rule}` | {releases} | {entry['kind']} | {entry['setting']} | {reason} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m mlops_provision.compliance.scap: print the waiver table
    print(waivers_markdown(), end="")
