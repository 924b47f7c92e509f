"""GPU metrics of one node in Prometheus' text format, read through NVML (``import pynvml``).

The node collector (``mlops_provision.monitoring.collector``) writes :func:`gpu_text`'s text to
node-exporter's textfile directory as ``mlops_gpu.prom``; the rest of the project may call
:func:`gpu_text` or :func:`read_gpus` for the same text without writing anything.

Like :mod:`~mlops_provision.gpu.facts`, whose NVML reader it reuses, this file runs on the nodes
(roles/node_exporter ships it with the collector): the standard library and pynvml (Debian's
python3-pynvml, old or new) only, nothing else of the package but ``facts``, and it never
raises. A field NVML cannot read is left out of the text and named in
``mlops_gpu_field_unavailable{field=...} 1``; NVML that cannot start is ``mlops_gpu_nvml_up 0``
with ``mlops_gpu_nvml_error_info{reason=...} 1``; a node without an NVIDIA GPU on its PCI bus is
``mlops_gpu_pci_devices 0``.

The metric names below (:data:`GPU_METRICS`) are a contract: alert rules, console pages and the
energy report are written against them.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

from mlops_provision.gpu import facts

#: name -> (type, help) of every metric of ``mlops_gpu.prom``.
GPU_METRICS: dict[str, tuple[str, str]] = {
    "mlops_gpu_pci_devices": ("gauge", "NVIDIA display and 3D controllers on the PCI bus (sysfs); 0: no GPU."),
    "mlops_gpu_nvml_up": ("gauge", "1 when NVML initialised, else 0 (see mlops_gpu_nvml_error_info)."),
    "mlops_gpu_nvml_error_info": ("gauge", "Why NVML could not be used (while mlops_gpu_nvml_up is 0)."),
    "mlops_gpu_count": ("gauge", "GPUs NVML reports (0 when NVML is down)."),
    "mlops_gpu_info": ("gauge", "One GPU: its model, driver version and PCI bus id."),
    "mlops_gpu_utilization_ratio": ("gauge", "Fraction of the last sample period a kernel ran on the GPU (0-1)."),
    "mlops_gpu_memory_utilization_ratio": ("gauge",
                                           "Fraction of the last sample period device memory was read or "
                                           "written (0-1)."),
    "mlops_gpu_memory_used_bytes": ("gauge", "Device memory in use, bytes."),
    "mlops_gpu_memory_total_bytes": ("gauge", "Device memory, bytes."),
    "mlops_gpu_temperature_celsius": ("gauge", "GPU core temperature, degrees Celsius."),
    "mlops_gpu_power_watts": ("gauge", "Power draw, watts."),
    "mlops_gpu_power_limit_watts": ("gauge", "Enforced power limit, watts."),
    "mlops_gpu_energy_joules_total": ("counter",
                                      "Energy the GPU used since the driver loaded, joules (resets when it reloads)."),
    "mlops_gpu_sm_clock_hertz": ("gauge", "Current SM clock, hertz."),
    "mlops_gpu_memory_clock_hertz": ("gauge", "Current memory clock, hertz."),
    "mlops_gpu_throttle_active": ("gauge", "1 when this clocks event (throttle) reason holds the GPU's clocks down."),
    "mlops_gpu_ecc_errors_total": ("counter", "Volatile ECC errors since the driver loaded, where ECC is enabled."),
    "mlops_gpu_xid_errors_total": ("counter", "XID critical-error events per XID code since the collector started."),
    "mlops_gpu_xid_events_total": ("counter", "XID critical-error events (all codes) since the collector started."),
    "mlops_gpu_mig_enabled": ("gauge", "1 when MIG mode is enabled on the GPU."),
    "mlops_gpu_mig_instances": ("gauge", "MIG devices (GPU instance, compute instance pairs) on the GPU."),
    "mlops_gpu_mig_memory_used_bytes": ("gauge", "Device memory in use in a MIG device, bytes."),
    "mlops_gpu_mig_memory_total_bytes": ("gauge", "Device memory of a MIG device, bytes."),
    "mlops_gpu_field_unavailable": ("gauge", "1 for each field NVML could not read on this GPU (left out)."),
}

#: Both textfiles carry these (with the same help: node-exporter merges the files).
COLLECTOR_METRICS: dict[str, tuple[str, str]] = {
    "mlops_collector_last_success_timestamp_seconds": ("gauge",
                                                       "Unix time the mlops collector last wrote this collector's "
                                                       "metrics."),
    "mlops_collector_duration_seconds": ("gauge", "Seconds the mlops collector took to read this collector's metrics."),
}

#: ``mlops_gpu_throttle_active``'s reasons: label, suffix of pynvml's ``nvmlClocksEventReason*``
#: (new) or ``nvmlClocksThrottleReason*`` (old) constant, and the NVML bit if pynvml lacks both.
THROTTLE_REASONS: tuple[tuple[str, str, int], ...] = (
    ("gpu_idle", "GpuIdle", 0x1),
    ("applications_clocks_setting", "ApplicationsClocksSetting", 0x2),
    ("sw_power_cap", "SwPowerCap", 0x4),
    ("hw_slowdown", "HwSlowdown", 0x8),
    ("sync_boost", "SyncBoost", 0x10),
    ("sw_thermal_slowdown", "SwThermalSlowdown", 0x20),
    ("hw_thermal_slowdown", "HwThermalSlowdown", 0x40),
    ("hw_power_brake_slowdown", "HwPowerBrakeSlowdown", 0x80),
    ("display_clock_setting", "DisplayClockSetting", 0x100),
)

#: ``facts._gpu``'s keys -> the ``field`` label of ``mlops_gpu_field_unavailable`` (the others
#: it reads are no metric here).
_FACT_FIELDS = {"name": "name", "uuid": "uuid", "pci_bus_id": "pci_bus_id", "memory": "memory",
                "temperature_c": "temperature", "power_draw_w": "power", "power_limit_w": "power_limit"}

_XID_EVENT = 0x8  # nvmlEventTypeXidCriticalError
_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED
_NOT_FOUND = 6  # NVML_ERROR_NOT_FOUND
_TIMEOUT = 10  # NVML_ERROR_TIMEOUT


# ---------------------------------------------------------------------------------------------
# Prometheus' text format


def escape_label(value: Any) -> str:
    """A label value as the text format writes it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class Exposition:
    """Samples grouped by metric name, in the order the names first come: ``# HELP`` and
    ``# TYPE`` once per name, from ``metrics`` (name -> (type, help)). A name not there, or a
    series added twice, is a bug of this file: the sample is dropped rather than written badly."""

    def __init__(self, *metrics: dict[str, tuple[str, str]]):
        self.known: dict[str, tuple[str, str]] = {}
        for table in metrics:
            self.known.update(table)
        self._samples: dict[str, list[str]] = {}
        self._seen: set[str] = set()

    def add(self, name: str, value: float | int | bool, labels: dict[str, Any] | None = None) -> None:
        if name not in self.known or value is None:
            return
        text = ",".join(f'{key}="{escape_label(val)}"' for key, val in (labels or {}).items())
        series = f"{name}{{{text}}}" if text else name
        if series in self._seen:
            return
        self._seen.add(series)
        self._samples.setdefault(name, []).append(f"{series} {format_value(value)}")

    def names(self) -> list[str]:
        return list(self._samples)

    def text(self) -> str:
        lines = []
        for name, samples in self._samples.items():
            kind, help_text = self.known[name]
            lines += [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}", *samples]
        return "\n".join(lines) + "\n" if lines else ""


