"""`mlops-provision facts`: run the `nvidia_facts` module on the inventory's nodes and gather the records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_provision.records import events

FACTS_TASK = "Nvidia_driver | Read hardware and NVML facts"


def facts_from_run(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per host, the ``mlops_gpu_facts`` the facts task returned (from the run's job events)."""
    found: dict[str, dict[str, Any]] = {}
    for event in events(Path(run_dir) / "artifacts" / "ansible"):
        data = event.get("event_data") or {}
        if event.get("event") != "runner_on_ok" or data.get("task") != FACTS_TASK:
            continue
        record = ((data.get("res") or {}).get("ansible_facts") or {}).get("mlops_gpu_facts")
        if isinstance(record, dict) and data.get("host"):
            found[data["host"]] = record
    return found


def collect(inventory, *, limit: str | None = None, vault_password_file: Path | None = None):
    """Run playbooks/facts.yml; returns (run summary, {host: record or None})."""
    from mlops_provision import paths
    from mlops_provision.runner import run_playbook

    summary = run_playbook(inventory, verb="facts", playbook=paths.playbook("facts.yml"), limit=limit,
                           vault_password_file=vault_password_file)
    records = facts_from_run(Path(summary.run_dir))
    return summary, {h.host: records.get(h.host) for h in summary.hosts}


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def human_lines(host: str, rec: dict[str, Any] | None, why: str = "") -> list[str]:
    """A short plain-text account of one node."""
    if rec is None:
        return [f"{host}: no facts ({why or 'the facts task did not run'})"]
    cpu = rec.get("cpu") or {}
    nvml = rec.get("nvml") or {}
    disks = ", ".join(f"{d['name']} {_gib(d.get('size_bytes'))}" for d in rec.get("disks") or []) or "none"
    lines = [
        f"{host}: kernel {rec.get('kernel')}, Secure Boot {rec.get('secure_boot') or 'unknown'}",
        f"  cpu {cpu.get('model')} ({cpu.get('logical_cpus')} logical, {cpu.get('physical_cores')} cores), "
        f"memory {_gib(rec.get('memory_bytes'))}, disks {disks}",
        f"  NVIDIA PCI devices: {len(rec.get('nvidia_pci_devices') or [])}",
    ]
    if not nvml.get("driver_loaded"):
        lines.append(f"  GPUs: none read: {nvml.get('reason')}")
    else:
        lines.append(f"  driver {nvml.get('driver_version')}, CUDA driver {nvml.get('cuda_driver_version')}, "
                     f"{nvml.get('gpu_count')} GPU(s)")
        for g in nvml.get("gpus") or []:
            lines.append(f"  [{g.get('index')}] {g.get('name')} {g.get('pci_bus_id')} {g.get('uuid')} "
                         f"mem {_gib(g.get('memory_used_bytes'))}/{_gib(g.get('memory_total_bytes'))} "
                         f"ECC {g.get('ecc_mode_current')} uncorrected {g.get('ecc_uncorrected_volatile')} "
                         f"{g.get('temperature_c')} C {g.get('power_draw_w')}/{g.get('power_limit_w')} W "
                         f"persistence {g.get('persistence_mode')} MIG {g.get('mig_mode_current')}")
            for key, reason in (g.get("unavailable") or {}).items():
                lines.append(f"      {key}: null ({reason})")
    for key, reason in (rec.get("unavailable") or {}).items():
        lines.append(f"  {key}: null ({reason})")
    return lines
