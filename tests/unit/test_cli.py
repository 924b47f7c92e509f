"""The CLI on bad input: exit 2, every problem named, and no host contacted."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import mp

BAD = """\
all:
  hosts:
    node1:
      ansible_host: 127.0.0.1
      ansible_port: {port}
      base_admin_group_sudo: "yes please"
  children:
    gpu_worker:
      hosts:
        node1:
  vars:
    base_extra_ca_certificate: []
"""


@pytest.fixture
def listener():
    """A TCP port standing in for the node's SSH: any connection attempt would queue here."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.mark.parametrize("verb", [["validate"], ["up"], ["up", "--check"], ["verify"]])
def test_bad_inventory_exits_2_and_contacts_no_host(tmp_path: Path, listener, verb):
    inv = tmp_path / "hosts.yml"
    inv.write_text(BAD.format(port=listener.getsockname()[1]))
    res = mp(*verb, "-i", inv)
    assert res.rc == 2, res.stdout + res.stderr
    assert "hosts.yml" in res.stderr
    for key in ("base_admin_group_sudo", "gpu_worker", "base_extra_ca_certificate"):
        assert key in res.stderr, key
    assert "did you mean 'gpu_workers'" in res.stderr
    assert _connections(listener) == 0
    assert not (tmp_path / ".mlops-provision").exists(), "no run record for a run that never started"


def test_limit_matching_nothing_is_bad_input(tmp_path: Path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    node1:\n      ansible_host: 127.0.0.1\n")
    res = mp("up", "-i", inv, "--limit", "nosuchhost")
    assert res.rc == 2 and "matches no host" in res.stderr


def test_a_site_without_gpu_or_cluster_groups_validates_quietly(tmp_path: Path):
    """The playbooks name groups a site may not declare (gpu_workers, cpu_workers): working out
    which roles a host runs must not print Ansible's 'Could not match' warnings."""
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    node1:\n      ansible_host: 127.0.0.1\n")
    res = mp("validate", "-i", inv)
    assert res.rc == 0, res.stderr
    assert "Could not match" not in res.stderr + res.stdout, res.stderr


def test_valid_example_site():
    res = mp("validate", "-i", "inventories/example",
             "--vault-password-file", "inventories/example/.vault-password")
    assert res.rc == 0, res.stderr
    assert "4 host(s)" in res.stdout


def test_sandbox_status_without_sandbox(tmp_path: Path):
    res = mp("sandbox", "status", "--site", tmp_path)
    assert res.rc == 1 and "no sandbox is up" in res.stdout


def test_errors_map_to_exit_codes_without_traceback():
    """One place turns errors into exit codes: bad input 2, failure 1, unreachable 3, and an
    unexpected exception (or a failed command) is a message, never a traceback."""
    import subprocess

    import click
    from click.testing import CliRunner

    from mlops_provision.cli import _Main
    from mlops_provision.errors import BadInput, Failed, Unreachable

    raised = {
        "bad": BadInput("no such thing", details=["file: key: expected x"]),
        "failed": Failed("it broke"),
        "unreachable": Unreachable("node1 did not answer"),
        "command": subprocess.CalledProcessError(5, ["debootstrap", "bookworm"], stderr=b"E: no mirror\n"),
        "bug": ValueError("oops"),
    }

    @click.group(cls=_Main)
    def group() -> None:
        pass

    for name, exc in raised.items():
        group.command(name)(lambda exc=exc: (_ for _ in ()).throw(exc))
    runner = CliRunner()
    codes = {}
    for name in raised:
        res = runner.invoke(group, [name])
        assert "Traceback" not in res.output, res.output
        codes[name] = res.exit_code
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert codes == {"bad": 2, "failed": 1, "unreachable": 3, "command": 1, "bug": 1}
    assert "E: no mirror" in runner.invoke(group, ["command"]).output


@pytest.mark.parametrize(("kind", "nodes", "limit"), [("container", 201, "200"), ("vm", 10, "9")])
def test_sandbox_refuses_more_nodes_than_its_kind_allows(tmp_path: Path, kind, nodes, limit):
    res = mp("sandbox", "up", "--site", tmp_path, "--kind", kind, "--nodes", str(nodes))
    assert res.rc == 2, res.stdout + res.stderr
    assert f"at most {limit} nodes" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / ".mlops-provision").exists(), "nothing started"


