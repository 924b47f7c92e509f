"""Checks for the `nvidia_driver` role (hosts of group gpu_workers): packages of the pinned
branch, a DKMS module (signed with Secure Boot on) for every installed kernel, nouveau kept out,
persistenced, unattended upgrades holding the driver back; where a GPU is present: the loaded
module is the installed one, nvidia-smi and NVML see the GPUs, no uncorrected ECC errors.

The checks read what the role decided from its local fact (/etc/ansible/facts.d/nvidia_driver.fact)
and the node's own state; they never resolve the role's variables a second time."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.roles("nvidia_driver")


def local_fact(host, path: str) -> dict:
    f = host.file(path)
    assert f.exists, f"{path} is missing: the role has not converged this node"
    return json.loads(f.content_string)


@pytest.fixture(scope="module")
def driver(host, node) -> dict:
    if "gpu_workers" not in node.groups:
        pytest.skip("not in group gpu_workers: no NVIDIA driver here")
    fact = local_fact(host, node["nvidia_driver_local_fact"])
    if "skipped" in fact:
        pytest.skip(f"the GPU layer skips this host: {fact['skipped']}")
    return fact


@pytest.fixture(scope="module")
def gpu(host, driver) -> dict:
    """The driver state of a node with a GPU; GPU-present checks skip (with the reason) elsewhere."""
    if int(driver["device_count"]) == 0:
        pytest.skip("no NVIDIA PCI device on this node (nvidia_driver_without_device: install): "
                    "GPU-present checks not run")
    if driver.get("mok_pending"):
        pytest.fail("MOK enrolment pending: confirm it at the console on the next boot")
    return driver


def installed_kernels(host) -> list[str]:
    out = host.run("dpkg-query -W -f '${Package} ${db:Status-Status}\\n' 'linux-image-[0-9]*'").stdout
    return sorted(line.split()[0].removeprefix("linux-image-") for line in out.splitlines()
                  if line.endswith(" installed"))


def test_driver_packages_in_pinned_branch(host, driver):
    """driver packages installed from the pinned branch"""
    wrong = {}
    for pkg in driver["packages"]:
        p = host.package(pkg)
        if not p.is_installed or not p.version.startswith(f"{driver['branch']}."):
            wrong[pkg] = p.version if p.is_installed else "not installed"
    assert not wrong, f"not of branch {driver['branch']}: {wrong}"


def test_branch_pinned_by_apt_preferences(host, driver):
    """apt can install nothing but the pinned branch"""
    out = host.check_output(f"apt-cache policy {driver['packages'][0]}")
    candidate = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.strip().startswith("Candidate:")), "")
    assert candidate.startswith(f"{driver['branch']}."), f"apt's candidate is {candidate!r}:\n{out}"
    assert "1001" in out, f"no pin priority 1001 for branch {driver['branch']}:\n{out}"


def test_module_built_for_every_installed_kernel(host, driver):
    """a DKMS module and headers for every installed kernel"""
    kernels = installed_kernels(host)
    assert kernels, "no installed kernel"
    missing = {}
    for kver in kernels:
        status = host.run(f"dkms status -k {kver}").stdout
        ok = any(line.startswith((f"{driver['dkms_module']}/", f"{driver['dkms_module']},"))
                 and line.rstrip().endswith(": installed") for line in status.splitlines())
        if not ok:
            missing[kver] = status.strip() or "no module"
        elif not host.package(f"linux-headers-{kver}").is_installed:
            missing[kver] = "headers not installed"
    assert not missing, f"kernels the node can boot without the NVIDIA module: {missing}"


def test_module_signed_when_secure_boot(host, driver):
    """with Secure Boot on, every kernel's module is signed"""
    if not driver["secure_boot"]:
        pytest.skip("Secure Boot is off on this node: module signing not required")
    unsigned = [k for k in installed_kernels(host)
                if not host.run(f"modinfo -k {k} -F signer {driver['kernel_module']}").stdout.strip()]
    assert not unsigned, f"unsigned module for kernels {unsigned}: the kernel would refuse it"


def test_nouveau_blacklisted_in_every_initramfs(host, node, driver):
    """nouveau blacklisted, also in each kernel's initramfs"""
    nouveau_conf = node["nvidia_driver_nouveau_conf"]
    conf = host.file(nouveau_conf)
    assert conf.exists and "blacklist nouveau" in conf.content_string
    lacking = [k for k in installed_kernels(host)
               if host.run(f"lsinitramfs /boot/initrd.img-{k} | grep -qx '{nouveau_conf.lstrip('/')}'").rc != 0]
    assert not lacking, f"initramfs without the nouveau blacklist: {lacking}"


def test_nouveau_not_loaded(host, node, driver):
    """nouveau not loaded"""
    if node.in_container:
        pytest.skip("container: /sys/module shows the host's kernel, not this node's")
    assert not host.file("/sys/module/nouveau").exists, "nouveau is loaded: reboot the node"


def test_persistenced_enabled(host, driver):
    """nvidia-persistenced enabled at boot"""
    assert host.service("nvidia-persistenced").is_enabled


@pytest.mark.roles("os_hardening")  # its unattended-upgrades hold-back list (this role only asserts it)
def test_driver_held_back_from_unattended_upgrades(host, driver):
    """unattended upgrades never update the driver on their own"""
    out = host.run("apt-config dump Unattended-Upgrade::Origins-Pattern Unattended-Upgrade::Package-Blacklist").stdout
    if "Origins-Pattern" not in out:
        pytest.skip("unattended-upgrades not configured on this node")
    patterns = re.findall(r'Package-Blacklist:: "(.*)";', out)
    loose = [p for p in driver["packages"] if not any(re.search(pat, p) for pat in patterns)]
    assert not loose, f"upgraded unattended: {loose} (hold-back list: {patterns})"


def test_no_reboot_pending(driver):
    """no reboot pending for the driver"""
    assert not driver["reboot_required"], f"reboot needed: {'; '.join(driver['reboot_reasons'])}"


def test_loaded_module_is_installed_one(host, gpu):
    """the loaded nvidia module is the installed version"""
    loaded = host.file("/sys/module/nvidia/version")
    assert loaded.exists, "the nvidia module is not loaded"
    installed = host.check_output(f"modinfo -F version {gpu['kernel_module']}").strip()
    assert loaded.content_string.strip() == installed


def test_nvidia_smi_lists_the_gpus(host, gpu):
    """nvidia-smi and NVML see every GPU"""
    listed = [line for line in host.check_output("nvidia-smi -L").splitlines() if line.startswith("GPU ")]
    assert len(listed) == int(gpu["device_count"]), f"PCI has {gpu['device_count']}, nvidia-smi: {listed}"
    if gpu.get("expected_gpu_count") not in (None, "", "None"):
        assert len(listed) == int(gpu["expected_gpu_count"]), "nvidia_driver_expected_gpu_count differs"


def test_persistenced_active(host, gpu):
    """nvidia-persistenced running"""
    assert host.service("nvidia-persistenced").is_running


def test_no_uncorrected_ecc_errors(host, gpu):
    """no uncorrected ECC errors"""
    out = host.check_output("nvidia-smi --query-gpu=index,ecc.errors.uncorrected.volatile.total --format=csv,noheader")
    bad = [line for line in out.splitlines() if line.split(",")[1].strip() not in ("0", "[N/A]", "N/A")]
    assert not bad, f"uncorrected ECC errors: {bad}"
