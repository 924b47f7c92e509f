"""The monitoring layer on the session's converged container sandbox (tests/integration/
conftest.py), read as an operator reads it: Prometheus on node1 scrapes every node's
node-exporter and the MLflow services (`up == 1` through its API), the GPU-less nodes say "no GPU"
as metrics and no GPU alert fires, the monitoring page answers over TLS with the site CA and
basic auth only (401 without), and `mlops-provision energy` reads Prometheus through the page.
The drift alert end to end is in test_drift.py (it shares the drift run there)."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from mlops_provision.monitoring.page import page_settings
from mlops_provision.site import load
from tests.conftest import mp
from tests.integration.conftest import node_ssh, vault_password

pytestmark = pytest.mark.integration
NODES = ["node1", "node2", "node3"]


@pytest.fixture(scope="module")
def site(converged_containers, container_inventory, alert_receiver):
    """The converged sandbox, its webhook receiver on node1 running (alerts have somewhere to go)."""
    return container_inventory


@pytest.fixture(scope="module")
def page(site) -> dict:
    """The page's URL, user, password and CA as `energy` finds them in the inventory."""
    return page_settings(load([site], vault_password_file=vault_password(site)))


def query(site, expr: str) -> list[dict]:
    """An instant query, asked on node1 through Prometheus' loopback API."""
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    out = node_ssh(site, "node1", f"curl -fsS --max-time 10 '{url}'").stdout
    return json.loads(out)["data"]["result"]


def wait_for(site, expr: str, ok, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = query(site, expr)
        if ok(result) or time.monotonic() > deadline:
            return result
        time.sleep(5)


def test_every_node_and_service_is_scraped_and_up(site):
    """Every node's node-exporter, the PostgreSQL and nginx exporters, MLflow's endpoint (blackbox, TLS
    verified), Prometheus and Alertmanager: up == 1 (probe_success == 1 for MLflow)."""
    want = {("node", n) for n in NODES} | {("postgres", "node1"), ("nginx", "node1"), ("prometheus", "node1"),
                                           ("alertmanager", "node1"), ("mlflow", "node1")}

    def up(result):
        return {(r["metric"]["job"], r["metric"].get("host")) for r in result if r["value"][1] == "1"}

    result = wait_for(site, "up", lambda r: want <= up(r))
    assert want <= up(result), f"up != 1: {sorted(want - up(result))}; all: {result}"
    probe = query(site, 'probe_success{job="mlflow"}')
    assert [r["value"][1] for r in probe] == ["1"], probe


def test_gpu_less_nodes_report_no_gpu_and_no_gpu_alert(site):
    """The collector says "no GPU" as metrics on every node (0 on the PCI bus, NVML down), and
    no GPU alert fires for it."""
    pci = {r["metric"]["host"]: r["value"][1] for r in query(site, "mlops_gpu_pci_devices")}
    assert pci == dict.fromkeys(NODES, "0"), pci
    nvml = {r["metric"]["host"]: r["value"][1] for r in query(site, "mlops_gpu_nvml_up")}
    assert nvml == dict.fromkeys(NODES, "0"), nvml
    firing = query(site, 'ALERTS{alertname=~"Gpu.*"}')
    assert not firing, firing
    rapl = {r["metric"]["host"]: r["value"][1] for r in query(site, "mlops_rapl_up")}
    assert set(rapl) == set(NODES), rapl  # 0 where the machine has no RAPL (a VM), with a reason


def test_no_alert_fires_on_a_healthy_converged_site(site):
    """Nothing fires on the converged sandbox (before test_drift injects drift), except what is
    true of this machine: containers share its kernel clock, so an unsynchronised host clock is
    ClockNotSynchronised on every node, as it should be. Alerts of earlier tests' outages
    (test_mlflow stops MLflow) may take a few minutes to resolve."""
    unsynced = [r for r in query(site, "node_timex_sync_status") if r["value"][1] == "0"]
    # Alertmanager had no receiver to deliver to until this module started one (conftest's
    # alert_receiver): AlertReceiverFailing is true until its 5-minute rate falls back to zero.
    allowed = ({"ClockNotSynchronised"} if unsynced else set()) | {"AlertReceiverFailing"}

    def unexplained(result):
        return [r["metric"] for r in result if r["metric"]["alertname"] not in allowed]

    firing = wait_for(site, 'ALERTS{alertstate="firing"}', lambda r: not unexplained(r), timeout=300)
    assert not unexplained(firing), unexplained(firing)


def _get(url: str, cafile: str, auth: tuple[str, str] | None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=cafile), timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_page_needs_credentials_and_serves_the_consoles(page):
    """From the admin side: TLS verified against the site CA; 401 without credentials; with them
    every console page renders (no template error) and names the nodes."""
    base = page["url"].rstrip("/")
    code, _ = _get(f"{base}/consoles/index.html", page["cafile"], None)
    assert code == 401, code
    code, _ = _get(f"{base}/consoles/index.html", page["cafile"], (page["username"], "wrong-password-x"))
    assert code == 401, code
    for name in ("index.html", "nodes.html", "gpus.html", "energy.html"):
        code, body = _get(f"{base}/consoles/{name}", page["cafile"], (page["username"], page["password"]))
        text = body.decode(errors="replace")
        assert code == 200, (name, code, text[:300])
        assert "error executing template" not in text, (name, text[:500])
        if name in ("index.html", "nodes.html"):
            assert all(n in text for n in NODES), (name, text[:500])
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # not without the site CA
        urllib.request.urlopen(f"{base}/", context=ssl.create_default_context(), timeout=20)


def test_energy_reads_prometheus_through_the_page(site, tmp_path):
    """`energy` reaches Prometheus through the page (site CA, credentials from the vault): exit
    0, every node in the table, no invented figures where the nodes have no RAPL, a chart."""
    html = tmp_path / "energy.html"
    res = mp("energy", "-i", site, "--vault-password-file", vault_password(site), "--since", "1h",
             "--html", html)
    assert res.rc == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert all(n in res.stdout for n in NODES), res.stdout
    page = html.read_text()
    assert all(n in page for n in NODES), page[:500]
    if query(site, "mlops_node_energy_joules_total or mlops_gpu_energy_joules_total"):
        assert "<svg" in page, page[:500]  # a chart of what was measured
    else:  # no RAPL, no GPU here: no chart pretending to show energy
        assert "<svg" not in page and "nothing to chart" in page, page[:500]
    out = mp("energy", "-i", site, "--vault-password-file", vault_password(site), "--since", "1h",
             "--output", "json")
    report = json.loads(out.stdout)
    assert {n["host"] for n in report["nodes"]} >= set(NODES), report["nodes"]
    no_rapl = query(site, "mlops_rapl_up == 0")
    for n in report["nodes"]:
        if n["host"] in {r["metric"]["host"] for r in no_rapl}:
            assert n["rapl_kwh"] is None, n  # no RAPL: no figure, never a zero
