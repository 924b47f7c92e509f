"""`verify`: run the package's Testinfra checks against inventory hosts over Ansible's SSH details.

The checks run in a pytest subprocess (isolated from the caller's pytest/testinfra state);
the ``mlops_provision.verify_plugin`` plugin writes one JSON record per check and host, with the
roles the check proves and whether what a failed check found is state `up` manages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlops_provision import paths
from mlops_provision.runner import ansible_env, hosts_matching
from mlops_provision.secrets import Scrubber
from mlops_provision.site import Site as Inventory
from mlops_provision.sshmux import close_masters, mux_config


@dataclass
class CheckResult:
    host: str
    module: str  # the check's file (test_<module>.py): where it is, not what it proves
    check: str
    outcome: str  # passed | failed | skipped | error
    message: str = ""
    detail: str = ""
    duration_s: float = 0.0
    #: the role(s) whose tasks make the state the check proves (its ``roles`` marker)
    roles: list[str] = field(default_factory=list)
    #: False when the failed check found state `up` does not manage (it would not repair it)
    managed: bool = True
    hint: str = ""  # with managed False: what to do instead


@dataclass
class VerifyReport:
    inventory: str
    results: list[CheckResult] = field(default_factory=list)
    duration_s: float = 0.0
    pytest_rc: int | None = None
    output_tail: str = ""
    #: files the checks left for the run record (e.g. OpenSCAP's HTML report per node), by name
    artifacts: dict[str, bytes] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for r in self.results:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out

    def counts_line(self) -> str:
        c = self.counts()
        return (f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, "
                f"{c['skipped']} skipped on {len({r.host for r in self.results})} host(s)")

    @property
    def exit_code(self) -> int:
        c = self.counts()
        if c["failed"] or c["error"] or not self.results:
            return 1
        return 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["artifacts"] = sorted(self.artifacts)
        d["counts"] = self.counts()
        d["exit_code"] = self.exit_code
        return d


#: Hosts checked at once (one pytest process per batch of hosts). The checks mostly wait on SSH
#: round trips and the nodes' commands, so a few more processes than cores pay off.
DEFAULT_JOBS = max(2, 2 * (os.cpu_count() or 1))


def batches(hosts: list[str], jobs: int) -> list[list[str]]:
    """Split hosts into at most ``jobs`` batches of near-equal size, keeping their order inside."""
    jobs = max(1, min(jobs, len(hosts)))
    return [hosts[i::jobs] for i in range(jobs)] if hosts else []


def run_checks(inventory: Inventory, *, limit: str | None = None,
               vault_password_file: Path | None = None, select: str | None = None,
               compliance: bool = False, lynis_min_index: int = 85, scap_profile: str | None = None,
               jobs: int | None = None, hosts: list[str] | None = None) -> VerifyReport:
    """Run every check on every selected host: hosts in parallel, one pytest process per batch
    (``jobs``, default MLOPS_VERIFY_JOBS or :data:`DEFAULT_JOBS`), each over SSH connections that
    testinfra keeps open (ControlMaster) for all of a host's checks. The hosts are those ``limit``
    selects, or ``hosts`` where the caller resolved them already."""
    hosts = hosts_matching(inventory, limit) if hosts is None else list(hosts)
    report = VerifyReport(inventory=str(inventory.path))
    jobs = jobs or int(os.environ.get("MLOPS_VERIFY_JOBS") or DEFAULT_JOBS)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlops-verify-") as tmp:
        checks = paths.checks_dir()
        # testinfra opens a new SSH connection per command unless told where masters live: one
        # master per host for all its checks (a handshake per command costs most under emulation).
        control_dir = Path(tmp) / "cp"
        control_dir.mkdir()
        ssh_config = Path(tmp) / "ssh_config"
        ssh_config.write_text(mux_config(control_dir))
        artifacts = Path(tmp) / "artifacts"
        artifacts.mkdir()
        env = {**os.environ, **ansible_env(vault_password_file), "MLOPS_SSH_CONFIG": str(ssh_config),
               "MLOPS_INVENTORY": str(inventory.path.resolve()), "PYTHONDONTWRITEBYTECODE": "1",
               "MLOPS_LYNIS_MIN_INDEX": str(lynis_min_index), "MLOPS_COMPLIANCE": "1" if compliance else "0",
               "MLOPS_ARTIFACTS_DIR": str(artifacts), "MLOPS_SCAP_PROFILE": scap_profile or ""}
        procs = []
        for index, batch in enumerate(batches(hosts, jobs) or [[]]):
            results_file = Path(tmp) / f"results-{index}.jsonl"
            cmd = [
                sys.executable, "-m", "pytest", str(checks), "-c", os.devnull, "--rootdir", str(checks),
                "-p", "no:cacheprovider", "-p", "mlops_provision.verify_plugin",
                f"--mlops-results={results_file}", "-q", "--no-header", "--tb=short",
                "--hosts=" + ",".join(f"ansible://{h}" for h in batch),
                f"--ansible-inventory={inventory.path.resolve()}", f"--ssh-config={ssh_config}",
            ]
            if select:
                cmd += ["-k", select]
            workdir = Path(tmp) / f"run-{index}"
            workdir.mkdir()
            procs.append((results_file, subprocess.Popen(cmd, env=env, cwd=workdir, text=True,
                                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        outputs, rcs = [], []
        try:
            for _results_file, proc in procs:
                out, _ = proc.communicate()
                outputs.append(out)
                rcs.append(proc.returncode)
        finally:
            close_masters(control_dir)
        # 0 all passed, 1 some failed; anything else (usage error, nothing collected) wins.
        report.pytest_rc = next((rc for rc in rcs if rc not in (0, 1)), max(rcs))
        scrub = Scrubber(inventory.secrets())
        report.output_tail = scrub.text("".join(outputs)[-4000:])
        for results_file, _proc in procs:
            if results_file.exists():
                for line in results_file.read_text().splitlines():
                    rec = scrub.data(json.loads(line))
                    report.results.append(CheckResult(**rec))
        report.artifacts = {p.name: p.read_bytes() for p in sorted(artifacts.iterdir()) if p.is_file()}
    report.results.sort(key=lambda r: (r.host, r.module, r.check))
    report.duration_s = round(time.monotonic() - t0, 1)
    return report
