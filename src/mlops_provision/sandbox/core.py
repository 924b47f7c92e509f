"""Sandbox lifecycle: image, nodes (through a backend), SSH key, state file and inventory.

Module graph (no circle): ``core`` -> ``containers``/``vms`` -> ``backend`` -> ``image``,
``model``, ``errors``; ``core`` -> ``site_inventory`` -> ``model``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mlops_provision.sandbox.backend import Backend
from mlops_provision.sandbox.containers import ContainerBackend
from mlops_provision.sandbox.errors import SandboxBadInput, SandboxError, SandboxUnreachable
from mlops_provision.sandbox.image import (
    DEFAULT_RELEASE,
    RELEASES,
    ensure_container_image,
    ensure_vm_image,
    image_for,
)
from mlops_provision.sandbox.model import (
    PUBLISHED,
    STATE_FILE,
    Node,
    State,
    describe_releases,
    free_port,
    node_groups,
    node_releases,
)
from mlops_provision.sandbox.site_inventory import (
    GROUP_SECRETS,
    VAULT_PASSWORD,
    InventoryDumper,
    InventoryLoader,
    VaultText,
    ensure_vault_password,
    sandbox_vault_password,
    write_inventory,
)
from mlops_provision.sandbox.vms import VmBackend

BACKENDS: dict[str, type[Backend]] = {"container": ContainerBackend, "vm": VmBackend}
KINDS = tuple(BACKENDS)
# The host tools each kind needs, and the Debian package that brings each.
HOST_TOOLS = {
    "container": {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap",
                  "ssh": "openssh-client", "ssh-keygen": "openssh-client"},
    "vm": {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
           "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "vde_switch": "vde2",
           "ssh": "openssh-client", "ssh-keygen": "openssh-client"},
}
SSH_TIMEOUT_S = 300

__all__ = ["GROUP_SECRETS", "KINDS", "PUBLISHED", "VAULT_PASSWORD", "InventoryDumper", "InventoryLoader",
           "Node", "Sandbox", "SandboxError", "State", "VaultText", "build_image", "free_port",
           "missing_host_packages", "node_groups", "sandbox_vault_password"]


def missing_host_packages(kind: str) -> list[str]:
    """Debian packages to install before this sandbox kind can run (never installed for you)."""
    return sorted({pkg for tool, pkg in HOST_TOOLS[kind].items() if shutil.which(tool) is None})


def _require_host_packages(kind: str) -> None:
    missing = missing_host_packages(kind)
    if missing:
        raise SandboxBadInput(
            f"the {kind} sandbox needs these Debian packages on this machine: {' '.join(missing)}",
            hint=f"install them with: apt-get install -y {' '.join(missing)} (or run the README's setup command)")


def _image_step(step: Callable[[], object]):
    """Run an image build step; a failed command becomes a SandboxError (exit 1, no traceback)."""
    from mlops_provision.errors import command_failed

    try:
        return step()
    except subprocess.CalledProcessError as exc:
        failed = command_failed(exc, "building the sandbox image")
        raise SandboxError(failed.message, details=failed.details,
                           hint="the image cache keeps what was finished; fix the cause and run it again") from exc
    except (RuntimeError, OSError) as exc:  # image.py's own checks (tar, kernel) raise RuntimeError
        raise SandboxError(f"building the sandbox image: {exc}") from exc


def _release(release: str) -> str:
    if release not in RELEASES:
        raise SandboxBadInput(f"unknown Debian release {release!r}: expected one of {', '.join(RELEASES)}")
    return release


def build_image(kind: str, log: Callable[[str], None] = print, release: str = DEFAULT_RELEASE) -> str:
    """Build the sandbox image of this kind and Debian release if needed; returns the podman tag
    or the VM base disk."""
    if kind not in BACKENDS:
        raise SandboxBadInput(f"unknown sandbox kind {kind!r}: expected one of {', '.join(KINDS)}")
    _require_host_packages(kind)
    image = image_for(release=_release(release))
    if kind == "container":
        return _image_step(lambda: ensure_container_image(image, log))
    return str(_image_step(lambda: ensure_vm_image(image, log)).base_disk)


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
        return self.dir / STATE_FILE

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def vault_password(self) -> Path:
        return self.dir / VAULT_PASSWORD

    def state(self) -> State | None:
        return State.load(self.state_file)

    def backend(self, kind: str) -> Backend:
        return BACKENDS[kind](self.dir, self.key.with_suffix(".pub"))

    def _ensure_key(self) -> None:
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                            "mlops-provision-sandbox", "-f", str(self.key)], check=True)

    def check_request(self, nodes: int, kind: str, release: str | Sequence[str] = DEFAULT_RELEASE) -> Backend:
        """Refuse what cannot work before anything starts (SandboxBadInput, exit 2). ``release``:
        one Debian release for every node, or one per node (:func:`model.node_releases`)."""
        if kind not in BACKENDS:
            raise SandboxBadInput(f"unknown sandbox kind {kind!r}: expected one of {', '.join(KINDS)}")
        backend = self.backend(kind)
        if nodes < 1:
            raise SandboxBadInput("--nodes must be at least 1")
        if nodes > backend.max_nodes:
            raise SandboxBadInput(f"--nodes {nodes}: a {kind} sandbox has at most {backend.max_nodes} nodes",
                                  hint=f"({backend.max_nodes_reason})")
        _require_host_packages(kind)
        backend.check_host(nodes)
        wanted = [release] if isinstance(release, str) else list(release)
        if len(wanted) > nodes:
            raise SandboxBadInput(f"{len(wanted)} releases for {nodes} node(s): give --release at most once per node")
        releases = [_release(r) for r in node_releases(nodes, wanted)]
        current = self.state()
        if current and (current.kind != kind or len(current.nodes) != nodes or current.releases() != releases):
            raise SandboxBadInput(
                f"a {current.kind} sandbox with {len(current.nodes)} node(s) "
                f"({describe_releases(current.releases())}) is already up in {self.dir}",
                hint="run `mlops-provision sandbox down` first")
        others = backend.conflicts()
        if others:  # container sandboxes share one podman network and its addresses
            sites = ", ".join(sorted(str(Path(o).parent.parent) for o in others))
            raise SandboxBadInput(f"another container sandbox is up (site {sites}) and holds the sandbox "
                                  "network's addresses",
                                  hint="stop it first with `mlops-provision sandbox down --site SITE`")
        return backend

    def up(self, nodes: int = 3, kind: str = "container", release: str | Sequence[str] = DEFAULT_RELEASE) -> State:
        """Start ``nodes`` nodes of ``kind``; ``release``: one Debian release for every node, or
        one per node (the Nth node's; the last one the rest's): a mixed sandbox."""
        backend = self.check_request(nodes, kind, release)
        releases = node_releases(nodes, release)
        current = self.state()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ensure_key()
        images = {r: image_for(release=r) for r in dict.fromkeys(releases)}
        for image in images.values():
            t0 = time.monotonic()
            _image_step(lambda image=image: backend.ensure_image(image, self.log))
            self.log(f"image ready ({image.recipe.digest()}) in {time.monotonic() - t0:.0f} s")
        state = current or State(kind=kind, image=",".join(i.recipe.digest() for i in images.values()),
                                 release=releases[0])
        if not state.nodes:
            taken: set[int] = set()
            state.nodes = [Node(name=f"node{i}", ssh_port=free_port(taken), address=backend.node_address(i),
                                groups=node_groups(i), release=releases[i - 1]) for i in range(1, nodes + 1)]
            for node in state.nodes:
                node.ports = {name: free_port(taken) for group in node.groups
                              for name in PUBLISHED.get(group, {})}
        t1 = time.monotonic()
        try:
            backend.start(state, {r: images[r] for r in state.releases()})
        finally:  # what started is recorded, so that `sandbox down` removes it
            state.save(self.state_file)
        self.wait_for_ssh(state)
        self.log(f"{len(state.nodes)} {kind} node(s) answering SSH in {time.monotonic() - t1:.0f} s")
        self.write_inventory(state)
        return state

    def down(self) -> bool:
        state = self.state()
        if state is None:
            return False
        self.backend(state.kind).stop(state)
        self.state_file.unlink()
        shutil.rmtree(self.dir / "seed", ignore_errors=True)
        shutil.rmtree(self.dir / "vm", ignore_errors=True)
        return True

    def status(self) -> list[dict[str, str]]:
        state = self.state()
        if state is None:
            return []
        backend = self.backend(state.kind)
        rows = []
        for node, release in zip(state.nodes, state.releases(), strict=True):
            host, port = backend.address(node)
            rows.append({"node": node.name, "kind": state.kind, "debian": release, "state": backend.status(node),
                         "ssh": f"{host}:{port}", "address": node.address,
                         "groups": ",".join(node.groups),
                         "published": ", ".join(f"{name} 127.0.0.1:{port}"
                                                for name, port in sorted(node.ports.items()))})
        return rows

    def ssh_command(self, node: Node) -> list[str]:
        state = self.state()
        return self.backend(state.kind if state else "container").ssh(node, self.key)

    def wait_for_ssh(self, state: State, timeout: float | None = None) -> None:
        """Wait until every node answers SSH; SandboxUnreachable (exit 3) after ``timeout``
        (default: SSH_TIMEOUT_S plus 5 s per node, as the nodes boot on the same few cores)."""
        backend = self.backend(state.kind)
        if timeout is None:
            timeout = SSH_TIMEOUT_S + 5 * len(state.nodes)
        deadline = time.monotonic() + timeout
        pending = list(state.nodes)
        while pending:
            node = pending[0]
            probe = subprocess.run([*backend.ssh(node, self.key), "true"], capture_output=True)
            if probe.returncode == 0:
                pending.pop(0)
                continue
            status = backend.status(node)
            gone = status not in ("running", "absent")  # exited: waiting is pointless
            if gone or time.monotonic() > deadline:
                host, port = backend.address(node)
                said = probe.stderr.decode(errors="replace").strip()
                why = f"stopped ({status})" if gone else f"within {timeout:.0f} s"
                raise SandboxUnreachable(
                    f"{node.name} did not answer SSH on {host}:{port}: {why}",
                    details=([said] if said else []) + backend.diagnose(node),
                    hint=f"{len(pending)} of {len(state.nodes)} node(s) silent; `mlops-provision sandbox "
                         "status` shows them, `sandbox down` removes them")
            time.sleep(1)

    def _ensure_vault_password(self) -> Path:
        return ensure_vault_password(self.vault_password)

    def write_inventory(self, state: State) -> None:
        backend = self.backend(state.kind)
        site_vars = backend.site_vars(state, self._ensure_vault_password())
        write_inventory(self.dir, state, self.key, site_vars, backend.connect_timeout_s)
