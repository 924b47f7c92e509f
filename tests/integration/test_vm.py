"""End to end on one sandbox QEMU VM (TCG): a real kernel, booted from the same rootfs."""

from __future__ import annotations

import subprocess

import pytest

from mlops_provision.sandbox.core import Sandbox
from tests.conftest import mp
from tests.integration.conftest import bring_up, by_host, tear_down

pytestmark = [pytest.mark.integration, pytest.mark.vm]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    site = tmp_path_factory.mktemp("vmsite")
    inv = bring_up(site, 1, "vm")
    yield inv
    tear_down(site)


def _ssh(inventory, command: str) -> str:
    box = Sandbox(inventory.parent.parent.parent)
    return subprocess.run([*box.ssh_command(box.state().nodes[0]), command], check=True,
                          capture_output=True, text=True).stdout


def test_vm_is_a_real_machine_with_data_disk_and_private_address(inventory):
    assert _ssh(inventory, "systemd-detect-virt --vm").strip() == "qemu"
    assert "mlops-data" in _ssh(inventory, "ls /dev/disk/by-id/")
    assert "10.213.8.11/24" in _ssh(inventory, "ip -br addr show eth1")
    assert _ssh(inventory, "systemctl is-system-running").strip() == "running"


def test_vm_up_verify_and_idempotence(inventory):
    first = mp("up", "-i", inventory, "--output", "json")
    assert first.rc == 0, first.stdout + first.stderr
    assert by_host(first.json())["node1"]["changed"] > 0
    check = mp("verify", "-i", inventory, "--output", "json")
    assert check.rc == 0, check.stdout
    results = check.json()["results"]
    chrony = next(r for r in results if r["check"] == "chrony running and enabled")
    assert chrony["outcome"] == "passed"
    # in a VM chrony steers the clock: no container drop-in
    assert "-x" not in _ssh(inventory, "systemctl cat chrony")
    second = mp("up", "-i", inventory, "--output", "json")
    assert second.rc == 0
    assert by_host(second.json())["node1"]["changed"] == 0
