"""End to end on two sandbox QEMU VMs (TCG, a real kernel each), one per Debian release: node1
runs Debian 12, node2 Debian 13, and the suite's one VM converge brings both up at once. Base +
hardening, containerd and the Kubernetes prerequisites (and node-exporter with the IPMI exporter
reading each VM's simulated BMC) converge on both with a keyfile-unlocked volume each, then verify
on both (LUKS, nftables probed from the other node, auditd, sshd, sysctls): the kernel side of
both releases in every run. Each then reboots once and verify passes again: node2 (Debian 13) with
its keyfile, node1 (Debian 12) after its volume moved to Tang. On node1 before that: kernel-side
drift injected and `up --check` predicting exactly what the next `up` changes, which is only what
was drifted (the layer's idempotence on a real kernel; the whole site's idempotence on both
releases is proven on containers and by Molecule), encryption that is real, bad input stopped
before any change, then the volume moved to Tang (`up --tags disk_encryption`), Tang at boot, up
and down, and last the Tang binding removed by hand: `up --check` predicts exactly the rebind `up`
makes. These steps are the roles' logic, the same on both releases (docs/proven.md says which
release proves what). node2 also runs the Tang server (Debian's tang, installed after the
converge, its port opened to the cluster's nodes by `firewall_rules`) that unlocks node1's volume.
The tests run in file order: those that reboot node1 or change its volume's unlocking come after
every test that reads the keyfile-mode host.

The VM disks hold the converged layers' Debian packages already (sandbox image, VM_PACKAGES),
apt's lists of their install and this machine's CA certificates where the base role puts them:
under TCG dpkg was most of a VM converge, and `apt-get update` and update-ca-certificates a minute
or more each. The roles' tasks still run here and find them; the installs themselves are proven on
containers of both releases. The MLflow layer is left out
here: it is proven on containers in test_mlflow.py, and its install under TCG would double this
module's time. AIDE is off here too (os_hardening_aide: false): it needs no real kernel and is
proven on containers (test_containers.py), while under TCG installing it alone takes 8 min
(aide-common registers each of its ~200 config fragments with ucf, measured 2026-11-28). So is
OpenSCAP (os_hardening_install_openscap: false): a scanner with no kernel side, installed and
checked on containers and by Molecule, whose content packages would be installed under TCG."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time

import pytest

from mlops_provision.checks.test_node_exporter import ipmi_up
from mlops_provision.sandbox import Sandbox
from tests.conftest import mp
from tests.integration.conftest import (
    assert_check_predicted,
    bring_up,
    by_host,
    changed_by_host,
    edit_inventory,
    node_ssh,
    tear_down,
    variant,
    vault_password,
)

pytestmark = [pytest.mark.integration, pytest.mark.vm]
#: verify's selection on node1: the layers this module converges (base, hardening, node-exporter
#: with the BMC's exporter), not the MLflow layer and the monitoring server it leaves out.
VM_CHECKS = "not mlflow and not postgresql and not prometheus"
NODES = ["node1", "node2"]
RELEASES = {"node1": "12", "node2": "13"}  # Debian's release of each VM


TANG = "http://10.213.8.12"  # node2 on the VM network
# Base, hardening, containerd and the Kubernetes prerequisites (swap, kernel, CRI): node1 is in
# control_plane; the Kubernetes packages cannot be had here (test_kubernetes_packages_...). And
# node-exporter with the IPMI exporter: the sandbox's VMs have a (QEMU-simulated) BMC.
TAGS = "base,hardening,containerd,kubernetes_prerequisites,node_exporter"


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    """Two VMs, node1 on Debian 12 and node2 on 13; node2's firewall_rules open port 80 to the
    cluster for the Tang server that fixture `tang` installs and binds node1's volume to."""
    site = tmp_path_factory.mktemp("vmsite")
    inv = bring_up(site, 2, "vm", release=list(RELEASES.values()))

    def edit(data):
        # The monitoring page (on node1, in group monitoring) only from QEMU's NAT network: node2
        # is then a non-admin network whose connections to the page the firewall must drop.
        data["all"]["vars"].update(os_hardening_aide=False, os_hardening_install_openscap=False,
                                   monitoring_client_cidrs=["10.0.2.0/24"])
        data["all"]["hosts"]["node2"]["firewall_rules"] = [
            {"name": "tang", "port": 80, "proto": "tcp", "from": "cluster"}]

    inv = edit_inventory(inv, edit)
    # node1 (control_plane) gets a swap file in fstab, as many installs have: the Kubernetes
    # prerequisites must turn it off for good (checked after the reboot below).
    node_ssh(inventory=inv, node="node1", command="fallocate -l 64M /swapfile && chmod 600 /swapfile && "
             "mkswap -q /swapfile && swapon /swapfile && echo '/swapfile none swap sw 0 0' >> /etc/fstab")
    yield inv
    tear_down(site)


