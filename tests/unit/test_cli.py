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


def test_valid_example_site():
    res = mp("validate", "-i", "inventories/example",
             "--vault-password-file", "inventories/example/example-vault-password")
    assert res.rc == 0, res.stderr
    assert "4 host(s)" in res.stdout


def test_sandbox_status_without_sandbox(tmp_path: Path):
    res = mp("sandbox", "status", "--site", tmp_path)
    assert res.rc == 1 and "no sandbox is up" in res.stdout
