"""Benchmark: wall time of `validate` on a generated site of N hosts (no host contacted).

    .venv/bin/python benchmarks/validate.py [--hosts 1000] [--repeat 3]

Makes a site with `mlops-provision init` (fresh secrets), adds N hosts spread over the groups
(a tenth GPU workers, three control planes behind an API endpoint name, one MLflow host, the
rest CPU workers) with an
address each and a few host variables, then loads it the way `validate` does (in this process,
after one warm-up, so the figure is the site's and not Python's start) and prints the median,
the fastest and the slowest of ``--repeat`` loads. The site must be valid: a problem fails the
benchmark loudly.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_site(root: Path, hosts: int) -> Path:
    from mlops_provision.site.init import init_site

    init_site(root, git=False)
    groups: dict[str, list[str]] = {"control_plane": [], "gpu_workers": [], "cpu_workers": [], "mlflow": []}
    lines = ["all:", "  children:"]
    for n in range(hosts):
        name = f"node{n:04d}"
        group = ("control_plane" if n < 3 else "gpu_workers" if n % 10 == 0 else "cpu_workers")
        groups[group].append(name)
    groups["mlflow"].append("node0000")
    for group, members in groups.items():
        lines += [f"    {group}:", "      hosts:"]
        for name in members:
            n = int(name[4:])
            lines += [f"        {name}:", f"          ansible_host: 10.{n // 65536}.{n // 250 % 250}.{n % 250 + 1}"]
            if group != "mlflow":
                lines += ["          base_apt_cache_valid_time: 3600"]
    (root / "hosts.yml").write_text("\n".join(lines) + "\n")
    all_vars = root / "group_vars" / "all.yml"
    all_vars.write_text(all_vars.read_text().replace("mlops_admin_cidrs: []", "mlops_admin_cidrs: [192.0.2.0/24]")
                        + "kubernetes_api_endpoint: k8s-api.example.internal\n")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from mlops_provision.site import InventoryInvalid, load

    with tempfile.TemporaryDirectory(prefix="mlops-bench-validate-") as tmp:
        site = make_site(Path(tmp) / "site", args.hosts)
        password = site / ".vault-password"
        try:
            load(site, vault_password_file=password)  # warm-up: imports, Ansible's plugin loader
        except InventoryInvalid as exc:
            print(f"FAILED: the generated site is invalid:\n{exc}", file=sys.stderr)
            return 1
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            found = load(site, vault_password_file=password)
            times.append(time.perf_counter() - t0)
        assert len(found.hosts) == args.hosts, len(found.hosts)
    print(f"validate of {args.hosts} hosts: median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f} s, max {max(times):.2f} s, {args.repeat} loads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
