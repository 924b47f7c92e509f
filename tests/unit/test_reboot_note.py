"""The reboot and MOK notes of the NVIDIA driver role reach the operator: a real ansible-playbook
run (local connection, two hosts) of the role's own outcome tasks (roles/nvidia_driver/tasks/
outcome.yml) with the reasons the role's earlier tasks would have found (nouveau loaded on one
host, a MOK enrolment pending on the other), read back from the run summary (`notes`,
summary.json) and printed as NEEDS ATTENTION. The reasons themselves come from the hardware
(a loaded nouveau, an old module, Secure Boot): no test host has it, so they are given here."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import yaml
from rich.console import Console

from mlops_provision import paths, reports, runner
from mlops_provision.site import load


def test_the_roles_reboot_and_mok_notes_reach_the_summary_and_the_screen(tmp_path: Path) -> None:
    host = f"      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n"
    (tmp_path / "hosts.yml").write_text(f"all:\n  hosts:\n    gpu1:\n{host}    gpu2:\n{host}")
    common = {
        "nvidia_driver_local_fact": "{{ playbook_dir }}/facts/{{ inventory_hostname }}/nvidia_driver.fact",
        "nvidia_driver_source": "debian", "nvidia_driver_branch": "535", "nvidia_driver_open_modules": False,
        "nvidia_driver_packages": ["nvidia-driver"], "nvidia_driver_dkms_module": "nvidia-current",
        "nvidia_driver_src": {"kernel_module": "nvidia-current"}, "nvidia_driver_kernels": ["6.1.0-28-amd64"],
        "nvidia_driver_nouveau_conf": "/etc/modprobe.d/mlops-nouveau.conf", "nvidia_driver_devices": [{}],
        "nvidia_driver_expected_gpu_count": 1, "nvidia_driver_reboot": False, "nvidia_driver_mok_enrolled": False,
        "nvidia_driver_sb_enabled": "{{ inventory_hostname == 'gpu2' }}",
        "nvidia_driver_reboot_reasons": "{{ ['nouveau is loaded'] if inventory_hostname == 'gpu1' else [] }}",
    }
    outcome = paths.roles_dir() / "nvidia_driver" / "tasks" / "outcome.yml"
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "name": "GPU | Outcome", "hosts": "all", "gather_facts": False, "vars": common,
        "tasks": [{"name": "Nvidia_driver | Record the outcome", "ansible.builtin.include_tasks": str(outcome)}],
    }], sort_keys=False))
    summary = runner.run_playbook(load(tmp_path / "hosts.yml", strict=False), playbook=tmp_path / "play.yml")
    assert summary.exit_code == 0, summary
    want = {"gpu1": [{"kind": "reboot", "reason": "nouveau is loaded"}],
            "gpu2": [{"kind": "mok_enrolment", "reason": "confirm the MOK enrolment at the console on the next boot"}]}
    assert summary.notes == want
    assert json.loads((Path(summary.run_dir) / "summary.json").read_text())["notes"] == want
    facts = json.loads((tmp_path / "facts" / "gpu1" / "nvidia_driver.fact").read_text())
    assert facts["reboot_required"] and facts["reboot_reasons"] == ["nouveau is loaded"]  # what verify reads
    out = io.StringIO()
    reports.print_run(summary, Console(file=out, width=160))
    lines = [line.strip() for line in out.getvalue().splitlines()]
    assert "REBOOT NEEDED: gpu1: nouveau is loaded" in lines, out.getvalue()
    assert any(line.startswith("MOK ENROLMENT PENDING: gpu2") for line in lines), out.getvalue()