@pytest.fixture(scope="module")
def converged(inventory):
    res = mp("up", "-i", inventory, "--limit", ",".join(NODES), "--tags", TAGS, "--output", "json",
             timeout=3000)
    assert res.rc == 0, res.stdout + res.stderr
    return res.json()


def test_vms_are_real_machines(inventory):
    kernels = {}
    for node in NODES:
        assert node_ssh(inventory, node, "systemd-detect-virt --vm").stdout.strip() == "qemu"
        assert "mlops-data" in node_ssh(inventory, node, "ls /dev/disk/by-id/").stdout
        release = node_ssh(inventory, node, ". /etc/os-release && echo $VERSION_ID").stdout.strip()
        assert release == RELEASES[node], (node, release)
        kernels[node] = node_ssh(inventory, node, "uname -r").stdout.strip()
    assert kernels["node1"].startswith("6.1.") and kernels["node2"].startswith("6.12."), kernels
    assert "10.213.8.12/24" in node_ssh(inventory, "node2", "ip -br addr show eth1").stdout


def test_converge_then_verify_hardening(inventory, converged):
    assert all(by_host(converged)[node]["changed"] > 0 for node in NODES), by_host(converged)
    passed = _verify(inventory, NODES)
    for check in ("LUKS2 mapping active with argon2id", "loaded table equals the file on disk",
                  "from another node: closed and monitoring ports dropped, SSH accepted",
                  "a change to /etc/passwd produces an identity event",
                  "loaded audit rules equal the rules on disk", "kernel parameters have their effective values",
                  "kernel parameters at boot equal the inventory's", "password login refused, key login works",
                  "every key is escrowed, vault-encrypted, on the admin machine",
                  "keyfiles are root-only (0400, directory 0700), and gone where Tang unlocks",
                  "loaded nftables ruleset: our table only, nftables.d only ours",
                  "audit rules.d holds only our rules",
                  "IPMI exporter reaches the BMC in-band (its bmc collector answers)",
                  "IPMI exporter: root without capabilities, no new privileges, read-only system"):
        for node in NODES:
            assert (node, check) in passed, (node, check)


def test_bmc_read_in_band_and_a_missing_power_reading_reported(inventory, converged):
    """The IPMI exporter reads node1's BMC through /dev/ipmi0 (FreeIPMI as root, no capability).
    QEMU's simulated BMC answers IPMI but not DCMI's power reading: the exporter says so
    (ipmi_up{collector="dcmi"} 0, no power series), which is what BmcPowerUnreadable fires on. The
    power value itself needs a real BMC (docs/proven.md)."""
    metrics = node_ssh(inventory, "node1", "curl -fsS --max-time 60 http://10.213.8.11:9290/metrics").stdout
    up = ipmi_up(metrics)
    assert up == {"bmc": "1", "chassis": "1", "dcmi": "0", "ipmi": "1"}, up
    assert "ipmi_chassis_power_state 1" in metrics
    assert not any(line.startswith("ipmi_dcmi_power_consumption_watts") for line in metrics.splitlines())


# Kernel-side drift that `up` repairs, each through a task check mode used to skip (a command) or a
# handler: injection on node1 -> the tasks and handlers `up` may change for it (the first must).
VM_REPAIRS = {
    "sysctl -qw kernel.sysrq=1 net.ipv4.conf.all.send_redirects=1":
        ["Os_hardening | Apply the kernel parameters where the effective value differs"],
    "pam-auth-update --package --remove mlops-pwhistory":
        ["Os_hardening | Rebuild the common-* PAM files with the profiles (pam-auth-update)"],
    "swapon /swapfile":
        ["Kubernetes_node | Turn swap off now", "Kubernetes_node | Mask swap.target and every swap unit"],
    "echo '# edited by hand' >> /etc/nftables.d/mlops_host.nft":
        ["Firewall | Load our table", "Firewall | Write our table (validated with nft -c before it goes live)"],
    "sed -i 's/^max_log_file = .*/max_log_file = 1/' /etc/audit/auditd.conf":
        ["Audit | Reconfigure auditd", "Audit | Configure auditd (rotation, non-halting disk actions)"],
}


