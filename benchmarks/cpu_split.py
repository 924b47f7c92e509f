"""Where a command's CPU went: the admin machine's side (Ansible, the CLI) or the sandbox nodes'.

    .venv/bin/python benchmarks/cpu_split.py -- mlops-provision up -i SITE/.mlops-provision/sandbox/inventory.yml

Sandbox containers run on the machine that runs Ansible, so on a 2-core machine a node's own
work (the modules that read its state: apt's cache, stat, systemd) takes CPU from the
controller. This prints, for one run of the command: wall time; CPU seconds of the whole
machine (/proc/stat); of the command and every process it waited for (Ansible and its workers:
getrusage of the children); and of each running podman container (its cgroup's CPU counter),
summed and per node. Use it on a quiet machine: everything else running counts as "other".
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (busy: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])
    return (total - fields[3] - fields[4]) / HZ, total / HZ


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot."""
    return machine_cpu()[0]


def _cgroup_cpu(pid: int) -> float:
    """CPU seconds of the cgroup process `pid` lives in (cgroup v1 cpuacct or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage").read_text()) / 1e9
        if controllers == "" and Path(f"/sys/fs/cgroup{path}/cpu.stat").exists():
            stat = dict(x.split() for x in Path(f"/sys/fs/cgroup{path}/cpu.stat").read_text().splitlines())
            return int(stat["usage_usec"]) / 1e6
    raise RuntimeError(f"no CPU counter for the cgroup of pid {pid}")


def containers() -> dict[str, float]:
    """CPU seconds so far of each running podman container, by name."""
    out = subprocess.run(["podman", "ps", "--format", "{{.Names}} {{.Pid}}"], capture_output=True,
                         text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        name, pid = line.split()
        found[name] = _cgroup_cpu(int(pid))
    return found


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print(__doc__, file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1:]
    before_nodes, before_busy, t0 = containers(), machine_busy(), time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall, busy, after_nodes = time.monotonic() - t0, machine_busy() - before_busy, containers()
    nodes = {n: after_nodes[n] - before_nodes[n] for n in after_nodes if n in before_nodes}
    controller = usage.ru_utime + usage.ru_stime
    node_sum = sum(nodes.values())
    cores = os.cpu_count() or 1
    print(f"command exit {os.waitstatus_to_exitcode(status)}: {' '.join(command)}")
    print(f"wall {wall:.1f} s; the machine busy {busy:.1f} CPU-s of {wall * cores:.1f} ({cores} cores, "
          f"{100 * busy / (wall * cores):.0f} %)")
    print(f"  the command and what it waited for (Ansible, workers): {controller:.1f} CPU-s "
          f"({100 * controller / busy:.0f} %)")
    if nodes:
        values = sorted(nodes.values())
        print(f"  {len(nodes)} containers: {node_sum:.1f} CPU-s ({100 * node_sum / busy:.0f} %); per node "
              f"min {values[0]:.1f}, median {statistics.median(values):.1f}, max {values[-1]:.1f}")
    print(f"  other (kernel, podman, everything else): {busy - controller - node_sum:.1f} CPU-s")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
