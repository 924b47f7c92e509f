"""Checks for the Kubernetes layer (roles kubernetes_node, kubernetes_control_plane,
kubernetes_worker). Prerequisites on every cluster node (control_plane, cpu_workers, gpu_workers):
swap off for good, modules, kernel parameters, containerd's CRI with systemd cgroups, cluster ports
open from the other nodes. Cluster checks run on a control plane where the cluster is up
(/etc/kubernetes/admin.conf) and otherwise skip WITH the reason: nodes Ready and labelled, system
pods running, Secrets encrypted in etcd, the audit log written, nvidia.com/gpu on GPU workers, a pod
running nvidia-smi through the `nvidia` RuntimeClass. Reads the kubernetes_node role's local fact.

Each check names the role whose tasks make what it proves (``roles`` marker), which is not always
a kubernetes_* role: os_hardening loads the modules and sets the kernel parameters (kubernetes_node
only asserts them), containerd configures the CRI, the firewall opens the cluster ports."""

from __future__ import annotations

import json
import time

import pytest

from mlops_provision.checks.conftest import peer_host

CLUSTER_GROUPS = {"control_plane", "cpu_workers", "gpu_workers"}
ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF}"


@pytest.fixture(scope="module")
def k8s_node(host, node) -> dict:
    if not CLUSTER_GROUPS & set(node.groups):
        pytest.skip("not a cluster node (not in control_plane, cpu_workers or gpu_workers)")
    if node.in_container:
        pytest.skip("container: a Kubernetes node needs a kernel of its own (the role skips containers)")
    fact = node["kubernetes_node_local_fact"]
    f = host.file(fact)
    assert f.exists, f"{fact} is missing: the kubernetes_node role has not converged this node"
    return json.loads(f.content_string)


@pytest.mark.roles("kubernetes_node")
def test_swap_off_for_good(host, k8s_node):
    """swap off, fstab without active swap, swap.target masked"""
    assert host.check_output("swapon --show=NAME --noheadings").strip() == "", "swap is on"
    active = [line for line in host.file("/etc/fstab").content_string.splitlines()
              if line.split() and not line.lstrip().startswith("#") and len(line.split()) > 2
              and line.split()[2] == "swap"]
    assert not active, f"/etc/fstab still activates swap: {active}"
    assert host.run("systemctl is-enabled swap.target").stdout.strip() == "masked"


@pytest.mark.roles("os_hardening")  # os_hardening_modules_load; kubernetes_node only asserts them
def test_kernel_modules(host, k8s_node):
    """kernel modules for Kubernetes (overlay, br_netfilter) present"""
    missing = [m for m in k8s_node["modules"] if not host.file(f"/sys/module/{m}").exists]
    assert not missing, f"modules not loaded: {missing}"


@pytest.mark.roles("os_hardening")  # os_hardening_sysctl; kubernetes_node only asserts them
def test_kernel_parameters(host, k8s_node):
    """kernel parameters for Kubernetes (forwarding, bridge netfilter)"""
    for key, value in k8s_node["sysctl"].items():
        assert host.check_output(f"sysctl -n {key}").strip() == str(value), key


@pytest.mark.roles("containerd")  # containerd's config; the kubelet's cgroupDriver is kubeadm's, written once
def test_cri_socket_and_systemd_cgroups(host, k8s_node):
    """containerd's CRI socket answers, runc with systemd cgroups"""
    assert host.service("containerd").is_running
    assert host.file(k8s_node["cri_socket"]).is_socket
    dump = host.check_output("containerd config dump")
    assert "SystemdCgroup = true" in dump
    kubelet = host.file("/var/lib/kubelet/config.yaml")
    if kubelet.exists:
        assert "cgroupDriver: systemd" in kubelet.content_string


@pytest.mark.roles("kubernetes_node")
def test_packages_pinned_and_held(host, k8s_node):
    """kubelet, kubeadm, kubectl at the pinned version, held"""
    if not host.package("kubeadm").is_installed:
        pytest.skip(f"Kubernetes packages are not installed here (source: {k8s_node['source']}): not verified")
    held = host.check_output("apt-mark showhold").split()
    for name in k8s_node["packages"]:
        assert host.package(name).version.startswith(f"{k8s_node['version']}-"), name
        assert name in held, f"{name} is not held"


