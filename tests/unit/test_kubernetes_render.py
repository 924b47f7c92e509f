"""The control plane's files rendered by Ansible itself (the role's render.yml on localhost) and
parsed as YAML: the apiVersion/kind/fields kubeadm and the API server expect. Not a schema
validation against Kubernetes (no such tool ran here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_provision import paths

KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("render.yml writes root-owned files: run as root")
    tmp = tmp_path_factory.mktemp("k8s")
    play = tmp / "play.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Render", "hosts": "cp1", "gather_facts": False, "connection": "local",
        "roles": [{"role": "mlops"}],
        "tasks": [{"name": "Render", "ansible.builtin.include_role": {
            "name": "kubernetes_control_plane", "tasks_from": "render.yml"}}]}]))
    inv = tmp / "hosts.yml"
    inv.write_text("all:\n  children:\n    control_plane:\n      hosts:\n        cp1:\n"
                   "          ansible_host: 127.0.0.1\n          mlops_node_address: 198.51.100.11\n"
                   "    gpu_workers:\n      hosts:\n        gpu1:\n          mlops_node_address: 198.51.100.21\n")
    extra = {"kubernetes_control_plane_config_dir": str(tmp / "etc"),
             "kubernetes_control_plane_audit_dir": str(tmp / "audit"),
             "kubernetes_control_plane_encryption_key": KEY, "ansible_python_interpreter": shutil.which("python3")}
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(paths.roles_dir()), "ANSIBLE_NOCOLOR": "1"}
    res = subprocess.run([str(Path(shutil.which("ansible-playbook") or "ansible-playbook")), "-i", str(inv),
                          str(play), "-e", json.dumps(extra)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return tmp / "etc"


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubeadm_config(rendered: Path) -> None:
    by_kind = {d["kind"]: d for d in docs(rendered / "kubeadm.yaml")}
    assert set(by_kind) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration",
                            "KubeProxyConfiguration"}
    assert by_kind["InitConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    cluster = by_kind["ClusterConfiguration"]
    assert cluster["kubernetesVersion"] == "v1.33.1"
    assert cluster["controlPlaneEndpoint"] == "198.51.100.11:6443"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}
    args = {a["name"]: a["value"] for a in cluster["apiServer"]["extraArgs"]}
    assert args["encryption-provider-config"].endswith("/encryption-config.yaml")
    assert args["audit-policy-file"].endswith("/audit-policy.yaml")
    assert args["admission-control-config-file"].endswith("/admission.yaml")
    assert by_kind["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    assert by_kind["InitConfiguration"]["localAPIEndpoint"]["advertiseAddress"] == "198.51.100.11"


def test_encryption_audit_admission(rendered: Path) -> None:
    (enc,) = docs(rendered / "encryption-config.yaml")
    assert enc["kind"] == "EncryptionConfiguration" and enc["resources"][0]["resources"] == ["secrets"]
    assert enc["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"] == KEY
    assert oct((rendered / "encryption-config.yaml").stat().st_mode & 0o777) == "0o600"
    (policy,) = docs(rendered / "audit-policy.yaml")
    assert policy["apiVersion"] == "audit.k8s.io/v1" and policy["kind"] == "Policy"
    (adm,) = docs(rendered / "admission.yaml")
    pod_security = adm["plugins"][0]["configuration"]
    assert pod_security["kind"] == "PodSecurityConfiguration"
    assert pod_security["defaults"]["enforce"] == "baseline"


def test_gpu_objects(rendered: Path) -> None:
    (rc,) = docs(rendered / "runtimeclass-nvidia.yaml")
    assert (rc["apiVersion"], rc["kind"], rc["handler"]) == ("node.k8s.io/v1", "RuntimeClass", "nvidia")
    (ds,) = docs(rendered / "nvidia-device-plugin.yaml")
    spec = ds["spec"]["template"]["spec"]
    assert ds["kind"] == "DaemonSet" and spec["runtimeClassName"] == "nvidia"
    assert spec["containers"][0]["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"


def _strict(data, kind: str, where: str = "") -> list[str]:
    """Problems of ``data`` against the Kubernetes python client's model ``kind`` (generated
    from Kubernetes' OpenAPI schema): unknown fields, wrong types, missing required fields."""
    import kubernetes.client as k8s

    cls = getattr(k8s, kind, None)
    if cls is None:  # a primitive or container type of the OpenAPI model
        if kind.startswith("list["):
            return [p for i, v in enumerate(data) for p in _strict(v, kind[5:-1], f"{where}[{i}]")]
        if kind.startswith("dict("):
            return [p for k, v in data.items() for p in _strict(v, kind[5:-1].split(", ", 1)[1], f"{where}.{k}")]
        types = {"str": str, "int": int, "bool": bool, "object": object, "float": (int, float)}
        return [] if isinstance(data, types.get(kind, object)) else [f"{where}: expected {kind}"]
    if not isinstance(data, dict):
        return [f"{where}: expected an object ({kind})"]
    by_json = {v: k for k, v in cls.attribute_map.items()}
    out = [f"{where}.{k}: not a field of {kind}" for k in data if k not in by_json]
    for key, value in data.items():
        if key in by_json:
            out += _strict(value, cls.openapi_types[by_json[key]], f"{where}.{key}")
    try:  # required fields: the generated constructor refuses None for them
        cls(**{by_json[k]: v for k, v in data.items() if k in by_json})
    except ValueError as exc:
        out.append(f"{where}: {exc}")
    return out


@pytest.mark.parametrize(("name", "kind"), [("runtimeclass-nvidia.yaml", "V1RuntimeClass"),
                                            ("nvidia-device-plugin.yaml", "V1DaemonSet")])
def test_objects_against_kubernetes_models(rendered: Path, name: str, kind: str) -> None:
    """The objects kubectl applies, field by field against the models the Kubernetes python client
    generates from Kubernetes' OpenAPI schema (an offline substitute for the API server's
    validation; kubeadm's, the encryption and the audit configurations have no such model)."""
    (obj,) = docs(rendered / name)
    assert _strict(obj, kind) == []
