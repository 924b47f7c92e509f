"""Benchmark: wall time of `drift` on converged sandbox nodes (check mode and checks at once).

    flock /tmp/mlops-heavy.lock .venv/bin/python benchmarks/drift.py --nodes 3 [--repeat 2]

Brings up its own sandbox in a temporary site, converges it once (`up`), then runs `drift`
``--repeat`` times and prints the median with the two halves (check mode, checks) as the report
gives them. A step that fails (up not 0, drift not 0 on the converged nodes) fails the benchmark
loudly. Removes the sandbox afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "mlops_provision.cli"]


def run(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True)
    return time.monotonic() - t0, proc


def must(label: str, seconds: float, proc: subprocess.CompletedProcess, ok: tuple[int, ...] = (0,)) -> None:
    if proc.returncode not in ok:
        sys.exit(f"FAILED: {label} exited {proc.returncode} after {seconds:.1f} s\n"
                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-drift-") as site:
        inv = str(Path(site) / ".mlops-provision" / "sandbox" / "inventory.yml")
        seconds, proc = run("sandbox", "up", "--site", site, "--nodes", str(args.nodes))
        must("sandbox up", seconds, proc)
        print(f"sandbox up ({args.nodes} containers): {seconds:.1f} s", flush=True)
        try:
            seconds, proc = run("up", "-i", inv, "--output", "json")
            must("first up", seconds, proc)
            print(f"first up: {seconds:.1f} s", flush=True)
            times = []
            for _ in range(args.repeat):
                seconds, proc = run("drift", "-i", inv, "--output", "json")
                must("drift", seconds, proc)
                report = json.loads(proc.stdout)
                times.append(seconds)
                print(f"drift: {seconds:.1f} s wall (in-process {report['duration_s']} s: check mode "
                      f"{report['check_s']} s, checks {report['verify_s']} s, concurrently), "
                      f"items={report['total']}", flush=True)
            print(f"drift ({args.nodes} nodes): median {statistics.median(times):.1f} s over {args.repeat} "
                  f"(min {min(times):.1f}, max {max(times):.1f})")
        finally:
            run("sandbox", "down", "--site", site)
    return 0


if __name__ == "__main__":
    sys.exit(main())