def add_collector_metrics(exp: Exposition, collector: str, started: float) -> None:
    """``mlops_collector_*{collector=...}``: now, and the time since ``started`` (perf_counter)."""
    exp.add("mlops_collector_duration_seconds", round(time.perf_counter() - started, 6), {"collector": collector})
    exp.add("mlops_collector_last_success_timestamp_seconds", round(time.time(), 3), {"collector": collector})


# ---------------------------------------------------------------------------------------------
# NVML


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _call(fn, *args) -> tuple[Any, BaseException | None]:
    """``fn(*args)`` and None, or None and what it raised (any NVMLError, odd bindings)."""
    try:
        return fn(*args), None
    except Exception as exc:
        return None, exc


def load_nvml(pynvml_module=None) -> tuple[Any, str | None]:
    """The pynvml module (``pynvml_module`` when given: tests pass a fake), or None and why not."""
    if pynvml_module is not None:
        return pynvml_module, None
    try:
        import pynvml
    except Exception:
        if not facts._nvml_library_present():
            return None, "pynvml not installed, NVML library missing (no NVIDIA driver)"
        return None, "pynvml not installed"
    return pynvml, None


def init_nvml(nv) -> str | None:
    """``nvmlInit()``: None when NVML started, else a short reason. Every successful call needs
    its ``nvmlShutdown()`` (NVML counts them)."""
    try:
        nv.nvmlInit()
    except Exception as exc:
        name = type(exc).__name__
        if name == "NVMLError_LibraryNotFound":
            return "NVML library missing (libnvidia-ml.so.1: no NVIDIA driver)"
        if name == "NVMLError_DriverNotLoaded":
            return "NVIDIA driver not loaded"
        return f"NVML init failed: {exc}"
    return None


