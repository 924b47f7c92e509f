"""How busy a long command kept the machine, and how much of it the sandbox's QEMU VMs took.

    .venv/bin/python benchmarks/suite_cpu.py -- env MLOPS_PROVISION_CACHE=$(mktemp -d) CI=true bash .ci/run
    .venv/bin/python benchmarks/suite_cpu.py --every 30 -- bash scripts/test.sh

The test suite's two lanes share the machine's cores, so its time follows the total work of both:
this prints what that total was. The machine's busy CPU seconds (/proc/stat: all but idle and
iowait) and each QEMU process's own (utime + stime from /proc/PID/stat) are sampled every
``--every`` seconds while the command runs. VMs come and go during a run (QEMU daemonizes, so
getrusage never sees it): each VM counts with its last sample, so up to one interval of a VM's
last work is missed. Prints the wall time, the command's exit status, the busy CPU seconds of
the seconds available, the QEMU share, and the busy share of each 5-minute window. Use it on a
quiet machine: everything else running counts as busy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from cpu_split import HZ, machine_cpu  # this directory: the machine's busy and total CPU seconds

WINDOW_S = 300


def qemu_cpu() -> dict[int, float]:
    """CPU seconds so far of each running QEMU system emulator, by pid."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if name.startswith("qemu-system"):
            found[int(stat.parent.name)] = (int(rest[11]) + int(rest[12])) / HZ  # utime, stime
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")

    t0 = time.monotonic()
    samples = [(0.0, *machine_cpu())]
    qemu_before = qemu_cpu()  # VMs already running count only with what they do from now on
    qemu_last = dict(qemu_before)
    proc = subprocess.Popen(command)
    while True:
        try:
            rc = proc.wait(timeout=args.every)
        except subprocess.TimeoutExpired:
            rc = None
        samples.append((time.monotonic() - t0, *machine_cpu()))
        qemu_last.update(qemu_cpu())
        if rc is not None:
            break
    wall = samples[-1][0]
    busy = samples[-1][1] - samples[0][1]
    available = samples[-1][2] - samples[0][2]
    qemu = sum(cpu - qemu_before.get(pid, 0.0) for pid, cpu in qemu_last.items())
    print(f"command exit {rc}: {' '.join(command)}")
    print(f"wall {wall:.0f} s; the machine busy {busy:.0f} CPU-s of {available:.0f} "
          f"({100 * busy / max(available, 1e-9):.0f} %, {os.cpu_count()} cores)")
    print(f"  QEMU VMs ({len(set(qemu_last) - set(qemu_before))} started during the run): {qemu:.0f} CPU-s "
          f"({100 * qemu / max(busy, 1e-9):.0f} % of the busy time)")
    print("busy share per 5-minute window (minutes from the start):")
    start = samples[0]
    for sample in samples[1:]:
        if sample[0] - start[0] >= WINDOW_S or sample is samples[-1]:
            share = (sample[1] - start[1]) / max(sample[2] - start[2], 1e-9)
            print(f"  {start[0] / 60:5.1f}-{sample[0] / 60:5.1f}  {100 * share:3.0f} %")
            start = sample
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
