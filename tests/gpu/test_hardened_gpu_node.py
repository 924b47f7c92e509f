"""A hardened node keeps its GPUs usable: os_hardening's kernel parameters and module blacklist
against real CUDA work.

The blacklist test runs everywhere. The GPU tests need an NVIDIA GPU and MLOPS_GPU_HOST=1, because
they set os_hardening's kernel parameters on the machine that runs them (restored afterwards):
only run them on a machine you may change, e.g. a lent test machine. Each CUDA program runs as an
unprivileged user, which is what ptrace_scope, kptr_restrict and dmesg_restrict act on.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "os_hardening" / "defaults" / "main.yml").read_text())
USER = "mlops-gpu-check"

# Modules a GPU/Kubernetes node needs: the NVIDIA driver, container storage and networking, RDMA.
NEEDED_MODULES = {"nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset", "nvidia_peermem", "overlay",
                  "br_netfilter", "nf_conntrack", "vxlan", "ib_core", "ib_uverbs", "rdma_cm", "rdma_ucm",
                  "mlx5_core", "mlx5_ib", "vfat"}


def test_blacklist_spares_gpu_and_platform_modules():
    blacklisted = {m.replace("-", "_") for m in DEFAULTS["os_hardening_blacklisted_modules"]}
    assert not blacklisted & NEEDED_MODULES, sorted(blacklisted & NEEDED_MODULES)
    assert {"overlay", "br_netfilter"} <= set(DEFAULTS["os_hardening_modules_load"])


def _gpu_host() -> str | None:
    """Why the GPU tests cannot run here, or None."""
    if os.environ.get("MLOPS_GPU_HOST") != "1":
        return "set MLOPS_GPU_HOST=1 on a GPU machine whose kernel parameters may be changed"
    if shutil.which("nvidia-smi") is None or os.geteuid() != 0:
        return "needs root and an NVIDIA GPU (nvidia-smi)"
    return None


_NO_GPU_HOST = _gpu_host()
gpu = pytest.mark.skipif(_NO_GPU_HOST is not None, reason=_NO_GPU_HOST or "")


@pytest.fixture(scope="module")
def hardened():
    """os_hardening's user-space kernel parameters, live; the old values come back afterwards.
    Network ones and the panic ones are left out: they do not act on CUDA programs, and a machine
    lent for the test must keep its network and must not reboot itself."""
    wanted = {k: v for k, v in DEFAULTS["os_hardening_sysctl"].items()
              if k.split(".")[0] in ("kernel", "fs", "vm") and "panic" not in k}
    old, applied, missing = {}, {}, {}
    for key, value in wanted.items():
        proc = Path("/proc/sys") / key.replace(".", "/")
        if not proc.exists():
            missing[key] = "not in this kernel"
            continue
        old[key] = proc.read_text().strip()
        res = subprocess.run(["sysctl", "-w", f"{key}={value}"], capture_output=True, text=True)
        if res.returncode == 0 and proc.read_text().strip() == str(value):
            applied[key] = value
        else:
            missing[key] = (res.stderr or "value did not stick").strip()
    print(f"applied: {applied}\nnot applied: {missing}")
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", USER], check=True)
    yield applied
    for key, value in old.items():
        subprocess.run(["sysctl", "-w", f"{key}={value}"], capture_output=True)


def as_user(code: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    home = pwd.getpwnam(USER).pw_dir
    script = Path(home) / "check.py"
    script.write_text(textwrap.dedent(code))
    os.chmod(script, 0o644)
    assignments = [f"{k}={v}" for k, v in {"HOME": home, **(env or {})}.items()]
    return subprocess.run(["runuser", "-u", USER, "--", "env", *assignments, sys.executable, str(script)],
                          capture_output=True, text=True, timeout=timeout)


@gpu
def test_key_parameters_are_live(hardened):
    for key in ("kernel.kptr_restrict", "kernel.dmesg_restrict", "kernel.unprivileged_bpf_disabled",
                "fs.protected_regular"):
        assert key in hardened, f"{key} could not be set here, so this machine proves nothing about it"


@gpu
def test_ptrace_scope_is_live(hardened):
    """Without Yama in the kernel the CUDA tests below say nothing about ptrace_scope=1."""
    if not Path("/proc/sys/kernel/yama").exists():
        pytest.skip("this kernel has no Yama LSM: kernel.yama.ptrace_scope cannot be set or shown here")
    assert "kernel.yama.ptrace_scope" in hardened


@gpu
def test_gpus_visible_to_an_unprivileged_user(hardened):
    res = subprocess.run(["runuser", "-u", USER, "--", "nvidia-smi", "-L"], capture_output=True, text=True)
    assert res.returncode == 0 and "GPU 0" in res.stdout, res.stdout + res.stderr
    print(res.stdout)


@gpu
def test_cuda_compute_as_an_unprivileged_user(hardened):
    res = as_user("""
        import torch
        a = torch.randn(4096, 4096, device="cuda"); b = torch.randn(4096, 4096, device="cuda")
        c = (a @ b).cpu()
        ref = a.cpu().double() @ b.cpu().double()
        err = ((c.double() - ref).abs().max() / ref.abs().max()).item()
        assert err < 1e-2, err
        print(torch.cuda.get_device_name(0), "max rel err", err)
    """)
    assert res.returncode == 0, res.stdout + res.stderr
    print(res.stdout)


IPC = """
    import os, torch, torch.multiprocessing as mp

    def child(t, q):
        t.add_(1)                      # writes through the IPC mapping into the parent's memory
        torch.cuda.synchronize()
        q.put(True)

    if __name__ == "__main__":
        mp.set_start_method("spawn")
        t = torch.zeros(1 << 20, device="cuda")
        q = mp.Queue()
        p = mp.Process(target=child, args=(t, q)); p.start(); q.get(timeout=120); p.join(120)
        assert p.exitcode == 0, p.exitcode
        assert t.sum().item() == float(1 << 20), t.sum().item()
        print("CUDA IPC ok, PYTORCH_CUDA_ALLOC_CONF =", os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""))
"""


@gpu
@pytest.mark.parametrize("alloc_conf", ["", "expandable_segments:True"], ids=["ipc-handles", "expandable-segments"])
def test_cuda_tensor_shared_between_processes(hardened, alloc_conf):
    """Data loaders and multi-process training share CUDA memory between processes; with
    expandable segments PyTorch passes file descriptors (pidfd_getfd), which ptrace_scope governs."""
    res = as_user(IPC, env={"PYTORCH_CUDA_ALLOC_CONF": alloc_conf} if alloc_conf else None)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    print(res.stdout)