def _shutdown(nv) -> None:
    with contextlib.suppress(Exception):
        nv.nvmlShutdown()


def _throttle_bit(nv, suffix: str, default: int) -> int:
    for prefix in ("nvmlClocksEventReason", "nvmlClocksThrottleReason"):
        value = getattr(nv, prefix + suffix, None)
        if isinstance(value, int):
            return value
    return default


def _throttle_mask(nv, handle) -> tuple[int | None, BaseException | str | None]:
    """The current clocks event reasons: ``nvmlDeviceGetCurrentClocksEventReasons`` (pynvml and
    drivers since 535) or, failing that, the older ``...ClocksThrottleReasons``."""
    error: BaseException | str | None = "pynvml has no clocks event (throttle) reasons call"
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(nv, name, None)
        if fn is None:
            continue
        mask, exc = _call(fn, handle)
        if exc is None and isinstance(mask, int):
            return mask, None
        error = exc or f"{name} returned {mask!r}"
    return None, error


@dataclass
class GpuReading:
    """What :func:`read_gpus` read: the text of ``mlops_gpu.prom`` and, for the collector's log,
    why NVML is down and which fields could not be read."""

    text: str = ""
    nvml_up: bool = False
    reason: str | None = None
    pci_devices: int = 0
    gpu_count: int = 0
    #: the UUIDs of the GPUs read, in index order
    uuids: list[str] = field(default_factory=list)
    #: "GPU <index> (<uuid>)" or "system" -> field -> NVML's reason
    unavailable: dict[str, dict[str, str]] = field(default_factory=dict)


def gpu_text(pynvml_module=None, root: str = "/", xid: XidWatcher | None = None) -> str:
    """The text of ``mlops_gpu.prom`` now. ``pynvml_module``: another binding (tests; default
    ``import pynvml``); ``root``: the system root sysfs is read under; ``xid``: the collector's
    XID event counter (without it there are no ``mlops_gpu_xid_*`` series). Never raises."""
    return read_gpus(pynvml_module, root, xid).text


def read_gpus(pynvml_module=None, root: str = "/", xid: XidWatcher | None = None) -> GpuReading:
    """:func:`gpu_text` with what the collector logs. NVML is started and shut down again here."""
    started = time.perf_counter()
    exp = Exposition(GPU_METRICS, COLLECTOR_METRICS)
    reading = GpuReading()
    try:
        reading.pci_devices = len(facts.nvidia_pci_devices(root))
    except Exception:  # facts never raises; a binding of this file must not either
        reading.pci_devices = 0
    exp.add("mlops_gpu_pci_devices", reading.pci_devices)
    nv, reason = load_nvml(pynvml_module)
    if nv is not None:
        reason = init_nvml(nv)
    reading.reason = reason
    reading.nvml_up = reason is None
    exp.add("mlops_gpu_nvml_up", reading.nvml_up)
    if reason is not None:
        exp.add("mlops_gpu_nvml_error_info", 1, {"reason": reason})
        exp.add("mlops_gpu_count", 0)
    else:
        try:
            _read_devices(nv, exp, reading, xid)
        except Exception as exc:  # a bug or an odd binding: what was read stays, the rest is flagged
            reading.unavailable.setdefault("system", {})["read"] = f"{type(exc).__name__}: {exc}"
            exp.add("mlops_gpu_field_unavailable", 1, {"gpu": "", "uuid": "", "model": "", "field": "read"})
        finally:
            _shutdown(nv)
    if xid is not None:
        for uuid, labels in xid.labels.items():  # GPUs NVML no longer reads (fallen off the bus)
            if uuid not in reading.uuids:
                _add_xid(exp, xid, uuid, labels)
    add_collector_metrics(exp, "gpu", started)
    reading.text = exp.text()
    return reading


