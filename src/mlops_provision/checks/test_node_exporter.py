"""Checks for the `node_exporter` role (every node): node-exporter answers on the node's address
only, the collector runs and keeps its GPU and energy textfiles fresh, and the files parse."""

from __future__ import annotations

import time

import pytest

from mlops_provision.checks.conftest import Node, listeners

pytestmark = pytest.mark.roles("node_exporter")

#: The collector rewrites its files every node_exporter_collector_interval seconds; older than
#: this many intervals is a stalled collector.
STALE_INTERVALS = 4


def _metrics(host, node, port_var: str = "monitoring_node_exporter_port", timeout: int = 10) -> str:
    """An exporter's metrics at the node's address (node-exporter's, or the one on ``port_var``)."""
    url = f"http://{node['node_exporter_listen_host']}:{node[port_var]}/metrics"
    return host.check_output(f"curl -fsS --max-time {timeout} {url}")


def ipmi_up(text: str) -> dict[str, str]:
    """The IPMI exporter's ``ipmi_up`` per collector, from its metrics text."""
    return {line.split('"')[1]: line.rsplit(" ", 1)[1] for line in text.splitlines()
            if line.startswith("ipmi_up{collector=")}


def test_exporter_running(host, node):
    """node-exporter active and enabled"""
    svc = host.service(node["node_exporter_os_service"])
    assert svc.is_running, f"{node['node_exporter_os_service']} is not running"
    assert svc.is_enabled, f"{node['node_exporter_os_service']} is not enabled at boot"


def test_exporter_listens_on_node_address_only(host, node):
    """node-exporter listens on the node's address only"""
    port = node["monitoring_node_exporter_port"]
    found = listeners(host, port)
    assert found == {node["node_exporter_listen_address"]}, f"port {port}: listening on {sorted(found)}"


def test_collector_running(host, node):
    """GPU and energy collector active and enabled"""
    svc = host.service("mlops-collector")
    assert svc.is_running, "mlops-collector is not running: " + host.run(
        "journalctl -u mlops-collector -n 5 --no-pager").stdout
    assert svc.is_enabled, "mlops-collector is not enabled at boot"


@pytest.mark.parametrize("name", ["mlops_gpu.prom", "mlops_energy.prom"])
def test_collector_textfile_fresh(host, node, name):
    """Collector's textfiles present and fresh"""
    path = f"{node['node_exporter_textfile_dir']}/{name}"
    f = host.file(path)
    assert f.exists, f"{path} missing: the collector never wrote it"
    age = time.time() - f.mtime.timestamp()
    limit = STALE_INTERVALS * node["node_exporter_collector_interval"]
    assert age <= limit, f"{path} is {age:.0f} s old (the collector writes it every " \
                         f"{node['node_exporter_collector_interval']} s)"


def test_exporter_serves_collector_metrics(host, node):
    """node-exporter serves the collector's metrics without textfile errors"""
    text = _metrics(host, node)
    assert "node_textfile_scrape_error 0" in text, "node-exporter could not read a textfile"
    for name in ("mlops_gpu_pci_devices", "mlops_gpu_nvml_up", "mlops_rapl_up"):
        assert any(line.startswith(name) for line in text.splitlines()), f"{name} not served"


def test_exporter_runs_only_the_collectors_left_on(host, node):
    """node-exporter runs none of the collectors the inventory turns off"""
    text = _metrics(host, node)
    running = {line.split('"')[1] for line in text.splitlines()
               if line.startswith('node_scrape_collector_success{collector="')}
    assert running, "node-exporter reports no collector at all"
    on = sorted(running & set(node["node_exporter_disabled_collectors"]))
    assert not on, f"turned off in node_exporter_disabled_collectors, yet running: {on}"


# --- The BMC's power (hosts with monitoring_bmc): Debian's IPMI exporter, FreeIPMI in-band ---

def _bmc(node) -> Node:
    """The node, for the checks of its IPMI exporter: skipped (with the reason) without a BMC."""
    if node["monitoring_bmc"] is not True:
        pytest.skip("no BMC: monitoring_bmc is false for this host (the exporter's absence is checked)")
    return node


def test_ipmi_exporter_only_with_a_bmc(host, node):
    """IPMI exporter installed exactly where the site says the host has a BMC"""
    installed = host.package(node["node_exporter_os_ipmi_exporter_package"]).is_installed
    if node["monitoring_bmc"] is True:
        svc = host.service(node["node_exporter_os_ipmi_service"])
        assert installed, "monitoring_bmc is true but the IPMI exporter is not installed"
        assert svc.is_running, f"{node['node_exporter_os_ipmi_service']} is not running: " + host.run(
            f"journalctl -u {node['node_exporter_os_ipmi_service']} -n 5 --no-pager").stdout
        assert svc.is_enabled, f"{node['node_exporter_os_ipmi_service']} is not enabled at boot"
    else:
        assert not installed, "the IPMI exporter is installed but monitoring_bmc is false for this host"


def test_ipmi_exporter_listens_on_node_address_only(host, node):
    """IPMI exporter listens on the node's address only"""
    node = _bmc(node)
    port = node["monitoring_ipmi_exporter_port"]
    found = listeners(host, port)
    assert found == {node["node_exporter_listen_address"]}, f"port {port}: listening on {sorted(found)}"


def test_ipmi_exporter_runs_as_root_without_capabilities(host, node):
    """IPMI exporter: root without capabilities, no new privileges, read-only system"""
    node = _bmc(node)
    unit = node["node_exporter_os_ipmi_service"]
    shown = dict(line.split("=", 1) for line in host.check_output(
        f"systemctl show {unit} -p User -p CapabilityBoundingSet -p NoNewPrivileges -p ProtectSystem "
        f"-p DevicePolicy").splitlines() if "=" in line)
    assert shown.get("CapabilityBoundingSet", "x") == "", f"{unit}: capabilities {shown.get('CapabilityBoundingSet')}"
    assert shown.get("NoNewPrivileges") == "yes", f"{unit}: NoNewPrivileges={shown.get('NoNewPrivileges')}"
    assert shown.get("ProtectSystem") == "strict", f"{unit}: ProtectSystem={shown.get('ProtectSystem')}"
    assert shown.get("DevicePolicy") == "closed", f"{unit}: DevicePolicy={shown.get('DevicePolicy')}"


def test_ipmi_exporter_reaches_the_bmc(host, node):
    """IPMI exporter reaches the BMC in-band (its bmc collector answers)"""
    up = ipmi_up(_metrics(host, _bmc(node), "monitoring_ipmi_exporter_port", timeout=60))
    assert up.get("bmc") == "1", f"the BMC does not answer in-band: ipmi_up {up}"