def test_check_mode_predicts_the_kernel_side_repairs(inventory, converged):
    """On the VM (a kernel of its own), the hardening layer and the Kubernetes prerequisites: a
    runtime sysctl, a PAM profile disabled, swap on, our nft table and auditd's configuration
    edited. `up --check` reports exactly the tasks and handlers the following `up` changes, exit 4;
    each injection's repair is among them, and nothing else changed: the second converge of the
    layer changes only what was drifted (its idempotence on a kernel of its own)."""
    for inject in VM_REPAIRS:
        node_ssh(inventory, "node1", inject)
    args = ("up", "-i", inventory, "--limit", "node1", "--tags", "hardening,kubernetes_prerequisites",
            "--output", "json")
    check = mp(*args, "--check", timeout=2400)
    assert check.rc == 4, check.stdout[-3000:] + check.stderr[-3000:]
    real = mp(*args, timeout=2400)
    assert real.rc == 0, real.stdout[-3000:] + real.stderr[-3000:]
    assert_check_predicted(check.json(), real.json(), ["node1"])
    done = changed_by_host(real.json()).get("node1", set())
    assert {tasks[0] for tasks in VM_REPAIRS.values()} <= done, sorted(done)
    explained = {t for tasks in VM_REPAIRS.values() for t in tasks}
    assert done <= explained, sorted(done - explained)
    assert node_ssh(inventory, "node1", "swapon --show=NAME --noheadings").stdout.strip() == ""
    assert node_ssh(inventory, "node1", "sysctl -n kernel.sysrq").stdout.strip() == "0"


KERNEL_DRIFT = {  # injection, undo, the check that must catch it (drift's kernel-side checks)
    "loaded nftables ruleset: our table only, nftables.d only ours":
        ("nft add table inet evil", "nft delete table inet evil"),
    "audit rules.d holds only our rules":
        ("echo '-w /tmp -p wa -k evil' > /etc/audit/rules.d/zz-evil.rules", "rm -f /etc/audit/rules.d/zz-evil.rules"),
    "kernel parameters have their effective values": ("sysctl -qw kernel.sysrq=1", "sysctl -qw kernel.sysrq=0"),
    "drop-in directories hold only our and the packages' files [/etc/modprobe.d]":
        ("echo 'options evil x=1' > /etc/modprobe.d/zz-evil.conf", "rm -f /etc/modprobe.d/zz-evil.conf"),
}


def test_kernel_side_drift_is_caught(inventory, converged):
    """What drift reads on a real kernel: a foreign nft table, an audit rules file next to ours, a
    sysctl changed at run time, a modprobe.d file next to ours; each fails its check, undone it passes."""
    select = "no_foreign_ruleset or rules_d_only_ours or sysctl_effective_values or dropin_dirs_only_ours"
    for inject, _undo in KERNEL_DRIFT.values():
        node_ssh(inventory, "node1", inject)
    try:
        res = mp("verify", "-i", inventory, "--limit", "node1", "-k", select, "--output", "json")
        failed = {r["check"]: r for r in res.json()["results"] if r["outcome"] == "failed"}
        assert res.rc == 1 and set(KERNEL_DRIFT) <= set(failed), failed
        # Structured, not message text: a file next to ours is not `up`'s to repair (with a hint),
        # a runtime sysctl is (check mode predicts its repair: test_check_mode_predicts_...).
        strange = failed["audit rules.d holds only our rules"]
        assert strange["managed"] is False and strange["hint"] and strange["roles"] == ["audit"], strange
        sysctl = failed["kernel parameters have their effective values"]
        assert sysctl["managed"] is True and sysctl["roles"] == ["os_hardening"], sysctl
    finally:
        for _inject, undo in KERNEL_DRIFT.values():
            node_ssh(inventory, "node1", undo, check=False)
    res = mp("verify", "-i", inventory, "--limit", "node1", "-k", select, "--output", "json")
    assert res.rc == 0, [(r["check"], r["message"]) for r in res.json()["results"] if r["outcome"] != "passed"]


