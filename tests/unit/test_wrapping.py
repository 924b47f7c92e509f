"""Off a terminal (a pipe, a CI log) nothing is wrapped at 80 columns: error messages, validate's
problem lines and the tables come out as whole lines. On a terminal, the terminal's width."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from mlops_provision import cli, reports
from mlops_provision.runner import HostResult, RunSummary, RunTracker
from mlops_provision.secrets import Scrubber
from mlops_provision.verify import CheckResult, VerifyReport
from tests.conftest import mp

LONG = "dkms build of nvidia-open 580.95.05 for kernel 6.8.0-86-generic failed: " + \
    " ".join(f"/var/lib/dkms/nvidia/580.95.05/build/make.log:{n}" for n in range(8))

BAD = """\
all:
  hosts:
    node1:
      ansible_host: 127.0.0.1
  vars:
    base_extra_ca_certificate: []
"""


def test_validate_problem_lines_are_whole_in_a_pipe(tmp_path: Path):
    """COLUMNS=80 as a CI runner may set it: still whole lines."""
    inv = tmp_path / "hosts.yml"
    inv.write_text(BAD)
    res = mp("validate", "-i", inv, env={"COLUMNS": "80"})
    assert res.rc == 2, res.stdout + res.stderr
    line = next(line for line in res.stderr.splitlines() if "base_extra_ca_certificate:" in line)
    assert len(line) > 80, res.stderr
    assert "unknown variable 'base_extra_ca_certificate'" in line and line.rstrip().endswith("vault_"), res.stderr


def test_the_sandbox_table_is_whole_in_a_pipe(capsys):
    site = "/srv/sites/" + "very-long-site-directory-name/" * 4 + ".mlops-provision/sandbox"

    class Box:
        dir = site

        @staticmethod
        def status():
            return [{"node": f"node{i}", "kind": "container", "state": "running", "ssh": f"127.0.0.1:{2200 + i}",
                     "address": f"10.89.0.{10 + i}", "groups": "control_plane,cpu_workers,gpu_workers,mlflow",
                     "published": "mlflow 127.0.0.1:15000, grafana 127.0.0.1:13000, prometheus 127.0.0.1:19090"}
                    for i in (1, 2)]

    cli._print_status(Box)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].strip() == f"sandbox {site}", out
    rows = [line for line in lines if "node1" in line]
    assert len(rows) == 1, out
    for value in Box.status()[0].values():
        assert value in rows[0], (value, out)


def test_run_report_lines_are_whole_in_a_pipe(capsys):
    summary = RunSummary(verb="up", inventory="i", playbook="p", check=False, limit=None, tags=None,
                         started="now", duration_s=42.0, exit_code=1, run_dir="/runs/1-up",
                         hosts=[HostResult("gpu1", ok=3, failed=1, status="failed",
                                           task="Nvidia driver | Build the kernel module", message=LONG)])
    reports.print_run(summary)
    out = capsys.readouterr().out
    whole = f"FAILED: gpu1: Nvidia driver | Build the kernel module: {LONG}"
    assert any(line.strip() == whole for line in out.splitlines()), out


def test_verify_report_lines_and_title_are_whole_in_a_pipe(capsys):
    report = VerifyReport(inventory="i", run_dir="/runs/2-verify", results=[
        CheckResult("gpu1", "gpu", "nvidia module loaded", "failed", message=LONG, roles=["gpu"])])
    reports.print_verify(report)
    lines = capsys.readouterr().out.splitlines()
    # the matrix is narrower than its title: rich would wrap the title mid-word to the table's width
    assert lines[0].strip() == "mlops-provision verify: 1 host(s), 1 role(s)", lines
    assert any(line.strip() == LONG for line in lines), lines


def test_progress_failure_lines_are_whole_in_a_pipe():
    from mlops_provision.progress import Progress

    out = io.StringIO()
    tracker = RunTracker(["gpu1"], Scrubber([]))
    with contextlib.redirect_stderr(out), Progress() as shown:
        tracker.on_change = shown.update
        tracker.handle({"event": "playbook_on_task_start", "event_data": {"task": "Build", "task_uuid": "u"}})
        tracker.handle({"event": "runner_on_failed", "event_data": {"host": "gpu1", "task": "Build", "task_uuid": "u",
                                                                    "res": {"msg": LONG}}})
    assert f"  FAILED gpu1: Build: {LONG}" in out.getvalue().splitlines(), out.getvalue()


def test_on_a_terminal_the_terminals_width():
    """A pty: rich's own width (the terminal's, or its 80-column fallback), wrapping as before."""
    from mlops_provision.progress import LOG_WIDTH, output_console

    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w") as tty:
            console = output_console(file=tty)
            assert console.is_terminal and console.width != LOG_WIDTH and not console.soft_wrap
    finally:
        os.close(master)
    piped = output_console(file=io.StringIO())
    assert piped.width == LOG_WIDTH and piped.soft_wrap
