"""Real sandboxes for the integration tests, and the converges the tests share.

Container kind: ONE sandbox of three systemd containers per session (node1: control_plane and
mlflow; node2, node3: cpu_workers), converged fresh ONCE (``fresh_converge``: the whole site, MLflow
pinned to ``MLFLOW_OLD`` so that test_mlflow can upgrade it), then brought to the sandbox
inventory's own settings (``converged_containers``: the upgrade to ``MLFLOW_NEW``). Every container
module reads these hosts; only one container sandbox can be up on a machine anyway (they share a
podman network). Modules run in the order of ``MODULE_ORDER``: test_sandbox first (its own
one-node sandboxes, before the shared one exists), test_mlflow (it logs the run
the upgrade must keep), then test_containers, then any other container reader (e.g. test_drift),
then the upgrade of node1 and node2 to Debian 13 with the GPU layer's first converge on node3
beside it, test_gpu, and test_init_site (it takes node1 over for a site made by init), then the
VM modules. A test
that breaks a shared host (stops a service, drops a database) restores it and proves it restored
(`up` changed=0 or `verify` passing) before the next reader runs.

VM kind: test_vm brings up its own two VMs (module scope) and converges node1 once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_provision.sandbox import Sandbox, missing_host_packages
from mlops_provision.sandbox.core import VAULT_PASSWORD, InventoryDumper, InventoryLoader
from tests.conftest import Started, mp, mp_start

MLFLOW_OLD, MLFLOW_NEW = "3.17.1", "3.17.2"
# Modules that read the shared container sandbox, in the order they must run; other integration
# modules follow them, the VM modules (their own hosts, minutes per converge) run last.
MODULE_ORDER = ("test_sandbox", "test_mlflow", "test_containers", "test_monitoring")
# After every other reader, in this order: test_upgrade_to_debian13 upgrades two of the shared
# sandbox's nodes to Debian 13 in place while the GPU layer's first converge runs on node3
# (gpu_first_converge); test_gpu then reads and repairs node3; test_init_site then takes node1
# over for good.
AFTER_READERS = ("test_upgrade_to_debian13", "test_gpu", "test_init_site")
LAST = ("test_vm",)


def pytest_collection_modifyitems(items):
    """Integration modules in MODULE_ORDER, then the others, then LAST; tests keep their order
    within a module, and tests outside tests/integration keep theirs (they run first)."""
    here = Path(__file__).parent

    def rank(item) -> int:
        path = Path(str(item.path))
        if path.parent != here:
            return 0
        if path.stem in MODULE_ORDER:
            return 1 + MODULE_ORDER.index(path.stem)
        if path.stem in AFTER_READERS:
            return 2 + len(MODULE_ORDER) + AFTER_READERS.index(path.stem)
        return 2 + len(MODULE_ORDER) + len(AFTER_READERS) if path.stem in LAST else 1 + len(MODULE_ORDER)

    items.sort(key=rank)


def require_host_tools(kind: str) -> None:
    missing = missing_host_packages(kind)
    if missing:  # a failure, not a skip: the README's setup command installs these
        pytest.fail(f"sandbox host packages missing: {' '.join(missing)} (run scripts/setup.sh)")


def bring_up(site: Path, nodes: int, kind: str, release: str | list[str] | None = None) -> Path:
    """`sandbox up` at ``site``; ``release``: every node's Debian release, or one per node."""
    require_host_tools(kind)
    pinned = [arg for r in ([release] if isinstance(release, str) else release or []) for arg in ("--release", r)]
    res = mp("sandbox", "up", "--site", site, "--nodes", str(nodes), "--kind", kind, *pinned, timeout=1800)
    assert res.rc == 0, res.stderr
    return site / ".mlops-provision" / "sandbox" / "inventory.yml"


def tear_down(site: Path) -> None:
    res = mp("sandbox", "down", "--site", site)
    assert res.rc == 0, res.stderr
    shutil.rmtree(site, ignore_errors=True)