def _read_devices(nv, exp: Exposition, reading: GpuReading, xid: XidWatcher | None) -> None:
    system: dict[str, str] = {}
    driver = facts._text(facts._nvml_field(system, "driver_version", nv.nvmlSystemGetDriverVersion))
    count = facts._nvml_field(system, "count", nv.nvmlDeviceGetCount)
    reading.gpu_count = count if isinstance(count, int) else 0
    exp.add("mlops_gpu_count", count if isinstance(count, int) else None)
    for key in system:
        exp.add("mlops_gpu_field_unavailable", 1, {"gpu": "", "uuid": "", "model": "", "field": key})
    if system:
        reading.unavailable["system"] = system
    for index in range(reading.gpu_count):
        flags: dict[str, str] = {}
        labels = {"gpu": str(index), "uuid": "", "model": ""}
        try:
            _read_gpu(nv, index, driver or "", exp, flags, labels)
        except Exception as exc:
            flags["read"] = f"{type(exc).__name__}: {exc}"
        if labels["uuid"]:
            reading.uuids.append(labels["uuid"])
            if xid is not None:
                if labels["uuid"] in xid.unavailable:
                    flags["xid_events"] = xid.unavailable[labels["uuid"]]
                _add_xid(exp, xid, labels["uuid"], labels)
        for name in flags:
            exp.add("mlops_gpu_field_unavailable", 1, {**labels, "field": name})
        if flags:
            reading.unavailable[f"GPU {index} ({labels['uuid'] or 'uuid unread'})"] = flags


def _read_gpu(nv, index: int, driver: str, exp: Exposition, flags: dict[str, str], labels: dict[str, str]) -> None:
    rec = facts._gpu(nv, index)
    why = rec["unavailable"]
    if "handle" in why:
        flags["handle"] = why["handle"]
        return
    for key, name in _FACT_FIELDS.items():
        if key in why:
            flags[name] = why[key]
    labels["uuid"] = rec.get("uuid") or ""
    labels["model"] = rec.get("name") or ""
    handle, exc = _call(nv.nvmlDeviceGetHandleByIndex, index)
    if exc is not None:
        flags["handle"] = f"NVML: {exc}"
        return

    def read(name: str, fn, *args):
        value, exc = _call(fn, handle, *args)
        if exc is not None:
            flags[name] = f"NVML: {exc}"
        return value

    exp.add("mlops_gpu_info", 1, {**labels, "driver_version": driver, "pci_bus_id": rec.get("pci_bus_id") or ""})
    util = read("utilization", nv.nvmlDeviceGetUtilizationRates)
    if util is not None:
        exp.add("mlops_gpu_utilization_ratio", util.gpu / 100, labels)
        exp.add("mlops_gpu_memory_utilization_ratio", util.memory / 100, labels)
    exp.add("mlops_gpu_memory_used_bytes", rec.get("memory_used_bytes"), labels)
    exp.add("mlops_gpu_memory_total_bytes", rec.get("memory_total_bytes"), labels)
    exp.add("mlops_gpu_temperature_celsius", rec.get("temperature_c"), labels)
    exp.add("mlops_gpu_power_watts", rec.get("power_draw_w"), labels)
    exp.add("mlops_gpu_power_limit_watts", rec.get("power_limit_w"), labels)
    energy = read("energy", nv.nvmlDeviceGetTotalEnergyConsumption)
    exp.add("mlops_gpu_energy_joules_total", energy / 1000 if energy is not None else None, labels)
    sm = read("sm_clock", nv.nvmlDeviceGetClockInfo, getattr(nv, "NVML_CLOCK_SM", 1))
    exp.add("mlops_gpu_sm_clock_hertz", sm * 1_000_000 if sm is not None else None, labels)
    mem = read("memory_clock", nv.nvmlDeviceGetClockInfo, getattr(nv, "NVML_CLOCK_MEM", 2))
    exp.add("mlops_gpu_memory_clock_hertz", mem * 1_000_000 if mem is not None else None, labels)

    mask, error = _throttle_mask(nv, handle)
    if mask is None:
        flags["throttle_reasons"] = f"NVML: {error}"
    else:
        for reason, suffix, default in THROTTLE_REASONS:
            exp.add("mlops_gpu_throttle_active", bool(mask & _throttle_bit(nv, suffix, default)),
                    {**labels, "reason": reason})

    # ECC: a GPU without it (NotSupported) has it off, not unreadable
    ecc, exc = _call(nv.nvmlDeviceGetEccMode, handle)
    if exc is not None and _code(exc) != _NOT_SUPPORTED:
        flags["ecc_mode"] = f"NVML: {exc}"
    elif ecc is not None and ecc[0]:
        volatile = getattr(nv, "NVML_VOLATILE_ECC", 0)
        for kind, const, default in (("corrected", "NVML_MEMORY_ERROR_TYPE_CORRECTED", 0),
                                     ("uncorrected", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1)):
            errors = read("ecc_errors", nv.nvmlDeviceGetTotalEccErrors, getattr(nv, const, default), volatile)
            exp.add("mlops_gpu_ecc_errors_total", errors, {**labels, "type": kind})

    # MIG: likewise, a GPU without it has it off
    mig, exc = _call(nv.nvmlDeviceGetMigMode, handle)
    if exc is not None and _code(exc) != _NOT_SUPPORTED:
        flags["mig_mode"] = f"NVML: {exc}"
    else:
        enabled = bool(mig is not None and mig[0])
        exp.add("mlops_gpu_mig_enabled", enabled, labels)
        if not enabled:
            exp.add("mlops_gpu_mig_instances", 0, labels)
        else:
            instances = _read_mig(nv, handle, exp, flags, labels)
            exp.add("mlops_gpu_mig_instances", instances, labels)



