"""What a sandbox is made of: its nodes, its state file and the groups' published ports.

Plain data, imported by the backends and the lifecycle alike (it imports no other sandbox module).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Ports of a node's services published on 127.0.0.1 of this machine, by group: name -> port
#: inside the node.
PUBLISHED = {"mlflow": {"https": 443, "http": 80}, "monitoring": {"monitoring": 9443}}


@dataclass
class Node:
    name: str
    ssh_port: int
    address: str
    groups: list[str]
    pid_file: str = ""
    # Services published on 127.0.0.1 of this machine: name ("https", "http") -> host port.
    ports: dict[str, int] = field(default_factory=dict)
    # Debian's release number of this node ("": the sandbox's, state files from before it).
    release: str = ""

    def published(self) -> dict[str, int]:
        """Host port -> port inside the node, for each published service."""
        inside = {name: port for group in self.groups for name, port in PUBLISHED.get(group, {}).items()}
        return {host: inside[name] for name, host in self.ports.items() if name in inside}


#: A sandbox's state file, in its directory (``SITE/.mlops-provision/sandbox``).
STATE_FILE = "state.json"


@dataclass
class State:
    kind: str
    image: str
    nodes: list[Node] = field(default_factory=list)
    network: str = ""
    release: str = "12"  # Debian's release of node1 (state files from before it: 12)

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["nodes"] = [Node(**n) for n in data["nodes"]]
        return cls(**data)

    def releases(self) -> list[str]:
        """Each node's Debian release, in node order."""
        return [node.release or self.release for node in self.nodes]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def node_releases(nodes: int, releases: str | Sequence[str]) -> list[str]:
    """Each of ``nodes`` nodes' Debian release: the Nth of ``releases`` is node N's, the last one
    that of the nodes after it (one release: every node's)."""
    wanted = [releases] if isinstance(releases, str) else list(releases)
    return [wanted[min(i, len(wanted) - 1)] for i in range(nodes)] if wanted else []


def describe_releases(releases: Sequence[str]) -> str:
    """"Debian 13", or "Debian 12 and 13" for a mixed sandbox."""
    return "Debian " + " and ".join(dict.fromkeys(releases))


def node_groups(index: int) -> list[str]:
    """node1 is the control plane, MLflow and monitoring host; the rest are CPU workers (no GPU here)."""
    return ["control_plane", "mlflow", "monitoring"] if index == 1 else ["cpu_workers"]


def free_port(taken: set[int] | None = None) -> int:
    """A free TCP port on 127.0.0.1, not in (and then added to) ``taken``."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not taken or port not in taken:
            if taken is not None:
                taken.add(port)
            return port
