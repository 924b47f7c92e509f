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

import yaml

from mlops_provision import paths
from mlops_provision.errors import command_failed
from mlops_provision.sandbox.backend import Backend, Log
from mlops_provision.sandbox.errors import SandboxError
from mlops_provision.sandbox.image import Image, ensure_vm_image
from mlops_provision.sandbox.model import Node, State

MEMORY_MB = int(os.environ.get("MLOPS_SANDBOX_VM_MEMORY_MB", "2048"))
CPUS = int(os.environ.get("MLOPS_SANDBOX_VM_CPUS", "2"))
DATA_DISK_SIZE = "8G"
DATA_DISK_DEVICE = "/dev/disk/by-id/virtio-mlops-data"
#: The sandbox's boot loader is QEMU: it passes what the roles write for GRUB (audit from boot,
#: the hardening's kernel options), read from the roles' defaults so that there is one list,
#: less TCG_LEFT_OUT. The VM sandbox's inventory sets os_hardening_kernel_cmdline to the same
#: list, so that the roles write and verify checks what the VM boots.
#: Left out: page-table isolation switches page tables at every system call and interrupt, and
#: under TCG every switch flushes QEMU's software TLB (measured: docs/sandbox.md).
TCG_LEFT_OUT = ("pti=on",)


def _role_default(role: str, variable: str) -> list[str]:
    defaults = yaml.safe_load((paths.roles_dir() / role / "defaults" / "main.yml").read_text())
    return [str(a) for a in defaults[variable]]


def hardening_kernel_cmdline() -> list[str]:
    """The sandbox VMs' os_hardening_kernel_cmdline: the role's default less TCG_LEFT_OUT."""
    return [a for a in _role_default("os_hardening", "os_hardening_kernel_cmdline") if a not in TCG_LEFT_OUT]


def kernel_args() -> str:
    args = _role_default("audit", "audit_kernel_args") + hardening_kernel_cmdline()
    return " ".join(args)


#: Each VM emulates its CPUs in software (TCG) and holds MEMORY_MB: beyond a handful, nodes
#: time out booting on a small machine long before addresses run out.
MAX_VMS = 9


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _run(cmd: list[str], what: str, **kw) -> None:
    try:
        subprocess.run(cmd, check=True, stderr=subprocess.PIPE, **kw)
    except subprocess.CalledProcessError as exc:
        failed = command_failed(exc, what)
        raise SandboxError(failed.message, details=failed.details) from exc
    except OSError as exc:
        raise SandboxError(f"{what}: {exc}") from exc


def _network_file(node: Node) -> str:
    return ("[Match]\nName=eth1\n\n[Network]\n"
            f"Address={node.address}/24\nLinkLocalAddressing=no\n")


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


class VmBackend(Backend):
    kind = "vm"
    max_nodes = MAX_VMS
    max_nodes_reason = (f"each VM emulates {CPUS} CPU(s) in software and holds {MEMORY_MB} MiB; "
                        "use containers for larger sandboxes")
    private_prefix = "10.213.8"
    # Under TCG, with the host's cores busy, a guest's sshd has taken over 10 s to answer a new
    # connection: a node that is only slow must not count as unreachable.
    connect_timeout_s = 60

    @property
    def vm_dir(self) -> Path:
        d = self.dir / "vm"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def ensure_image(self, image: Image, log: Log) -> None:
        ensure_vm_image(image, log)

    def _ensure_switch(self) -> Path:
        sock = self.vm_dir / "vde.ctl"
        pid = self.vm_dir / "vde.pid"
        if not _alive(pid):
            _run(["vde_switch", "--daemon", "--sock", str(sock), "--pidfile", str(pid)],
                 "starting the VMs' private network switch")
            for _ in range(50):
                if sock.exists():
                    break
                time.sleep(0.1)
        return sock

    def start(self, state: State, images: dict[str, Image]) -> None:
        vm_dir = self.vm_dir
        switch = self._ensure_switch()
        for index, (node, release) in enumerate(zip(state.nodes, state.releases(), strict=True), start=1):
            image = images[release]
            pid_file = vm_dir / f"{node.name}.pid"
            node.pid_file = str(pid_file)
            if _alive(pid_file):
                continue
            root = vm_dir / f"{node.name}-root.qcow2"
            data = vm_dir / f"{node.name}-data.qcow2"
            seed_img = vm_dir / f"{node.name}-seed.img"
            if not root.exists():
                _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.base_disk),
                      "-F", "qcow2", str(root)], f"creating {node.name}'s disk")
            if not data.exists():
                _run(["qemu-img", "create", "-q", "-f", "qcow2", str(data), DATA_DISK_SIZE],
                     f"creating {node.name}'s data disk")
            seed = self.seed(node, {"hostname": node.name + "\n",
                                    "network/20-private.network": _network_file(node)})
            _run(["mkfs.ext4", "-q", "-F", "-L", "MLOPSSEED", "-d", str(seed), str(seed_img), "8M"],
                 f"creating {node.name}'s seed disk", stdout=subprocess.DEVNULL)
            append = (f"root=LABEL=mlops-root rw console=ttyS0 net.ifnames=0 mlops.seed=disk "
                      f"systemd.hostname={node.name} {kernel_args()}")
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
                # A BMC (QEMU's simulated one, on the KCS interface): the kernel's /dev/ipmi0,
                # read in-band by the IPMI exporter (monitoring_bmc below).
                "-device", "ipmi-bmc-sim,id=bmc0", "-device", "isa-ipmi-kcs,bmc=bmc0",
                "-qmp", f"unix:{vm_dir / (node.name + '.qmp')},server=on,wait=off",
                "-daemonize", "-pidfile", str(pid_file),
            ]
            _run(cmd, f"starting VM {node.name}")

    def status(self, node: Node) -> str:
        return "running" if node.pid_file and _alive(Path(node.pid_file)) else "stopped"

    def diagnose(self, node: Node) -> list[str]:
        """Whether QEMU still runs, and the end of the VM's serial console."""
        console = self.vm_dir / f"{node.name}-console.log"
        try:
            tail = console.read_text(errors="replace").strip().splitlines()[-10:]
        except OSError:
            tail = []
        return [f"{node.name}: QEMU {self.status(node)}", *("console: " + line for line in tail)]

    def stop(self, state: State) -> None:
        vm_dir = self.vm_dir
        for node in state.nodes:
            _kill(vm_dir / f"{node.name}.pid")
        _kill(vm_dir / "vde.pid")

    def site_vars(self, state: State, vault_password: Path) -> dict:
        return {
            # SSH arrives through QEMU's user-mode NAT (10.0.2.2) and from the other VMs.
            "mlops_admin_cidrs": ["10.0.2.0/24", f"{self.private_prefix}.0/24"],
            "disk_encryption_volumes": [{"name": "mlops-data", "device": DATA_DISK_DEVICE,
                                         "mountpoint": "/srv/mlops"}],
            "disk_encryption_escrow_vault_password_file": str(vault_password),
            # Each VM has QEMU's simulated BMC: the IPMI exporter reads it in-band. It answers
            # IPMI but has no DCMI power reading (docs/sandbox.md).
            "monitoring_bmc": True,
            "os_hardening_kernel_cmdline": hardening_kernel_cmdline(),
        }
