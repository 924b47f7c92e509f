"""Two of the session's shared sandbox containers (converged Debian 12 nodes: node1 with MLflow
holding the run test_mlflow logged, and node2, a worker) upgraded in place to Debian 13, as
docs/upgrade.md tells an operator: `mlflow backup`, the apt sources moved to trixie, `apt
full-upgrade`, a restart, then `up --limit` the upgraded nodes. They converge (PostgreSQL 15 -> 17
with pg_upgradecluster, MLflow's virtualenv rebuilt on Python 3.13); node3 (the GPU node of
test_gpu) stays on Debian 12, so the site then has nodes of both releases, as an operator's has
while moving node by node: a second `up` of the whole site changes nothing and `verify` passes on
every node. MLflow's runs, parameters, metrics, tags and artifact bytes read through the client
are what they were, and third-party auditors (testssl.sh, ssh-audit) find nothing on Debian 13.

A fresh Debian 13 node (no upgrade) is proven by Molecule (molecule/default: the Debian 13
image). Runs after every reader of the Debian 12 hosts, before test_gpu (node3, converged beside
the upgrade) and test_init_site (which then takes the upgraded node1 over): AFTER_READERS in
conftest.py."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from mlops_provision.sandbox.containers import container_name
from mlops_provision.sandbox.core import Sandbox
from tests.conftest import mp
from tests.integration.conftest import by_host, node_ssh, ssh_audit_failures, tls_audit_findings
from tests.integration.test_mlflow import client  # noqa: F401  (the fixture, as the admin's client)

pytestmark = pytest.mark.integration
NODES = ["node1", "node2", "node3"]
#: Upgraded to Debian 13: MLflow's node and a worker. node3, the GPU node (driver built by DKMS
#: in test_gpu), stays on Debian 12: the GPU layer's upgrade is not proven here (docs/proven.md).
UPGRADED = ["node1", "node2"]
# The operator's commands (docs/upgrade.md). One addition for containers: the kernel package is
# held, as a container runs the host's kernel (its initramfs would only cost the other lane's VM
# CPU time); the kernel upgrade and the reboot into it are not proven here.
UPGRADE = ("set -eu; export DEBIAN_FRONTEND=noninteractive; apt-mark hold linux-image-amd64 >/dev/null; "
           "sed -i 's/bookworm/trixie/g' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources; "
           "apt-get update -q; apt-get -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef "
           "full-upgrade >/tmp/full-upgrade.log 2>&1 || { tail -n 40 /tmp/full-upgrade.log; exit 1; }")


def _snapshot(mlflow, tmp: Path) -> dict:
    """What a data scientist reads back: every run of every experiment, with its parameters,
    metrics (full history), tags and the bytes of its artifacts."""
    out = {}
    for exp in mlflow.search_experiments():
        for run in mlflow.search_runs([exp.experiment_id]):
            rid = run.info.run_id
            history = {k: [(m.step, m.value) for m in mlflow.get_metric_history(rid, k)] for k in run.data.metrics}
            files = {}
            for top in mlflow.list_artifacts(rid):
                local = Path(mlflow.download_artifacts(rid, top.path, str(tmp / rid)))
                for f in sorted(p for p in ([local] if local.is_file() else local.rglob("*")) if p.is_file()):
                    files[str(f.relative_to(tmp / rid))] = hashlib.sha256(f.read_bytes()).hexdigest()
            tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
            out[(exp.name, rid)] = (run.info.status, run.data.params, history, tags, files)
    return out


@pytest.fixture(scope="module")
def inventory(container_inventory, converged_containers):
    return container_inventory


@pytest.fixture(scope="module")
def before(inventory, client, tmp_path_factory):  # noqa: F811
    snap = _snapshot(client, tmp_path_factory.mktemp("before"))
    assert snap, "no MLflow run to carry over (test_mlflow logs one)"
    return snap


@pytest.fixture(scope="module")
def upgraded(inventory, before, request) -> dict:
    """The operator's steps (docs/upgrade.md), then `up`; its JSON summary. When test_gpu runs in
    this session, the GPU layer's first converge on node3 (conftest.gpu_first_converge) runs
    beside them (another host) and is over before the tests below read the whole site."""
    gpu = (request.getfixturevalue("gpu_first_converge")
           if any(item.path.stem == "test_gpu" for item in request.session.items) else None)
    res = mp("mlflow", "backup", "-i", inventory, timeout=900)
    assert res.rc == 0, res.stdout[-2000:] + res.stderr[-2000:]
    box = Sandbox(inventory.parent.parent.parent)
    nodes = [n for n in box.state().nodes if n.name in UPGRADED]
    procs = {n.name: subprocess.Popen([*box.ssh_command(n), UPGRADE], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for n in nodes}
    failed = {n: p.communicate(timeout=1800)[0][-3000:] for n, p in procs.items() if p.wait() != 0}
    assert not failed, failed
    for node in nodes:  # the restart an upgrade needs (new systemd, libc)
        subprocess.run(["podman", "restart", "-t", "10", container_name(box, node)], check=True, capture_output=True)
    box.wait_for_ssh(box.state())
    res = mp("up", "-i", inventory, "--limit", ",".join(UPGRADED), "--output", "json", timeout=1800)
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    if gpu is not None:
        gpu.wait()  # its verdict is test_gpu's
    return res.json()


def test_the_upgraded_nodes_run_debian_13_and_node3_still_12(inventory, upgraded):
    for node in NODES:
        out = node_ssh(inventory, node, ". /etc/os-release && echo $VERSION_ID $VERSION_CODENAME").stdout
        assert out.split() == (["13", "trixie"] if node in UPGRADED else ["12", "bookworm"]), (node, out)


def test_postgresql_was_upgraded_and_the_old_cluster_kept(inventory, upgraded):
    clusters = {tuple(line.split()[:2]): line.split() for line in
                node_ssh(inventory, "node1", "pg_lsclusters --no-header").stdout.splitlines()}
    assert clusters[("17", "main")][2:4] == ["5432", "online"], clusters
    assert clusters[("15", "main")][3] == "down", clusters  # the operator drops it (docs/upgrade.md)
    changed = {t for tasks in (upgraded.get("changed_tasks") or {}).get("node1", {}).values() for t in tasks}
    assert "Postgresql | Upgrade the cluster of the release before (pg_upgradecluster; the old one stays, stopped)" \
        in changed, sorted(changed)


def test_mlflow_data_is_what_it_was(inventory, upgraded, before, client, tmp_path):  # noqa: F811
    assert _snapshot(client, tmp_path) == before
    py = node_ssh(inventory, "node1", "/opt/mlflow/venv/bin/python -c 'import sys; print(sys.version_info[:2])'")
    assert py.stdout.strip() == "(3, 13)", py.stdout


def test_second_up_changes_nothing(inventory, upgraded):
    res = mp("up", "-i", inventory, "--output", "json")
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = res.json()
    assert {h: v["changed"] for h, v in by_host(summary).items()} == dict.fromkeys(NODES, 0), \
        summary.get("changed_tasks")


def test_verify_passes(inventory, upgraded):
    res = mp("verify", "-i", inventory, "--output", "json")
    report = res.json()
    failed = [(r["host"], r["check"], r.get("message", "")[:300]) for r in report["results"]
              if r["outcome"] in ("failed", "error")]
    assert res.rc == 0 and not failed, failed
    assert {r["host"] for r in report["results"]} == set(NODES)


def test_what_debian_13_delivers(inventory, upgraded):
    """the release's own versions, and sources and sshd as Debian 13 wants them"""
    ctr = node_ssh(inventory, "node2", "dpkg-query -W -f '${Version}' containerd").stdout
    assert ctr.startswith("1.7."), ctr
    kex = node_ssh(inventory, "node2", "sshd -T | sed -n 's/^kexalgorithms //p'").stdout.split(",")
    assert kex[0].strip() == "mlkem768x25519-sha256", kex
    apt = node_ssh(inventory, "node2", "apt-get update 2>&1 | grep -ci 'warn' || true")
    assert apt.stdout.strip() == "0", apt.stdout


def test_third_party_auditors_find_nothing(inventory, upgraded):
    """testssl.sh against MLflow's endpoint and ssh-audit against a hardened sshd (last: OpenSSH
    10 penalises ssh-audit's many short connections from one address; node2 is not node1,
    which test_init_site takes over next)"""
    assert tls_audit_findings(inventory, "node1") == []
    assert ssh_audit_failures(inventory, "node2") == []
