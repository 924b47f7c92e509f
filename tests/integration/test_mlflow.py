"""End to end on node1 of the session's container sandbox (tests/integration/conftest.py: shared
with test_containers, which runs after this module): the MLflow layer (roles postgresql and mlflow).

From the admin side, as a data scientist and an operator would: converge MLflow 3.17.1, log a
run with the `mlflow` client over HTTPS, check idempotence and verify (check mode: the agreement
test in test_drift.py), probe the proxy (401, redirect, wrong Host, unknown SNI), upgrade to 3.17.2 (the run survives, a
pre-upgrade dump is left), take a backup, destroy the database, restore, and reject bad input
before any change. The session's one fresh converge installs MLflow 3.17.1 (the whole site, all
three nodes); the upgrade to 3.17.2 is the `up` that brings the shared hosts to the sandbox
inventory's settings. Wall times of install and start are printed as [wall]/[mlflow] lines."""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
from pathlib import Path

import pytest
import yaml

from mlops_provision.sandbox.core import InventoryLoader, Sandbox, VaultText
from tests.conftest import mp
from tests.integration.conftest import (
    MLFLOW_NEW,
    MLFLOW_OLD,
    by_host,
    node_ssh,
    sandbox_vault,
    variant,
    vault_password,
)

pytestmark = pytest.mark.integration
NODES = ["node1", "node2", "node3"]  # the shared container sandbox (conftest.container_inventory)

OLD, NEW = MLFLOW_OLD, MLFLOW_NEW
ARTIFACT = os.urandom(256 * 1024) + b"end of the artifact\n"
STATE: dict = {}  # what one test hands the next: run id, timings


def report(line: str) -> None:
    sys.stderr.write(f"\n[mlflow] {line}\n")


# --------------------------------------------------------------------------- helpers

def _group_vars(inventory: Path) -> dict:
    data = yaml.load(inventory.read_text(), Loader=InventoryLoader)
    return data["all"]["children"]["mlflow"]["vars"]


def _secret(inventory: Path, key: str) -> str:
    return sandbox_vault(inventory).decrypt(str(_group_vars(inventory)[key]).strip()).decode()


def _ports(inventory: Path) -> dict[str, int]:
    node = next(n for n in Sandbox(inventory.parent.parent.parent).state().nodes if n.name == "node1")
    return node.ports


def _ca(inventory: Path) -> Path:
    return inventory.parent / "mlflow-ca.crt"


def _url(inventory: Path) -> str:
    return f"https://localhost:{_ports(inventory)['https']}"


def _durations(run_dir: str) -> dict[str, float]:
    """Seconds each task (and handler) took in a run, from ansible-runner's events."""
    out: dict[str, float] = {}
    for f in sorted(Path(run_dir, "artifacts").rglob("job_events/*.json")):
        event = json.loads(f.read_text())
        data = event.get("event_data", {})
        if event.get("event") in ("runner_on_ok", "runner_on_failed") and data.get("duration") is not None:
            out[data["task"]] = out.get(data["task"], 0.0) + float(data["duration"])
    return out


def _changed_tasks(run_dir: str, ran: bool = False) -> list[str]:
    """Tasks that reported a change, in order (``ran``: that ran at all; a no_log task's result
    is censored, its change is not in the event)."""
    events = [json.loads(f.read_text()) for f in Path(run_dir, "artifacts").rglob("job_events/*.json")]
    events.sort(key=lambda e: e.get("counter", 0))
    return [e["event_data"]["task"] for e in events if e.get("event") == "runner_on_ok"
            and (ran or e["event_data"].get("res", {}).get("changed"))]


def _report_times(label: str, run: dict) -> None:
    took = _durations(run["run_dir"])
    mlflow = sum(v for k, v in took.items() if k.startswith("Mlflow |"))
    postgres = sum(v for k, v in took.items() if k.startswith("Postgresql |"))
    pip = took.get("Mlflow | Install MLflow into its virtualenv", 0.0)
    start = sum(took.get(k, 0.0) for k in ("Mlflow | Restart MLflow", "Mlflow | Start the server and enable it at boot",
                                          "Mlflow | Wait until the server answers"))
    report(f"{label}: `up` {run['duration_s']:.0f}s; postgresql role {postgres:.0f}s; mlflow role {mlflow:.0f}s, "
           f"of which pip install {pip:.0f}s and server start to /health {start:.1f}s")
    STATE.setdefault("times", {})[label] = {"up": run["duration_s"], "postgresql": postgres, "mlflow": mlflow,
                                            "pip": pip, "start": start}


