"""Checks for the `containerd` role (control_plane, cpu_workers, gpu_workers): the service, the
effective configuration after the drop-in merge (`containerd config dump`: systemd cgroups, CRI
on, the data root, the NVIDIA runtime on GPU nodes). Reads the role's local fact
(/etc/ansible/facts.d/containerd.fact)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.roles("containerd")

WORKLOAD_GROUPS = {"control_plane", "cpu_workers", "gpu_workers"}


@pytest.fixture(scope="module")
def containerd(host, node) -> dict:
    if not WORKLOAD_GROUPS & set(node.groups):
        pytest.skip("runs no workloads (not in control_plane, cpu_workers or gpu_workers): no containerd")
    fact = node["containerd_local_fact"]
    f = host.file(fact)
    assert f.exists, f"{fact} is missing: the containerd role has not converged this node"
    return json.loads(f.content_string)


@pytest.fixture(scope="module")
def dump(host, containerd) -> str:
    return host.check_output("containerd config dump")


def test_containerd_running(host, containerd):
    """containerd enabled and running"""
    svc = host.service("containerd")
    assert svc.is_enabled and svc.is_running


def test_containerd_series(host, containerd):
    """containerd is the site's series"""
    assert host.package("containerd").version.startswith(f"{containerd['version']}.")


def test_config_imports_our_dropin(host, containerd):
    """config.toml imports the drop-in directory, our drop-in is there"""
    dropin = containerd["dropin"]
    assert host.file(dropin).exists
    assert f"{dropin.rsplit('/', 1)[0]}/*.toml" in host.file("/etc/containerd/config.toml").content_string


def test_effective_config_systemd_cgroups_and_root(containerd, dump):
    """effective config: systemd cgroups for runc, data root"""
    runc = dump.split('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]', 1)
    assert len(runc) == 2 and "SystemdCgroup = true" in runc[1].split("[", 1)[0], \
        "runc does not use the systemd cgroup driver in `containerd config dump`"
    assert f'root = "{containerd["root"]}"' in dump


def test_cri_plugin_on(host, containerd):
    """the CRI plugin is loaded"""
    out = host.check_output("ctr plugins ls")
    cri = [line.split() for line in out.splitlines() if line.split()[:2] == ["io.containerd.grpc.v1", "cri"]]
    assert cri and cri[0][-1] == "ok", f"CRI plugin: {cri or 'absent'}"


def test_nvidia_runtime_on_gpu_nodes(host, node, containerd, dump):
    """the NVIDIA runtime is a named runtime on GPU nodes"""
    if "gpu_workers" not in node.groups:
        pytest.skip("not a GPU node")
    if not containerd["nvidia_runtime"]:
        pytest.skip("containerd_nvidia_runtime is false here: the NVIDIA container runtime is not verified")
    assert '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]' in dump
    assert host.file("/usr/bin/nvidia-container-runtime").exists
    if containerd["cdi"]:
        assert "enable_cdi = true" in dump
