"""Bring-up of a real Kubernetes cluster: opt-in, on machines a site lends for it.

MLOPS_CLUSTER_INVENTORY=SITE/hosts.yml (with MLOPS_CLUSTER_VAULT_PASSWORD_FILE when the site uses
the vault): real Debian 12 nodes in control_plane / cpu_workers / gpu_workers, reachable, with the
site's mirror of pkgs.k8s.io and its registry (or an offline bundle and image archives) set in the
inventory, and kubernetes_control_plane_encryption_key in the vault. The test converges the whole
site (`up`), proves a second `up` changes nothing (no second kubeadm init), runs `verify` and
requires every cluster check to pass on the first control plane (none skipped), and uses the admin
kubeconfig fetched to the site directory. It changes those machines: run it only where that is
wanted. Everywhere else it skips with that reason (nothing here fakes kubeadm or a cluster)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import mp

INVENTORY = os.environ.get("MLOPS_CLUSTER_INVENTORY", "")
VAULT = os.environ.get("MLOPS_CLUSTER_VAULT_PASSWORD_FILE", "")
WHY = "set MLOPS_CLUSTER_INVENTORY=SITE/hosts.yml to bring up a real cluster (changes those machines)"
pytestmark = pytest.mark.skipif(not INVENTORY, reason=WHY)
CLUSTER_CHECKS = ("every inventory cluster node is Ready and labelled by its groups",
                  "system pods (kube-system) running", "a Secret is stored encrypted in etcd (secretbox)",
                  "the API audit log is written")


def _args() -> list[str]:
    return ["-i", INVENTORY, *(["--vault-password-file", VAULT] if VAULT else [])]


@pytest.fixture(scope="module")
def brought_up() -> dict:
    res = mp("validate", *_args())
    assert res.rc == 0, res.stdout + res.stderr
    res = mp("up", *_args(), "--output", "json", timeout=7200)
    assert res.rc == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return res.json()


def test_second_up_changes_nothing(brought_up):
    res = mp("up", *_args(), "--output", "json", timeout=3600)
    assert res.rc == 0, res.stdout[-4000:] + res.stderr[-4000:]
    changed = {h["host"]: h["changed"] for h in res.json()["hosts"] if h["changed"]}
    assert not changed, changed


def test_verify_cluster_checks_pass(brought_up):
    res = mp("verify", *_args(), "-k", "kubernetes", "--output", "json", timeout=3600)
    results = res.json()["results"]
    failed = [(r["host"], r["check"], r["message"]) for r in results if r["outcome"] in ("failed", "error")]
    assert res.rc == 0 and not failed, failed
    passed = {r["check"] for r in results if r["outcome"] == "passed"}
    for check in CLUSTER_CHECKS:
        assert check in passed, f"{check}: not passed (skipped?)"


def test_admin_kubeconfig_in_the_site_directory(brought_up):
    kubeconfig = Path(INVENTORY).resolve().parent / ".mlops-provision" / "kubernetes" / "admin.conf"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    kubectl = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "name"],
                             capture_output=True, text=True, timeout=60)
    assert kubectl.returncode == 0, kubectl.stderr
    assert kubectl.stdout.strip(), "no nodes"