def _up(inventory: Path, *args: str, timeout: int = 1800) -> dict:
    res = mp("up", "-i", inventory, "--output", "json", "--vault-password-file", vault_password(inventory),
             *args, timeout=timeout)
    assert res.rc == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.json()


@pytest.fixture(scope="module")
def client(inventory):
    """The `mlflow` client of the admin machine, logged in, trusting the site CA."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                             "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")}
    os.environ.update({
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": _secret(inventory, "mlflow_admin_password"),
        "MLFLOW_TRACKING_SERVER_CERT_PATH": str(_ca(inventory)),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    })
    yield mlflow.MlflowClient(tracking_uri=_url(inventory))
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _assert_run_intact(client, tmp_path: Path) -> None:
    run = client.get_run(STATE["run_id"])
    assert run.data.params == {"learning_rate": "0.01", "model": "ridge"}
    assert run.data.metrics["rmse"] == pytest.approx(0.125)
    history = client.get_metric_history(STATE["run_id"], "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    got = client.download_artifacts(STATE["run_id"], "data/blob.bin", str(tmp_path))
    assert Path(got).read_bytes() == ARTIFACT, "the artifact read back differs from what was logged"


# --------------------------------------------------------------------------- the node

@pytest.fixture(scope="module")
def inventory(container_inventory):
    return container_inventory


@pytest.fixture(scope="module")
def old_inventory(old_mlflow_inventory):
    """The sandbox's inventory with MLflow pinned to the older version."""
    return old_mlflow_inventory


@pytest.fixture(scope="module")
def first_up(fresh_converge):
    _report_times(f"fresh install of MLflow {OLD} (whole site on 3 nodes, base and hardening included)",
                  fresh_converge)
    return fresh_converge


def test_first_up_converges(first_up):
    node1 = by_host(first_up)["node1"]
    assert node1["failed"] == 0 and node1["changed"] > 0, node1


def test_client_logs_and_reads_back_over_https(first_up, client, tmp_path):
    """Create an experiment, log params, metrics and an artifact with credentials; read them back."""
    exp = client.create_experiment("issue-4-e2e")
    run = client.create_run(exp)
    rid = run.info.run_id
    client.log_param(rid, "learning_rate", "0.01")
    client.log_param(rid, "model", "ridge")
    client.log_metric(rid, "rmse", 0.125)
    for step, value in enumerate((1.0, 0.5, 0.25)):
        client.log_metric(rid, "loss", value, step=step)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(ARTIFACT)
    client.log_artifact(rid, str(blob), artifact_path="data")
    client.set_terminated(rid)
    STATE["run_id"], STATE["experiment_id"] = rid, exp
    _assert_run_intact(client, tmp_path / "back")
    assert client.get_experiment_by_name("issue-4-e2e").experiment_id == exp


def test_gpu_energy_helper_logs_into_a_real_run(inventory, first_up, client):
    """The training-side helper (mlops_provision.gpu.run_energy) in a run on this MLflow server:
    NVML is a fake (no GPU here) whose counters rise by 30 kJ and 12 kJ; the run read back holds
    the energies and the tag naming the GPUs measured."""
    import mlflow

    from mlops_provision.gpu.run_energy import TAG, GpuEnergy
    from tests.unit.test_run_energy import FakeNvml

    nvml = FakeNvml({0: [1_000, 1_000 + 30_000_000], 1: [0, 12_000_000]})
    mlflow.set_tracking_uri(_url(inventory))
    exp = client.create_experiment("gpu-energy")
    with mlflow.start_run(experiment_id=exp) as run, GpuEnergy(nvml=nvml):
        mlflow.log_param("model", "ridge")
    got = client.get_run(run.info.run_id).data
    assert got.metrics["gpu0_energy_joules"] == pytest.approx(30_000.0)
    assert got.metrics["gpu_energy_joules"] == pytest.approx(42_000.0)
    assert got.metrics["gpu_energy_kwh"] == pytest.approx(42_000.0 / 3.6e6)
    assert got.tags[TAG] == "measured: gpu0 GPU-0000, gpu1 GPU-0001"


