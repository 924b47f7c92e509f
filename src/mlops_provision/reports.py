"""Reports of runs and verifications: human table, JSON, JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlops_provision.runner import RunSummary
from mlops_provision.verify import CheckResult, VerifyReport


def _console() -> Console:
    """A terminal gets its own width; pipes and CI logs get wide lines instead of 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold magenta",
         "passed": "green", "skipped": "dim", "error": "bold red"}


def print_run(summary: RunSummary, console: Console | None = None) -> None:
    console = console or _console()
    table = Table(title=f"mlops-provision {summary.verb}{' --check' if summary.check else ''}: "
                        f"{len(summary.hosts)} host(s) in {summary.duration_s:.0f}s",
                  title_justify="left")
    for col in ("host", "result", "ok", "changed", "failed", "unreachable", "skipped", "why"):
        table.add_column(col, justify="right" if col not in ("host", "result", "why") else "left",
                         overflow="fold")
    for h in summary.hosts:
        why = f"{h.task}: {h.message}" if h.message else ""
        table.add_row(h.host, Text(h.status, style=STYLE.get(h.status, "")), str(h.ok), str(h.changed),
                      str(h.failed), str(h.unreachable), str(h.skipped), Text(why))
    console.print(table)
    console.print(f"exit {summary.exit_code}; run record: {summary.run_dir}", highlight=False)


def run_json(summary: RunSummary) -> str:
    return json.dumps(summary.to_dict(), indent=2)


def print_verify(report: VerifyReport, console: Console | None = None) -> None:
    console = console or _console()
    table = Table(title=f"mlops-provision verify: {report.counts_line()}", title_justify="left")
    for col in ("host", "check", "result", "detail"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        detail = r.message
        if r.outcome in ("failed", "error") and not r.managed:
            detail = f"{detail} (not managed by up: {r.hint})" if r.hint else f"{detail} (not managed by up)"
        table.add_row(r.host, r.check, Text(r.outcome, style=STYLE.get(r.outcome, "")), Text(detail))
    console.print(table)


def verify_json(report: VerifyReport) -> str:
    return json.dumps(report.to_dict(), indent=2)


def verify_junit(report: VerifyReport, path: Path) -> None:
    suites = ET.Element("testsuites", name="mlops-provision verify")
    by_host: dict[str, list[CheckResult]] = {}
    for r in report.results:
        by_host.setdefault(r.host, []).append(r)
    for host, results in sorted(by_host.items()):
        suite = ET.SubElement(
            suites, "testsuite", name=host, tests=str(len(results)),
            failures=str(sum(r.outcome == "failed" for r in results)),
            errors=str(sum(r.outcome == "error" for r in results)),
            skipped=str(sum(r.outcome == "skipped" for r in results)),
            time=f"{sum(r.duration_s for r in results):.3f}")
        for r in results:
            case = ET.SubElement(suite, "testcase", classname=f"{host}.{r.module}", name=r.check,
                                 time=f"{r.duration_s:.3f}")
            if r.outcome in ("failed", "error"):
                ET.SubElement(case, "failure" if r.outcome == "failed" else "error",
                              message=r.message[:200]).text = r.detail
            elif r.outcome == "skipped":
                ET.SubElement(case, "skipped", message=r.message)
    ET.indent(suites)
    Path(path).write_text(ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")
