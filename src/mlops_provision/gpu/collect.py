"""`mlops-provision facts`: run the `nvidia_facts` module on the inventory's nodes and gather the records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_provision.gpu.facts import FACT
from mlops_provision.records import events


def facts_from_run(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per host, its fact ``mlops_gpu_facts`` (:data:`~mlops_provision.gpu.facts.FACT`) as the
    run left it: the last value a task result handed Ansible for it (``res.ansible_facts`` of a
    ``runner_on_ok`` job event, the way Ansible itself learns a host's facts), whatever the task
    that ran the ``nvidia_facts`` module is called.

    Not ansible-runner's fact cache: with ansible-core 2.19 the jsonfile cache writes
    ``fact_cache/s1_<host>`` holding ``{"__payload__": "<JSON>"}`` (a schema-versioned key and
    wrapper), which ``Runner.get_fact_cache(host)`` (reading ``fact_cache/<host>``) no longer
    finds, and whose format is Ansible's internal one."""
    found: dict[str, dict[str, Any]] = {}
    for event in events(Path(run_dir) / "artifacts" / "ansible"):
        data = event.get("event_data") or {}
        if event.get("event") != "runner_on_ok" or not data.get("host"):
            continue
        res = data.get("res") or {}
        results = [res, *(r for r in res.get("results") or [] if isinstance(r, dict))]  # loops too
        for result in results:
            host_facts = result.get("ansible_facts")
            if isinstance(host_facts, dict) and isinstance(host_facts.get(FACT), dict):
                found[data["host"]] = host_facts[FACT]
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
