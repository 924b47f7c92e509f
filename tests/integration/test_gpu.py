"""The GPU layer on the session's container sandbox (tests/integration/conftest.py): node3 joins
gpu_workers in a variant inventory and gets the whole layer from Debian's archive (driver 535,
DKMS-built natively for the kernels installed in the node, CUDA 11.8 with MLOPS_GPU_CUDA=1,
containerd). There is no GPU: the inventory allows installing without a device, the GPU-present
checks skip with their reason, and the NVIDIA container toolkit (not in Debian, NVIDIA's
repository unreachable) is not installed: its runtime stays unverified here.

Runs after test_upgrade_to_debian13 (AFTER_READERS in conftest.py), whose upgrade of node1 and
node2 the first converge ran beside; the other nodes are only read (facts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_provision.checks import test_containerd as cd_checks
from mlops_provision.checks import test_nvidia_driver as nd_checks
from mlops_provision.records import events
from tests.conftest import mp
from tests.integration.conftest import (
    GPU_NODE,
    WITH_CUDA,
    assert_check_predicted,
    by_host,
    changed_by_host,
    gpu_up_args,
    node_ssh,
    vault_password,
)

pytestmark = pytest.mark.integration
THIRD_PARTY = "/etc/containerd/conf.d/50-third-party.toml"
# A tool's own drop-in (another plugin table): it must survive our re-runs byte for byte, and
# the merge must keep both its setting and ours.
THIRD_PARTY_TOML = 'version = 2\n[plugins."io.containerd.internal.v1.opt"]\n  path = "/opt/third-party-tool"\n'


def _up(inv, *extra, timeout=900):
    return mp(*gpu_up_args(inv, *extra), timeout=timeout)


@pytest.fixture(scope="module")
def box(container_inventory):
    """The sandbox's own inventory: node_ssh finds the sandbox from it (not from the variant)."""
    return container_inventory


def changed_tasks(summary: dict) -> list[str]:
    """The tasks that reported a change in a run (from its record), for failure messages."""
    found = []
    for event in events(Path(summary["run_dir"]) / "artifacts" / "ansible"):
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_ok" and (data.get("res") or {}).get("changed"):
            found.append(f"{data.get('task')}: {json.dumps((data.get('res') or {}).get('diff', ''))[:400]}")
    return found


@pytest.fixture(scope="module")
def gpu_up(gpu_first_converge) -> dict:
    """The first converge of the GPU layer on node3 (conftest.gpu_first_converge: in the suite it
    ran beside test_upgrade_to_debian13's upgrade of node1 and node2)."""
    res = gpu_first_converge.wait()
    assert res.rc == 0, res.stdout[-4000:] + res.stderr[-3000:]
    summary = res.json()
    summary["wall_s"] = res.seconds
    return summary


def ssh(box_inventory, command: str) -> str:
    return node_ssh(box_inventory, GPU_NODE, command).stdout


def test_gpu_layer_converges(gpu_up):
    host = by_host(gpu_up)[GPU_NODE]
    assert host["failed"] == 0 and host["changed"] > 0
    print(f"\n[figure] GPU layer first converge on a container: {gpu_up['wall_s']:.0f}s")


def test_module_built_by_dkms_for_the_installed_kernel(box, gpu_inventory, gpu_up):
    out = ssh(box, "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' 'linux-image-[0-9]*'")
    kernels = [line.split()[0].removeprefix("linux-image-") for line in out.splitlines() if line.endswith(" installed")]
    assert kernels, out
    for kver in kernels:
        status = ssh(box, f"dkms status -k {kver}")
        assert "nvidia-current" in status and ": installed" in status, status
        assert ssh(box, f"modinfo -k {kver} -F version nvidia-current").startswith("535.")


def test_nouveau_blacklist_in_initramfs(box, gpu_inventory, gpu_up):
    listing = ssh(box, "for f in /boot/initrd.img-*; do echo \"== $f\"; "
                                 "lsinitramfs $f | grep modprobe.d/; done")
    assert "== /boot/initrd.img-" in listing
    blocks = [b for b in listing.split("== ") if b.strip()]
    assert all("etc/modprobe.d/mlops-provision-nouveau.conf" in b for b in blocks), listing


def test_containerd_dropin_merge_keeps_ours_and_a_third_partys(box, gpu_inventory, gpu_up):
    node_ssh(box, GPU_NODE, f"cat > {THIRD_PARTY} <<'EOF'\n{THIRD_PARTY_TOML}EOF")
    dump = ssh(box, "containerd config dump")
    assert 'path = "/opt/third-party-tool"' in dump
    runc = dump.split('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]', 1)[1]
    assert "SystemdCgroup = true" in runc.split("[", 1)[0]


