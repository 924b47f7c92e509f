"""Debian 13 (trixie) on containers: the whole site converges on three fresh Debian 13 nodes
(node1: control_plane and mlflow; node2, node3: cpu_workers), a second `up` changes nothing,
`verify` passes on every node, and what differs from Debian 12 is what the node runs
(PostgreSQL 17, containerd 1.7, OpenSSH's ML-KEM key exchange, deb822 sources).

Container sandboxes share one podman network: this module takes the session's shared (Debian
12) sandbox down first, so it runs after every other container module (MODULE_ORDER in
conftest.py). The kernel side on Debian 13 (LUKS, nftables, auditd, sysctls, reboot) is not
proven here: it needs a Debian 13 VM."""

from __future__ import annotations

import pytest

from tests.conftest import mp
from tests.integration.conftest import by_host, node_ssh, release_shared_sandbox, require_host_tools, tear_down

pytestmark = pytest.mark.integration
NODES = ["node1", "node2", "node3"]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    release_shared_sandbox()
    require_host_tools("container")
    site = tmp_path_factory.mktemp("debian13")
    res = mp("sandbox", "up", "--site", site, "--nodes", "3", "--kind", "container", "--release", "13",
             timeout=1800)
    assert res.rc == 0, res.stderr
    yield site / ".mlops-provision" / "sandbox" / "inventory.yml"
    tear_down(site)


@pytest.fixture(scope="module")
def first_up(inventory) -> dict:
    res = mp("up", "-i", inventory, "--output", "json", timeout=1800)
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.json()


def test_the_nodes_are_debian_13(inventory):
    out = node_ssh(inventory, "node1", ". /etc/os-release && echo $VERSION_ID $VERSION_CODENAME").stdout
    assert out.split() == ["13", "trixie"], out


def test_the_whole_site_converges(first_up):
    hosts = by_host(first_up)
    assert sorted(hosts) == NODES
    assert all(h["failed"] == 0 and h["unreachable"] == 0 for h in hosts.values()), first_up["hosts"]


def test_second_up_changes_nothing(inventory, first_up):
    res = mp("up", "-i", inventory, "--output", "json")
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = res.json()
    assert {h["host"]: h["changed"] for h in summary["hosts"]} == dict.fromkeys(NODES, 0), summary.get("changed_tasks")


def test_verify_passes(inventory, first_up):
    res = mp("verify", "-i", inventory, "--output", "json")
    report = res.json()
    failed = [(r["host"], r["check"], r.get("message", "")[:300]) for r in report["results"]
              if r["outcome"] in ("failed", "error")]
    assert res.rc == 0 and not failed, failed
    assert {r["host"] for r in report["results"]} == set(NODES)
    assert report["counts"]["passed"] >= 8 * len(NODES)


def test_what_debian_13_delivers(inventory, first_up):
    """the release's own versions, and sources and sshd as Debian 13 wants them"""
    pg = node_ssh(inventory, "node1", "pg_lsclusters --no-header").stdout.split()
    assert pg[:2] == ["17", "main"] and pg[3] == "online", pg
    ctr = node_ssh(inventory, "node2", "dpkg-query -W -f '${Version}' containerd").stdout
    assert ctr.startswith("1.7."), ctr
    kex = node_ssh(inventory, "node2", "sshd -T | sed -n 's/^kexalgorithms //p'").stdout.split(",")
    assert kex[0].strip() == "mlkem768x25519-sha256", kex
    apt = node_ssh(inventory, "node3", "apt-get -o Debug::NoLocking=1 update 2>&1 | grep -ci 'warn' || true")
    assert apt.stdout.strip() == "0", apt.stdout