def edit_inventory(inventory: Path, edit, path: Path | None = None) -> Path:
    """Write the sandbox inventory, changed by ``edit(data)``, to ``path`` (default: in place).
    Vault values stay encrypted (``VaultText``)."""
    data = yaml.load(inventory.read_text(), Loader=InventoryLoader)
    edit(data)
    path = path or inventory
    path.write_text(yaml.dump(data, Dumper=InventoryDumper, sort_keys=False))
    return path


def variant(inventory: Path, name: str, edit) -> Path:
    """A copy of the sandbox inventory in its own site directory, changed by ``edit(data)``.
    Pass ``vault_password(inventory)`` to commands on a variant (the CLI finds the sandbox's
    own only for the sandbox's inventory)."""
    site = inventory.parent.parent.parent / name
    site.mkdir(exist_ok=True)
    return edit_inventory(inventory, edit, site / "inventory.yml")


def vault_password(inventory: Path) -> Path:
    """The sandbox's vault password file (it encrypts the secrets `sandbox up` generates), for
    the sandbox's inventory or a variant of it."""
    own = inventory.parent / VAULT_PASSWORD
    if own.exists():
        return own
    return inventory.parent.parent / ".mlops-provision" / "sandbox" / VAULT_PASSWORD


def sandbox_vault(inventory: Path):
    """The sandbox's vault (its password file: vault_password), to encrypt or decrypt values of
    the sandbox's inventory or a variant of it."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    return VaultLib([("default", VaultSecret(vault_password(inventory).read_bytes().strip()))])


def node_ssh(inventory: Path, node: str, command: str, check: bool = True,
             timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command on a sandbox node over the sandbox's own SSH key (not through Ansible)."""
    box = Sandbox(inventory.parent.parent.parent)
    target = next(n for n in box.state().nodes if n.name == node)
    return subprocess.run([*box.ssh_command(target), command], check=check, capture_output=True, text=True,
                          timeout=timeout)


def by_host(summary: dict) -> dict[str, dict]:
    return {h["host"]: h for h in summary["hosts"]}


# --------------------------------------------------------------------------- the shared container sandbox

@pytest.fixture(scope="session")
def container_inventory(tmp_path_factory):
    """The session's container sandbox (3 Debian 12 nodes: test_upgrade_to_debian13 upgrades
    node1 and node2 to 13 after every other reader), its own inventory; torn down at the session's end."""
    site = tmp_path_factory.mktemp("site")
    inv = bring_up(site, 3, "container", release="12")
    yield inv
    tear_down(site)


@pytest.fixture(scope="session")
def old_mlflow_inventory(container_inventory):
    """The sandbox's inventory with MLflow pinned to MLFLOW_OLD (what the fresh converge installs)."""
    def pin(data):
        data["all"]["children"]["mlflow"]["vars"]["mlflow_version"] = MLFLOW_OLD

    return variant(container_inventory, "old", pin)


@pytest.fixture(scope="session")
def fresh_converge(old_mlflow_inventory) -> dict:
    """THE fresh converge of the container kind: the whole site on the three new nodes (MLflow at
    MLFLOW_OLD); its JSON summary."""
    res = mp("up", "-i", old_mlflow_inventory, "--output", "json", "--vault-password-file",
             vault_password(old_mlflow_inventory), timeout=1800)
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.json()


@pytest.fixture(scope="session")
def converged_containers(container_inventory, fresh_converge) -> dict:
    """The three nodes at the sandbox inventory's own settings: `up` after the fresh converge, which
    upgrades MLflow MLFLOW_OLD -> MLFLOW_NEW on node1; its JSON summary. Readers of the converged
    hosts ask for this (test_mlflow only after logging the run the upgrade must keep).
    Limited to node1: the two inventories differ only in group mlflow's variables (node1), and
    test_mlflow's second `up` proved node2 and node3 change nothing; ``noop_up`` runs them all."""
    res = mp("up", "-i", container_inventory, "--limit", "node1", "--output", "json", timeout=1800)
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.json()