def test_kubernetes_prerequisites_converged(inventory, converged):
    """Swap off (the swap file's fstab line commented out, swap.target masked), containerd's CRI,
    the cluster ports open to node2 (checked by verify above and after the reboot)."""
    assert node_ssh(inventory, "node1", "swapon --show=NAME --noheadings").stdout.strip() == ""
    assert "# /swapfile none swap sw 0 0" in node_ssh(inventory, "node1", "cat /etc/fstab").stdout
    lines = _table(inventory, "node1").splitlines()
    rules = (("tcp", 10250, "kubelet"), ("udp", 4789, "calico vxlan"), ("tcp", 6443, "kubernetes api"))
    for proto, port, name in rules:
        assert any(f"{proto} dport {port}" in line and "@cluster_v4" in line and f'comment "{name}"' in line
                   for line in lines), (proto, port, name)
    # "cluster" is the inventory's nodes and nothing else: closed to every other address.
    members = node_ssh(inventory, "node1", "nft -j list set inet mlops_host cluster_v4").stdout
    found = set()
    for elem in json.loads(members)["nftables"][1]["set"]["elem"]:  # auto-merge joins neighbours into ranges
        if isinstance(elem, dict) and "prefix" in elem:
            net = ipaddress.ip_network(f'{elem["prefix"]["addr"]}/{elem["prefix"]["len"]}')
            first, last = net[0], net[-1]
        else:
            first, last = elem["range"] if isinstance(elem, dict) and "range" in elem else (elem, elem)
        start, end = int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))
        found |= {str(ipaddress.ip_address(a)) for a in range(start, end + 1)} if end - start < 256 else {"too many"}
    assert found == {"10.213.8.11", "10.213.8.12"}, members


def test_kubernetes_packages_stop_naming_the_source(inventory, converged):
    """No Kubernetes package can be had here: the role stops, naming the repository's URL."""
    res = mp("up", "-i", inventory, "--limit", "node1", "--tags", "kubernetes_node", "--output", "json",
             timeout=1200)
    node1 = by_host(res.json())["node1"]
    assert res.rc == 1 and "Kubernetes packages cannot be had on node1" in node1["message"], node1
    assert "pkgs.k8s.io/core:/stable:/v" in node1["message"] and node1["changed"] == 0, node1


def test_encryption_is_real(inventory, converged):
    """The marker's own block: plaintext through the mapping, ciphertext at the same place on the disk."""
    marker = "mlops-provision-marker-5d41402abc4b2a76"
    node_ssh(inventory, "node1", f"echo {marker} > /srv/mlops/marker.txt && sync")
    where = node_ssh(inventory, "node1", "filefrag -v /srv/mlops/marker.txt | awk '$1 == \"0:\" {print $4}';"
                     " stat -f -c %S /srv/mlops; dmsetup table mlops-data").stdout.split("\n")
    block, block_size = int(where[0].rstrip(".")), int(where[1])
    payload_sectors = int(where[2].split()[7])  # crypt target: start len crypt cipher key iv dev OFFSET
    assert payload_sectors > 0 and block > 0, where

    def read(device, offset_bytes):
        cmd = (f"dd if={device} iflag=direct,skip_bytes bs={block_size} skip={offset_bytes} count=1 "
               "status=none | od -An -v -tx1 | tr -d ' \\n'")
        return bytes.fromhex(node_ssh(inventory, "node1", cmd).stdout.strip())

    plain = read("/dev/mapper/mlops-data", block * block_size)
    raw = read("/dev/disk/by-id/virtio-mlops-data", payload_sectors * 512 + block * block_size)
    assert marker.encode() in plain, "the marker is not in its block on the decrypted device"
    assert len(raw) == block_size and marker.encode() not in raw, "the marker is readable on the raw device"
    assert raw != plain and raw.count(0) < block_size // 8, "the raw block is not ciphertext"


def _table(inventory, node):
    return node_ssh(inventory, node, "nft -s list table inet mlops_host").stdout


def test_lockout_cidr_refused_before_any_change(inventory, converged):
    before = _table(inventory, "node1")

    def lockout(data):
        data["all"]["vars"]["mlops_admin_cidrs"] = ["192.0.2.0/24"]

    res = mp("up", "-i", variant(inventory, "lockout", lockout), "--limit", "node1", "--tags", "firewall",
             "--output", "json", "--vault-password-file", vault_password(inventory))
    assert res.rc == 1
    node1 = by_host(res.json())["node1"]
    assert "would cut off SSH" in node1["message"] and "10.0.2.2" in node1["message"]
    assert node1["changed"] == 0
    assert _table(inventory, "node1") == before


