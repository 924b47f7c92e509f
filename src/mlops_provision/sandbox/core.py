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
#: The sandbox's ansible-vault password file, next to its inventory.
VAULT_PASSWORD = "vault-password"
#: Ports of a node's services published on 127.0.0.1 of this machine, by group: name -> port
#: inside the node.
PUBLISHED = {"mlflow": {"https": 443, "http": 80}}
#: Vault-encrypted secrets the sandbox generates for a group (random, kept across `sandbox up`).
GROUP_SECRETS = {"mlflow": ("mlflow_admin_password", "mlflow_db_password")}


class SandboxError(RuntimeError):
    pass


def missing_host_packages(kind: str) -> list[str]:
    """Debian packages to install before this sandbox kind can run (never installed for you)."""
    return sorted({pkg for tool, pkg in HOST_TOOLS[kind].items() if shutil.which(tool) is None})


def free_port(taken: set[int] | None = None) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not taken or port not in taken:
            if taken is not None:
                taken.add(port)
            return port


def sandbox_vault_password(inventory: Path) -> Path | None:
    """The vault password file of a sandbox inventory (``SITE/.mlops-provision/sandbox/
    inventory.yml``), or None for any other inventory."""
    inv = Path(inventory).resolve()
    if inv.is_dir():
        return None
    box = inv.parent
    if box.name != "sandbox" or box.parent.name != ".mlops-provision":
        return None
    candidate = box / VAULT_PASSWORD
    return candidate if candidate.is_file() else None


class VaultText(str):
    """An ansible-vault ciphertext, written to YAML as ``!vault |``."""


class InventoryDumper(yaml.SafeDumper):
    """Writes inventories with vault values (:class:`VaultText`) as ``!vault |``."""


class InventoryLoader(yaml.SafeLoader):
    """Reads inventories, keeping ``!vault`` values as :class:`VaultText`."""


InventoryDumper.add_representer(
    VaultText, lambda dumper, value: dumper.represent_scalar("!vault", str(value), style="|"))
InventoryLoader.add_constructor(
    "!vault", lambda loader, node: VaultText(loader.construct_scalar(node)))


@dataclass
class Node:
    name: str
    ssh_port: int
    address: str
    groups: list[str]
    pid_file: str = ""
    # Services published on 127.0.0.1 of this machine: name ("https", "http") -> host port.
    ports: dict[str, int] = field(default_factory=dict)

    def published(self) -> dict[str, int]:
        """Host port -> port inside the node, for each published service."""
        inside = {name: port for group in self.groups for name, port in PUBLISHED.get(group, {}).items()}
        return {host: inside[name] for name, host in self.ports.items() if name in inside}


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
        others = containers.other_sandboxes(self) if kind == "container" else set()
        if others:  # container sandboxes share one podman network and its addresses
            sites = ", ".join(sorted(str(Path(o).parent.parent) for o in others))
            raise SandboxError(f"another container sandbox is up (site {sites}) and holds the sandbox "
                               "network's addresses: stop it first with `mlops-provision sandbox down --site SITE`")
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
            taken: set[int] = set()
            state.nodes = [Node(name=f"node{i}", ssh_port=free_port(taken), address=f"{prefix}.{10 + i}",
                                groups=node_groups(i)) for i in range(1, nodes + 1)]
            for node in state.nodes:
                node.ports = {name: free_port(taken) for group in node.groups
                              for name in PUBLISHED.get(group, {})}
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
                         "groups": ",".join(node.groups),
                         "published": ", ".join(f"{name} 127.0.0.1:{port}"
                                                for name, port in sorted(node.ports.items()))})
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

    @property
    def vault_password(self) -> Path:
        return self.dir / VAULT_PASSWORD

    def _ensure_vault_password(self) -> Path:
        if not self.vault_password.exists():
            self.vault_password.write_text(secrets.token_urlsafe(32) + "\n")
            self.vault_password.chmod(0o600)
        return self.vault_password

    def _group_secrets(self, group: str) -> dict[str, VaultText]:
        """The group's generated secrets, vault-encrypted; those of the current inventory are kept."""
        from ansible.parsing.vault import VaultLib, VaultSecret

        current: dict = {}
        if self.inventory.exists():
            data = yaml.load(self.inventory.read_text(), Loader=InventoryLoader) or {}
            current = (((data.get("all") or {}).get("children") or {}).get(group) or {}).get("vars") or {}
        vault = VaultLib([("default", VaultSecret(self._ensure_vault_password().read_bytes().strip()))])
        out = {}
        for name in GROUP_SECRETS[group]:
            old = current.get(name)
            if isinstance(old, VaultText):
                try:
                    vault.decrypt(str(old).strip())
                    out[name] = old
                    continue
                except Exception:  # another vault password (an older sandbox): generate anew
                    pass
            out[name] = VaultText(vault.encrypt(secrets.token_urlsafe(24)).decode())
        return out

    def _group_vars(self, group: str) -> dict:
        """Variables the sandbox gives a group (generated secrets, names the tests use)."""
        if group != "mlflow":
            return {}
        # The admin-side client reaches MLflow at https://localhost:<published port>. The site CA
        # stays in the sandbox directory also for copies of this inventory made elsewhere.
        return {**self._group_secrets("mlflow"), "mlflow_extra_server_names": ["localhost"],
                "mlflow_ca_certificate_path": str(self.dir / "mlflow-ca.crt"),
                "mlflow_ca_key_path": str(self.dir / "mlflow-ca.key.vault")}

    def _kind_vars(self, state: State) -> dict:
        """Site variables that follow from how the sandbox's nodes are wired."""
        prefix = PRIVATE_PREFIX[state.kind]
        if state.kind == "container":
            # SSH reaches a container from its podman network's gateway.
            return {"mlops_admin_cidrs": [f"{prefix}.0/24"]}
        vault_password = self._ensure_vault_password()
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
        for group, body in inventory["all"]["children"].items():
            extra = self._group_vars(group)
            if extra:
                body["vars"] = extra
        header = ("# Generated by `mlops-provision sandbox up` "
                  f"({state.kind}, {len(state.nodes)} node(s)); rewritten on every `sandbox up`.\n"
                  "# The host's extra CA certificates are passed on so that pip works inside the nodes.\n"
                  f"# Vault values decrypt with {VAULT_PASSWORD} next to this file (mlops-provision finds it).\n")
        self._ensure_vault_password()
        self.inventory.write_text(header + yaml.dump(inventory, Dumper=InventoryDumper, sort_keys=False))
