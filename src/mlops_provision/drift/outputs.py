"""Where admins look: the drift report as a table, JUnit XML, a Prometheus textfile, a webhook."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.text import Text

from mlops_provision.drift.model import DriftReport
from mlops_provision.reports import STYLE, _console


def print_drift(report: DriftReport, console: Console | None = None) -> None:
    """Per host: its status, then every drifted item as ``[role] what`` with the diff or the
    check's message indented under it and the repair (``up``, or what to do by hand)."""
    console = console or _console()
    for h in report.hosts:
        repairable = sum(i.repairable for i in h.items)
        unmanaged = sum(not i.managed for i in h.items)
        head = Text(f"{h.host}: ")
        head.append(h.status, style=STYLE.get(h.status, "yellow" if h.status == "drift" else "green"))
        if h.items:
            head.append(f" ({len(h.items)} item(s): {repairable} repairable by up, {unmanaged} not managed by up, "
                        f"{len(h.items) - repairable - unmanaged} with no pending change in up)")
        elif h.status == "clean":
            head.append(f" ({h.checks_passed} checks passed, no pending change)")
        if h.message:
            head.append(f" {h.message}")
        console.print(head, soft_wrap=True)
        for i in h.items:
            label = {"change": "would change", "check": "check failed", "error": "check error"}[i.kind]
            console.print(Text(f"  [{i.role}] {label}: {i.what}"), Text("  repair: up" if i.repairable
                                                                    else "  repair: by hand", style="bold"),
                          soft_wrap=True)
            for line in i.detail.splitlines():
                console.print(Text(f"      {line}"), highlight=False, soft_wrap=True)
            if not i.repairable:
                console.print(Text(f"      hint: {i.hint}"), highlight=False, soft_wrap=True)
    console.print(Text(f"{report.counts_line()} in {report.duration_s:.0f}s (check mode {report.check_s:.0f}s, "
                       f"checks {report.verify_s:.0f}s, concurrently)"), soft_wrap=True)
    console.print(f"exit {report.exit_code}; run record: {report.run_dir}", highlight=False, soft_wrap=True)


def _failure_type(item) -> str:
    if item.repairable:
        return "repairable"
    return "unmanaged" if not item.managed else "no-pending-change"


