"""Benchmark: what the monitoring layer costs, measured on converged sandbox nodes.

    .venv/bin/python benchmarks/monitoring.py --site SITE [--seconds 300]

SITE is a site directory whose sandbox (``SITE/.mlops-provision/sandbox``) is converged (`up`).
Over ``--seconds`` it reads, on every node, the CPU time and resident memory of node-exporter's
and the mlops collector's processes (and on the monitoring server to Prometheus, Alertmanager
and the blackbox exporter), and from Prometheus' own metrics: series per node, samples per
second, memory per series and bytes per sample on disk. From those it prints what a site of
``--size`` nodes needs per day (disk) and in memory. Figures only; nothing is changed.

Bytes per sample: from Prometheus' compaction counters once a block has been compacted (2 h after
start); before that, the growth of its write-ahead log over the window divided by the samples
appended (an upper bound: the WAL is less compressed than the blocks). The line says which.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from mlops_provision.sandbox import Sandbox

NODE_UNITS = ("prometheus-node-exporter", "mlops-collector")
SERVER_UNITS = ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter")
SCRAPE_S = 15


def ssh(box: Sandbox, node, command: str) -> str:
    return subprocess.run([*box.ssh_command(node), command], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def units(box: Sandbox, node, names: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """CPU time (ns) and resident memory of each unit's main process, from /proc (systemd's
    own accounting is not available in every container)."""
    out = ssh(box, node, "hz=$(getconf CLK_TCK); for u in " + " ".join(names) + "; do pid=$(systemctl show -p "
              "MainPID --value $u); set -- $(cut -d' ' -f14,15 /proc/$pid/stat 2>/dev/null || echo 0 0); "
              "rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null); "
              "echo \"$u $(( ($1 + $2) * 1000000000 / hz )) $(( ${rss:-0} * 1024 ))\"; done")
    found = {}
    for line in out.splitlines():
        name, cpu, mem = line.split()
        found[name] = {"cpu_ns": int(cpu), "mem": int(mem)}
    return found


def promql(box: Sandbox, server, expr: str) -> list[dict]:
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.loads(ssh(box, server, f"curl -fsS --max-time 20 '{url}'"))["data"]["result"]


def scalar(box: Sandbox, server, expr: str) -> float | None:
    result = promql(box, server, expr)
    return float(result[0]["value"][1]) if result else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--size", type=int, default=50, help="nodes of the site to size for")
    args = parser.parse_args()
    box = Sandbox(args.site)
    state = box.state()
    if state is None:
        sys.exit(f"no sandbox in {args.site}")
    server = next(n for n in state.nodes if "monitoring" in n.groups)
    wal = "du -sb /var/lib/prometheus/metrics2/wal | cut -f1"
    before = {n.name: units(box, n, NODE_UNITS) for n in state.nodes}
    before_server = units(box, server, SERVER_UNITS)
    wal0 = int(ssh(box, server, wal))
    appended0 = scalar(box, server, "prometheus_tsdb_head_samples_appended_total") or 0.0
    t0 = time.monotonic()
    time.sleep(args.seconds)
    elapsed = time.monotonic() - t0
    after = {n.name: units(box, n, NODE_UNITS) for n in state.nodes}
    after_server = units(box, server, SERVER_UNITS)
    wal1 = int(ssh(box, server, wal))
    appended1 = scalar(box, server, "prometheus_tsdb_head_samples_appended_total") or 0.0

    print(f"monitoring overhead over {elapsed:.0f} s, {len(state.nodes)} {state.kind} node(s), "
          f"Debian {state.release}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print(f"{'node':8} {'unit':30} {'CPU %':>7} {'memory MiB':>11}")
    for node in state.nodes:
        for unit in NODE_UNITS:
            cpu = (after[node.name][unit]["cpu_ns"] - before[node.name][unit]["cpu_ns"]) / 1e9 / elapsed * 100
            print(f"{node.name:8} {unit:30} {cpu:7.3f} {after[node.name][unit]['mem'] / 2**20:11.1f}")
    for unit in SERVER_UNITS:
        cpu = (after_server[unit]["cpu_ns"] - before_server[unit]["cpu_ns"]) / 1e9 / elapsed * 100
        print(f"{server.name:8} {unit:30} {cpu:7.3f} {after_server[unit]['mem'] / 2**20:11.1f}")

    per_host = {r["metric"].get("host"): float(r["value"][1])
                for r in promql(box, server, 'count by (host) ({job="node"})')}
    head = scalar(box, server, "prometheus_tsdb_head_series") or 0.0
    rss = scalar(box, server, 'process_resident_memory_bytes{job="prometheus"}') or 0.0
    chunk_bytes = scalar(box, server, "prometheus_tsdb_compaction_chunk_size_bytes_sum")
    chunk_samples = scalar(box, server, "prometheus_tsdb_compaction_chunk_samples_sum")
    if chunk_bytes and chunk_samples:
        per_sample, how = chunk_bytes / chunk_samples, "compacted blocks (Prometheus' compaction counters)"
    else:
        per_sample = (wal1 - wal0) / max(1.0, appended1 - appended0)
        how = "write-ahead log growth / samples appended in the window (upper bound: no block compacted yet)"
    series_node = max(per_host.values()) if per_host else 0.0
    per_day = series_node * 86400 / SCRAPE_S * per_sample
    print(f"series per node (job node, most of any node): {series_node:.0f}; all series in the head: {head:.0f}")
    print(f"samples appended: {(appended1 - appended0) / elapsed:.1f}/s; bytes per sample: {per_sample:.2f} ({how})")
    print(f"Prometheus resident memory: {rss / 2**20:.0f} MiB, {rss / max(head, 1):.0f} B per head series")
    print(f"disk per node per day: {per_day / 2**20:.1f} MiB; a {args.size}-node site: "
          f"{per_day * args.size / 2**30:.2f} GiB/day, {per_day * args.size * 90 / 2**30:.0f} GiB for 90 days; "
          f"memory for its {series_node * args.size:.0f} node series about "
          f"{rss / max(head, 1) * series_node * args.size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
