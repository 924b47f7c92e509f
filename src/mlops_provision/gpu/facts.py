"""Hardware facts of one node: CPU, memory, disks, kernel, Secure Boot, NVIDIA PCI devices and,
through NVML (nvidia-ml-py, ``import pynvml``), every GPU.

This file runs in two places: imported by ``mlops-provision`` and shipped to the nodes as the
module_utils of the ``nvidia_facts`` Ansible module (roles/nvidia_driver/module_utils is a link
to it). So it uses the standard library only, pynvml when the node has it, and never raises:
a field that cannot be read is ``None`` and its reason is in the record's ``unavailable``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

NVIDIA_VENDOR = "0x10de"
SCHEMA = 1
#: The fact the ``nvidia_facts`` module sets to the record; ``facts`` reads it back by this name.
FACT = "mlops_gpu_facts"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def cpu(unavailable: dict[str, str], root: str = "/") -> dict[str, Any]:
    text = _read(os.path.join(root, "proc/cpuinfo"))
    if text is None:
        unavailable["cpu"] = "/proc/cpuinfo cannot be read"
        return {"model": None, "logical_cpus": None, "physical_cores": None}
    model = None
    cores: set[tuple[str, str]] = set()
    logical = 0
    phys = core = ""
    for line in [*text.splitlines(), ""]:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            logical += 1
        elif key == "model name" and model is None:
            model = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not key and core:
            cores.add((phys, core))
            phys = core = ""
    if model is None:
        unavailable["cpu.model"] = "/proc/cpuinfo has no 'model name'"
    if not cores:
        unavailable["cpu.physical_cores"] = "/proc/cpuinfo has no 'core id' (a container or VM may hide it)"
    return {"model": model, "logical_cpus": logical or None, "physical_cores": len(cores) or None}


def memory(unavailable: dict[str, str], root: str = "/") -> int | None:
    text = _read(os.path.join(root, "proc/meminfo"))
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    unavailable["memory_bytes"] = "/proc/meminfo has no MemTotal"
    return None


def disks(unavailable: dict[str, str], root: str = "/") -> list[dict[str, Any]]:
    """Whole block devices (no partitions, loop, ram or device-mapper devices)."""
    base = os.path.join(root, "sys/block")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        unavailable["disks"] = "/sys/block cannot be read"
        return []
    out = []
    for name in names:
        if name.startswith(("loop", "ram", "dm-", "zram", "sr")):
            continue
        size = _read(os.path.join(base, name, "size"))
        rot = _read(os.path.join(base, name, "queue/rotational"))
        model = _read(os.path.join(base, name, "device/model"))
        if model is None:
            unavailable[f"disks.{name}.model"] = "the kernel reports no model for it (virtual disk?)"
        out.append({
            "name": name,
            "size_bytes": int(size) * 512 if size and size.strip().isdigit() else None,
            "rotational": (rot.strip() == "1") if rot else None,
            "model": model.strip() if model else None,
        })
    return out


def secure_boot(unavailable: dict[str, str]) -> str | None:
    """``enabled``, ``disabled`` or ``not-uefi`` (from ``mokutil --sb-state``, else EFI variables)."""
    if shutil.which("mokutil"):
        try:
            res = subprocess.run(["mokutil", "--sb-state"], capture_output=True, text=True, timeout=20)
            out = (res.stdout + res.stderr).lower()
            if "secureboot enabled" in out:
                return "enabled"
            if "secureboot disabled" in out:
                return "disabled"
            if "not supported" in out or "efi variables are not supported" in out:
                return "not-uefi"
        except (OSError, subprocess.SubprocessError) as exc:
            unavailable["secure_boot"] = f"mokutil --sb-state failed: {exc}"
            return None
    if not os.path.isdir("/sys/firmware/efi"):
        return "not-uefi"
    var = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    try:
        with open(var, "rb") as fh:
            data = fh.read()
        return "enabled" if data[-1:] == b"\x01" else "disabled"
    except OSError as exc:
        unavailable["secure_boot"] = f"no mokutil and {var} unreadable: {exc.strerror}"
        return None


def nvidia_pci_devices(root: str = "/") -> list[dict[str, str]]:
    """NVIDIA functions on the PCI bus (vendor 0x10de), display and 3D controllers only."""
    base = os.path.join(root, "sys/bus/pci/devices")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    found = []
    for addr in names:
        vendor = (_read(os.path.join(base, addr, "vendor")) or "").strip()
        klass = (_read(os.path.join(base, addr, "class")) or "").strip()
        if vendor == NVIDIA_VENDOR and klass.startswith("0x03"):
            device = (_read(os.path.join(base, addr, "device")) or "").strip()
            found.append({"pci_bus_id": addr, "device_id": device, "class": klass})
    return found


def _nvml_field(unavailable: dict[str, str], key: str, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # any NVMLError (NotSupported, NoPermission, ...) and odd bindings
        unavailable[key] = f"NVML: {exc}"
        return None


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _nvml_library_present() -> bool:
    import ctypes.util

    try:
        return ctypes.util.find_library("nvidia-ml") is not None
    except Exception:
        return False


def gpus(pynvml_module=None) -> dict[str, Any]:
    """The driver as NVML sees it and every GPU. ``pynvml_module`` is for tests that pass
    another binding; by default ``import pynvml``."""
    unavailable: dict[str, str] = {}
    result: dict[str, Any] = {"driver_loaded": False, "driver_version": None, "cuda_driver_version": None,
                              "gpu_count": None, "gpus": [], "reason": None, "unavailable": unavailable}
    nv = pynvml_module
    if nv is None:
        try:
            import pynvml as nv  # type: ignore[no-redef]
        except ImportError:
            if not _nvml_library_present():
                result["reason"] = ("no NVIDIA driver: the NVML library (libnvidia-ml.so.1) is not installed "
                                    "(nor pynvml)")
            else:
                result["reason"] = "pynvml (nvidia-ml-py) is not installed on the node: GPUs not read"
            return result
    try:
        nv.nvmlInit()
    except Exception as exc:
        name = type(exc).__name__
        if name == "NVMLError_LibraryNotFound":
            result["reason"] = "no NVIDIA driver: the NVML library (libnvidia-ml.so.1) is not installed"
        elif name == "NVMLError_DriverNotLoaded":
            result["reason"] = "the NVIDIA driver is installed but not loaded (no nvidia kernel module)"
        else:
            result["reason"] = f"NVML cannot start: {exc}"
        return result
    try:
        result["driver_loaded"] = True
        result["driver_version"] = _text(_nvml_field(unavailable, "driver_version", nv.nvmlSystemGetDriverVersion))
        cuda = _nvml_field(unavailable, "cuda_driver_version", nv.nvmlSystemGetCudaDriverVersion)
        result["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
        count = _nvml_field(unavailable, "gpu_count", nv.nvmlDeviceGetCount)
        result["gpu_count"] = count
        for index in range(count or 0):
            result["gpus"].append(_gpu(nv, index))
    finally:
        try:
            nv.nvmlShutdown()
        except Exception as exc:
            unavailable["shutdown"] = f"NVML: {exc}"
    return result


def _gpu(nv, index: int) -> dict[str, Any]:
    why: dict[str, str] = {}
    rec: dict[str, Any] = {"index": index, "unavailable": why}
    handle = _nvml_field(why, "handle", nv.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return rec

    def get(key, fn, *args):
        return _nvml_field(why, key, fn, handle, *args)

    rec["name"] = _text(get("name", nv.nvmlDeviceGetName))
    rec["uuid"] = _text(get("uuid", nv.nvmlDeviceGetUUID))
    pci = get("pci_bus_id", nv.nvmlDeviceGetPciInfo)
    rec["pci_bus_id"] = _text(pci.busId) if pci is not None else None
    mem = get("memory", nv.nvmlDeviceGetMemoryInfo)
    rec["memory_total_bytes"] = mem.total if mem is not None else None
    rec["memory_used_bytes"] = mem.used if mem is not None else None
    ecc = get("ecc_mode", nv.nvmlDeviceGetEccMode)
    rec["ecc_mode_current"] = bool(ecc[0]) if ecc is not None else None
    rec["ecc_mode_pending"] = bool(ecc[1]) if ecc is not None else None
    rec["ecc_uncorrected_volatile"] = get("ecc_uncorrected_volatile", nv.nvmlDeviceGetTotalEccErrors,
                                          nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
    rec["ecc_uncorrected_aggregate"] = get("ecc_uncorrected_aggregate", nv.nvmlDeviceGetTotalEccErrors,
                                           nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_AGGREGATE_ECC)
    rows = get("remapped_rows", nv.nvmlDeviceGetRemappedRows)
    rec["remapped_rows"] = ({"correctable": rows[0], "uncorrectable": rows[1], "pending": bool(rows[2]),
                             "failure": bool(rows[3])} if rows is not None else None)
    rec["temperature_c"] = get("temperature_c", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)
    power = get("power_draw_w", nv.nvmlDeviceGetPowerUsage)
    rec["power_draw_w"] = power / 1000 if power is not None else None
    limit = get("power_limit_w", nv.nvmlDeviceGetEnforcedPowerLimit)
    rec["power_limit_w"] = limit / 1000 if limit is not None else None
    pers = get("persistence_mode", nv.nvmlDeviceGetPersistenceMode)
    rec["persistence_mode"] = bool(pers) if pers is not None else None
    mig = get("mig_mode", nv.nvmlDeviceGetMigMode)
    rec["mig_mode_current"] = bool(mig[0]) if mig is not None else None
    rec["mig_mode_pending"] = bool(mig[1]) if mig is not None else None
    return rec


def collect(pynvml_module=None, root: str = "/") -> dict[str, Any]:
    """Every fact of this node. Never raises."""
    unavailable: dict[str, str] = {}
    facts: dict[str, Any] = {"schema": SCHEMA, "unavailable": unavailable}
    for key, fn in (("cpu", lambda: cpu(unavailable, root)), ("memory_bytes", lambda: memory(unavailable, root)),
                    ("disks", lambda: disks(unavailable, root)), ("kernel", platform.release),
                    ("secure_boot", lambda: secure_boot(unavailable)),
                    ("nvidia_pci_devices", lambda: nvidia_pci_devices(root)),
                    ("nvml", lambda: gpus(pynvml_module))):
        try:
            facts[key] = fn()
        except Exception as exc:  # a fact never takes the others down
            facts[key] = None
            unavailable[key] = f"{type(exc).__name__}: {exc}"
    return facts