def test_second_up_changes_nothing(old_inventory, first_up):
    """The fresh converge's second run, the whole site: no host changes (the shared upgrade to
    the sandbox inventory's settings then runs on node1 only, conftest.converged_containers)."""
    hosts = by_host(_up(old_inventory))
    assert {h: hosts[h]["changed"] for h in hosts} == dict.fromkeys(NODES, 0), hosts


def test_verify_passes(old_inventory, first_up):
    """node1 right after the fresh converge; node2 and node3, which nothing changes until then,
    are verified with it by the shared verify after the upgrade (conftest.verify_report)."""
    res = mp("verify", "-i", old_inventory, "--limit", "node1", "--output", "json",
             "--vault-password-file", vault_password(old_inventory))
    assert res.rc == 0, res.stdout[-3000:]
    results = res.json()["results"]
    mine = {r["check"]: r["outcome"] for r in results
            if r["module"] in ("mlflow", "postgresql") and r["host"] == "node1"}  # the MLflow server
    assert mine["MLflow server active and enabled"] == "passed"
    assert mine["MLflow in its virtualenv is the pinned version"] == "passed"
    assert mine["certificate valid for the server names, chains to the site CA"] == "passed"
    assert mine["MLflow unit sandboxing in effect (read-only system, private mounts)"] == "passed"  # CAP_SYS_ADMIN
    assert sum(o == "passed" for o in mine.values()) >= 15, mine


