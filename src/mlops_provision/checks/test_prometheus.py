"""Checks for the `prometheus` role (the monitoring servers): Prometheus, Alertmanager and the
blackbox exporter run on loopback, every node of the inventory is a target and up, the rules
loaded, and the monitoring page answers over TLS with basic auth only."""

from __future__ import annotations

import json
import shlex
import time

import pytest

from mlops_provision.checks.conftest import listeners

pytestmark = pytest.mark.roles("prometheus")


@pytest.fixture(scope="module")
def server(node):
    if node.name not in node["monitoring_server_hosts"]:
        pytest.skip("not a monitoring server")
    return node


def _api(host, server, path: str) -> dict:
    out = host.check_output(f"curl -fsS --max-time 10 http://{server['prometheus_listen']}{path}")
    return json.loads(out)


@pytest.mark.parametrize("unit", ["prometheus_os_service", "prometheus_os_alertmanager_service",
                                  "prometheus_os_blackbox_service", "prometheus_os_nginx_service"])
def test_services_running(host, server, unit):
    """Monitoring service active and enabled"""
    svc = host.service(server[unit])
    assert svc.is_running, f"{server[unit]} is not running"
    assert svc.is_enabled, f"{server[unit]} is not enabled at boot"


@pytest.mark.parametrize("listen", ["prometheus_listen", "prometheus_alertmanager_listen",
                                    "prometheus_blackbox_listen"])
def test_loopback_only(host, server, listen):
    """Prometheus, Alertmanager and blackbox listen on loopback only"""
    port = server[listen].rsplit(":", 1)[1]
    found = listeners(host, int(port))
    assert found == {"127.0.0.1"}, f"port {port}: listening on {sorted(found)}"
    cluster = host.check_output("ss -Hltnu 'sport = :9094'").strip()
    assert not cluster, f"Alertmanager's cluster port is open: {cluster}"


def test_every_node_scraped_and_up(host, server):
    """Every node of the inventory is a Prometheus target, and up"""
    for _ in range(4):  # a server started moments ago has not scraped every target yet
        data = _api(host, server, "/api/v1/targets?state=active")["data"]["activeTargets"]
        node_targets = {t["labels"].get("host"): t["health"] for t in data if t["labels"].get("job") == "node"}
        if "unknown" not in node_targets.values():
            break
        time.sleep(10)
    wanted = set(server.nodes)
    assert set(node_targets) == wanted, f"node targets {sorted(node_targets)}, inventory {sorted(wanted)}"
    down = {h: t for h, t in node_targets.items() if t != "up"}
    assert not down, f"targets not up (yet?): {down}"


def test_rules_loaded(host, server):
    """Alert and recording rules loaded, none failing"""
    groups = _api(host, server, "/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert any(r["type"] == "alerting" for r in rules), "no alerting rule loaded"
    broken = [r["name"] for r in rules if r.get("health") == "err"]
    assert not broken, f"rules failing to evaluate: {broken}"


def test_alertmanager_connected(host, server):
    """Prometheus sends alerts to Alertmanager"""
    data = _api(host, server, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    assert data, "Prometheus knows no Alertmanager"


def test_page_requires_credentials(host, server):
    """Monitoring page over TLS (site CA), 401 without credentials"""
    url = f"https://{server.name}:{server['monitoring_https_port']}/consoles/index.html"
    ca = f"{server['prometheus_tls_dir']}/ca.crt"
    code = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 --cacert {ca} {shlex.quote(url)}")
    assert code == "401", f"{url} without credentials answered {code}"


def test_console_pages_render(host, server):
    """Monitoring page's console pages render"""
    for page in ("index.html", "nodes.html", "gpus.html", "energy.html"):
        url = f"http://{server['prometheus_listen']}/consoles/{page}"
        res = host.run(f"curl -fsS --max-time 20 {url}")
        assert res.rc == 0, f"{page}: curl rc {res.rc} {res.stderr[-300:]}"
        assert "error executing template" not in res.stdout, f"{page}: {res.stdout[:500]}"
