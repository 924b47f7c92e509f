"""The offline bundle's checks (kubernetes_node's bundle.yml, run by Ansible on localhost into a
scratch directory): a missing bundle, a file that fails its checksum, a file SHA256SUMS does not
list, and a bundle without the pinned kubeadm are each refused with a message naming the bundle.
The .deb files here are placeholders that are never installed: the tasks under test stop before
any installation, and the test only asserts on their refusals and on the accepted layout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from mlops_provision import paths

DEBS = ("kubeadm_1.33.1-1.1_amd64.deb", "kubelet_1.33.1-1.1_amd64.deb", "kubectl_1.33.1-1.1_amd64.deb",
        "cri-tools_1.33.0-1.1_amd64.deb")


def bundle(root: Path, names=DEBS, listed=None, tamper: str = "") -> Path:
    root.mkdir(parents=True)
    for name in names:
        (root / name).write_bytes(f"placeholder {name}\n".encode())
    lines = [f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  {n}" for n in (listed or names)]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    if tamper:
        (root / tamper).write_bytes(b"changed\n")
    return root


def run_bundle(tmp: Path, source: Path | str) -> subprocess.CompletedProcess:
    play = tmp / "play.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Bundle", "hosts": "node", "gather_facts": False, "connection": "local",
        "roles": [{"role": "mlops"}],
        "tasks": [{"name": "Bundle", "ansible.builtin.include_role": {
            "name": "kubernetes_node", "tasks_from": "bundle.yml"}}]}]))
    inv = tmp / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    node:\n      ansible_host: 127.0.0.1\n")
    extra = {"kubernetes_node_bundle": str(source), "kubernetes_node_bundle_dir": str(tmp / "on-node"),
             "ansible_python_interpreter": shutil.which("python3")}
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(paths.roles_dir()), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([shutil.which("ansible-playbook") or "ansible-playbook", "-i", str(inv), str(play),
                           "-e", json.dumps(extra)], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("bundle.yml writes root-owned files: run as root")


def test_missing_bundle_is_named(tmp_path: Path) -> None:
    res = run_bundle(tmp_path, tmp_path / "no-such-bundle.tar.gz")
    assert res.returncode == 2
    assert "Kubernetes packages cannot be had on node" in res.stdout
    assert "no-such-bundle.tar.gz' is missing on the admin machine" in res.stdout


@pytest.mark.parametrize("case", ["tampered", "unlisted", "no pinned kubeadm"])
def test_bad_bundle_refused(tmp_path: Path, case: str) -> None:
    if case == "tampered":
        source = bundle(tmp_path / "b", tamper="kubelet_1.33.1-1.1_amd64.deb")
        says = "kubelet_1.33.1-1.1_amd64.deb: FAILED"
    elif case == "unlisted":
        source = bundle(tmp_path / "b", listed=DEBS[:-1])
        says = "expected SHA256SUMS listing every .deb"
    else:
        source = bundle(tmp_path / "b", names=tuple(n.replace("1.33.1", "1.32.4") for n in DEBS))
        says = "checksums pass; expected SHA256SUMS"  # intact, but not the pinned version
    res = run_bundle(tmp_path, source)
    assert res.returncode == 2, res.stdout[-2000:]
    assert f"from bundle {source}" in res.stdout and says in res.stdout, res.stdout[-2000:]


def test_good_bundle_as_tarball_passes_its_checks(tmp_path: Path) -> None:
    source = bundle(tmp_path / "b")
    archive = tmp_path / "k8s-1.33.1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(source.iterdir()):
            tar.add(item, arcname=item.name)
    res = run_bundle(tmp_path, archive)
    assert res.returncode == 0, res.stdout[-2000:]
    assert sorted(p.name for p in (tmp_path / "on-node").iterdir()) == sorted([*DEBS, "SHA256SUMS"])
