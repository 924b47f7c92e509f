"""Off a terminal, progress proves liveness: a real (local) run on two hosts, its lines as a CI log
gets them. A long task gets heartbeats naming it and its host, and a "done in" line; each task's
line counts only the hosts it runs on; a role's argument-spec validation is not shown."""

from __future__ import annotations

import contextlib
import io
import re
import sys

import pytest
import yaml

from mlops_provision import progress, runner
from mlops_provision.progress import Progress


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A play of a role with an argument spec on two local hosts, h1 and h2: a task on h1 only
    (``when:``), one on both, and a 4 s task on h1 only; heartbeat every 1 s, "done in" lines from
    2 s on. Returns (summary, the progress output)."""
    from mlops_provision.site import load

    tmp = tmp_path_factory.mktemp("heartbeat")
    role = tmp / "roles" / "demo"
    (role / "tasks").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"main": {
        "short_description": "Demo role", "options": {"demo_word": {"type": "str", "default": "hi"}}}}}))
    on_h1 = "inventory_hostname == 'h1'"
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump([
        {"name": "Demo | On one host", "ansible.builtin.command": "true", "changed_when": False, "when": on_h1},
        {"name": "Demo | On both hosts", "ansible.builtin.command": "true", "changed_when": False},
        {"name": "Demo | Long build", "ansible.builtin.command": "sleep 4", "when": on_h1},
    ], sort_keys=False))
    host = f"      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n"
    (tmp / "hosts.yml").write_text(f"all:\n  hosts:\n    h1:\n{host}    h2:\n{host}")
    (tmp / "play.yml").write_text(yaml.safe_dump([
        {"name": "Demo layer", "hosts": "all", "gather_facts": False, "roles": ["demo"]}], sort_keys=False))
    import ansible.utils.display  # noqa: F401  (Ansible patches the real stderr once, at import)

    out = io.StringIO()  # stderr not a terminal: plain lines
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(out):
        mp.setenv("MLOPS_PROVISION_HEARTBEAT_S", "1")
        mp.setattr(progress, "DONE_LINE_S", 2.0, raising=False)
        with Progress() as shown:
            summary = runner.run_playbook(load(tmp / "hosts.yml", strict=False), playbook=tmp / "play.yml",
                                          on_change=shown.update)
    sys.stderr.write(f"\n[progress of the local run]\n{out.getvalue()}")
    return summary, out.getvalue()


def test_a_long_task_gets_a_heartbeat_naming_it_and_its_host(local_run):
    summary, out = local_run
    assert summary.exit_code == 0, out
    beats = re.findall(r"^\[ *[\d.]+s\] still running: Demo \| Long build on h1 \((\d+)s\)$", out, re.M)
    assert beats, out
    assert all(1 <= int(s) <= 5 for s in beats), out
    done = re.findall(r"^\[ *[\d.]+s\] done in ([\d.]+)s: Demo \| Long build  \(1 host: 1 changed; 1 skipped\)$",
                      out, re.M)
    assert len(done) == 1 and float(done[0]) >= 3.5, out
    # only a task that took DONE_LINE_S or longer gets a "done in" line (on a loaded machine a
    # first connection can make a short task that long: then its line says so)
    took = [float(s) for s in re.findall(r"^\[ *[\d.]+s\] done in ([\d.]+)s: ", out, re.M)]
    assert len(took) == out.count("done in") and all(s >= 2.0 for s in took), out


def test_each_task_counts_only_the_hosts_it_runs_on(local_run):
    _, out = local_run
    lines = out.splitlines()
    one = [line for line in lines if "] Demo | On one host  (" in line]
    both = [line for line in lines if "] Demo | On both hosts  (" in line]
    # a task's line comes once it is over, or (a first connection is slow) once it has run for a
    # while: then it says which hosts still run it
    assert len(one) == 1 and re.search(r"\(1 host: 1 (ok|running); 1 skipped\)$", one[0]), out
    assert len(both) == 1 and re.search(r"\(2 hosts: (2 ok|2 running|1 ok, 1 running)\)$", both[0]), out


def test_the_argument_spec_validation_is_folded_away(local_run):
    summary, out = local_run
    assert "Validating arguments" not in out and "arg spec" not in out, out
    # it ran (the record's events have it), it is only not shown
    events = "".join(p.read_text() for p in (runner.Path(summary.run_dir) / "artifacts").rglob("*.json"))
    assert "Validating arguments against arg spec" in events
    # every line is whole: a task line, a heartbeat, a "done in" line
    assert all(re.match(r"\[ *[\d.]+s\] ", line) for line in out.splitlines()), out
