"""Checks for the `disk_encryption` role: LUKS2 mappings active, mounts backed by them, keys safe."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def volumes(kernel_node):
    vols = kernel_node["disk_encryption_volumes"]
    if not vols:
        pytest.skip("disk_encryption_volumes is empty")
    return vols


def test_luks_mapping_active(host, kernel_node, volumes):
    """LUKS2 mapping active with argon2id"""
    for vol in volumes:
        status = host.run(f"cryptsetup status {vol['name']}")
        assert status.rc == 0 and "is active" in status.stdout, f"/dev/mapper/{vol['name']} is not active"
        assert "type:    LUKS2" in status.stdout, f"{vol['name']} is not LUKS2"
        dump = host.check_output(f"cryptsetup luksDump {vol['device']}")
        assert f"PBKDF:      {kernel_node['disk_encryption_pbkdf']}" in dump, f"{vol['name']}: PBKDF is not argon2id"


def test_mount_backed_by_mapping(host, kernel_node, volumes):
    """mount point is backed by the encrypted mapping"""
    for vol in volumes:
        source = host.check_output(f"findmnt -n -o SOURCE --target {vol['mountpoint']}")
        assert source == f"/dev/mapper/{vol['name']}", f"{vol['mountpoint']} is on {source}"
        tree = host.check_output(f"lsblk -n -o TYPE -s /dev/mapper/{vol['name']}").split()
        assert tree[0] == "crypt", f"{vol['name']} is not a crypt device ({tree})"


def test_keyfiles_root_only(host, kernel_node, volumes):
    """keyfiles are root-only (0400, directory 0700)"""
    keydir = host.file(kernel_node["disk_encryption_keyfile_dir"])
    assert keydir.mode == 0o700 and keydir.user == "root"
    for vol in volumes:
        key = host.file(f"{keydir.path}/{vol['name']}.key")
        assert key.exists, f"{key.path} is missing"
        assert key.mode == 0o400 and key.user == "root" and key.group == "root", f"{key.path} mode {key.mode:o}"


def test_opens_at_boot(host, kernel_node, volumes):
    """crypttab and fstab open and mount the volumes at boot"""
    crypttab = host.file("/etc/crypttab").content_string.split("\n")
    fstab = host.file("/etc/fstab").content_string
    for vol in volumes:
        names = [line.split()[0] for line in crypttab if line.strip() and not line.startswith("#")]
        assert vol["name"] in names, f"{vol['name']} not in crypttab"
        assert f"/dev/mapper/{vol['name']} {vol['mountpoint']} " in fstab, f"{vol['mountpoint']} not in fstab"


def test_keys_escrowed(kernel_node, volumes):
    """every key is escrowed, vault-encrypted, on the admin machine"""
    if not kernel_node["disk_encryption_escrow"]:
        pytest.skip("disk_encryption_escrow is off")
    escrow = kernel_node.vars.get("disk_encryption_escrow_dir", "")
    if "{{" in escrow:
        pytest.skip(f"disk_encryption_escrow_dir {escrow!r} cannot be resolved without Ansible")
    for vol in volumes:
        path = Path(escrow) / kernel_node.name / f"{vol['name']}.key.vault"
        assert path.is_file(), f"{path} is missing"
        assert path.read_text().startswith("$ANSIBLE_VAULT;"), f"{path} is not vault-encrypted"
