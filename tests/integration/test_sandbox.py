"""`sandbox up` itself on real containers. conftest runs this module before the shared sandbox
exists (only one container sandbox can be up on a machine)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mlops_provision.sandbox import Sandbox, SandboxUnreachable
from mlops_provision.sandbox.containers import LABEL
from tests.integration.conftest import bring_up, node_ssh, tear_down


def containers_of(sandbox_dir) -> list[str]:
    """Names of the containers (any state) labelled as the sandbox in ``sandbox_dir``."""
    res = subprocess.run(["podman", "ps", "-a", "--filter", f"label={LABEL}={sandbox_dir}",
                          "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    return res.stdout.split()


def test_up_replaces_the_containers_of_a_sandbox_whose_state_was_lost(tmp_path):
    """A site directory wiped while its sandbox ran (or a killed run that never said `down`)
    leaves containers with the same names but other ports: `up` replaces them. Reusing them
    left every node refusing SSH on the new state's ports until the timeout."""
    site = tmp_path / "site"
    bring_up(site, 1, "container")
    box = Sandbox(site)
    old_port = box.state().nodes[0].ssh_port
    shutil.rmtree(box.dir)  # the state, key and inventory are gone; the container still runs
    try:
        inventory = bring_up(site, 1, "container")
        assert box.state().nodes[0].ssh_port != old_port
        assert node_ssh(inventory, "node1", "cat /etc/hostname").stdout.strip() == "node1"
    finally:
        tear_down(site)
    assert containers_of(box.dir) == [], "containers left behind"


def test_orphans_of_a_removed_site_do_not_block_a_new_sandbox(tmp_path):
    """Containers whose site directory is gone can never be taken down with `sandbox down`:
    the next `sandbox up` (another site) removes them instead of refusing with exit 2."""
    gone, site = tmp_path / "gone", tmp_path / "site"
    bring_up(gone, 1, "container")
    orphan_dir = Sandbox(gone).dir
    shutil.rmtree(gone)
    try:
        inventory = bring_up(site, 1, "container")
        assert node_ssh(inventory, "node1", "true").returncode == 0
    finally:
        tear_down(site)
    assert containers_of(orphan_dir) == [], "orphans left behind"


def test_a_silent_node_is_reported_with_what_podman_knows(tmp_path):
    """When a node does not answer SSH, the error carries its container's state and what its
    systemd says and listens on (CI once saw only 'Connection refused' for 315 s)."""
    site = tmp_path / "site"
    inventory = bring_up(site, 1, "container")
    box = Sandbox(site)
    try:
        node_ssh(inventory, "node1", "systemctl stop ssh.socket ssh.service", check=False)
        with pytest.raises(SandboxUnreachable) as err:
            box.wait_for_ssh(box.state(), timeout=5)
        details = err.value.details
        assert any(line.endswith(": running exit=0 error=") for line in details), details
        assert any(line.startswith("systemd: ") for line in details), details
        listening = next(line for line in details if line.startswith("listening:"))
        assert ":22 " not in listening, details
    finally:
        tear_down(site)
    assert box.state() is None