# --------------------------------------------------------------------------- mlflow backup|restore, facts
EXAMPLE = ["-i", "inventories/example", "--vault-password-file", "inventories/example/.vault-password"]


@pytest.fixture
def fake_run(monkeypatch):
    """run_playbook replaced: what each call was given, and a clean summary back."""
    import os

    from mlops_provision import runner

    calls: list[dict] = []

    def run_playbook(inventory, **kwargs):
        calls.append({**kwargs, "env_backup": os.environ.get("MLOPS_MLFLOW_BACKUP")})
        return runner.RunSummary(verb=kwargs["verb"], inventory=str(inventory.path), playbook=str(kwargs["playbook"]),
                                 check=False, limit=kwargs.get("limit"), tags=None, started="now", run_dir="/nowhere")

    monkeypatch.setattr(runner, "run_playbook", run_playbook)
    monkeypatch.chdir(Path(__file__).parents[2])
    return calls


@pytest.mark.parametrize(("verb", "option", "playbook"), [("backup", "--name", "mlflow-backup.yml"),
                                                          ("restore", "--backup", "mlflow-restore.yml")])
def test_mlflow_backup_name_is_an_extra_var(fake_run, verb, option, playbook):
    """The backup's name reaches the playbook as the extra var mlflow_backup_name (what
    `ansible-playbook -e` passes), not through the environment."""
    from click.testing import CliRunner

    from mlops_provision.cli import main

    res = CliRunner().invoke(main, ["mlflow", verb, *EXAMPLE, option, "nightly-1.2_3", "--output", "json"])
    assert res.exit_code == 0, res.output
    (call,) = fake_run
    assert call["extravars"] == {"mlflow_backup_name": "nightly-1.2_3"} and call["env_backup"] is None
    assert Path(call["playbook"]).name == playbook and call["limit"] == "cp1"  # the example's mlflow host


@pytest.mark.parametrize("name", ["../etc", ".hidden", "a/b", "a b", "x\n", "-rf", ""])
def test_a_bad_backup_name_is_refused_before_any_run(fake_run, name):
    from click.testing import CliRunner

    from mlops_provision.cli import main

    res = CliRunner().invoke(main, ["mlflow", "restore", *EXAMPLE, "--backup", name])
    assert res.exit_code == 2 and "invalid backup name" in res.output, res.output
    assert fake_run == []


def test_the_cli_and_the_playbooks_check_one_backup_name_format():
    """One pattern (playbooks/vars/mlflow_backup.yml): the CLI's check and both playbooks' read it."""
    import yaml

    from mlops_provision import paths
    from mlops_provision.cli import backup_name_pattern

    assert backup_name_pattern().pattern == "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    for book in ("mlflow-backup.yml", "mlflow-restore.yml"):
        (play,) = yaml.safe_load(paths.playbook(book).read_text())
        assert play["vars_files"] == ["vars/mlflow_backup.yml"]
        check = play["tasks"][0]["ansible.builtin.assert"]["that"]
        assert "mlflow_backup_name is regex(mlflow_backup_name_pattern, match_type='fullmatch')" in check
        assert "lookup" not in paths.playbook(book).read_text()  # no environment variable