@pytest.fixture(scope="session")
def noop_up(converged_containers, container_inventory) -> dict:
    """A second `up` of the whole converged sandbox (it must change nothing); its JSON summary."""
    res = mp("up", "-i", container_inventory, "--output", "json")
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.json()


@pytest.fixture(scope="session")
def verify_report(converged_containers, container_inventory, tmp_path_factory):
    """`verify` of the whole converged sandbox with a JUnit file: (rc, JSON report, JUnit path)."""
    junit = tmp_path_factory.mktemp("verify") / "verify.xml"
    res = mp("verify", "-i", container_inventory, "--output", "json", "--junit", junit)
    return res.rc, res.json(), junit


#: Where the sandbox's Alertmanager delivers (sandbox.site_inventory.SANDBOX_ALERT_WEBHOOK) and
#: where the receiver started there writes what it got.
ALERTS_FILE = "/var/tmp/mlops-test-alerts.jsonl"


@pytest.fixture(scope="session")
def alert_receiver(converged_containers, container_inventory) -> str:
    """A webhook receiver on the monitoring server (node1) at the sandbox's webhook address,
    running until the node stops; returns the node's name. Started before the shared drift run
    (test_drift), so that its alerts reach it."""
    from mlops_provision.sandbox.site_inventory import SANDBOX_ALERT_WEBHOOK

    port = int(SANDBOX_ALERT_WEBHOOK.rsplit(":", 1)[1].split("/")[0])
    script = (Path(__file__).parent / "alert_receiver.py").read_text()
    node_ssh(container_inventory, "node1", f"cat > /usr/local/lib/mlops-test-alert-receiver.py <<'PY'\n{script}PY\n"
             f"rm -f {ALERTS_FILE}; systemd-run --unit mlops-test-alert-receiver --collect "
             f"/usr/bin/python3 /usr/local/lib/mlops-test-alert-receiver.py {port} {ALERTS_FILE}")
    return "node1"


# --------------------------------------------------------------------------- the GPU layer's node

#: The shared sandbox's node that joins gpu_workers (test_gpu; test_upgrade_to_debian13 keeps it
#: on Debian 12).
GPU_NODE = "node3"
# nvidia-cuda-toolkit from Debian is a 1.6 GB download, ~4.5 GB installed: left out unless
# MLOPS_GPU_CUDA=1 (then the cuda role runs and its checks are selected).
WITH_CUDA = os.environ.get("MLOPS_GPU_CUDA", "0") == "1"


@pytest.fixture(scope="session")
def gpu_inventory(container_inventory):
    """The sandbox inventory with node3 also in gpu_workers. In the suite the nodes are already
    converged; alone, `up` brings node3's base layer first."""
    def join_gpu_workers(data):
        data["all"]["children"]["gpu_workers"] = {"hosts": {GPU_NODE: None}, "vars": {
            "nvidia_driver_source": "debian",
            "nvidia_driver_without_device": "install",  # no GPU in a container
            "cuda_source": "debian", "cuda_toolkits": ["11.8"], "cuda_default": "11.8",
            "containerd_nvidia_runtime": False,  # nvidia-container-toolkit: not reachable here
        }}

    return variant(container_inventory, "gpu", join_gpu_workers)


def gpu_up_args(inventory: Path, *extra: str) -> list:
    """`up` of the GPU layer on GPU_NODE. The hardening layer too: its checks run on the GPU node
    (the NVIDIA packages' files in /etc/modprobe.d are the distribution's, not strangers); in the
    suite it is a no-op."""
    tags = "base,hardening,containerd,nvidia_driver" + (",cuda" if WITH_CUDA else "")
    return ["up", "-i", inventory, "--tags", tags, "--limit", GPU_NODE, "--output", "json",
            "--vault-password-file", vault_password(inventory), *extra]


@pytest.fixture(scope="session")
def gpu_first_converge(gpu_inventory) -> Started:
    """The GPU layer's first converge on GPU_NODE (DKMS builds the module: minutes), started in
    the background when first asked for: test_upgrade_to_debian13 asks for it before it upgrades
    node1 and node2 (other hosts; both mostly dpkg and compilers, so the two overlap on the
    machine's cores), test_gpu waits for it."""
    return mp_start(*gpu_up_args(gpu_inventory), timeout=2400)


