"""Sandbox lifecycle: image, nodes, SSH key, state file and the generated inventory."""

from __future__ import annotations

import glob
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from mlops_provision.sandbox import containers, vms
from mlops_provision.sandbox.image import image_for

KINDS = ("container", "vm")
# The host tools each kind needs, and the Debian package that brings each.
HOST_TOOLS = {
    "container": {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap",
                  "ssh": "openssh-client", "ssh-keygen": "openssh-client"},
    "vm": {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
           "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "vde_switch": "vde2",
           "ssh": "openssh-client", "ssh-keygen": "openssh-client"},
}
# Addresses of the nodes on their private network (inside podman or QEMU only).
PRIVATE_PREFIX = {"container": "10.213.7", "vm": "10.213.8"}
HOST_CA_GLOB = "/usr/local/share/ca-certificates/*.crt"


class SandboxError(RuntimeError):
    pass


def missing_host_packages(kind: str) -> list[str]:
    """Debian packages to install before this sandbox kind can run (never installed for you)."""
    return sorted({pkg for tool, pkg in HOST_TOOLS[kind].items() if shutil.which(tool) is None})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    ssh_port: int
    address: str
    groups: list[str]
    pid_file: str = ""


@dataclass
class State:
    kind: str
    image: str
    nodes: list[Node] = field(default_factory=list)
    network: str = ""

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["nodes"] = [Node(**n) for n in data["nodes"]]
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def node_groups(index: int) -> list[str]:
    """node1 is the control plane and MLflow host; the rest are CPU workers (no GPU here)."""
    return ["control_plane", "mlflow"] if index == 1 else ["cpu_workers"]


class Sandbox:
    """One sandbox per site directory: ``<site>/.mlops-provision/sandbox``."""

    def __init__(self, site: Path, log: Callable[[str], None] = print):
        self.dir = (site / ".mlops-provision" / "sandbox").resolve()
        self.log = log

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    def state(self) -> State | None:
        return State.load(self.state_file)

    def _ensure_key(self) -> None:
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                            "mlops-provision-sandbox", "-f", str(self.key)], check=True)

    def _seed(self, node: Node, extra: dict[str, str]) -> Path:
        seed = self.dir / "seed" / node.name
        seed.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.key.with_suffix(".pub"), seed / "authorized_keys")
        for name, text in extra.items():
            (seed / name).parent.mkdir(parents=True, exist_ok=True)
            (seed / name).write_text(text)
        return seed

    def up(self, nodes: int = 3, kind: str = "container") -> State:
        if kind not in KINDS:
            raise SandboxError(f"unknown sandbox kind {kind!r}: expected one of {', '.join(KINDS)}")
        if nodes < 1:
            raise SandboxError("--nodes must be at least 1")
        missing = missing_host_packages(kind)
        if missing:
            raise SandboxError(
                "the sandbox needs these Debian packages on this machine: "
                + " ".join(missing) + f"\n  install them with: apt-get install -y {' '.join(missing)}"
                + "\n  (or run the README's setup command)")
        current = self.state()
        if current and (current.kind != kind or len(current.nodes) != nodes):
            raise SandboxError(
                f"a {current.kind} sandbox with {len(current.nodes)} node(s) is already up in "
                f"{self.dir}: run `mlops-provision sandbox down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ensure_key()
        image = image_for()
        t0 = time.monotonic()
        backend = containers if kind == "container" else vms
        backend.ensure_image(image, self.log)
        self.log(f"image ready ({image.recipe.digest()}) in {time.monotonic() - t0:.0f} s")
        state = current or State(kind=kind, image=image.recipe.digest())
        if not state.nodes:
            prefix = PRIVATE_PREFIX[kind]
            state.nodes = [Node(name=f"node{i}", ssh_port=free_port(), address=f"{prefix}.{10 + i}",
                                groups=node_groups(i)) for i in range(1, nodes + 1)]
        t1 = time.monotonic()
        backend.start(self, state, image)
        state.save(self.state_file)
        self.wait_for_ssh(state)
        self.log(f"{len(state.nodes)} {kind} node(s) answering SSH in {time.monotonic() - t1:.0f} s")
        self.write_inventory(state)
        return state

    def down(self) -> bool:
        state = self.state()
        if state is None:
            return False
        backend = containers if state.kind == "container" else vms
        backend.stop(self, state)
        self.state_file.unlink()
        shutil.rmtree(self.dir / "seed", ignore_errors=True)
        shutil.rmtree(self.dir / "vm", ignore_errors=True)
        return True

    def status(self) -> list[dict[str, str]]:
        state = self.state()
        if state is None:
            return []
        backend = containers if state.kind == "container" else vms
        rows = []
        for node in state.nodes:
            rows.append({"node": node.name, "kind": state.kind, "state": backend.node_state(self, node),
                         "ssh": f"127.0.0.1:{node.ssh_port}", "address": node.address,
                         "groups": ",".join(node.groups)})
        return rows

    def ssh_command(self, node: Node) -> list[str]:
        return ["ssh", "-i", str(self.key), "-p", str(node.ssh_port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "root@127.0.0.1"]

    def wait_for_ssh(self, state: State, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        pending = list(state.nodes)
        while pending:
            node = pending[0]
            probe = subprocess.run([*self.ssh_command(node), "true"], capture_output=True)
            if probe.returncode == 0:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise SandboxError(f"{node.name} did not answer SSH on 127.0.0.1:{node.ssh_port} "
                                   f"within {timeout:.0f} s: {probe.stderr.decode().strip()}")
            time.sleep(1)

    def _kind_vars(self, state: State) -> dict:
        """Site variables that follow from how the sandbox's nodes are wired."""
        prefix = PRIVATE_PREFIX[state.kind]
        if state.kind == "container":
            # SSH reaches a container from its podman network's gateway.
            return {"mlops_admin_cidrs": [f"{prefix}.0/24"]}
        vault_password = self.dir / "vault-password"
        if not vault_password.exists():
            vault_password.write_text(secrets.token_urlsafe(32) + "\n")
            vault_password.chmod(0o600)
        return {
            # SSH arrives through QEMU's user-mode NAT (10.0.2.2) and from the other VMs.
            "mlops_admin_cidrs": ["10.0.2.0/24", f"{prefix}.0/24"],
            "disk_encryption_volumes": [{"name": "mlops-data", "device": vms.DATA_DISK_DEVICE,
                                         "mountpoint": "/srv/mlops"}],
            "disk_encryption_escrow_vault_password_file": str(vault_password),
        }

    def write_inventory(self, state: State) -> None:
        groups: dict[str, dict] = {g: {"hosts": {}} for g in
                                   ("control_plane", "gpu_workers", "cpu_workers", "mlflow")}
        for node in state.nodes:
            for g in node.groups:
                groups[g]["hosts"][node.name] = None
        inventory = {
            "all": {
                "hosts": {n.name: {"ansible_host": "127.0.0.1", "ansible_port": n.ssh_port,
                                   "mlops_node_address": n.address} for n in state.nodes},
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(self.key),
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                               "-o UserKnownHostsFile=/dev/null",
                    "base_extra_ca_certificates": sorted(glob.glob(HOST_CA_GLOB)),
                    **self._kind_vars(state),
                },
                "children": {g: v for g, v in groups.items() if v["hosts"]},
            }
        }
        header = ("# Generated by `mlops-provision sandbox up` "
                  f"({state.kind}, {len(state.nodes)} node(s)); rewritten on every `sandbox up`.\n"
                  "# The host's extra CA certificates are passed on so that pip works inside the nodes.\n")
        self.inventory.write_text(header + yaml.safe_dump(inventory, sort_keys=False))
