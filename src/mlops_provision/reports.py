"""Reports of runs and verifications: human output, JSON, JUnit XML.

A run (`up`, `up --check`, the mlflow playbooks) reads, in this order: the per-host table of
counts; the tasks that changed (in check mode: would change) per host and role, hosts with the
same changes named together; NEEDS ATTENTION (failed and unreachable hosts with their task and
message, the roles' notes such as a reboot needed, Ansible's warnings); each play's duration; the
exit code and the run record. Each thing is said once: the table has no message column, the
message is under NEEDS ATTENTION.

A verification reads: a host x role matrix of passed/failed/skipped counts; every failure in full
(with the hint where `up` does not manage what it found); the skips, one line per reason (all of
them with ``show_skipped``); the checks that do not apply to a host, counted apart; the counts,
the duration and the record.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlops_provision.progress import fit_title, on_terminal, output_console
from mlops_provision.runner import RunSummary
from mlops_provision.verify import NO_ROLE, CheckResult, VerifyReport


def _console() -> Console:
    """A terminal gets its own width; pipes and CI logs get whole lines, never wrapped
    (:func:`mlops_provision.progress.output_console`)."""
    return output_console()


STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold magenta",
         "passed": "green", "skipped": "dim", "error": "bold red"}

#: How a note's kind (runner.NOTES_STAT) is headed under NEEDS ATTENTION; other kinds: their name.
NOTE_LABEL = {"reboot": "REBOOT NEEDED", "mok_enrolment": "MOK ENROLMENT PENDING", "note": "NOTE"}


def _secs(seconds: float) -> str:
    seconds = float(seconds or 0)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _line(console: Console, text: str | Text, indent: int = 0) -> None:
    """One line of Ansible's or the checks' text, printed literally (no markup, no highlighting)."""
    out = text if isinstance(text, Text) else Text(text)
    console.print(Text(" " * indent) + out, highlight=False, soft_wrap=False)


def short_task(task: str, role: str) -> str:
    """A task's name without the ``Role | `` prefix the roles give their tasks (said once, by the
    role it is listed under)."""
    head, sep, rest = task.partition(" | ")
    return rest if sep and head.strip().lower() == role.lower() and rest else task


def note_label(kind: str) -> str:
    return NOTE_LABEL.get(kind, kind.replace("_", " ").upper())


def attention_lines(summary: RunSummary) -> list[str]:
    """NEEDS ATTENTION, one line each: failed and unreachable hosts (task and message), the
    roles' notes per host (``REBOOT NEEDED: HOST: REASON``), Ansible's warnings."""
    lines = []
    for h in summary.hosts:
        if h.status in ("failed", "unreachable"):
            where = ": ".join(p for p in (h.task, h.message) if p) or "no message"
            lines.append(f"{h.status.upper()}: {h.host}: {where}")
    for host, notes in summary.notes.items():
        for note in notes:
            reason = note.get("reason") or ""
            lines.append(f"{note_label(note.get('kind', 'note'))}: {host}{': ' + reason if reason else ''}")
    lines += [f"WARNING: {w}" for w in summary.warnings]
    return lines


def changed_by_role(summary: RunSummary) -> list[tuple[str, list[str], list[str]]]:
    """(role, hosts, tasks): each role's changed tasks once, those changed on the same hosts
    together (most hosts first), in the order they ran; roles sorted."""
    per: dict[str, dict[str, list[str]]] = {}  # role -> task -> hosts
    for host, roles in summary.changed_tasks.items():
        for role, tasks in roles.items():
            for task in tasks:
                per.setdefault(role, {}).setdefault(task, []).append(host)
    out: list[tuple[str, list[str], list[str]]] = []
    for role in sorted(per):
        groups: dict[tuple[str, ...], list[str]] = {}
        for task, hosts in per[role].items():
            groups.setdefault(tuple(sorted(hosts)), []).append(task)
        for hosts, tasks in sorted(groups.items(), key=lambda kv: (-len(kv[0]), kv[0])):
            out.append((role, list(hosts), tasks))
    return out


def hosts_label(hosts: list[str], every: set[str], most: int = 4) -> str:
    """``all N hosts`` when they are every host that changed, else their names (at most
    ``most``, then how many more: the JSON summary lists them all)."""
    if set(hosts) == every and len(every) > 1:
        return f"all {len(every)} hosts"
    if len(hosts) <= most:
        return ", ".join(hosts)
    return f"{', '.join(hosts[:most])} +{len(hosts) - most} more"


def print_run(summary: RunSummary, console: Console | None = None) -> None:
    console = console or _console()
    table = Table(title=f"mlops-provision {summary.verb}{' --check' if summary.check else ''}: "
                        f"{len(summary.hosts)} host(s) in {_secs(summary.duration_s)}",
                  title_justify="left")
    for col in ("host", "result", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(col, justify="left" if col in ("host", "result") else "right", overflow="fold")
    for h in summary.hosts:
        table.add_row(h.host, Text(h.status, style=STYLE.get(h.status, "")), str(h.ok), str(h.changed),
                      str(h.failed), str(h.unreachable), str(h.skipped))
    console.print(fit_title(table))

    changed = changed_by_role(summary)
    if changed:
        every = {h for h, roles in summary.changed_tasks.items() if roles}
        console.print()
        console.print(Text("WOULD CHANGE" if summary.check else "CHANGED", style="bold yellow"))
        rows = [(Text(f"  {role} ") + Text(f"({hosts_label(hosts, every)})", style="bold") + Text(":"),
                 Text("; ".join(short_task(t, role) for t in tasks))) for role, hosts, tasks in changed]
        if on_terminal(console):  # the tasks folded under their column
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            for label, tasks in rows:
                grid.add_row(label, tasks)
            console.print(grid)
        else:  # a log: whole lines, labels aligned, no padding after them
            width = max(label.cell_len for label, _ in rows)
            for label, tasks in rows:
                _line(console, label + Text(" " * (width - label.cell_len + 1)) + tasks)

    attention = attention_lines(summary)
    if attention:
        console.print()
        console.print(Text("NEEDS ATTENTION", style="bold red"))
        for line in attention:
            _line(console, line, 2)

    if summary.plays:
        console.print()
        console.print(Text("PLAYS", style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(overflow="fold")
        grid.add_column(justify="right", no_wrap=True)
        for play in summary.plays:
            grid.add_row(Text(f"  {play.get('play') or '(unnamed play)'}"), _secs(float(play.get("duration_s") or 0)))
        console.print(grid)
    console.print()
    console.print(f"exit {summary.exit_code}; run record: {summary.run_dir}", highlight=False, markup=False)


def run_json(summary: RunSummary) -> str:
    return json.dumps(summary.to_dict(), indent=2)


MATRIX_LEGEND = "cells: passed/failed/skipped (errors count as failed); -: no check of the role applies here"


def _cell(counts: dict[str, int] | None) -> Text:
    """A matrix cell: passed/failed/skipped (errors counted as failed); ``-`` no check there."""
    if not counts:
        return Text("-", style="dim")
    failed = counts.get("failed", 0) + counts.get("error", 0)
    text = f"{counts.get('passed', 0)}/{failed}/{counts.get('skipped', 0)}"
    style = "bold red" if failed else ("green" if counts.get("passed") else "dim")
    return Text(text, style=style)


#: Up to this many hosts, the matrix has a column per host and a row per role (role names
#: stay whole); more hosts, a row per host.
MATRIX_HOST_COLUMNS = 8


def verify_matrix(report: VerifyReport) -> Table:
    """Hosts x roles (a result under its first role), cells passed/failed/skipped: a row per
    role and a column per host for up to :data:`MATRIX_HOST_COLUMNS` hosts, else a row per host."""
    matrix = report.matrix()
    hosts = sorted({r.host for r in report.results})
    roles = sorted({role for cells in matrix.values() for role in cells})
    table = Table(title=f"mlops-provision verify: {len(hosts)} host(s), {len(roles)} role(s)",
                  title_justify="left")
    by_role = len(hosts) <= MATRIX_HOST_COLUMNS
    first, rows, columns = ("role", roles, hosts) if by_role else ("host", hosts, roles)
    table.add_column(first, no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right", overflow="fold")
    for row in rows:
        cells = ((column, row) if by_role else (row, column) for column in columns)  # (host, role)
        table.add_row(row, *(_cell(matrix.get(host, {}).get(role)) for host, role in cells))
    return fit_title(table)


def failure_lines(r: CheckResult) -> list[tuple[str, int]]:
    """A failed (or errored) check in full: what, where, the message; the hint where `up` does
    not manage what it found. (text, indent) pairs."""
    roles = ", ".join(r.roles) or NO_ROLE
    lines = [(f"{r.outcome.upper()}: {r.host}: {r.check} ({roles})", 2)]
    lines += [(m, 6) for m in (r.message or "no message").splitlines()]
    if not r.managed:
        lines.append((f"not managed by up: {r.hint}" if r.hint else "not managed by up", 6))
    return lines


def print_verify(report: VerifyReport, console: Console | None = None, show_skipped: bool = False) -> None:
    console = console or _console()
    console.print(verify_matrix(report))
    console.print(Text(MATRIX_LEGEND, style="dim"))

    failures = [r for r in report.applicable if r.outcome in ("failed", "error")]
    if failures:
        console.print()
        console.print(Text(f"FAILED ({len(failures)})", style="bold red"))
        for r in failures:
            for text, indent in failure_lines(r):
                _line(console, text, indent)

    skipped = [r for r in report.applicable if r.outcome == "skipped"]
    if skipped:
        console.print()
        console.print(Text(f"SKIPPED ({len(skipped)})", style="bold"))
        if show_skipped:
            table = Table(show_edge=False, box=None, padding=(0, 1), pad_edge=False)
            for col in ("  host", "check", "reason"):
                table.add_column(col, overflow="fold")
            for r in skipped:
                table.add_row(f"  {r.host}", Text(r.check), Text(r.message))
            console.print(table)
        else:
            for group in report.skipped_reasons():
                _line(console, _reason_line(group, "skipped"), 2)

    na = report.not_applicable
    if na:
        console.print()
        hosts = len({r.host for r in na})
        _line(console, f"{len(na)} check result(s) on {hosts} host(s) not applicable (the host is not in the "
                       "role's group): not counted", 0)
        if show_skipped:
            for group in report.skipped_reasons("not_applicable"):
                _line(console, _reason_line(group, "not applicable"), 2)

    console.print()
    record = f"; run record: {report.run_dir}" if report.run_dir else ""
    _line(console, f"{report.counts_line()} in {_secs(report.duration_s)}{record}")


def _reason_line(group: dict, what: str) -> str:
    hosts = group["hosts"]
    on = f" ({len(hosts)} hosts)" if len(hosts) > 3 else f" ({', '.join(hosts)})"
    return f"{group['count']} {what}: {group['reason']}{on}"


def verify_json(report: VerifyReport) -> str:
    return json.dumps(report.to_dict(), indent=2)


def verify_junit(report: VerifyReport, path: Path) -> None:
    """One testsuite per host; the checks that do not apply to a host are left out."""
    suites = ET.Element("testsuites", name="mlops-provision verify")
    by_host: dict[str, list[CheckResult]] = {}
    for r in report.applicable:
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
