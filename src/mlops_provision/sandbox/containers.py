"""Sandbox nodes as systemd containers (podman + runc, never privileged)."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from mlops_provision.sandbox.image import Image, ensure_container_image

if TYPE_CHECKING:
    from mlops_provision.sandbox.core import Node, Sandbox, State

NETWORK = "mlops-sandbox"
SUBNET = "10.213.7.0/24"
PREFIX = "mlops-sandbox-"


def ensure_image(image: Image, log) -> None:
    ensure_container_image(image, log)


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True)


def container_name(sandbox: Sandbox, node: Node) -> str:
    # One sandbox per site: the site's path keeps two sites' containers apart.
    import hashlib

    site = hashlib.sha256(str(sandbox.dir).encode()).hexdigest()[:6]
    return f"{PREFIX}{site}-{node.name}"


def other_sandboxes(sandbox: Sandbox) -> set[str]:
    """Directories of other sandboxes whose containers are on the shared network (same addresses)."""
    res = _podman("ps", "-a", "--filter", f"network={NETWORK}", "--format",
                  '{{index .Labels "mlops-provision.sandbox"}}', check=False)
    return {line for line in res.stdout.split() if line and line != str(sandbox.dir)}


def start(sandbox: Sandbox, state: State, image: Image) -> None:
    state.network = NETWORK
    if _podman("network", "exists", NETWORK, check=False).returncode != 0:
        _podman("network", "create", "--subnet", SUBNET, NETWORK)
    for node in state.nodes:
        name = container_name(sandbox, node)
        current = node_state(sandbox, node)
        if current == "running":
            continue
        if current != "absent":
            _podman("start", name)
            continue
        seed = sandbox._seed(node, {})
        # SSH, and the node's services (MLflow's HTTPS and HTTP), on 127.0.0.1 only.
        publish = [arg for host, inside in sorted(node.published().items())
                   for arg in ("-p", f"127.0.0.1:{host}:{inside}")]
        _podman(
            "run", "-d", "--name", name, "--hostname", node.name, "--no-hosts",
            "--runtime=runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
            "--network", f"{NETWORK}:ip={node.address}",
            "-p", f"127.0.0.1:{node.ssh_port}:22", *publish,
            "-v", f"{seed}:/mlops-seed:ro",
            "--label", "mlops-provision.sandbox=" + str(sandbox.dir),
            image.tag,
        )


def node_state(sandbox: Sandbox, node: Node) -> str:
    res = _podman("inspect", "--format", "{{.State.Status}}", container_name(sandbox, node), check=False)
    return res.stdout.strip() if res.returncode == 0 else "absent"


def stop(sandbox: Sandbox, state: State) -> None:
    for node in state.nodes:
        _podman("rm", "-f", "-t", "5", container_name(sandbox, node), check=False)
    users = _podman("ps", "-a", "--filter", f"network={NETWORK}", "--format", "{{.Names}}", check=False)
    if not users.stdout.strip():
        _podman("network", "rm", "-f", NETWORK, check=False)
