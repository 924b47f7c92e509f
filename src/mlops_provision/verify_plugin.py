"""pytest plugin used by `mlops-provision verify`: one JSON line per (host, check) result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--mlops-results", default=None, help="write check results as JSON lines here")


def _host_name(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec else None
    if host is None:
        return "-"
    return getattr(host.backend, "hostname", None) or str(host.backend.get_pytest_id())


def _message(report: pytest.TestReport, call: pytest.CallInfo) -> tuple[str, str]:
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return reason.removeprefix("Skipped: "), ""
    if call.excinfo is not None:
        text = call.excinfo.exconly()
        first = text.splitlines()[0] if text else ""
        return first.removeprefix("AssertionError: ")[:300], str(report.longreprtext)[-3000:]
    return "", ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    path = item.config.getoption("--mlops-results")
    if not path:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            result = "passed"
        elif report.skipped:
            result = "skipped"
        else:
            result = "failed" if report.when == "call" else "error"
        message, detail = _message(report, call)
        props = "; ".join(f"{k}={v}" for k, v in report.user_properties)
        if props:
            message = f"{props}; {message}" if message else props
        doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
        record = {
            "host": _host_name(item),
            "module": Path(str(item.fspath)).stem.removeprefix("test_"),
            "check": doc[0] if doc else item.originalname,
            "outcome": result,
            "message": message,
            "detail": detail,
            "duration_s": round(report.duration, 3),
        }
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