def received_alerts(inventory: Path, node: str) -> list[dict]:
    """Every alert the receiver got so far (each notification's alerts, in order)."""
    import json

    out = node_ssh(inventory, node, f"cat {ALERTS_FILE} 2>/dev/null || true").stdout
    return [a for line in out.splitlines() if line.strip() for a in json.loads(line).get("alerts", [])]


def changed_by_host(summary: dict) -> dict[str, set[str]]:
    """Per host, the tasks and handlers that reported a change in a run (``up`` or ``up --check``,
    from its JSON summary): what check mode predicted, or what the real run did. Read from the
    run's events (``changed_tasks``, where a no_log task's or loop's change is found from its
    lines: its result is censored)."""
    return {host: {t for tasks in roles.values() for t in tasks}
            for host, roles in (summary.get("changed_tasks") or {}).items()}


def assert_check_predicted(check: dict, real: dict, hosts: list[str]) -> None:
    """`up --check` (summary ``check``) predicted the following `up` (``real``) exactly: per host
    the same set of changed tasks, and check mode's exit code 4 exactly when a change was due."""
    predicted, done = changed_by_host(check), changed_by_host(real)
    diff = {h: {"predicted, not done": sorted(predicted.get(h, set()) - done.get(h, set())),
                "done, not predicted": sorted(done.get(h, set()) - predicted.get(h, set()))}
            for h in hosts if predicted.get(h, set()) != done.get(h, set())}
    assert not diff, diff
    assert check["exit_code"] == (4 if any(predicted.get(h) for h in hosts) else 0), check["exit_code"]


# --------------------------------------------------------------------------- third-party auditors

def ssh_audit_failures(inventory: Path, node: str) -> list[str]:
    """What ssh-audit (PyPI, in .venv) fails in the node's sshd, read from its JSON report:
    algorithms it fails and CVEs it lists. Warnings are not failures. OpenSSH 10 penalises
    the many short connections ssh-audit makes (PerSourcePenalties): run it last on a node."""
    import json
    import shutil as sh
    import sys

    box = Sandbox(inventory.parent.parent.parent)
    target = next(n for n in box.state().nodes if n.name == node)
    exe = sh.which("ssh-audit", path=str(Path(sys.executable).parent))
    assert exe, "ssh-audit is not installed in the virtualenv (scripts/setup.sh installs it)"
    res = subprocess.run([exe, "-j", "-p", str(target.ssh_port), "127.0.0.1"], capture_output=True,
                         text=True, timeout=120)
    report = json.loads(res.stdout)
    failed = [f"{kind} {a['algorithm']}: {'; '.join(a['notes']['fail'])}"
              for kind in ("kex", "key", "enc", "mac") for a in report.get(kind, [])
              if (a.get("notes") or {}).get("fail")]
    return failed + [f"CVE {c.get('name')}" for c in report.get("cves", [])]


def tls_audit_findings(inventory: Path, node: str) -> list[str]:
    """What testssl.sh (Debian's package) finds against the node's MLflow endpoint (nginx, TLS):
    protocols, ciphers, server defaults, headers and vulnerabilities, every finding of severity
    LOW or worse."""
    import json
    import tempfile

    box = Sandbox(inventory.parent.parent.parent)
    target = next(n for n in box.state().nodes if n.name == node)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "testssl.json"
        res = subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--ip", "127.0.0.1",
                              "-p", "-s", "-f", "-U", "-h", "--jsonfile", str(out),
                              f"https://{node}:{target.ports['https']}"],
                             capture_output=True, text=True, timeout=600)
        assert out.exists(), res.stdout[-2000:] + res.stderr[-2000:]
        findings = json.loads(out.read_text())
    return [f"{f['id']} {f['severity']}: {f['finding']}" for f in findings
            if f.get("severity") in ("LOW", "MEDIUM", "HIGH", "CRITICAL")]

