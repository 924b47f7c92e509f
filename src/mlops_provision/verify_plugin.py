"""pytest plugin used by `mlops-provision verify`: one JSON line per (host, check) result.

Besides the outcome and message, each record carries what drift needs as structure:
``roles`` (the check's ``roles`` marker: the role(s) whose tasks make the state it proves, the
closest marker winning), and ``managed``/``hint`` (``false`` and what to do when a check failed
saying that what it found is state `up` does not manage: it raised
:class:`mlops_provision.checks.unmanaged.Unmanaged` or recorded the property
:data:`mlops_provision.checks.unmanaged.PROPERTY`). The message stays the finding alone; other
``record_property`` values are prefixed to it as ``key=value``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: ``record_property`` name of the unmanaged hint (:data:`mlops_provision.checks.unmanaged.PROPERTY`;
#: not imported, so that this plugin loads nothing of the checks package).
UNMANAGED_PROPERTY = "unmanaged"
#: Attribute of the exception a check raises for an unmanaged finding
#: (:class:`mlops_provision.checks.unmanaged.Unmanaged`), read by name.
UNMANAGED_ATTR = "unmanaged_hint"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--mlops-results", default=None, help="write check results as JSON lines here")


def _host_name(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec else None
    if host is None:
        return "-"
    return getattr(host.backend, "hostname", None) or str(host.backend.get_pytest_id())


def check_roles(item: pytest.Item) -> list[str]:
    """The roles the check proves: the args of its closest ``roles`` marker (none: ``[]``)."""
    marker = item.get_closest_marker("roles")
    return [str(r) for r in marker.args] if marker else []


def _unmanaged_hint(exc: BaseException | None) -> str | None:
    hint = getattr(exc, UNMANAGED_ATTR, None) if exc is not None else None
    return None if hint is None else str(hint)


def _message(report: pytest.TestReport, call: pytest.CallInfo) -> tuple[str, str]:
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return reason.removeprefix("Skipped: "), ""
    if call.excinfo is not None:
        unmanaged = _unmanaged_hint(call.excinfo.value) is not None
        text = str(call.excinfo.value) if unmanaged else call.excinfo.exconly()  # without the class name
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
        hint = _unmanaged_hint(call.excinfo.value if call.excinfo is not None else None)
        props = []
        for key, value in report.user_properties:
            if key == UNMANAGED_PROPERTY:
                hint = str(value) if hint is None else hint
            else:
                props.append(f"{key}={value}")
        if props:
            message = f"{'; '.join(props)}; {message}" if message else "; ".join(props)
        if result not in ("failed", "error"):  # nothing found: nothing to manage or not
            hint = None
        doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
        record = {
            "host": _host_name(item),
            "module": Path(str(item.fspath)).stem.removeprefix("test_"),
            "check": doc[0] if doc else item.originalname,
            "outcome": result,
            "message": message,
            "detail": detail,
            "duration_s": round(report.duration, 3),
            "roles": check_roles(item),
            "managed": hint is None,
            "hint": hint or "",
        }
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
