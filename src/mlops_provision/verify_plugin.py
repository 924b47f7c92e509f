"""pytest plugin used by `mlops-provision verify`: one JSON line per (host, check) result.

Besides the outcome and message, each record carries what drift needs as structure:
``roles`` (the check's ``roles`` marker: the role(s) whose tasks make the state it proves, the
closest marker winning), and ``managed``/``hint`` (``false`` and what to do when a check failed
saying that what it found is state `up` does not manage: it raised
:class:`mlops_provision.checks.unmanaged.Unmanaged` or recorded the property
:data:`mlops_provision.checks.unmanaged.PROPERTY`). The message stays the finding alone; other
``record_property`` values are prefixed to it as ``key=value``.

A check's name is the first line of its docstring (else its function's name), with its parameters
where it is parametrized (the hosts aside): ``drop-in directories hold only our and the packages'
files [/etc/modprobe.d]``, so that each (host, check) is named once.

A check that skipped because it does not apply to the host (the host is not in the group of the
role it proves) gets the outcome ``not_applicable`` instead of ``skipped``: verify counts it
nowhere (:class:`mlops_provision.verify.VerifyReport`). It is told apart by the skip exception's
attribute :data:`NOT_APPLICABLE_ATTR` (set true), or, as the checks skip today, by its reason
(:data:`NOT_APPLICABLE_REASON`: "not in group mlflow: ...", "(not in control_plane, cpu_workers
or gpu_workers)", "not a GPU node").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

#: ``record_property`` name of the unmanaged hint (:data:`mlops_provision.checks.unmanaged.PROPERTY`;
#: not imported, so that this plugin loads nothing of the checks package).
UNMANAGED_PROPERTY = "unmanaged"
#: Attribute of the exception a check raises for an unmanaged finding
#: (:class:`mlops_provision.checks.unmanaged.Unmanaged`), read by name.
UNMANAGED_ATTR = "unmanaged_hint"
#: The outcome of a check that does not apply to its host (:data:`mlops_provision.verify.NOT_APPLICABLE`).
NOT_APPLICABLE = "not_applicable"
#: Attribute of a skip exception (set true) that says the check does not apply to the host.
NOT_APPLICABLE_ATTR = "mlops_not_applicable"
#: A skip reason that says the host is not in the group the check's role is for, as the checks
#: word it: "not in group gpu_workers: ...", "runs no workloads (not in control_plane, cpu_workers
#: or gpu_workers)", "not a cluster node (...)", "not a GPU node".
NOT_APPLICABLE_REASON = re.compile(r"\bnot in (?:group )?\w+|^not an? [\w-]+ node\b", re.IGNORECASE)


def pytest_configure(config: pytest.Config) -> None:
    honour_ansible_timeout()


def honour_ansible_timeout() -> None:
    """Testinfra connects to an ``ansible://`` host with its own 10 s SSH timeout (unless the SSH
    options name ``ConnectTimeout``): give each host Ansible's timeout instead, so that `verify`
    waits as long as `up` does."""
    from testinfra.utils import ansible_runner

    from mlops_provision.ansible_config import ssh_timeout

    original = ansible_runner.get_ansible_host
    if getattr(original, "mlops_timeout", False):
        return

    def get_ansible_host(config, inventory, host, *args, **kwargs):
        found = original(config, inventory, host, *args, **kwargs)
        backend = getattr(found, "backend", None)
        if backend is not None and hasattr(backend, "timeout"):
            backend.timeout = ssh_timeout(inventory.get("_meta", {}).get("hostvars", {}).get(host, {}))
        return found

    get_ansible_host.mlops_timeout = True  # type: ignore[attr-defined]
    ansible_runner.get_ansible_host = get_ansible_host


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--mlops-results", default=None, help="write check results as JSON lines here")
    parser.addoption("--mlops-progress", default=None,
                     help="write a JSON line here as each check starts (host, check)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = item.config.getoption("--mlops-progress")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"host": _host_name(item), "check": check_name(item)}) + "\n")


def _host_name(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec else None
    if host is None:
        return "-"
    return getattr(host.backend, "hostname", None) or str(host.backend.get_pytest_id())


def check_name(item: pytest.Item) -> str:
    """The check's name: the first line of its docstring (else its function's name), with its
    parameters other than the host in brackets where it is parametrized."""
    doc = (getattr(getattr(item, "function", None), "__doc__", None) or "").strip().splitlines()
    name = doc[0].strip() if doc else getattr(item, "originalname", None) or item.name
    callspec = getattr(item, "callspec", None)
    params = [_param_text(v) for k, v in (callspec.params.items() if callspec else ()) if k != "_testinfra_host"]
    return f"{name} [{', '.join(params)}]" if params else name


def _param_text(value: object) -> str:
    text = value if isinstance(value, str) else getattr(value, "__name__", None) or repr(value)
    return " ".join(str(text).split())[:80]


def not_applicable(report: pytest.TestReport, call: pytest.CallInfo, reason: str) -> bool:
    """Whether a skipped check does not apply to the host: the skip exception says so
    (:data:`NOT_APPLICABLE_ATTR`), or its reason does (:data:`NOT_APPLICABLE_REASON`)."""
    if not report.skipped:
        return False
    exc = call.excinfo.value if call.excinfo is not None else None
    return bool(getattr(exc, NOT_APPLICABLE_ATTR, False)) or bool(NOT_APPLICABLE_REASON.search(reason))


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
        if result == "skipped" and not_applicable(report, call, message):
            result = NOT_APPLICABLE
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
        record = {
            "host": _host_name(item),
            "module": Path(str(item.fspath)).stem.removeprefix("test_"),
            "check": check_name(item),
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
