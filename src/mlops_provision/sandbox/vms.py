"""Sandbox nodes as QEMU virtual machines under TCG (a real kernel: LUKS, nftables, auditd).

Per node: a copy-on-write overlay of the shared base disk, a blank data disk (serial
``mlops-data``, for encrypted volumes), and a tiny seed disk (SSH key, hostname, private
address). NIC 1 is QEMU user-mode networking (SSH via hostfwd on 127.0.0.1, package
downloads); NIC 2 joins a private network that exists only inside a vde_switch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_provision.sandbox.image import Image, ensure_vm_image

if TYPE_CHECKING:
    from mlops_provision.sandbox.core import Node, Sandbox, State

MEMORY_MB = int(os.environ.get("MLOPS_SANDBOX_VM_MEMORY_MB", "2048"))
CPUS = int(os.environ.get("MLOPS_SANDBOX_VM_CPUS", "2"))
DATA_DISK_SIZE = "8G"
DATA_DISK_DEVICE = "/dev/disk/by-id/virtio-mlops-data"
# The sandbox's boot loader is QEMU: it passes what GRUB would (audit from boot, for the audit role).
KERNEL_ARGS = "audit=1 audit_backlog_limit=8192"


def ensure_image(image: Image, log) -> None:
    ensure_vm_image(image, log)


def _vm_dir(sandbox: Sandbox) -> Path:
    d = sandbox.dir / "vm"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _ensure_switch(vm_dir: Path) -> Path:
    sock = vm_dir / "vde.ctl"
    pid = vm_dir / "vde.pid"
    if not _alive(pid):
        subprocess.run(["vde_switch", "--daemon", "--sock", str(sock), "--pidfile", str(pid)],
                       check=True)
        for _ in range(50):
            if sock.exists():
                break
            time.sleep(0.1)
    return sock


def _network_file(node: Node) -> str:
    return ("[Match]\nName=eth1\n\n[Network]\n"
            f"Address={node.address}/24\nLinkLocalAddressing=no\n")


def start(sandbox: Sandbox, state: State, image: Image) -> None:
    vm_dir = _vm_dir(sandbox)
    switch = _ensure_switch(vm_dir)
    for index, node in enumerate(state.nodes, start=1):
        pid_file = vm_dir / f"{node.name}.pid"
        node.pid_file = str(pid_file)
        if _alive(pid_file):
            continue
        root = vm_dir / f"{node.name}-root.qcow2"
        data = vm_dir / f"{node.name}-data.qcow2"
        seed_img = vm_dir / f"{node.name}-seed.img"
        if not root.exists():
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.base_disk),
                            "-F", "qcow2", str(root)], check=True)
        if not data.exists():
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(data), DATA_DISK_SIZE],
                           check=True)
        seed = sandbox._seed(node, {"hostname": node.name + "\n",
                                    "network/20-private.network": _network_file(node)})
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "MLOPSSEED", "-d", str(seed), str(seed_img),
                        "8M"], check=True, stdout=subprocess.DEVNULL)
        append = (f"root=LABEL=mlops-root rw console=ttyS0 net.ifnames=0 mlops.seed=disk "
                  f"systemd.hostname={node.name} {KERNEL_ARGS}")
        cmd = [
            "qemu-system-x86_64", "-name", node.name,
            "-accel", "tcg,thread=multi", "-smp", str(CPUS), "-m", str(MEMORY_MB),
            "-display", "none", "-serial", f"file:{vm_dir / (node.name + '-console.log')}",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
            "-drive", f"file={root},format=qcow2,if=virtio",
            "-drive", f"file={data},format=qcow2,if=none,id=data",
            "-device", "virtio-blk-pci,drive=data,serial=mlops-data",
            "-drive", f"file={seed_img},format=raw,if=virtio,readonly=on",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{node.ssh_port}-:22"
                       + "".join(f",hostfwd=tcp:127.0.0.1:{host}-:{inside}"
                                 for host, inside in sorted(node.published().items())),
            "-device", "virtio-net-pci,netdev=n0",
            "-netdev", f"vde,id=n1,sock={switch}",
            "-device", f"virtio-net-pci,netdev=n1,mac=52:54:00:d5:08:{index:02x}",
            "-qmp", f"unix:{vm_dir / (node.name + '.qmp')},server=on,wait=off",
            "-daemonize", "-pidfile", str(pid_file),
        ]
        subprocess.run(cmd, check=True)


def node_state(sandbox: Sandbox, node: Node) -> str:
    return "running" if node.pid_file and _alive(Path(node.pid_file)) else "stopped"


def _kill(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(sandbox: Sandbox, state: State) -> None:
    vm_dir = _vm_dir(sandbox)
    for node in state.nodes:
        _kill(vm_dir / f"{node.name}.pid")
    _kill(vm_dir / "vde.pid")