def _read_mig(nv, handle, exp: Exposition, flags: dict[str, str], labels: dict[str, str]) -> int | None:
    """The MIG devices of a GPU in MIG mode, each one's memory; their number (None: unknown)."""
    slots, exc = _call(nv.nvmlDeviceGetMaxMigDeviceCount, handle)
    if exc is not None:
        flags["mig_devices"] = f"NVML: {exc}"
        return None
    found = 0
    for slot in range(slots or 0):
        mig, exc = _call(nv.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot)
        if exc is not None:
            if _code(exc) != _NOT_FOUND:  # NotFound: an empty slot
                flags["mig_devices"] = f"NVML: {exc}"
            continue
        found += 1
        why: dict[str, str] = {}
        mig_uuid = facts._text(facts._nvml_field(why, "uuid", nv.nvmlDeviceGetUUID, mig))
        gi = facts._nvml_field(why, "gi", nv.nvmlDeviceGetGpuInstanceId, mig)
        ci = facts._nvml_field(why, "ci", nv.nvmlDeviceGetComputeInstanceId, mig)
        memory = facts._nvml_field(why, "memory", nv.nvmlDeviceGetMemoryInfo, mig)
        if why:
            flags["mig_devices"] = "; ".join(f"{key}: {text}" for key, text in why.items())
        if mig_uuid is None or gi is None or ci is None or memory is None:
            continue
        mig_labels = {"gpu": labels["gpu"], "uuid": labels["uuid"], "mig_uuid": mig_uuid, "gi": gi, "ci": ci}
        exp.add("mlops_gpu_mig_memory_used_bytes", memory.used, mig_labels)
        exp.add("mlops_gpu_mig_memory_total_bytes", memory.total, mig_labels)
    return found


def _add_xid(exp: Exposition, xid: XidWatcher, uuid: str, labels: dict[str, str]) -> None:
    counts = xid.counts.get(uuid, {})
    exp.add("mlops_gpu_xid_events_total", sum(counts.values()), labels)
    for code in sorted(counts):
        exp.add("mlops_gpu_xid_errors_total", counts[code], {**labels, "xid": code})


