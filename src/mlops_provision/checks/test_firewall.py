"""Checks for the `firewall` role: our nftables table, loaded as written, default deny, probed."""

from __future__ import annotations

import ipaddress
import json
import uuid

import pytest

from mlops_provision.checks.conftest import peer_host

pytestmark = pytest.mark.roles("firewall")


def _table(node) -> str:
    return node["firewall_table"]


def _connect(address: str, port: int, seconds: int) -> str:
    """A TCP connect from the peer with bash alone (the peer needs no netcat): rc 124 when dropped."""
    return f"timeout {seconds} bash -c 'exec 3<>/dev/tcp/{address}/{port}'"


def test_nftables_enabled(host, kernel_node):
    """nftables enabled at boot, stop removes only our table"""
    assert host.service("nftables").is_enabled
    dropin = host.file("/etc/systemd/system/nftables.service.d/mlops-provision.conf").content_string
    assert f"delete table inet {_table(kernel_node)}" in dropin
    assert "flush ruleset" not in host.file(kernel_node["firewall_os_main_config"]).content_string


def test_loaded_table_equals_file(host, kernel_node):
    """loaded table equals the file on disk"""
    table = _table(kernel_node)
    path = kernel_node["firewall_file"]
    live = host.run(f"nft -s list table inet {table}")
    assert live.rc == 0, f"table inet {table} is not loaded: {live.stderr.strip()}"
    ns = f"mlopschk{uuid.uuid4().hex[:8]}"
    try:
        host.check_output(f"ip netns add {ns}")
        host.check_output(f"ip netns exec {ns} nft -f {path}")
        fresh = host.check_output(f"ip netns exec {ns} nft -s list table inet {table}")
    finally:
        host.run(f"ip netns del {ns}")
    assert live.stdout.strip() == fresh.strip(), "the loaded table differs from " + path


def test_default_policy_drop(host, kernel_node):
    """inbound default policy is drop"""
    data = json.loads(host.check_output(f"nft -j list chain inet {_table(kernel_node)} input"))
    chain = next(item["chain"] for item in data["nftables"] if "chain" in item)
    assert chain["hook"] == "input" and chain["policy"] == "drop"


def _dropped(host, table) -> int:
    data = json.loads(host.check_output(f"nft -j list counter inet {table} input_dropped"))
    return next(item["counter"]["packets"] for item in data["nftables"] if "counter" in item)


def test_probe_from_another_node(host, kernel_node):
    """from another node: closed and monitoring ports dropped, SSH accepted"""
    peer = peer_host(kernel_node)
    if peer is None:
        pytest.skip("no other inventory node to probe from")
    if peer.run("systemd-detect-virt --container").rc == 0:
        pytest.skip("the other node is a container")
    address = kernel_node.nodes[kernel_node.name]
    before = _dropped(host, _table(kernel_node))
    closed = peer.run(_connect(address, 9, 3))
    assert closed.rc == 124, f"port 9 on {address} was not dropped (rc {closed.rc}): {closed.stderr.strip()}"
    assert _dropped(host, _table(kernel_node)) > before, "the drop was not counted"
    ssh = peer.run(_connect(address, kernel_node["firewall_ssh_port"], 5))
    assert ssh.rc == 0, f"SSH on {address} not reachable from the other node: {ssh.stderr.strip()}"
    peer_name = next(n for n in sorted(kernel_node.nodes) if n != kernel_node.name)  # peer_host's choice
    if kernel_node.nodes[peer_name] not in kernel_node["monitoring_server_addresses"]:
        port = kernel_node["monitoring_node_exporter_port"]  # open to the monitoring servers only
        exporter = peer.run(_connect(address, port, 3))
        assert exporter.rc == 124, f"node-exporter's port {port} on {address} was not dropped for " \
                                   f"{peer_name}, not a monitoring server (rc {exporter.rc})"
        if kernel_node["monitoring_bmc"] is True:
            port = kernel_node["monitoring_ipmi_exporter_port"]  # the BMC's exporter: the same
            ipmi = peer.run(_connect(address, port, 3))
            assert ipmi.rc == 124, f"the IPMI exporter's port {port} on {address} was not dropped for " \
                                   f"{peer_name}, not a monitoring server (rc {ipmi.rc})"
    peer_ip = ipaddress.ip_address(kernel_node.nodes[peer_name])
    clients = [ipaddress.ip_network(c, strict=False) for c in kernel_node["monitoring_client_cidrs"]]
    if kernel_node.name in kernel_node["monitoring_server_hosts"] and not any(peer_ip in c for c in clients):
        port = kernel_node["monitoring_https_port"]  # the page: open to monitoring_client_cidrs only
        page = peer.run(_connect(address, port, 3))
        assert page.rc == 124, f"the monitoring page's port {port} on {address} was not dropped for " \
                               f"{peer_name}, outside monitoring_client_cidrs (rc {page.rc})"


def test_no_foreign_ruleset(host, kernel_node):
    """loaded nftables ruleset: our table only, nftables.d only ours"""
    from mlops_provision.checks.unmanaged import Unmanaged, assert_only_ours, strangers

    table = _table(kernel_node)
    directory, ours = kernel_node["firewall_file"].rsplit("/", 1)  # the role's nftables.d and file
    found = strangers(host, directory, ours={ours})
    assert_only_ours(directory, found, "firewall_purge_unmanaged",
                     kernel_node["firewall_purge_unmanaged"])
    data = json.loads(host.check_output("nft -j list tables"))
    tables = [f"{t['table']['family']} {t['table']['name']}" for t in data["nftables"] if "table" in t]
    foreign = [t for t in tables if t != f"inet {table}"]
    if foreign:
        raise Unmanaged(f"tables loaded besides ours: {foreign}", "inspect with nft list ruleset; delete by hand")