def test_second_up_changes_nothing_and_leaves_the_third_party_dropin(box, gpu_inventory, gpu_up):
    before = ssh(box, f"sha256sum {THIRD_PARTY} /etc/containerd/config.toml")
    res = _up(gpu_inventory)
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert by_host(res.json())[GPU_NODE]["changed"] == 0, changed_tasks(res.json())
    assert ssh(box, f"sha256sum {THIRD_PARTY} /etc/containerd/config.toml") == before
    print(f"\n[figure] GPU layer no-op re-run on a container: {res.seconds:.0f}s")


def test_check_mode_predicts_the_module_and_initramfs_repairs(box, gpu_inventory, gpu_up):
    """The NVIDIA module taken out of the kernel's tree (`dkms uninstall`) and an initramfs rebuilt
    without the nouveau blacklist: both repairs are commands that check mode used to skip. `up
    --check` now reports exactly the tasks the following `up` changes (and nothing else of the
    converged node: this replaces a check run of the converged GPU node)."""
    kver = ssh(box, "ls /lib/modules").split()[0]
    version = ssh(box, f"dkms status -k {kver}").split(",")[0].split("/")[1].strip()
    conf = "/etc/modprobe.d/mlops-provision-nouveau.conf"
    node_ssh(box, GPU_NODE, f"dkms uninstall -m nvidia-current -v {version} -k {kver} >/dev/null && "
                            f"mv {conf} /root/nouveau.conf && mkinitramfs -o /boot/initrd.img-{kver} {kver} && "
                            f"mv /root/nouveau.conf {conf}")
    assert ": installed" not in ssh(box, f"dkms status -k {kver}")
    check = _up(gpu_inventory, "--check")
    assert check.rc == 4, check.stdout[-3000:] + check.stderr[-2000:]
    real = _up(gpu_inventory)
    assert real.rc == 0, real.stdout[-3000:] + real.stderr[-2000:]
    assert_check_predicted(check.json(), real.json(), [GPU_NODE])
    repairs = {"Nvidia_driver | Build and install the module for each kernel that lacks it",
               "Nvidia_driver | Rebuild the initramfs that lacks the current blacklist"}
    assert repairs <= changed_by_host(real.json())[GPU_NODE]
    assert ": installed" in ssh(box, f"dkms status -k {kver}")
    assert "mlops-provision-nouveau.conf" in ssh(box, f"lsinitramfs /boot/initrd.img-{kver} | grep modprobe.d/")


def test_verify_passes_and_skips_the_gpu_present_checks(gpu_inventory, gpu_up):
    """Every check of the GPU node, the other layers' too (the driver's files must not look like
    drift to them); the CUDA checks only where the cuda role ran."""
    select = [] if WITH_CUDA else ["-k", "not cuda"]
    res = mp("verify", "-i", gpu_inventory, "--limit", GPU_NODE, *select, "--output", "json",
             "--vault-password-file", vault_password(gpu_inventory))
    report = res.json()
    assert res.rc == 0, json.dumps([r for r in report["results"] if r["outcome"] != "passed"], indent=1)
    outcome = {r["check"]: r["outcome"] for r in report["results"]}

    def check(fn) -> str:  # verify names a check by its docstring's first line
        return outcome.get(fn.__doc__.strip().splitlines()[0], "not run")

    for must_pass in (nd_checks.test_module_built_for_every_installed_kernel,
                      nd_checks.test_nouveau_blacklisted_in_every_initramfs,
                      nd_checks.test_driver_packages_in_pinned_branch, nd_checks.test_branch_pinned_by_apt_preferences,
                      cd_checks.test_effective_config_systemd_cgroups_and_root, cd_checks.test_containerd_running):
        assert check(must_pass) == "passed", (must_pass.__name__, outcome)
    for gpu_only in (nd_checks.test_nvidia_smi_lists_the_gpus, nd_checks.test_no_uncorrected_ecc_errors,
                     nd_checks.test_loaded_module_is_installed_one, cd_checks.test_nvidia_runtime_on_gpu_nodes):
        assert check(gpu_only) == "skipped", (gpu_only.__name__, outcome)


def test_facts_json_on_gpu_less_nodes(gpu_inventory, gpu_up):
    res = mp("facts", "-i", gpu_inventory, "--output", "json",
             "--vault-password-file", vault_password(gpu_inventory))
    assert res.rc == 0, res.stdout[-2000:] + res.stderr[-2000:]
    nodes = res.json()["nodes"]
    assert sorted(nodes) == ["node1", "node2", "node3"]
    for name, entry in nodes.items():
        rec = entry["facts"]
        assert rec is not None, (name, entry)
        assert rec["cpu"]["logical_cpus"] >= 1 and rec["memory_bytes"] > 0 and rec["kernel"], name
        assert rec["nvidia_pci_devices"] == [], name
        assert rec["nvml"]["driver_loaded"] is False and rec["nvml"]["gpus"] == [], name
        assert rec["nvml"]["reason"], name
    # node3 has the driver's library but no loaded module: NVML says so
    assert "not loaded" in nodes[GPU_NODE]["facts"]["nvml"]["reason"], nodes[GPU_NODE]["facts"]["nvml"]