def test_facts_json_gives_each_node_its_record(monkeypatch):
    from click.testing import CliRunner

    from mlops_provision.cli import main
    from mlops_provision.gpu import collect as collect_module
    from mlops_provision.runner import HostResult, RunSummary

    def collect(inventory, *, limit=None, vault_password_file=None):
        summary = RunSummary(verb="facts", inventory="x", playbook="facts.yml", check=False, limit=limit, tags=None,
                             started="now", run_dir="/runs/1", exit_code=3,
                             hosts=[HostResult("a", ok=1, status="ok"),
                                    HostResult("b", unreachable=1, status="unreachable", message="no route")])
        return summary, {"a": {"kernel": "6.1"}, "b": None}

    monkeypatch.setattr(collect_module, "collect", collect)
    monkeypatch.chdir(Path(__file__).parents[2])
    res = CliRunner().invoke(main, ["facts", *EXAMPLE, "--output", "json"])
    assert res.exit_code == 3, res.output
    import json

    assert json.loads(res.output) == {"run_dir": "/runs/1", "exit_code": 3, "nodes": {
        "a": {"status": "ok", "message": "", "facts": {"kernel": "6.1"}},
        "b": {"status": "unreachable", "message": "no route", "facts": None}}}


# --------------------------------------------------------------------------- up and verify output
def test_up_json_carries_changed_tasks_and_human_output_the_summary(monkeypatch):
    from click.testing import CliRunner

    from mlops_provision import runner
    from mlops_provision.cli import main

    def run_playbook(inventory, **kwargs):
        return runner.RunSummary(
            verb=kwargs["verb"], inventory="x", playbook="site.yml", check=kwargs["check"], limit=None, tags=None,
            started="now", run_dir="/runs/1-up", hosts=[runner.HostResult("cp1", ok=3, changed=1, status="changed")],
            changed_tasks={"cp1": {"base": ["Base | Configure chrony"]}},
            notes={"cp1": [{"kind": "reboot", "reason": "new kernel"}]},
            plays=[{"play": "Base layer", "duration_s": 12.0}])

    monkeypatch.setattr(runner, "run_playbook", run_playbook)
    monkeypatch.chdir(Path(__file__).parents[2])
    res = CliRunner().invoke(main, ["up", *EXAMPLE, "--output", "json"])
    assert res.exit_code == 0, res.output
    import json

    data = json.loads(res.stdout)
    assert data["changed_tasks"] == {"cp1": {"base": ["Base | Configure chrony"]}}
    assert data["plays"] == [{"play": "Base layer", "duration_s": 12.0}]
    human = CliRunner().invoke(main, ["up", *EXAMPLE, "--check"])
    assert human.exit_code == 0, human.output
    for line in ("WOULD CHANGE", "base (cp1): Configure chrony", "REBOOT NEEDED: cp1: new kernel",
                 "exit 0; run record: /runs/1-up"):
        assert line in [out.strip() for out in human.stdout.splitlines()], (line, human.output)


@pytest.mark.parametrize("flag", [[], ["--show-skipped"], ["-v"]])
def test_verify_prints_skips_per_reason_unless_asked_for_all(monkeypatch, flag):
    from click.testing import CliRunner

    from mlops_provision import verify
    from mlops_provision.cli import main
    from mlops_provision.drift import run as drift_run

    results = [verify.CheckResult(h, "base", "the node's name", "skipped", message=f"off for {h}", roles=["base"])
               for h in ("cp1", "gpu1")]
    results.append(verify.CheckResult("cp1", "base", "chrony", "passed", roles=["base"]))
    monkeypatch.setattr(verify, "run_checks", lambda inventory, **kw: verify.VerifyReport("x", list(results), 3.0))
    monkeypatch.setattr(drift_run, "save_verify_record", lambda site, report: Path("/runs/2-verify"))
    monkeypatch.chdir(Path(__file__).parents[2])
    res = CliRunner().invoke(main, ["verify", *EXAMPLE, *flag])
    assert res.exit_code == 0, res.output
    lines = [line.rstrip() for line in res.output.splitlines()]
    assert lines[-1] == "1 passed, 0 failed, 0 errors, 2 skipped on 2 host(s) in 3.0s; run record: /runs/2-verify"
    grouped = "  2 skipped: off for <host> (cp1, gpu1)" in lines
    assert grouped is not bool(flag), res.output
    assert ("off for gpu1" in res.output) is bool(flag)
    js = CliRunner().invoke(main, ["verify", *EXAMPLE, "--output", "json"])
    import json

    assert json.loads(js.stdout)["run_dir"] == "/runs/2-verify"