@pytest.mark.roles("firewall")  # the rules role mlops declares for the cluster
def test_cluster_ports_open_from_another_node(host, node, k8s_node):
    """from another node: the kubelet port passes the firewall"""
    peer = peer_host(node)
    if peer is None:
        pytest.skip("no other inventory node to probe from")
    if peer.run("systemd-detect-virt --container").rc == 0:
        pytest.skip("the other node is a container")
    address = node.nodes[node.name]
    probe = peer.run(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/10250'")
    assert probe.rc != 124, f"port 10250 on {address} was dropped for another inventory node"


# --------------------------------------------------------------------------- a running cluster

@pytest.fixture(scope="module")
def cluster(host, node) -> dict:
    if "control_plane" not in node.groups or node.in_container:
        pytest.skip("cluster checks run on a control plane (VM or bare metal)")
    if not host.file(ADMIN_CONF).exists:
        pytest.skip(f"no cluster here ({ADMIN_CONF} missing: kubeadm init has not run): not verified")
    return json.loads(host.check_output(f"{KUBECTL} get nodes -o json"))


@pytest.mark.roles("kubernetes_worker", "kubernetes_control_plane")  # labels; join, CNI
def test_nodes_ready_and_labelled(node, cluster):
    """every inventory cluster node is Ready and labelled by its groups"""
    by_name = {n["metadata"]["name"]: n for n in cluster["items"]}
    for name in node.nodes:
        if name not in by_name:
            continue
        ready = [c for c in by_name[name]["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", f"{name} is not Ready"
    gpu = [n for n in cluster["items"] if n["metadata"]["labels"].get("nvidia.com/gpu.present") == "true"]
    for item in gpu:
        assert "node-role.kubernetes.io/gpu-worker" in item["metadata"]["labels"]


@pytest.mark.roles("kubernetes_control_plane")
def test_system_pods_running(host, cluster):
    """system pods (kube-system) running"""
    pods = json.loads(host.check_output(f"{KUBECTL} -n kube-system get pods -o json"))["items"]
    bad = [p["metadata"]["name"] for p in pods if p["status"]["phase"] not in ("Running", "Succeeded")]
    assert pods and not bad, f"not running: {bad}"


@pytest.mark.roles("kubernetes_control_plane")
def test_secrets_encrypted_in_etcd(host, node, cluster):
    """a Secret is stored encrypted in etcd (secretbox)"""
    name = f"mlops-verify-{int(time.time())}"
    host.check_output(f"{KUBECTL} -n default create secret generic {name} --from-literal=probe=plaintext-probe")
    try:
        raw = host.run(
            f"{KUBECTL} -n kube-system exec etcd-{node.name} -- etcdctl --endpoints=https://127.0.0.1:2379 "
            "--cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt "
            f"--key=/etc/kubernetes/pki/etcd/server.key get /registry/secrets/default/{name} --print-value-only")
        assert raw.rc == 0, raw.stderr
        assert "k8s:enc:secretbox:v1:" in raw.stdout and "plaintext-probe" not in raw.stdout
    finally:
        host.run(f"{KUBECTL} -n default delete secret {name}")


@pytest.mark.roles("kubernetes_control_plane")
def test_audit_log_written(host, cluster):
    """the API audit log is written"""
    log = host.file("/var/log/kubernetes/audit/audit.log")
    assert log.exists and log.size > 0
    last = host.check_output("tail -n 1 /var/log/kubernetes/audit/audit.log")
    assert json.loads(last)["kind"] == "Event"


@pytest.mark.roles("kubernetes_control_plane")  # the device plugin (addons)
def test_gpu_capacity_on_gpu_workers(cluster):
    """nvidia.com/gpu capacity on GPU workers"""
    gpu = [n for n in cluster["items"] if n["metadata"]["labels"].get("nvidia.com/gpu.present") == "true"]
    if not gpu:
        pytest.skip("no GPU worker in the cluster: not verified")
    for item in gpu:
        assert int(item["status"]["capacity"].get("nvidia.com/gpu", "0")) > 0, item["metadata"]["name"]


@pytest.mark.roles("kubernetes_control_plane")  # the RuntimeClass (addons)
def test_pod_runs_nvidia_smi_through_the_runtimeclass(host, cluster):
    """a pod runs nvidia-smi through RuntimeClass nvidia"""
    gpu = [n for n in cluster["items"] if int(n["status"]["capacity"].get("nvidia.com/gpu", "0")) > 0]
    if not gpu:
        pytest.skip("no node advertises nvidia.com/gpu: not verified")
    name = f"mlops-verify-smi-{int(time.time())}"
    overrides = json.dumps({"spec": {"runtimeClassName": "nvidia", "restartPolicy": "Never", "containers": [{
        "name": "smi", "image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", "command": ["nvidia-smi", "-L"],
        "resources": {"limits": {"nvidia.com/gpu": 1}}}]}})
    host.check_output(f"{KUBECTL} -n default run {name} --image=unused --restart=Never --overrides='{overrides}'")
    try:
        phase = ""
        for _ in range(60):
            phase = host.check_output(f"{KUBECTL} -n default get pod {name} -o jsonpath={{.status.phase}}")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(5)
        logs = host.run(f"{KUBECTL} -n default logs {name}").stdout
        assert phase == "Succeeded" and "GPU 0" in logs, f"{phase}: {logs}"
    finally:
        host.run(f"{KUBECTL} -n default delete pod {name} --wait=false")