class XidWatcher:
    """Counts NVML's XID critical-error events per GPU (by UUID) and XID code while the collector
    runs: an event set with every GPU registered for ``nvmlEventTypeXidCriticalError``, held open
    (NVML initialised) between :meth:`open` and :meth:`close`; :meth:`wait` blocks in
    ``nvmlEventSetWait``. The counts outlive a close and reopen (a driver reload, a GPU change):
    they are counters since the collector started. Never raises."""

    def __init__(self, nv):
        self.nv = nv
        #: uuid -> XID code -> events
        self.counts: dict[str, dict[int, int]] = {}
        #: uuid -> the GPU's series labels (gpu, uuid, model) when it was registered
        self.labels: dict[str, dict[str, str]] = {}
        #: uuid -> why its events are not watched
        self.unavailable: dict[str, str] = {}
        #: why nothing is watched (None while watching)
        self.reason: str | None = "not opened"
        self._new: dict[tuple[str, int], int] = {}
        self._set = None
        self._seen: frozenset[str] = frozenset()
        self._by_index: dict[int, str] = {}

    @property
    def watching(self) -> bool:
        return self._set is not None

    def matches(self, uuids) -> bool:
        """Whether the GPUs read now are those the event set was opened for."""
        return self.watching and frozenset(uuids) == self._seen

    def open(self) -> bool:
        """(Re)start NVML and register every GPU; False, with :attr:`reason`, when none is."""
        self.close()
        nv = self.nv
        reason = init_nvml(nv)
        if reason is not None:
            self.reason = reason
            return False
        event_set, exc = _call(nv.nvmlEventSetCreate)
        if exc is not None:
            self.reason = f"nvmlEventSetCreate failed: {exc}"
            _shutdown(nv)
            return False
        count, exc = _call(nv.nvmlDeviceGetCount)
        seen, registered, self._by_index = set(), 0, {}
        self.unavailable = {}
        for index in range(count if isinstance(count, int) else 0):
            handle, exc = _call(nv.nvmlDeviceGetHandleByIndex, index)
            uuid = facts._text(_call(nv.nvmlDeviceGetUUID, handle)[0]) if exc is None else None
            if not uuid:
                continue
            seen.add(uuid)
            self._by_index[index] = uuid
            self.labels[uuid] = {"gpu": str(index), "uuid": uuid,
                                 "model": facts._text(_call(nv.nvmlDeviceGetName, handle)[0]) or ""}
            _, exc = _call(nv.nvmlDeviceRegisterEvents, handle,
                           getattr(nv, "nvmlEventTypeXidCriticalError", _XID_EVENT), event_set)
            if exc is not None:
                self.unavailable[uuid] = f"NVML: {exc}"
            else:
                registered += 1
        if not registered:
            self.reason = ("no GPU accepts XID event registration" if seen
                           else "no GPU to register for XID events")
            _call(nv.nvmlEventSetFree, event_set)
            _shutdown(nv)
            return False
        self._set, self._seen, self.reason = event_set, frozenset(seen), None
        return True

    def close(self) -> None:
        if self._set is not None:
            _call(self.nv.nvmlEventSetFree, self._set)
            self._set = None
            _shutdown(self.nv)

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for one XID event and count it: whether one came. An error
        other than the timeout closes the set (:attr:`reason` says why); the caller reopens."""
        if self._set is None:
            return False
        data, exc = _call(self.nv.nvmlEventSetWait, self._set, max(0, int(seconds * 1000)))
        if exc is not None:
            if _code(exc) != _TIMEOUT and type(exc).__name__ != "NVMLError_Timeout":
                self.close()
                self.reason = f"nvmlEventSetWait failed: {exc}"
            return False
        kind = getattr(data, "eventType", None)
        if not isinstance(kind, int) or not kind & getattr(self.nv, "nvmlEventTypeXidCriticalError", _XID_EVENT):
            return False
        code = getattr(data, "eventData", None)
        code = code if isinstance(code, int) else -1
        uuid = self._uuid_of(getattr(data, "device", None))
        per_gpu = self.counts.setdefault(uuid, {})
        per_gpu[code] = per_gpu.get(code, 0) + 1
        self._new[uuid, code] = self._new.get((uuid, code), 0) + 1
        if uuid not in self.labels:
            self.labels[uuid] = {"gpu": "", "uuid": uuid, "model": ""}
        return True

    def _uuid_of(self, device) -> str:
        uuid, exc = _call(self.nv.nvmlDeviceGetUUID, device)
        if exc is None and uuid:
            return facts._text(uuid)
        index, exc = _call(self.nv.nvmlDeviceGetIndex, device)
        if exc is None and index in self._by_index:
            return self._by_index[index]
        return ""

    def take_new(self) -> dict[tuple[str, int], int]:
        """The events counted since the last call: (uuid, XID code) -> events."""
        new, self._new = self._new, {}
        return new