def test_without_credentials_the_api_answers_401(inventory, first_up):
    import requests

    res = requests.get(f"{_url(inventory)}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                       verify=_ca(inventory), timeout=30)
    assert res.status_code == 401
    wrong = requests.get(f"{_url(inventory)}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                         auth=("admin", "not-the-password"), verify=_ca(inventory), timeout=30)
    assert wrong.status_code == 401


def test_plain_http_redirects_to_https(inventory, first_up):
    import requests

    res = requests.get(f"http://localhost:{_ports(inventory)['http']}/api/2.0/mlflow/experiments/search?x=1",
                       allow_redirects=False, timeout=30)
    assert res.status_code == 301
    assert res.headers["Location"] == "https://localhost/api/2.0/mlflow/experiments/search?x=1"


def test_wrong_host_is_refused(inventory, first_up):
    import requests

    res = requests.get(f"{_url(inventory)}/health", headers={"Host": "mlflow.evil.example"},
                       verify=_ca(inventory), timeout=30)
    assert res.status_code == 421
    assert requests.get(f"{_url(inventory)}/health", verify=_ca(inventory), timeout=30).status_code == 200
    # an unknown name in SNI gets no TLS handshake at all
    context = ssl.create_default_context(cafile=str(_ca(inventory)))
    with (socket.create_connection(("127.0.0.1", _ports(inventory)["https"]), timeout=30) as sock,
          pytest.raises(ssl.SSLError, match=r"UNRECOGNIZED_NAME|unrecognized name|alert")):
        context.wrap_socket(sock, server_hostname="mlflow.evil.example")


def _handshake(inventory: Path, version: ssl.TLSVersion, ciphers: str | None = None) -> tuple[str, str]:
    context = ssl.create_default_context(cafile=str(_ca(inventory)))
    context.minimum_version = context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    with (socket.create_connection(("127.0.0.1", _ports(inventory)["https"]), timeout=30) as sock,
          context.wrap_socket(sock, server_hostname="localhost") as tls):
        return tls.version(), tls.cipher()[0]


def test_modern_tls_only(inventory, first_up):
    assert _handshake(inventory, ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"
    version, cipher = _handshake(inventory, ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    # the server's alerts, not this client's refusals
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        _handshake(inventory, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA")  # CBC, no AEAD
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
        _handshake(inventory, ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0")


# --------------------------------------------------------------------------- upgrade

@pytest.fixture(scope="module")
def upgraded(request, first_up, client):
    """The shared `up` to the sandbox inventory's settings, asked for only once the run is logged."""
    assert "run_id" in STATE, "test_client_logs_and_reads_back_over_https must run first"
    run = request.getfixturevalue("converged_containers")
    _report_times(f"upgrade {OLD} -> {NEW}", run)
    return run


def test_upgrade_keeps_the_run_and_leaves_a_dump(inventory, upgraded, client, tmp_path):
    changed = _changed_tasks(upgraded["run_dir"], ran=True)
    for task in ("Mlflow | Stop the server for the upgrade", "Mlflow | Dump the databases before the upgrade",
                 "Mlflow | Install MLflow into its virtualenv",
                 "Mlflow | Upgrade the tracking schema (mlflow db upgrade)"):
        assert task in changed, f"{task!r} did not run: {changed}"
    order = [changed.index(t) for t in ("Mlflow | Dump the databases before the upgrade",
                                        "Mlflow | Upgrade the tracking schema (mlflow db upgrade)")]
    assert order == sorted(order), "the schema was upgraded before the dump"
    version = node_ssh(inventory, "node1", "/opt/mlflow/venv/bin/python -c "
                       "\"import importlib.metadata as m; print(m.version('mlflow'))\"").stdout.strip()
    assert version == NEW
    report(f"MLflow version now installed: {version}")
    dumps = node_ssh(inventory, "node1", f"find /srv/mlops/backups/mlflow -path '*pre-upgrade-{OLD}-to-{NEW}-*' "
                     "-name '*.dump' -size +1k -printf '%P\\n'").stdout.split()
    assert {Path(d).name for d in dumps} == {"mlflow.dump", "mlflow_auth.dump"}, dumps
    _assert_run_intact(client, tmp_path)


def test_after_the_upgrade_up_changes_nothing_and_verify_passes(upgraded, noop_up, verify_report):
    assert by_host(noop_up)["node1"]["changed"] == 0
    rc, report, _ = verify_report  # the sandbox's vault password is found
    assert rc == 0, report
    assert {r["check"] for r in report["results"] if r["host"] == "node1" and r["module"] == "mlflow"
            and r["outcome"] == "passed"} >= {"MLflow server active and enabled",
                                               "MLflow in its virtualenv is the pinned version"}


def test_downgrade_is_refused_before_any_change(old_inventory, upgraded):
    res = mp("up", "-i", old_inventory, "--limit", "node1", "--output", "json",
             "--vault-password-file", vault_password(old_inventory))
    assert res.rc == 1
    node1 = by_host(res.json())["node1"]
    assert node1["changed"] == 0 and "schema migrations only go forward" in node1["message"], node1


# --------------------------------------------------------------------------- backup and restore

def test_backup_destroy_restore(inventory, upgraded, client, tmp_path):
    res = mp("mlflow", "backup", "-i", inventory, "--name", "it-backup-1", "--output", "json")
    assert res.rc == 0, res.stdout[-2000:] + res.stderr[-2000:]
    listing = node_ssh(inventory, "node1", "ls /srv/mlops/backups/mlflow/it-backup-1").stdout.split()
    assert {"mlflow.dump", "mlflow_auth.dump", "artifacts", "MANIFEST"} <= set(listing), listing

    # destroy the tracking database: the server comes back empty, the run is gone
    node_ssh(inventory, "node1", "systemctl stop mlflow && runuser -u postgres -- dropdb mlflow && "
             "runuser -u postgres -- createdb -O mlflow mlflow && systemctl start mlflow && "
             "for i in $(seq 90); do curl -fs -o /dev/null http://127.0.0.1:5000/health && exit 0; sleep 1; done; "
             "exit 1")
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=r"RESOURCE_DOES_NOT_EXIST|not found"):
        client.get_run(STATE["run_id"])

    missing = mp("mlflow", "restore", "-i", inventory, "--backup", "no-such-backup")
    assert missing.rc == 1 and "no backup named 'no-such-backup'" in missing.stdout, missing.stdout

    res = mp("mlflow", "restore", "-i", inventory, "--backup", "it-backup-1", "--output", "json")
    assert res.rc == 0, res.stdout[-2000:] + res.stderr[-2000:]
    _assert_run_intact(client, tmp_path)
    restored = by_host(_up(inventory, "--limit", "node1"))["node1"]
    assert restored["changed"] == 0, "a restore must leave the node converged"


def test_backup_timer_and_retention(inventory, upgraded):
    def listing() -> list[str]:
        return node_ssh(inventory, "node1", "ls /srv/mlops/backups/mlflow").stdout.split()

    def stamped(names: list[str]) -> list[str]:
        return sorted(n for n in names if len(n) == 16 and n[8] == "T" and n.endswith("Z"))

    node_ssh(inventory, "node1", "systemctl start mlflow-backup.service")  # what the timer starts
    first = stamped(listing())
    assert first, f"the backup service left no timestamped backup: {listing()}"
    # 8 more, a second apart: only the newest 7 (mlflow_backup_keep) timestamped ones stay
    node_ssh(inventory, "node1", "for i in $(seq 8); do sleep 1.1; /usr/local/sbin/mlflow-backup >/dev/null; done")
    names = listing()
    assert len(stamped(names)) == 7 and first[0] not in names, names
    assert "it-backup-1" in names and any(n.startswith("pre-upgrade-") for n in names), "named backups were rotated"


# --------------------------------------------------------------------------- bad input

def _vault_text(inventory: Path, plaintext: str) -> VaultText:
    return VaultText(sandbox_vault(inventory).encrypt(plaintext).decode())


@pytest.mark.parametrize(("name", "setting", "key", "expected"), [
    ("weak-admin", ("mlflow_admin_password", "vault:password1234"), "mlflow_admin_password", "is too weak"),
    ("plain-db", ("mlflow_db_password", "plain-text-password"), "mlflow_db_password", "is plain text"),
    ("port-clash", ("mlflow_https_port", 22), "mlflow_https_port", "also mlops_ssh_port"),
])
def test_bad_input_is_refused_before_any_host(inventory, first_up, name, setting, key, expected):
    var, value = setting
    if isinstance(value, str) and value.startswith("vault:"):
        value = _vault_text(inventory, value.removeprefix("vault:"))

    def edit(data):
        data["all"]["children"]["mlflow"]["vars"][var] = value

    inv = variant(inventory, name, edit)
    res = mp("up", "-i", inv, "--vault-password-file", vault_password(inventory))
    assert res.rc == 2, res.stdout + res.stderr
    err = " ".join(res.stderr.split())
    assert f"{key}:" in err and expected in err, err
    assert "password1234" not in res.stderr and "plain-text-password" not in res.stderr
    assert not (inv.parent / ".mlops-provision").exists(), "a run record: something ran"


def test_missing_artifact_parent_fails_before_any_change(inventory, upgraded):
    def edit(data):
        data["all"]["children"]["mlflow"]["vars"]["mlflow_artifacts_dir"] = "/nonexistent/volume/artifacts"

    inv = variant(inventory, "no-artifact-parent", edit)
    res = mp("up", "-i", inv, "--limit", "node1", "--output", "json",
             "--vault-password-file", vault_password(inventory))
    assert res.rc == 1, res.stdout[-2000:]
    node1 = by_host(res.json())["node1"]
    assert node1["changed"] == 0, _changed_tasks(res.json()["run_dir"])
    assert "/nonexistent/volume does not exist" in node1["message"] and "Nothing was changed" in node1["message"]
    assert node_ssh(inventory, "node1", "test -e /nonexistent", check=False).returncode != 0


# --------------------------------------------------------------------------- secrets

def test_secrets_never_reach_records_or_the_node_logs(inventory, upgraded):
    secrets = [_secret(inventory, k) for k in ("mlflow_admin_password", "mlflow_db_password")]
    ca_key = sandbox_vault(inventory).decrypt((inventory.parent / "mlflow-ca.key.vault").read_text().strip()).decode()
    secrets.append("".join(ca_key.strip().splitlines()[1:-1])[:48])
    site = inventory.parent.parent.parent
    leaks = [str(p) for p in site.rglob("*") if p.is_file() and p.suffix != ".vault" and p.name != "vault-password"
             and any(s in p.read_text(errors="replace") for s in secrets)]
    assert not leaks, f"a secret is in {leaks}"
    journal = node_ssh(inventory, "node1", "journalctl --no-pager -o cat").stdout
    assert not [s for s in secrets[:2] if s in journal], "a password is in the node's journal"
    assert (inventory.parent / "mlflow-ca.key.vault").read_text().startswith("$ANSIBLE_VAULT;")


def test_report_times():
    """Print the figures the closing note needs (install and start times, versions)."""
    times = STATE.get("times", {})
    for label, t in times.items():
        report(f"{label}: {json.dumps({k: round(v, 1) for k, v in t.items()})}")
    assert any(label.startswith("fresh install") for label in times), "the install was not measured"
    assert all(t["pip"] > 0 and t["start"] > 0 for t in times.values()), times