@pytest.mark.parametrize(("device", "expected"), [
    ("/dev/disk/by-id/virtio-no-such-disk", "is not a block device"),
    ("/dev/disk/by-label/MLOPSSEED", "already holds TYPE=ext4"),
])
def test_bad_devices_refused_before_any_write(inventory, converged, device, expected):
    state = "blkid -p -o export /dev/disk/by-label/MLOPSSEED; ls /etc/mlops-provision/luks-keys"
    before = node_ssh(inventory, "node1", state).stdout

    def bad_volume(data):
        data["all"]["vars"]["disk_encryption_volumes"] = [
            {"name": "scratch", "device": device, "mountpoint": "/srv/scratch"}]

    res = mp("up", "-i", variant(inventory, f"baddev{len(device)}", bad_volume), "--limit", "node1",
             "--tags", "disk_encryption", "--output", "json", "--vault-password-file", vault_password(inventory))
    assert res.rc == 1
    node1 = by_host(res.json())["node1"]
    assert expected in node1["message"] and "Nothing was written" in node1["message"], node1["message"]
    assert node1["changed"] == 0
    after = node_ssh(inventory, "node1", state).stdout
    assert after == before


def test_invalid_cidr_is_bad_input(inventory):
    def bad_cidr(data):
        data["all"]["vars"]["mlops_admin_cidrs"] = ["10.0.2.0/33"]

    res = mp("up", "-i", variant(inventory, "badcidr", bad_cidr), "--vault-password-file", vault_password(inventory))
    assert res.rc == 2 and "mlops_admin_cidrs" in res.stderr


