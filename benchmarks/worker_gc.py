"""What playbooks/callback_plugins/mlops_worker_gc.py saves: the Ansible side's CPU of one run of
site.yml, with the plugin and without it, alternated.

    .venv/bin/python benchmarks/worker_gc.py -i SITE/.mlops-provision/sandbox/inventory.yml \\
        --vault-password-file SITE/.mlops-provision/sandbox/vault-password [--rounds 3]

Run it on a converged site (each run a no-op, so every run does the same work) on a quiet
machine. Each round runs plain ansible-playbook twice with the CLI's settings (Mitogen
included): once on playbooks/site.yml, once on a copy of playbooks/ (links) without callback_plugins/
(the control). It prints each run's wall time and the CPU seconds of ansible-playbook and every
process it waited for (its workers), then the medians. Runs that change something or fail are
reported and make the exit code 1.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(book: Path, inventory: str, vault: str, env: dict[str, str]) -> tuple[float, float, bool]:
    """(wall s, CPU s of ansible-playbook and its children, whether it was a clean no-op)."""
    t0 = time.monotonic()
    # The vault password file as the CLI passes it (the mlflow role reads it from there too).
    proc = subprocess.Popen(["ansible-playbook", "-i", inventory, str(book)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**env, "ANSIBLE_VAULT_PASSWORD_FILE": vault},
                            cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    recap = re.findall(r"changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    clean = os.waitstatus_to_exitcode(status) == 0 and bool(recap) and all(r == ("0", "0", "0") for r in recap)
    if not clean:
        print(out[-3000:], file=sys.stderr)
    return time.monotonic() - t0, usage.ru_utime + usage.ru_stime, clean


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--inventory", required=True)
    parser.add_argument("--vault-password-file", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from mlops_provision.runner import ansible_env

    env = {**os.environ, **ansible_env()}
    with tempfile.TemporaryDirectory() as tmp:
        control = Path(tmp) / "playbooks"
        control.mkdir()
        for entry in (ROOT / "playbooks").iterdir():  # links: the plugins still find the checkout
            if entry.name != "callback_plugins":
                (control / entry.name).symlink_to(entry)
        books = {"with the plugin": ROOT / "playbooks" / "site.yml", "without (control)": control / "site.yml"}
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in books}
        ok = True
        for n in range(args.rounds):
            for name, book in books.items():
                wall, cpu, clean = run(book, args.inventory, args.vault_password_file, env)
                ok &= clean
                figures[name].append((wall, cpu))
                print(f"round {n + 1} {name:18} wall {wall:6.1f} s  Ansible side {cpu:6.1f} CPU-s"
                      + ("" if clean else "  NOT A CLEAN NO-OP"), flush=True)
    medians = {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
               for name, v in figures.items()}
    for name, (wall, cpu) in medians.items():
        print(f"median {name:18} wall {wall:6.1f} s  Ansible side {cpu:6.1f} CPU-s")
    (_, with_cpu), (_, without_cpu) = medians.values()
    print(f"the plugin saves {without_cpu - with_cpu:.1f} CPU-s per run ({100 * (1 - with_cpu / without_cpu):.0f} %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