def write_junit(report: DriftReport, path: Path) -> None:
    """One testsuite per host; one failing testcase per drifted item (classname host.role, the
    failure's type ``repairable``, ``unmanaged`` or ``no-pending-change``), one passing per clean
    role."""
    suites = ET.Element("testsuites", name="mlops-provision drift")
    for h in report.hosts:
        cases = []
        for i in h.items:
            case = ET.Element("testcase", classname=f"{h.host}.{i.role}",
                              name=f"{'would change' if i.kind == 'change' else i.kind}: {i.what}")
            ET.SubElement(case, "error" if i.kind == "error" else "failure",
                          message=(i.detail.splitlines() or [""])[0][:200],
                          type=_failure_type(i)).text = (
                f"{i.detail}\n\nrepair: {i.hint}")
            cases.append(case)
        if h.status in ("failed", "unreachable"):
            case = ET.Element("testcase", classname=f"{h.host}.site", name="host reachable and checked")
            ET.SubElement(case, "error", message=h.status).text = h.message
            cases.append(case)
        for role, count in sorted(h.counts().items()):
            if count == 0:
                cases.append(ET.Element("testcase", classname=f"{h.host}.{role}", name="no drift"))
        suite = ET.SubElement(suites, "testsuite", name=h.host, tests=str(len(cases)),
                              failures=str(sum(case.find("failure") is not None for case in cases)),
                              errors=str(sum(case.find("error") is not None for case in cases)))
        suite.extend(cases)
    ET.indent(suites)
    Path(path).write_text(ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(report: DriftReport, site: str) -> str:
    """node_exporter textfile collector format: items per host and role, last run's time and code."""
    s = _label(site)
    lines = ["# HELP mlops_drift_items Drifted items found by the last drift run, per host and role.",
             "# TYPE mlops_drift_items gauge"]
    for h in report.hosts:
        for role, count in sorted(h.counts().items()):
            lines.append(f'mlops_drift_items{{site="{s}",host="{_label(h.host)}",role="{_label(role)}"}} {count}')
    lines += ["# HELP mlops_drift_unmanaged_items Drifted items that `up` does not repair, per host.",
              "# TYPE mlops_drift_unmanaged_items gauge"]
    for h in report.hosts:
        manual = sum(not i.repairable for i in h.items)
        lines.append(f'mlops_drift_unmanaged_items{{site="{s}",host="{_label(h.host)}"}} {manual}')
    lines += ["# HELP mlops_drift_host_up 1 if the host was reached and checked by the last drift run.",
              "# TYPE mlops_drift_host_up gauge"]
    for h in report.hosts:
        up = 0 if h.status in ("failed", "unreachable") else 1
        lines.append(f'mlops_drift_host_up{{site="{s}",host="{_label(h.host)}"}} {up}')
    lines += ["# HELP mlops_drift_last_run_timestamp_seconds When the last drift run finished (Unix time).",
              "# TYPE mlops_drift_last_run_timestamp_seconds gauge",
              f'mlops_drift_last_run_timestamp_seconds{{site="{s}"}} {time.time():.0f}',
              "# HELP mlops_drift_last_run_exit_code Exit code of the last drift run (0 clean, 4 drift, "
              "1 error, 3 unreachable).",
              "# TYPE mlops_drift_last_run_exit_code gauge",
              f'mlops_drift_last_run_exit_code{{site="{s}"}} {report.exit_code}',
              "# HELP mlops_drift_last_run_duration_seconds How long the last drift run took.",
              "# TYPE mlops_drift_last_run_duration_seconds gauge",
              f'mlops_drift_last_run_duration_seconds{{site="{s}"}} {report.duration_s}']
    return "\n".join(lines) + "\n"


def host_prometheus_texts(report: DriftReport, site: str) -> dict[str, str]:
    """Per checked host, its own findings in the textfile format (the same series as
    :func:`prometheus_text`, for that host only), for its node-exporter: ``drift`` hands each
    node its file (playbooks/drift-report.yml). A host the run could not check gets no file (it
    cannot take one); every other file also carries ``mlops_drift_host_up 0`` for it, so that
    Prometheus sees the failure (alert DriftCheckFailed) through the nodes that were reached."""
    failed = [h for h in report.hosts if h.status in ("failed", "unreachable")]
    out: dict[str, str] = {}
    for h in report.hosts:
        if h in failed:
            continue
        one = DriftReport(inventory=report.inventory, started=report.started, run_dir=report.run_dir)
        one.hosts = [h]
        one.exit_code = report.exit_code
        one.duration_s = report.duration_s
        text = prometheus_text(one, site)
        s = _label(site)
        extra = "".join(f'mlops_drift_host_up{{site="{s}",host="{_label(f.host)}"}} 0\n' for f in failed)
        if extra:  # after the host's own sample of that metric, in its block
            mine = f'mlops_drift_host_up{{site="{s}",host="{_label(h.host)}"}} 1\n'
            text = text.replace(mine, mine + extra, 1)
        out[h.host] = text
    return out


def write_prometheus(report: DriftReport, site: str, path: Path) -> None:
    """Written to a temporary file and renamed, so the collector never reads half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(prometheus_text(report, site))
    tmp.chmod(0o644)
    os.replace(tmp, path)


class WebhookFailed(Exception):
    pass


def post_webhook(url: str, body: dict, *, token: str | None = None, cafile: str | None = None,
                 timeout: float = 10.0, attempts: int = 3, backoff: float = 1.0) -> int:
    """HTTPS POST of ``body`` as JSON; TLS verified (system CAs, or ``cafile``); ``attempts``
    tries with a ``timeout`` each and a growing pause between them; returns the HTTP status.
    Client errors (4xx) are not retried. Raises :class:`WebhookFailed` with the last reason."""
    if not url.startswith("https://"):
        raise WebhookFailed(f"webhook URL must be https://, got {url.split(':', 1)[0]}://")
    context = ssl.create_default_context(cafile=cafile)
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "mlops-provision-drift"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    reason = ""
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
        if attempt < attempts:
            time.sleep(backoff * attempt)
    raise WebhookFailed(f"webhook POST failed after {attempt} attempt(s): {reason}")