def wait_for(inventory, node: str, command: str, what: str, seconds: int = 600) -> str:
    """Poll ``command`` over SSH until it succeeds (the node may be down meanwhile); its stdout.
    SSH answers before the boot has ended: a mount or unit that follows can come minutes later
    on busy cores (a boot has loaded its modules 3 minutes in), hence the default 10 minutes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            res = node_ssh(inventory, node, command, check=False, timeout=30)
            if res.returncode == 0:
                return res.stdout
        except subprocess.TimeoutExpired:
            pass
        time.sleep(5)
    raise AssertionError(f"{node}: {what} not within {seconds} s")


def reboot(inventory, node: str) -> None:
    """Reboot and wait for the new boot. Under TCG a boot takes 1-5 min, longer while the other
    lane upgrades its containers (both cores busy): up to 20 min before it counts as failed, and
    then the end of the VM's serial console says where the boot stood. One VM at a time: two
    booting at once on two busy cores once stalled a guest's early boot (RCU stalls)."""
    boot_id = node_ssh(inventory, node, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    # What could hold the shutdown (an upgrade running, apt's periodic jobs), said if it hangs.
    before = node_ssh(inventory, node, "pgrep -a -f 'unattended-upgrade|apt|dpkg'; ls -l /run/unattended-upgrades.*;"
                      " systemctl list-units --all --no-legend 'apt-daily*' 'unattended*'", check=False).stdout
    node_ssh(inventory, node, "systemctl reboot", check=False, timeout=30)
    try:
        wait_for(inventory, node, f"test \"$(cat /proc/sys/kernel/random/boot_id)\" != {boot_id}", "the reboot",
                 seconds=1200)
    except AssertionError as gone:
        box = Sandbox(inventory.parent.parent.parent)
        target = next(n for n in box.state().nodes if n.name == node)
        raise AssertionError("\n".join([str(gone), "before the reboot:", before,
                                         *box.backend("vm").diagnose(target)])) from None
    # Nothing held the shutdown until logind gave up waiting (its delay is 30 s): unattended-upgrades'
    # shutdown helper, restarted after the converge restarted logind, heard the shutdown and let go.
    logind = node_ssh(inventory, node, "journalctl -b -1 -q --no-pager -u systemd-logind").stdout
    assert "The system will reboot now!" in logind, f"{node}: the last boot's journal has no reboot: {logind}"
    assert "inhibitor timeout is reached" not in logind, f"{node}: the shutdown waited out logind's delay: {logind}"


def _volume(inventory) -> str:
    return node_ssh(inventory, "node1", "cryptsetup status mlops-data | head -n 1; findmnt -n -o SOURCE /srv/mlops;"
                    " cat /srv/mlops/tang-marker.txt", check=False).stdout


def _verify(inventory, nodes: list[str], select: str = VM_CHECKS) -> set[tuple[str, str]]:
    """verify of the nodes' checks (default: every layer this module converges), all passing;
    (host, check) of those that passed."""
    res = mp("verify", "-i", inventory, "--limit", ",".join(nodes), "-k", select, "--output", "json",
             "--vault-password-file", vault_password(inventory))
    results = res.json()["results"]
    failed = [(r["host"], r["check"], r["message"]) for r in results if r["outcome"] in ("failed", "error")]
    assert res.rc == 0 and not failed, failed
    return {(r["host"], r["check"]) for r in results if r["outcome"] == "passed"}


#: What a reboot must bring back, checked by verify on the node after its reboot.
AFTER_REBOOT = ("LUKS2 mapping active with argon2id", "loaded table equals the file on disk",
                "loaded audit rules equal the rules on disk", "kernel parameters at boot equal the inventory's",
                "password login refused, key login works", "swap off, fstab without active swap, swap.target masked",
                "kernel modules for Kubernetes (overlay, br_netfilter) present",
                "kernel parameters for Kubernetes (forwarding, bridge netfilter)",
                "containerd's CRI socket answers, runc with systemd cgroups",
                "from another node: the kubelet port passes the firewall")


def test_reboot_keyfile_opens_the_volume_and_verify_passes(inventory, converged):
    """node2 (Debian 13) reboots: its keyfile opens its volume, and the firewall, audit rules,
    kernel parameters and SSH come back: verify passes again. No shutdown waits out logind's delay
    for unattended-upgrades' helper (reboot(); docs/proven.md). node1 (Debian 12) reboots once its
    volume is Tang's (test_tang_unlocks_the_volume_at_boot), and the same checks pass there: one
    boot fewer under emulation; a keyfile at boot is the role's logic, the same on both releases,
    while Debian 13's own systemd-cryptsetup package opens the keyfile volume here."""
    node_ssh(inventory, "node2", "echo survives-node2 > /srv/mlops/keyfile-marker.txt && sync")
    reboot(inventory, "node2")
    wait_for(inventory, "node2", "mountpoint -q /srv/mlops", "node2's volume mounted with its keyfile")
    assert node_ssh(inventory, "node2", "cat /srv/mlops/keyfile-marker.txt").stdout == "survives-node2\n"
    passed = _verify(inventory, ["node2"])
    for check in AFTER_REBOOT:
        assert ("node2", check) in passed, check


@pytest.fixture(scope="module")
def tang(inventory, converged):
    """node1's keyfile volume moved to node2's Tang server: `up` of the disk_encryption layer binds
    it, proves Tang unlocks it and removes the keyfile (the escrowed key stays).
    node2's Tang server (Debian's tang) is installed here, after the converge: its apt lists are
    then fresh (an `apt-get update` under TCG takes a minute or more), and are refreshed only if
    the archive has moved on since."""
    apt = "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"  # apt's timers may hold it
    install = f"{apt} install -y -q --no-install-recommends tang"
    node_ssh(inventory, "node2", f"{{ {install} || {{ {apt} update -q && {install}; }}; }} "
             "&& systemctl is-active tangd.socket")
    edit_inventory(inventory, lambda data: data["all"]["vars"].update(disk_encryption_tang_servers=[{"url": TANG}]))
    res = mp("up", "-i", inventory, "--limit", "node1", "--tags", "disk_encryption", "--output", "json",
             "--vault-password-file", vault_password(inventory), timeout=1800)
    assert res.rc == 0, res.stdout + res.stderr
    assert by_host(res.json())["node1"]["changed"] > 0
    return res.json()


def test_moved_to_tang_verify_passes(inventory, tang):
    """The volume layer's checks: `up --tags disk_encryption` runs that role alone, so the other
    layers are as the verify after the reboot above found them."""
    passed = {check for _host, check in _verify(inventory, ["node1"], "disk_encryption")}
    for check in ("bound to the inventory's Tang servers, and they unlock each volume",
                  "keyfiles are root-only (0400, directory 0700), and gone where Tang unlocks",
                  "every key is escrowed, vault-encrypted, on the admin machine"):
        assert check in passed, check


def test_tang_unlocks_the_volume_at_boot(inventory, tang):
    """No key on node1: after a reboot the volume is open and mounted because node2's Tang answered;
    node1's first reboot, so verify then proves what a reboot must bring back on Debian 12 too."""
    node_ssh(inventory, "node1", "echo survives > /srv/mlops/tang-marker.txt && sync")
    reboot(inventory, "node1")
    wait_for(inventory, "node1", "mountpoint -q /srv/mlops", "the volume mounted through Tang")
    assert _volume(inventory).split("\n")[:3] == ["/dev/mapper/mlops-data is active and is in use.",
                                                   "/dev/mapper/mlops-data", "survives"], _volume(inventory)
    journal = node_ssh(inventory, "node1", "journalctl -b -u clevis-luks-askpass.service --no-pager").stdout
    assert "Unlocked /dev/disk/by-uuid/" in journal, journal
    assert node_ssh(inventory, "node1", "ls -A /etc/mlops-provision/luks-keys").stdout == ""
    passed = _verify(inventory, ["node1"])
    for check in (*AFTER_REBOOT, "bound to the inventory's Tang servers, and they unlock each volume"):
        assert ("node1", check) in passed, check


def test_tang_down_at_boot_then_up_opens_from_the_escrow(inventory, tang):
    """Tang down: node1 boots with the volume closed; `up` hands systemd the escrowed key (data back,
    units active), fails naming the unreachable Tang server; once Tang is back, `up` changes nothing."""
    node_ssh(inventory, "node2", "systemctl stop tangd.socket 'tangd@*.service'")
    try:
        reboot(inventory, "node1")
        wait_for(inventory, "node1", "grep -qs '^Id=cryptsetup:' /run/systemd/ask-password/ask.*",
                 "systemd-cryptsetup waiting for the key")
        assert "is inactive" in _volume(inventory), _volume(inventory)
        res = mp("up", "-i", inventory, "--limit", "node1", "--tags", "disk_encryption", "--output", "json",
                 "--vault-password-file", vault_password(inventory))
        node1 = by_host(res.json())["node1"]
        assert res.rc == 1 and f"the Tang servers ({TANG}, 1 needed) did not unlock" in node1["message"], node1
        assert _volume(inventory).split("\n")[:3] == ["/dev/mapper/mlops-data is active and is in use.",
                                                       "/dev/mapper/mlops-data", "survives"], _volume(inventory)
        units = node_ssh(inventory, "node1", "systemctl is-active 'systemd-cryptsetup@mlops\\x2ddata' srv-mlops.mount",
                         check=False).stdout.split()
        assert units == ["active", "active"], units
    finally:
        node_ssh(inventory, "node2", "systemctl start tangd.socket")
    res = mp("up", "-i", inventory, "--limit", "node1", "--tags", "disk_encryption", "--output", "json",
             "--vault-password-file", vault_password(inventory))
    assert res.rc == 0 and by_host(res.json())["node1"]["changed"] == 0, res.stdout + res.stderr


def test_check_mode_predicts_the_tang_rebind(inventory, tang):
    """node1's Tang binding removed by hand: `up --check` reports the bind (check mode used to skip
    it and say nothing), the real `up` makes exactly that change, from the escrowed key."""
    dev = node_ssh(inventory, "node1", "cryptsetup status mlops-data | awk '/device:/ {print $2}'").stdout.strip()
    slot = node_ssh(inventory, "node1", f"clevis luks list -d {dev} | cut -d: -f1 | head -n 1").stdout.strip()
    node_ssh(inventory, "node1", f"clevis luks unbind -f -d {dev} -s {slot}")
    assert node_ssh(inventory, "node1", f"clevis luks list -d {dev}", check=False).stdout.strip() == ""
    args = ("up", "-i", inventory, "--limit", "node1", "--tags", "disk_encryption", "--output", "json",
            "--vault-password-file", vault_password(inventory))
    check = mp(*args, "--check", timeout=1800)
    assert check.rc == 4, check.stdout[-3000:] + check.stderr[-3000:]
    real = mp(*args, timeout=1800)
    assert real.rc == 0, real.stdout[-3000:] + real.stderr[-3000:]
    assert_check_predicted(check.json(), real.json(), ["node1"])
    assert "Disk_encryption | Bind each volume to the Tang servers" in changed_by_host(real.json())["node1"]
    assert node_ssh(inventory, "node1", f"clevis luks list -d {dev}").stdout.strip() != ""
