"""Benchmark: first converge, no-op re-run, check run, verify and drift on sandbox nodes.

    .venv/bin/python benchmarks/rerun.py                       # 1, 3 and 10 containers
    .venv/bin/python benchmarks/rerun.py --nodes 1 3 10 50     # 50 as well
    .venv/bin/python benchmarks/rerun.py --nodes 3 --repeat 3  # medians over 3 runs
    .venv/bin/python benchmarks/rerun.py --nodes 1 --gpu-workers 1   # with the GPU layer

With ``--gpu-workers N`` the last N nodes of each sandbox move from cpu_workers to gpu_workers
and get the GPU layer from Debian's archive (driver 535 built by DKMS for the node's kernels,
Debian's CUDA toolkit 11.8, containerd): the sandbox has no GPU, so they install without a
device and without NVIDIA's container toolkit (not in Debian), as tests/integration/test_gpu.py
does.

For each node count it brings up its own sandbox in a temporary site, runs the full stack
(`up`) once, then times, with `--repeat` runs each (median):

    no-op up          `up` again: must report changed=0 on every host (Mitogen's mitogen_linear
                      strategy, the default)
    no-op up, linear  the same with ANSIBLE_STRATEGY=linear: our ansible.cfg without Mitogen
    no-op up (stock)  the same under stock Ansible settings (forks 5, no pipelining, implicit
                      fact gathering, linear strategy): the ratio to the first no-op line is the
                      figure that holds on a noisy machine
    up --check        check mode on the converged hosts: must report changed=0
    verify            the checks: must pass
    drift             `drift` when this build has it (exit 0: no drift), else "n/a (not built)"

and removes the sandbox. Any step that fails (an exit status other than the expected one,
changed > 0 where 0 is expected, output that is not the JSON report) stops the benchmark with
exit status 1 and the step's output: a failed step never prints a time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mlops_provision.sandbox.site_inventory import InventoryDumper, InventoryLoader

CLI = [sys.executable, "-m", "mlops_provision.cli"]

#: Ansible's own defaults for the settings this project's ansible.cfg changes for speed (given
#: as ANSIBLE_* variables, which outrank the config file; the runner passes them through).
STOCK_ANSIBLE = {
    "ANSIBLE_FORKS": "5",
    "ANSIBLE_PIPELINING": "False",
    "ANSIBLE_GATHERING": "implicit",
    "ANSIBLE_STRATEGY": "linear",
    "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s",
}


class StepFailed(Exception):
    pass


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    return time.monotonic() - t0, proc


def fail(step: str, proc: subprocess.CompletedProcess, why: str) -> StepFailed:
    tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-40:])
    return StepFailed(f"{step}: {why} (exit {proc.returncode})\n{tail}")


def report(step: str, proc: subprocess.CompletedProcess) -> dict:
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise fail(step, proc, "no JSON report on stdout") from None
    if not isinstance(data, dict):
        raise fail(step, proc, "the report is not a JSON object")
    return data


def changed(step: str, proc: subprocess.CompletedProcess) -> int:
    data = report(step, proc)
    hosts = data.get("hosts")
    if not isinstance(hosts, list) or not hosts:
        raise fail(step, proc, "the report lists no hosts")
    return sum(int(h["changed"]) for h in hosts)


def up_step(step: str, args: list[str], *, expect_changed_zero: bool,
            env: dict[str, str] | None = None) -> tuple[float, int]:
    seconds, proc = run(args, env)
    if proc.returncode != 0:
        raise fail(step, proc, "failed")
    n = changed(step, proc)
    if expect_changed_zero and n != 0:
        raise fail(step, proc, f"changed={n}, expected 0 on converged hosts")
    return seconds, n


def timed(step: str, repeat: int, once) -> str:
    times = [once() for _ in range(repeat)]
    med = statistics.median(times)
    spread = f" (min {min(times):.1f}, max {max(times):.1f})" if repeat > 1 else ""
    return f"{med:.1f} s{spread}"


def has_command(name: str) -> bool:
    return run([name, "--help"])[1].returncode == 0


class Results(dict):
    """Step -> figure; each figure is printed as soon as it is known."""

    def __init__(self, nodes: int) -> None:
        super().__init__()
        self.nodes = nodes

    def __setitem__(self, step: str, value: str) -> None:
        super().__setitem__(step, value)
        print(f"{self.nodes:>3} nodes  {step:<24} {value}", flush=True)


#: gpu_workers on sandbox nodes: Debian's archive, no GPU, no NVIDIA container toolkit.
GPU_WORKER_VARS = {
    "nvidia_driver_source": "debian",
    "nvidia_driver_without_device": "install",
    "cuda_source": "debian", "cuda_toolkits": ["11.8"], "cuda_default": "11.8",
    "containerd_nvidia_runtime": False,
}


def make_gpu_workers(inventory: Path, count: int) -> list[str]:
    """Put the last ``count`` nodes of the sandbox inventory in gpu_workers (out of cpu_workers;
    with one node, node1 is control plane, MLflow server and GPU worker at once)."""
    data = yaml.load(inventory.read_text(), Loader=InventoryLoader)
    nodes = list(data["all"]["hosts"])
    if not 0 < count <= len(nodes):
        raise StepFailed(f"--gpu-workers {count}: the sandbox has {len(nodes)} node(s)")
    moved = nodes[len(nodes) - count:]
    groups = data["all"]["children"]
    cpu = (groups.get("cpu_workers") or {}).get("hosts") or {}
    for name in moved:
        cpu.pop(name, None)
    if "cpu_workers" in groups and not cpu:
        del groups["cpu_workers"]
    groups["gpu_workers"] = {"hosts": dict.fromkeys(moved), "vars": GPU_WORKER_VARS}
    inventory.write_text(yaml.dump(data, Dumper=InventoryDumper, sort_keys=False))
    return moved


def bench(nodes: int, kind: str, repeat: int, gpu_workers: int = 0) -> dict[str, str]:
    results = Results(nodes)
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as site:
        inv = str(Path(site) / ".mlops-provision" / "sandbox" / "inventory.yml")
        seconds, proc = run(["sandbox", "up", "--site", site, "--nodes", str(nodes), "--kind", kind])
        if proc.returncode != 0:
            raise fail(f"sandbox up --nodes {nodes}", proc, "failed")
        results["sandbox up"] = f"{seconds:.1f} s"
        try:
            if gpu_workers:
                results["gpu_workers"] = ", ".join(make_gpu_workers(Path(inv), gpu_workers))
            up = ["up", "-i", inv, "--output", "json"]
            seconds, n = up_step("first up", up, expect_changed_zero=False)
            results["first up"] = f"{seconds:.1f} s (changed={n})"
            results["no-op up"] = timed("no-op up", repeat, lambda: up_step(
                "no-op up", up, expect_changed_zero=True)[0])
            results["no-op up, linear"] = timed("no-op up (linear)", repeat, lambda: up_step(
                "no-op up (ANSIBLE_STRATEGY=linear)", up, expect_changed_zero=True,
                env={"ANSIBLE_STRATEGY": "linear"})[0])
            results["no-op up, stock Ansible"] = timed("no-op up (stock)", repeat, lambda: up_step(
                "no-op up (stock Ansible settings)", up, expect_changed_zero=True, env=STOCK_ANSIBLE)[0])
            results["up --check"] = timed("up --check", repeat, lambda: up_step(
                "up --check", [*up, "--check"], expect_changed_zero=True)[0])

            def verify() -> float:
                seconds, proc = run(["verify", "-i", inv, "--output", "json"])
                if proc.returncode != 0:
                    raise fail("verify", proc, "checks did not pass")
                report("verify", proc)
                return seconds
            results["verify"] = timed("verify", repeat, verify)

            if has_command("drift"):
                def drift() -> float:
                    seconds, proc = run(["drift", "-i", inv, "--output", "json"])
                    if proc.returncode != 0:
                        raise fail("drift", proc, "drift found or the run failed (expected exit 0)")
                    return seconds
                results["drift"] = timed("drift", repeat, drift)
            else:
                results["drift"] = "n/a (not built)"
        finally:
            run(["sandbox", "down", "--site", site])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--kind", choices=["container", "vm"], default="container")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--gpu-workers", type=int, default=0, metavar="N",
                        help="the last N nodes of each sandbox get the GPU layer (Debian's archive)")
    args = parser.parse_args()
    # SIGTERM (a timeout) unwinds like Ctrl-C: the running step is killed and the sandbox removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {args.kind} sandbox, "
          f"median of {args.repeat}, {args.gpu_workers} of them gpu_workers", flush=True)
    for nodes in args.nodes:
        try:
            bench(nodes, args.kind, args.repeat, args.gpu_workers)
        except StepFailed as exc:
            print(f"FAILED with {nodes} node(s): {exc}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
