"""Hardware and NVML facts (mlops_provision.gpu.facts) on this GPU-less machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pynvml
import pytest

from mlops_provision.gpu import facts
from mlops_provision.gpu.collect import collect, facts_from_run, human_lines


def test_real_pynvml_without_a_driver_says_so_plainly():
    """The real binding on a machine without libnvidia-ml: no crash, a plain reason."""
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia").exists():
        pytest.skip("this machine has an NVIDIA driver: the no-driver path cannot be shown here")
    record = facts.gpus()
    assert record["driver_loaded"] is False
    assert record["gpus"] == [] and record["driver_version"] is None
    assert record["reason"] == "no NVIDIA driver: the NVML library (libnvidia-ml.so.1) is not installed"


def test_collect_gives_a_complete_record_here():
    record = facts.collect()
    json.dumps(record)  # what the module and `facts --output json` return
    assert record["schema"] == facts.SCHEMA
    assert record["cpu"]["logical_cpus"] >= 1 and record["cpu"]["model"]
    assert record["memory_bytes"] > 0
    assert record["kernel"]
    assert record["secure_boot"] in {"enabled", "disabled", "not-uefi", None}
    if record["secure_boot"] is None:
        assert "secure_boot" in record["unavailable"]
    assert isinstance(record["nvidia_pci_devices"], list)
    assert set(record["nvml"]) >= {"driver_loaded", "reason", "gpus", "unavailable"}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_cpu_memory_disks_and_pci_from_a_system_tree(tmp_path):
    cpuinfo = "".join(f"processor\t: {i}\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: {i // 2}\n\n"
                      for i in range(4))
    root = _tree(tmp_path, {
        "proc/cpuinfo": cpuinfo, "proc/meminfo": "MemTotal:       16384 kB\n",
        "sys/block/nvme0n1/size": "2048\n", "sys/block/nvme0n1/queue/rotational": "0\n",
        "sys/block/nvme0n1/device/model": "Disk X \n", "sys/block/loop0/size": "8\n",
        "sys/bus/pci/devices/0000:01:00.0/vendor": "0x10de\n",
        "sys/bus/pci/devices/0000:01:00.0/class": "0x030200\n",
        "sys/bus/pci/devices/0000:01:00.0/device": "0x20b0\n",
        "sys/bus/pci/devices/0000:01:00.1/vendor": "0x10de\n",  # the GPU's audio function
        "sys/bus/pci/devices/0000:01:00.1/class": "0x040300\n",
        "sys/bus/pci/devices/0000:02:00.0/vendor": "0x8086\n",
        "sys/bus/pci/devices/0000:02:00.0/class": "0x030000\n",
    })
    why: dict[str, str] = {}
    assert facts.cpu(why, str(root)) == {"model": "Test CPU", "logical_cpus": 4, "physical_cores": 2}
    assert facts.memory(why, str(root)) == 16384 * 1024
    assert facts.disks(why, str(root)) == [
        {"name": "nvme0n1", "size_bytes": 2048 * 512, "rotational": False, "model": "Disk X"}]
    assert facts.nvidia_pci_devices(str(root)) == [
        {"pci_bus_id": "0000:01:00.0", "device_id": "0x20b0", "class": "0x030200"}]
    assert why == {}


def test_unreadable_system_tree_gives_nulls_with_reasons(tmp_path):
    why: dict[str, str] = {}
    assert facts.cpu(why, str(tmp_path))["model"] is None
    assert facts.memory(why, str(tmp_path)) is None
    assert facts.disks(why, str(tmp_path)) == []
    assert set(why) == {"cpu", "memory_bytes", "disks"}


class _PartialNvml:
    """A stand-in for a driver whose GPU lacks some features: the real pynvml's error classes
    and constants, fixed answers per call. (No GPU here: the real NVML path is unverified.)"""

    def __getattr__(self, name):
        return getattr(pynvml, name)

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return "535.261.03"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12020

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return object()

    def nvmlDeviceGetName(self, h):
        return "Test GPU"

    def nvmlDeviceGetEccMode(self, h):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetMemoryInfo(self, h):
        class Mem:
            total, used = 80 * 2**30, 2**30
        return Mem()

    def nvmlDeviceGetPowerUsage(self, h):
        return 61500


def test_fields_nvml_cannot_read_are_null_with_the_reason():
    record = facts.gpus(_PartialNvml())
    assert record["driver_loaded"] and record["driver_version"] == "535.261.03"
    assert record["cuda_driver_version"] == "12.2"
    gpu = record["gpus"][0]
    assert gpu["name"] == "Test GPU" and gpu["memory_total_bytes"] == 80 * 2**30 and gpu["power_draw_w"] == 61.5
    assert gpu["ecc_mode_current"] is None and "Not Supported" in gpu["unavailable"]["ecc_mode"]
    for key in ("uuid", "pci_bus_id", "temperature_c", "mig_mode", "remapped_rows", "persistence_mode"):
        assert key in gpu["unavailable"], key


def test_driver_not_loaded_is_said_plainly():
    class NotLoaded(_PartialNvml):
        def nvmlInit(self):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    record = facts.gpus(NotLoaded())
    assert record["driver_loaded"] is False
    assert record["reason"] == "the NVIDIA driver is installed but not loaded (no nvidia kernel module)"


def test_facts_read_back_from_a_run_record(tmp_path):
    """The record is the host's fact as the run left it, whatever the task that set it is called."""
    events = tmp_path / "artifacts" / "ansible" / "job_events"
    events.mkdir(parents=True)
    rec = facts.collect()
    older = {**rec, "kernel": "older"}

    def event(counter: int, host: str, res: dict, kind: str = "runner_on_ok") -> None:
        (events / f"{counter}-e.json").write_text(json.dumps({"event": kind, "counter": counter, "event_data": {
            "host": host, "task": f"any name {counter}", "res": res}}))

    event(1, "node1", {"ansible_facts": {facts.FACT: older}})
    event(2, "node1", {"ansible_facts": {facts.FACT: rec}})  # set again: the later one counts
    event(3, "node1", {})
    event(4, "node2", {"ansible_facts": {"other_fact": 1}})
    event(5, "node3", {"ansible_facts": {facts.FACT: rec}}, kind="runner_on_failed")
    event(6, "node4", {"results": [{"ansible_facts": {facts.FACT: rec}}]})  # from a loop
    assert facts_from_run(tmp_path) == {"node1": rec, "node4": rec}
    text = "\n".join(human_lines("node1", rec))
    assert "node1: kernel" in text and "GPUs: none read" in text
    assert human_lines("node2", None, "unreachable") == ["node2: no facts (unreachable)"]


def test_facts_of_a_real_run_on_this_machine(tmp_path):
    """playbooks/facts.yml on this machine (a local connection) through ansible-runner: the
    record of each host comes back from the run record."""
    import sys

    from mlops_provision.site import load

    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    here:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n")
    summary, records = collect(load(tmp_path / "hosts.yml", strict=False))
    assert summary.exit_code == 0, summary
    assert set(records) == {"here"} and records["here"]["schema"] == facts.SCHEMA
    assert records["here"]["kernel"] == facts.collect()["kernel"]
