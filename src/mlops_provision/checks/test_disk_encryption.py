"""Checks for the `disk_encryption` role: LUKS2 mappings active, mounts backed by them, keys safe."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.roles("disk_encryption")


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


def _tang(kernel_node) -> list[dict]:
    return kernel_node["disk_encryption_tang_servers"] or []


def test_keyfiles_root_only(host, kernel_node, volumes):
    """keyfiles are root-only (0400, directory 0700), and gone where Tang unlocks"""
    keydir = host.file(kernel_node["disk_encryption_keyfile_dir"])
    assert keydir.mode == 0o700 and keydir.user == "root"
    for vol in volumes:
        key = host.file(f"{keydir.path}/{vol['name']}.key")
        if _tang(kernel_node):
            assert not key.exists, f"{key.path} is still on the node although Tang unlocks {vol['name']}"
            continue
        assert key.exists, f"{key.path} is missing"
        assert key.mode == 0o400 and key.user == "root" and key.group == "root", f"{key.path} mode {key.mode:o}"


def _crypttab(host) -> dict[str, list[str]]:
    lines = host.file("/etc/crypttab").content_string.split("\n")
    return {line.split()[0]: line.split() for line in lines if line.strip() and not line.startswith("#")}


def test_opens_at_boot(host, kernel_node, volumes):
    """crypttab and fstab open and mount the volumes at boot"""
    crypttab = _crypttab(host)
    fstab = host.file("/etc/fstab").content_string
    tang = bool(_tang(kernel_node))
    for vol in volumes:
        assert vol["name"] in crypttab, f"{vol['name']} not in crypttab"
        fields = crypttab[vol["name"]]
        want_key = "none" if tang else f"{kernel_node['disk_encryption_keyfile_dir']}/{vol['name']}.key"
        got = fields[2] if len(fields) >= 3 else None
        assert got == want_key, f"crypttab {vol['name']}: key {got}, expected {want_key}"
        if tang:
            assert len(fields) == 4 and "_netdev" in fields[3].split(","), f"crypttab {vol['name']}: no _netdev"
        line = next((entry.split() for entry in fstab.splitlines()
                     if entry.split()[:2] == [f"/dev/mapper/{vol['name']}", vol["mountpoint"]]), None)
        assert line, f"{vol['mountpoint']} not in fstab"
        at_boot = set(kernel_node["disk_encryption_boot_mount_options"])
        assert len(line) >= 4 and at_boot <= set(line[3].split(",")), \
            f"fstab mounts {vol['mountpoint']} without {sorted(at_boot - set(line[3].split(',')))}: " \
            "a slow unlock at boot would leave it unmounted"
        wanted = {o for o in vol.get("mount_options", kernel_node["disk_encryption_mount_options"]).split(",") if o}
        live = set(host.check_output(f"findmnt -n -o OPTIONS --target {vol['mountpoint']}").split(","))
        assert wanted <= live, f"{vol['mountpoint']} is mounted without {sorted(wanted - live)}"
    tab = host.file("/etc/crypttab")
    assert (tab.user, tab.mode) == ("root", 0o600), \
        f"/etc/crypttab: owner {tab.user}, mode {tab.mode:o}, expected root 600"
    if tang:
        assert host.service("clevis-luks-askpass.path").is_enabled, "clevis-luks-askpass.path is not enabled"


def test_tang_unlocks(host, kernel_node, volumes):
    """bound to the inventory's Tang servers, and they unlock each volume"""
    servers = _tang(kernel_node)
    if not servers:
        pytest.skip("disk_encryption_tang_servers is empty")
    want = {s["url"] for s in servers}
    for vol in volumes:
        listing = host.check_output(f"clevis luks list -d {vol['device']}")
        slots = [line.split(":")[0] for line in listing.splitlines() if all(u in line for u in want)]
        assert slots, f"{vol['name']}: no clevis slot bound to {sorted(want)}: {listing!r}"
        # asks the Tang servers for the slot's key and tests it against the volume; the key goes nowhere
        unlock = host.run(f"clevis luks pass -d {vol['device']} -s {slots[0]} > /dev/null")
        assert unlock.rc == 0, f"{vol['name']}: the Tang servers did not unlock slot {slots[0]}: {unlock.stderr}"


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
