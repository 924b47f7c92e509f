"""Benchmark: wall time of a first converge, a no-op re-run, a check run and verify on sandbox nodes.

    .venv/bin/python benchmarks/rerun.py --nodes 3 --kind container [--repeat 3]

Prints one line per step with median seconds (and changed counts, to show the re-run is a
no-op). Brings up its own sandbox in a temporary site and removes it afterwards.
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


def timed(*args: str) -> tuple[float, dict | None, int]:
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True)
    seconds = time.monotonic() - t0
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        data = None
    return seconds, data, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--kind", choices=["container", "vm"], default="container")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as site:
        inv = str(Path(site) / ".mlops-provision" / "sandbox" / "inventory.yml")
        seconds, _, rc = timed("sandbox", "up", "--site", site, "--nodes", str(args.nodes),
                               "--kind", args.kind)
        print(f"sandbox up ({args.nodes} {args.kind}): {seconds:.1f} s (rc {rc})")
        try:
            seconds, data, rc = timed("up", "-i", inv, "--output", "json")
            changed = sum(h["changed"] for h in data["hosts"]) if data else "?"
            print(f"first up: {seconds:.1f} s, changed={changed} (rc {rc})")
            for label, extra in (("re-run up", []), ("check up", ["--check"])):
                times, changed = [], []
                for _ in range(args.repeat):
                    seconds, data, rc = timed("up", "-i", inv, "--output", "json", *extra)
                    times.append(seconds)
                    changed.append(sum(h["changed"] for h in data["hosts"]) if data else -1)
                print(f"{label}: median {statistics.median(times):.1f} s over {args.repeat} "
                      f"(min {min(times):.1f}, max {max(times):.1f}), changed={changed}")
            times = [timed("verify", "-i", inv, "--output", "json")[0] for _ in range(args.repeat)]
            print(f"verify: median {statistics.median(times):.1f} s over {args.repeat}")
        finally:
            timed("sandbox", "down", "--site", site)
    return 0


if __name__ == "__main__":
    sys.exit(main())
