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
             "--vault-password-file", "inventories/example/example-vault-password")
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
