"""Sandbox nodes as systemd containers (podman + runc, never privileged)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from mlops_provision.sandbox.backend import Backend, Log
from mlops_provision.sandbox.errors import SandboxBadInput, SandboxError
from mlops_provision.sandbox.image import Image, ensure_container_image
from mlops_provision.sandbox.model import STATE_FILE, Node, State

#: Capabilities on top of podman's defaults, for every release (a node upgraded 12 -> 13 in
#: place needs what 13 needs). systemd 257 (Debian 13) keeps CAP_SYS_ADMIN across the switch to
#: a unit's User= to install its seccomp filters (SystemCallFilter, RestrictNamespaces,
#: ProtectClock, ...): without it such a unit never starts ("Failed to keep CAP_SYS_ADMIN",
#: status 217/USER). Never --privileged (the kernel settings of a privileged container are
#: the host's).
EXTRA_CAPS: tuple[str, ...] = ("SYS_ADMIN",)

NETWORK = "mlops-sandbox"
SUBNET = "10.213.7.0/24"
PREFIX = "mlops-sandbox-"
LABEL = "mlops-provision.sandbox"
#: inotify instances one idle node's systemd, journald and logind hold (measured: 6). All nodes
#: count against this machine's root user, whose limit is fs.inotify.max_user_instances (often
#: 128): past it, a node's systemd never finishes booting ("Too many open files").
INOTIFY_PER_NODE = 6
INOTIFY_HEADROOM = 8  # for this machine's own processes
INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")


def inotify_needed(nodes: int) -> int:
    return INOTIFY_PER_NODE * nodes + INOTIFY_HEADROOM


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise SandboxError(f"podman {args[0]} failed (exit {res.returncode})",
                           details=res.stderr.strip().splitlines()[-5:])
    return res


def _inspect(name: str) -> tuple[str, int | None]:
    """A container's status (``absent`` if there is none) and the host port it publishes SSH
    on (None if it publishes none)."""
    res = _podman("inspect", "--format", "{{.State.Status}} {{json .HostConfig.PortBindings}}", name,
                  check=False)
    if res.returncode != 0:
        return "absent", None
    status, _, bindings = res.stdout.strip().partition(" ")
    try:
        return status, int(json.loads(bindings)["22/tcp"][0]["HostPort"])
    except (ValueError, KeyError, IndexError, TypeError):
        return status, None


def container_name(sandbox, node: Node) -> str:
    """The node's container name; ``sandbox`` is a Sandbox or its directory. One sandbox per
    site: the site's path keeps two sites' containers apart."""
    directory = getattr(sandbox, "dir", sandbox)
    site = hashlib.sha256(str(directory).encode()).hexdigest()[:6]
    return f"{PREFIX}{site}-{node.name}"


class ContainerBackend(Backend):
    kind = "container"
    # Node i is 10.213.7.(10 + i) on the /24 network; .1 is podman's gateway.
    max_nodes = 200
    max_nodes_reason = f"the sandbox network {SUBNET} gives nodes the addresses .11 to .210"
    private_prefix = "10.213.7"

    def ensure_image(self, image: Image, log: Log) -> None:
        ensure_container_image(image, log)

    def check_host(self, nodes: int) -> None:
        try:
            limit = int(INOTIFY_LIMIT.read_text())
        except (OSError, ValueError):
            return
        needed = inotify_needed(nodes)
        if needed > limit:
            most = max(0, (limit - INOTIFY_HEADROOM) // INOTIFY_PER_NODE)
            raise SandboxBadInput(
                f"--nodes {nodes}: this machine allows {limit} inotify instances per user "
                f"(fs.inotify.max_user_instances), enough for {most} container nodes; {nodes} need about {needed}",
                hint="raise it first: sysctl -w fs.inotify.max_user_instances=1024 (keep it in /etc/sysctl.d/)")

    def name(self, node: Node) -> str:
        return container_name(self.dir, node)

    def conflicts(self) -> set[str]:
        """Other sandboxes whose containers are on the shared network (same addresses).

        Containers of a sandbox whose state file is gone (its site directory was removed while
        it ran, or a machine image was taken with it running) are orphans that no `sandbox down`
        can reach: they are removed here instead of blocking every later sandbox."""
        res = _podman("ps", "-a", "--filter", f"network={NETWORK}", "--format",
                      '{{.Names}} {{index .Labels "' + LABEL + '"}}', check=False)
        sandbox_of = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
        others = {d for d in sandbox_of.values() if d and d != str(self.dir)}
        orphans = {d for d in others if not (Path(d) / STATE_FILE).exists()}
        names = [name for name, d in sandbox_of.items() if d in orphans]
        if names:
            _podman("rm", "-f", "-t", "5", *names, check=False)
        return others - orphans

    def start(self, state: State, images: dict[str, Image]) -> None:
        state.network = NETWORK
        if _podman("network", "exists", NETWORK, check=False).returncode != 0:
            _podman("network", "create", "--subnet", SUBNET, NETWORK)
        for node, release in zip(state.nodes, state.releases(), strict=True):
            name = self.name(node)
            current, ssh_port = _inspect(name)
            if current != "absent" and ssh_port != node.ssh_port:
                # A container of an earlier sandbox at this same site, whose state file is gone
                # (the site directory was wiped while it ran, or a killed run never said `down`):
                # it publishes other ports than this state's, so it is replaced, never reused.
                _podman("rm", "-f", "-t", "5", name)
                current = "absent"
            if current == "running":
                continue
            if current != "absent":
                _podman("start", name)
                continue
            seed = self.seed(node, {})
            # SSH, and the node's services (MLflow's HTTPS and HTTP), on 127.0.0.1 only.
            publish = [arg for host, inside in sorted(node.published().items())
                       for arg in ("-p", f"127.0.0.1:{host}:{inside}")]
            _podman(
                "run", "-d", "--name", name, "--hostname", node.name, "--no-hosts",
                "--runtime=runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                "--network", f"{NETWORK}:ip={node.address}",
                "-p", f"127.0.0.1:{node.ssh_port}:22", *publish,
                "-v", f"{seed}:/mlops-seed:ro",
                "--label", f"{LABEL}={self.dir}",
                *(f"--cap-add={cap}" for cap in EXTRA_CAPS),
                images[release].tag,
            )

    def status(self, node: Node) -> str:
        return _inspect(self.name(node))[0]

    def diagnose(self, node: Node) -> list[str]:
        """The container's state, its published ports, what its systemd says and what listens
        inside (through podman, not SSH), and the end of its console log."""
        name = self.name(node)
        res = _podman("inspect", "--format", "{{.State.Status}} exit={{.State.ExitCode}} "
                      "error={{.State.Error}}", name, check=False)
        lines = [f"{name}: " + (res.stdout.strip() or res.stderr.strip() or "no such container")]
        if res.stdout.startswith("running "):
            lines.append("published: " + " ".join(_podman("port", name, check=False).stdout.split()))
            for what, cmd in (("systemd", ["systemctl", "is-system-running"]),
                              ("failed units", ["systemctl", "--failed", "--plain", "--no-legend"]),
                              ("listening", ["ss", "-Hltn"])):
                out = _podman("exec", name, *cmd, check=False)
                lines.append(f"{what}: " + " | ".join((out.stdout + out.stderr).strip().splitlines()))
        logs = _podman("logs", "--tail", "10", name, check=False)
        lines += ["console: " + line for line in (logs.stdout + logs.stderr).strip().splitlines()]
        return lines

    def stop(self, state: State) -> None:
        names = [self.name(node) for node in state.nodes]
        if names:
            _podman("rm", "-f", "-t", "5", *names, check=False)
        users = _podman("ps", "-a", "--filter", f"network={NETWORK}", "--format", "{{.Names}}", check=False)
        if not users.stdout.strip():
            _podman("network", "rm", "-f", NETWORK, check=False)

    def memory_bytes(self, node: Node) -> int | None:
        """The node's current memory use (its cgroup's), or None if podman cannot say."""
        res = _podman("stats", "--no-stream", "--format", "{{.MemUsage}}", self.name(node),
                      check=False)
        return _parse_size(res.stdout.split("/")[0]) if res.returncode == 0 and res.stdout.strip() else None


def _parse_size(text: str) -> int | None:
    units = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    text = text.strip().lower().replace(" ", "")
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * units[unit])
            except ValueError:
                return None
    return None


__all__ = ["NETWORK", "SUBNET", "ContainerBackend", "container_name"]
