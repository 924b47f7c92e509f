"""The interface every sandbox kind implements (containers.py, vms.py).

A backend starts, stops and reports on the nodes of one sandbox, and says how to reach each
node over SSH. It knows nothing of the sandbox's inventory or lifecycle (core.py); it gets the
sandbox directory and the SSH public key it must plant in each node.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from mlops_provision.sandbox.image import Image
from mlops_provision.sandbox.model import Node, State

Log = Callable[[str], None]


class Backend(ABC):
    #: "container" or "vm"
    kind: str = ""
    #: Most nodes one sandbox of this kind may have (``sandbox up --nodes``), and why.
    max_nodes: int = 1
    max_nodes_reason: str = ""
    #: The nodes' private network: node i gets ``{private_prefix}.{10 + i}``.
    private_prefix: str = ""
    #: Seconds SSH may take to connect and exchange keys with a node (Ansible's default is 10).
    connect_timeout_s: int = 10

    def __init__(self, directory: Path, public_key: Path):
        self.dir = directory
        self.public_key = public_key

    # -- the nodes --------------------------------------------------------------------------
    @abstractmethod
    def ensure_image(self, image: Image, log: Log) -> None:
        """Build or import what the nodes boot from (cached)."""

    @abstractmethod
    def start(self, state: State, images: dict[str, Image]) -> None:
        """Start every node of ``state`` that is not running (idempotent), each from the image of
        its Debian release (``images``: release -> image)."""

    @abstractmethod
    def stop(self, state: State) -> None:
        """Stop and remove every node of ``state`` and the network they share."""

    @abstractmethod
    def status(self, node: Node) -> str:
        """``running``, ``stopped``, ``exited``, ``absent``…"""

    def diagnose(self, node: Node) -> list[str]:
        """What this machine can tell about a node that does not answer SSH (its state, its
        boot log, what listens inside): lines for the error's details."""
        return []

    def address(self, node: Node) -> tuple[str, int]:
        """Where this machine reaches the node's SSH: every kind publishes it on 127.0.0.1."""
        return "127.0.0.1", node.ssh_port

    def ssh(self, node: Node, key: Path) -> list[str]:
        """The ``ssh`` command line (without the remote command) that logs in as root."""
        host, port = self.address(node)
        return ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={self.connect_timeout_s}", f"root@{host}"]

    # -- what the site needs to know ---------------------------------------------------------
    def node_address(self, index: int) -> str:
        return f"{self.private_prefix}.{10 + index}"

    def conflicts(self) -> set[str]:
        """Directories of other sandboxes that block this one (shared network), if any."""
        return set()

    def check_host(self, nodes: int) -> None:
        """Raise SandboxBadInput if this machine cannot run ``nodes`` nodes of this kind."""
        return None  # nothing to check unless a kind says so

    def site_vars(self, state: State, vault_password: Path) -> dict:
        """Inventory variables (group all) that follow from how this kind wires its nodes."""
        return {"mlops_admin_cidrs": [f"{self.private_prefix}.0/24"]}

    # -- shared helpers for the implementations -----------------------------------------------
    def seed(self, node: Node, extra: dict[str, str]) -> Path:
        """The node's seed directory: authorized_keys plus ``extra`` files (name -> text)."""
        seed = self.dir / "seed" / node.name
        seed.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.public_key, seed / "authorized_keys")
        for name, text in extra.items():
            (seed / name).parent.mkdir(parents=True, exist_ok=True)
            (seed / name).write_text(text)
        return seed
