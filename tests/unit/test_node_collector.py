"""The node collector (mlops_provision.monitoring.collector) and its GPU metrics
(mlops_provision.gpu.metrics) on this GPU-less machine: NVML is a fake (the real pynvml's error
classes and constants, fixed answers per GPU, as in test_gpu_facts), sysfs a tree under tmp_path.
The real NVML path is unverified here."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest

import mlops_provision
from mlops_provision.gpu import metrics
from mlops_provision.monitoring import collector
from mlops_provision.monitoring.collector import Collector, RaplState, rapl_text

SRC = Path(mlops_provision.__file__).parent.parent
#: what roles/node_exporter ships to the nodes: the collector must run from these alone
SHIPPED = ["mlops_provision/__init__.py", "mlops_provision/gpu/__init__.py", "mlops_provision/gpu/facts.py",
           "mlops_provision/gpu/metrics.py", "mlops_provision/monitoring/__init__.py",
           "mlops_provision/monitoring/collector.py"]


# ---------------------------------------------------------------------------------------------
# A small parser of Prometheus' text format (prometheus_client is not a dependency)

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text: str) -> dict[str, dict]:
    """name -> {"type", "help", "samples": {frozenset(labels.items()): value}}; asserts the format:
    HELP and TYPE once per name and before its samples, a family's samples together, label values
    escaped, no series twice, counters named *_total."""
    assert text.endswith("\n") and "\n\n" not in text
    families: dict[str, dict] = {}
    current = None
    done: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, rest = line.split(" ", 3)
            fam = families.setdefault(name, {"type": None, "help": None, "samples": {}})
            key = kind.lower()
            assert fam[key] is None, f"{kind} of {name} twice"
            assert not fam["samples"], f"{kind} of {name} after its samples"
            fam[key] = rest
            if key == "type":
                assert rest in {"gauge", "counter"}, line
                assert rest != "counter" or name.endswith("_total"), name
            continue
        assert not line.startswith("#"), line
        match = _SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name, label_text, value = match.groups()
        fam = families.get(name)
        assert fam and fam["type"] and fam["help"], f"{name}: no HELP/TYPE before its sample"
        if current != name:
            assert name not in done, f"{name}: samples not together"
            if current:
                done.add(current)
            current = name
        labels = {}
        pos = 0
        while label_text and pos < len(label_text):
            lm = _LABEL.match(label_text, pos)
            assert lm, f"bad labels: {line!r}"
            labels[lm.group(1)] = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], lm.group(2))
            pos = lm.end()
        key = frozenset(labels.items())
        assert key not in fam["samples"], f"series twice: {line}"
        fam["samples"][key] = float(value)
    return families


def value(families: dict, name: str, **labels) -> float | None:
    """The value of the one series of ``name`` whose labels include ``labels``."""
    found = [v for k, v in families.get(name, {}).get("samples", {}).items() if set(labels.items()) <= set(k)]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def series(families: dict, name: str, **labels) -> list[dict]:
    return [dict(k) for k in families.get(name, {}).get("samples", {}) if set(labels.items()) <= set(k)]


# ---------------------------------------------------------------------------------------------
# A fake NVML and sysfs

def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED


class FakeDevice:
    """A GPU (or MIG device) handle: what each nvmlDevice* call answers for it; a callable
    answer gets the call's further arguments, an exception is raised, a missing one is
    NotSupported."""

    def __init__(self, **answers):
        self.answers = answers


class FakeNvml:
    """The real pynvml's constants and errors, NVML calls answered by FakeDevice handles;
    ``hide``: names this binding lacks (an older pynvml); ``events``: what nvmlEventSetWait
    returns, one per call, then the timeout."""

    def __init__(self, devices, init_error=None, hide=(), events=()):
        self.devices = devices
        self.init_error = init_error
        self.hide = set(hide)
        self.events = list(events)
        self.inits = 0
        self.registered: list[FakeDevice] = []
        self.waits: list[int] = []

    def __getattr__(self, name):
        if name in self.hide:
            raise AttributeError(name)
        if name.startswith("nvmlDevice"):
            def call(handle, *args):
                answer = handle.answers.get(name, _error(NOT_SUPPORTED))
                if callable(answer):
                    answer = answer(*args)
                if isinstance(answer, Exception):
                    raise answer
                return answer
            return call
        return getattr(pynvml, name)

    def nvmlInit(self):
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self):
        self.inits -= 1

    def nvmlSystemGetDriverVersion(self):
        return "550.127.05"

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.devices[index]

    def nvmlDeviceRegisterEvents(self, handle, types, event_set):
        assert types == pynvml.nvmlEventTypeXidCriticalError
        if "register" in handle.answers:
            raise handle.answers["register"]
        self.registered.append(handle)

    def nvmlEventSetCreate(self):
        return "event-set"

    def nvmlEventSetFree(self, event_set):
        pass

    def nvmlEventSetWait(self, event_set, timeout_ms):
        self.waits.append(timeout_ms)
        if not self.events:
            raise _error(pynvml.NVML_ERROR_TIMEOUT)
        event = self.events.pop(0)
        if isinstance(event, Exception):
            raise event
        return event


def _memory(total, used):
    return SimpleNamespace(total=total, used=used, free=total - used)


def mig_device(uuid, gi, ci, total, used):
    return FakeDevice(nvmlDeviceGetUUID=uuid, nvmlDeviceGetGpuInstanceId=gi, nvmlDeviceGetComputeInstanceId=ci,
                      nvmlDeviceGetMemoryInfo=_memory(total, used))


def h100_with_mig():
    migs = {0: mig_device("MIG-aaaa", 1, 0, 20 * 2**30, 2**30), 2: mig_device("MIG-bbbb", 2, 0, 40 * 2**30, 0)}

    def mig_slot(slot):
        return migs.get(slot, _error(pynvml.NVML_ERROR_NOT_FOUND))

    return FakeDevice(
        nvmlDeviceGetName="NVIDIA H100 80GB HBM3", nvmlDeviceGetUUID="GPU-0000-h100",
        nvmlDeviceGetPciInfo=SimpleNamespace(busId=b"00000000:01:00.0"),
        nvmlDeviceGetMemoryInfo=_memory(80 * 2**30, 21 * 2**30),
        nvmlDeviceGetEccMode=[1, 1],
        nvmlDeviceGetTotalEccErrors=lambda kind, counter: {pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: 5,
                                                           pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: 0}[kind],
        nvmlDeviceGetTemperature=lambda sensor: 41,
        nvmlDeviceGetPowerUsage=312_500, nvmlDeviceGetEnforcedPowerLimit=700_000,
        nvmlDeviceGetTotalEnergyConsumption=123_456_789,
        nvmlDeviceGetUtilizationRates=SimpleNamespace(gpu=87, memory=40),
        nvmlDeviceGetClockInfo=lambda clock: {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[clock],
        nvmlDeviceGetCurrentClocksEventReasons=pynvml.nvmlClocksEventReasonSwPowerCap
        | pynvml.nvmlClocksEventReasonHwThermalSlowdown,
        nvmlDeviceGetMigMode=[1, 1], nvmlDeviceGetMaxMigDeviceCount=7,
        nvmlDeviceGetMigDeviceHandleByIndex=mig_slot,
    )


def l40s_without_energy():
    """Its energy counter cannot be read; no MIG on this model (NotSupported is 'off')."""
    return FakeDevice(
        nvmlDeviceGetName='Odd "GPU"\\model', nvmlDeviceGetUUID="GPU-1111-l40s",
        nvmlDeviceGetPciInfo=SimpleNamespace(busId="00000000:02:00.0"),
        nvmlDeviceGetMemoryInfo=_memory(48 * 2**30, 0),
        nvmlDeviceGetEccMode=[0, 0],
        nvmlDeviceGetTemperature=lambda sensor: 30,
        nvmlDeviceGetPowerUsage=35_000, nvmlDeviceGetEnforcedPowerLimit=350_000,
        nvmlDeviceGetTotalEnergyConsumption=_error(NOT_SUPPORTED),
        nvmlDeviceGetUtilizationRates=SimpleNamespace(gpu=0, memory=0),
        nvmlDeviceGetClockInfo=lambda clock: 210,
        nvmlDeviceGetCurrentClocksEventReasons=pynvml.nvmlClocksEventReasonGpuIdle,
    )


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def pci_gpus(root: Path, count: int) -> Path:
    files = {}
    for i in range(count):
        files.update({f"sys/bus/pci/devices/0000:0{i + 1}:00.0/vendor": "0x10de\n",
                      f"sys/bus/pci/devices/0000:0{i + 1}:00.0/class": "0x030200\n",
                      f"sys/bus/pci/devices/0000:0{i + 1}:00.0/device": "0x2330\n"})
    return _tree(root, files)


def xid_event(device, code):
    return SimpleNamespace(device=device, eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=code,
                           gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)


# ---------------------------------------------------------------------------------------------
# GPU metrics


def test_two_gpus_one_in_mig_mode_one_field_unreadable(tmp_path):
    h100, l40s = h100_with_mig(), l40s_without_energy()
    nv = FakeNvml([h100, l40s])
    watcher = metrics.XidWatcher(nv)
    assert watcher.open()
    reading = metrics.read_gpus(nv, str(pci_gpus(tmp_path, 2)), xid=watcher)
    fams = parse(reading.text)
    assert reading.nvml_up and reading.reason is None and reading.gpu_count == 2
    assert reading.uuids == ["GPU-0000-h100", "GPU-1111-l40s"]
    assert nv.inits == 1  # read_gpus shut NVML down again; the watcher holds it
    watcher.close()
    assert nv.inits == 0

    g0 = {"gpu": "0", "uuid": "GPU-0000-h100", "model": "NVIDIA H100 80GB HBM3"}
    g1 = {"gpu": "1", "uuid": "GPU-1111-l40s", "model": 'Odd "GPU"\\model'}  # escaped and read back
    assert value(fams, "mlops_gpu_pci_devices") == 2
    assert value(fams, "mlops_gpu_nvml_up") == 1 and "mlops_gpu_nvml_error_info" not in fams
    assert value(fams, "mlops_gpu_count") == 2
    assert value(fams, "mlops_gpu_info", **g0, driver_version="550.127.05", pci_bus_id="00000000:01:00.0") == 1
    assert value(fams, "mlops_gpu_info", **g1, driver_version="550.127.05", pci_bus_id="00000000:02:00.0") == 1
    assert value(fams, "mlops_gpu_utilization_ratio", **g0) == 0.87
    assert value(fams, "mlops_gpu_memory_utilization_ratio", **g0) == 0.4
    assert value(fams, "mlops_gpu_memory_used_bytes", **g0) == 21 * 2**30
    assert value(fams, "mlops_gpu_memory_total_bytes", **g1) == 48 * 2**30
    assert value(fams, "mlops_gpu_temperature_celsius", **g0) == 41
    assert value(fams, "mlops_gpu_power_watts", **g0) == 312.5
    assert value(fams, "mlops_gpu_power_limit_watts", **g1) == 350
    assert value(fams, "mlops_gpu_energy_joules_total", **g0) == 123_456.789
    assert value(fams, "mlops_gpu_sm_clock_hertz", **g0) == 1980e6
    assert value(fams, "mlops_gpu_memory_clock_hertz", **g0) == 2619e6
    assert fams["mlops_gpu_energy_joules_total"]["type"] == "counter"

    # the GPU whose energy NVML cannot read: left out, and said so
    assert value(fams, "mlops_gpu_energy_joules_total", **g1) is None
    assert series(fams, "mlops_gpu_field_unavailable") == [{**g1, "field": "energy"}]
    assert "Not Supported" in reading.unavailable["GPU 1 (GPU-1111-l40s)"]["energy"]

    throttled = {labels["reason"]: v for labels, v in
                 ((dict(k), v) for k, v in fams["mlops_gpu_throttle_active"]["samples"].items())
                 if labels["gpu"] == "0"}
    assert throttled == {reason: float(reason in {"sw_power_cap", "hw_thermal_slowdown"})
                         for reason, _, _ in metrics.THROTTLE_REASONS}
    assert value(fams, "mlops_gpu_throttle_active", **g1, reason="gpu_idle") == 1

    assert value(fams, "mlops_gpu_ecc_errors_total", **g0, type="corrected") == 5
    assert value(fams, "mlops_gpu_ecc_errors_total", **g0, type="uncorrected") == 0
    assert series(fams, "mlops_gpu_ecc_errors_total", gpu="1") == []  # ECC off

    assert value(fams, "mlops_gpu_mig_enabled", **g0) == 1 and value(fams, "mlops_gpu_mig_instances", **g0) == 2
    assert value(fams, "mlops_gpu_mig_enabled", **g1) == 0 and value(fams, "mlops_gpu_mig_instances", **g1) == 0
    mig = {"gpu": "0", "uuid": "GPU-0000-h100"}
    assert value(fams, "mlops_gpu_mig_memory_used_bytes", **mig, mig_uuid="MIG-aaaa", gi="1", ci="0") == 2**30
    assert value(fams, "mlops_gpu_mig_memory_total_bytes", **mig, mig_uuid="MIG-bbbb", gi="2", ci="0") == 40 * 2**30
    assert {frozenset(labels) for labels in series(fams, "mlops_gpu_mig_memory_used_bytes")} == {
        frozenset({"gpu", "uuid", "mig_uuid", "gi", "ci"})}

    # XID counters from 0 for every GPU, so that increase() sees the first event
    assert value(fams, "mlops_gpu_xid_events_total", **g0) == 0 and value(fams, "mlops_gpu_xid_events_total", **g1) == 0
    assert "mlops_gpu_xid_errors_total" not in fams
    assert value(fams, "mlops_collector_last_success_timestamp_seconds", collector="gpu") == pytest.approx(
        time.time(), abs=60)
    assert value(fams, "mlops_collector_duration_seconds", collector="gpu") >= 0
    assert set(fams) <= set(metrics.GPU_METRICS) | set(metrics.COLLECTOR_METRICS)
    assert metrics.gpu_text(FakeNvml([h100, l40s]), str(tmp_path)).startswith("# HELP mlops_gpu_pci_devices ")


def test_an_older_pynvml_reads_the_throttle_reasons(tmp_path):
    """Debian 12's python3-pynvml predates the ClocksEventReasons names."""
    old = FakeDevice(**{**h100_with_mig().answers, "nvmlDeviceGetCurrentClocksThrottleReasons": 0x8})
    del old.answers["nvmlDeviceGetCurrentClocksEventReasons"]
    hidden = [name for name in dir(pynvml) if "ClocksEventReason" in name]
    fams = parse(metrics.gpu_text(FakeNvml([old], hide=hidden), str(tmp_path)))
    active = [labels["reason"] for labels in series(fams, "mlops_gpu_throttle_active") if
              value(fams, "mlops_gpu_throttle_active", **labels)]
    assert active == ["hw_slowdown"]
    assert "mlops_gpu_field_unavailable" not in fams


def test_no_pynvml_and_no_gpu_says_zero_devices(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` fails
    reading = metrics.read_gpus(root=str(tmp_path))
    fams = parse(reading.text)
    assert value(fams, "mlops_gpu_pci_devices") == 0
    assert value(fams, "mlops_gpu_nvml_up") == 0 and value(fams, "mlops_gpu_count") == 0
    (labels,) = series(fams, "mlops_gpu_nvml_error_info")
    assert labels["reason"].startswith("pynvml not installed") and reading.reason == labels["reason"]
    assert not any(name.startswith("mlops_gpu_") and name not in {
        "mlops_gpu_pci_devices", "mlops_gpu_nvml_up", "mlops_gpu_nvml_error_info", "mlops_gpu_count"} for name in fams)


def test_no_gpu_is_logged_once_not_every_interval(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    out = tmp_path / "textfile"
    out.mkdir()
    col = Collector(str(out), root=str(tmp_path / "root"))
    with caplog.at_level(logging.INFO, logger="mlops-collector"):
        for _ in range(3):
            col.collect_once()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(set(messages)) == 3, messages  # no GPU, no NVML, no RAPL: once each
    assert any("no NVIDIA GPU on the PCI bus" in m for m in messages)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert col.watcher is None
    fams = parse((out / "mlops_gpu.prom").read_text())
    assert value(fams, "mlops_gpu_pci_devices") == 0 and value(fams, "mlops_gpu_nvml_up") == 0


@pytest.mark.parametrize(("error", "reason"), [
    (pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED), "NVIDIA driver not loaded"),
    (pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND),
     "NVML library missing (libnvidia-ml.so.1: no NVIDIA driver)"),
    (pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION), "NVML init failed: Insufficient Permissions"),
])
def test_a_pci_gpu_whose_nvml_cannot_start(tmp_path, error, reason):
    reading = metrics.read_gpus(FakeNvml([h100_with_mig()], init_error=error), str(pci_gpus(tmp_path, 1)))
    fams = parse(reading.text)
    assert value(fams, "mlops_gpu_pci_devices") == 1
    assert value(fams, "mlops_gpu_nvml_up") == 0 and value(fams, "mlops_gpu_count") == 0
    assert series(fams, "mlops_gpu_nvml_error_info") == [{"reason": reason}]
    assert not reading.nvml_up and reading.reason == reason


def test_the_real_pynvml_without_a_driver(tmp_path):
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia").exists():
        pytest.skip("this machine has an NVIDIA driver")
    fams = parse(metrics.gpu_text(root=str(tmp_path)))
    assert value(fams, "mlops_gpu_nvml_up") == 0
    assert series(fams, "mlops_gpu_nvml_error_info") == [
        {"reason": "NVML library missing (libnvidia-ml.so.1: no NVIDIA driver)"}]


def test_a_gpu_nvml_loses_is_flagged_not_fatal(tmp_path):
    lost = FakeDevice(**{"nvmlDeviceGetUUID": _error(pynvml.NVML_ERROR_GPU_IS_LOST)})
    nv = FakeNvml([h100_with_mig(), lost])
    nv.nvmlDeviceGetHandleByIndex = lambda i: lost if i == 1 else nv.devices[0]
    fams = parse(metrics.gpu_text(nv, str(tmp_path)))
    assert value(fams, "mlops_gpu_count") == 2
    assert value(fams, "mlops_gpu_field_unavailable", gpu="1", field="uuid") == 1
    assert value(fams, "mlops_gpu_power_watts", gpu="0") == 312.5


def test_xid_events_are_counted_per_code_and_in_total(tmp_path):
    h100, l40s = h100_with_mig(), l40s_without_energy()
    nv = FakeNvml([h100, l40s], events=[
        xid_event(h100, 79), xid_event(l40s, 13), xid_event(l40s, 13), xid_event(l40s, 31),
        SimpleNamespace(device=h100, eventType=pynvml.nvmlEventTypePState, eventData=0)])  # not an XID
    watcher = metrics.XidWatcher(nv)
    assert watcher.open() and nv.registered == [h100, l40s]
    came = [watcher.wait(0.5) for _ in range(7)]
    assert came == [True, True, True, True, False, False, False]
    assert nv.waits == [500] * 7
    assert watcher.counts == {"GPU-0000-h100": {79: 1}, "GPU-1111-l40s": {13: 2, 31: 1}}
    assert watcher.take_new() == {("GPU-0000-h100", 79): 1, ("GPU-1111-l40s", 13): 2, ("GPU-1111-l40s", 31): 1}
    assert watcher.take_new() == {}

    fams = parse(metrics.gpu_text(nv, str(tmp_path), xid=watcher))
    g0 = {"gpu": "0", "uuid": "GPU-0000-h100", "model": "NVIDIA H100 80GB HBM3"}
    g1 = {"gpu": "1", "uuid": "GPU-1111-l40s"}
    assert fams["mlops_gpu_xid_errors_total"]["type"] == "counter"
    assert value(fams, "mlops_gpu_xid_errors_total", **g0, xid="79") == 1
    assert value(fams, "mlops_gpu_xid_errors_total", **g1, xid="13") == 2
    assert value(fams, "mlops_gpu_xid_errors_total", **g1, xid="31") == 1
    assert value(fams, "mlops_gpu_xid_events_total", **g0) == 1
    assert value(fams, "mlops_gpu_xid_events_total", **g1) == 3

    # the GPU falls off the bus: NVML lists only the other one, its counters stay
    nv.devices = [l40s]
    fams = parse(metrics.gpu_text(nv, str(tmp_path), xid=watcher))
    assert value(fams, "mlops_gpu_xid_events_total", **g0) == 1
    assert value(fams, "mlops_gpu_xid_errors_total", **g0, xid="79") == 1
    assert not watcher.matches(["GPU-1111-l40s"])

    # an error other than the timeout closes the set; the counts outlive it and a reopen
    nv.events = [_error(pynvml.NVML_ERROR_GPU_IS_LOST)]
    assert watcher.wait(1) is False and not watcher.watching and "GPU is lost" in watcher.reason
    assert nv.inits == 0
    assert watcher.open() and watcher.matches(["GPU-1111-l40s"])
    assert watcher.counts["GPU-0000-h100"] == {79: 1}
    watcher.close()


def test_xid_registration_refused(tmp_path):
    gpu = FakeDevice(**{**l40s_without_energy().answers, "register": _error(NOT_SUPPORTED)})
    nv = FakeNvml([gpu])
    watcher = metrics.XidWatcher(nv)
    assert not watcher.open() and watcher.reason == "no GPU accepts XID event registration"
    assert nv.inits == 0 and not watcher.watching
    fams = parse(metrics.gpu_text(nv, str(tmp_path), xid=watcher))
    assert value(fams, "mlops_gpu_field_unavailable", uuid="GPU-1111-l40s", field="xid_events") == 1


def test_the_collector_waits_on_xid_events_between_writes(tmp_path):
    h100 = h100_with_mig()
    nv = FakeNvml([h100], events=[xid_event(h100, 48)])
    out = tmp_path / "textfile"
    out.mkdir()
    col = Collector(str(out), interval=0.3, root=str(pci_gpus(tmp_path / "root", 1)), pynvml_module=nv)
    col.collect_once()
    assert col.watcher is not None and col.watcher.watching
    col.wait_until(time.monotonic() + 0.3)
    assert nv.waits and all(0 <= ms <= 300 for ms in nv.waits)
    col.collect_once()
    fams = parse((out / "mlops_gpu.prom").read_text())
    assert value(fams, "mlops_gpu_xid_errors_total", gpu="0", xid="48") == 1
    col.stop()
    assert col.run() == 0  # stopped: returns at once, the event set freed
    assert not col.watcher.watching and nv.inits == 0


# ---------------------------------------------------------------------------------------------
# RAPL

MAX = 262_143_328_850


def rapl_tree(root: Path, zones: dict[str, tuple[str, int | None]]) -> Path:
    """zones: id -> (name, energy_uj or None for no energy file), plus the control type's own
    directory and an MMIO duplicate of package 0 that must be left out."""
    files = {"sys/class/powercap/intel-rapl/enabled": "1\n",
             "sys/class/powercap/intel-rapl-mmio:0/name": "package-0\n",
             "sys/class/powercap/intel-rapl-mmio:0/energy_uj": "999999\n"}
    for zone_id, (name, energy) in zones.items():
        files[f"sys/class/powercap/{zone_id}/name"] = f"{name}\n"
        files[f"sys/class/powercap/{zone_id}/max_energy_range_uj"] = f"{MAX}\n"
        if energy is not None:
            files[f"sys/class/powercap/{zone_id}/energy_uj"] = f"{energy}\n"
    return _tree(root, files)


def set_energy(root: Path, zone_id: str, energy: int) -> None:
    (root / "sys/class/powercap" / zone_id / "energy_uj").write_text(f"{energy}\n")


TWO_PACKAGES = {"intel-rapl:0": ("package-0", 100_000_000), "intel-rapl:0:0": ("core", 60_000_000),
                "intel-rapl:0:1": ("dram", 7_000_000), "intel-rapl:1": ("package-1", 90_000_000)}


def test_node_energy_is_packages_plus_dram_not_core(tmp_path):
    root = rapl_tree(tmp_path, TWO_PACKAGES)
    fams = parse(rapl_text(RaplState("boot-1"), str(root)))
    assert value(fams, "mlops_rapl_up") == 1 and "mlops_rapl_error_info" not in fams
    assert series(fams, "mlops_rapl_zone_energy_joules_total") == [
        {"zone": "package-0", "id": "intel-rapl:0", "parent": ""},
        {"zone": "core", "id": "intel-rapl:0:0", "parent": "intel-rapl:0"},
        {"zone": "dram", "id": "intel-rapl:0:1", "parent": "intel-rapl:0"},
        {"zone": "package-1", "id": "intel-rapl:1", "parent": ""}]
    assert value(fams, "mlops_rapl_zone_energy_joules_total", id="intel-rapl:0:0") == 60
    assert value(fams, "mlops_node_energy_joules_total", source="rapl") == 100 + 7 + 90
    assert fams["mlops_node_energy_joules_total"]["type"] == "counter"
    assert value(fams, "mlops_collector_last_success_timestamp_seconds", collector="rapl") > 0
    assert value(fams, "mlops_collector_duration_seconds", collector="rapl") >= 0
    assert set(fams) <= set(collector.RAPL_METRICS) | set(metrics.COLLECTOR_METRICS)


def test_psys_alone_when_there_is_one(tmp_path):
    root = rapl_tree(tmp_path, {**TWO_PACKAGES, "intel-rapl:2": ("psys", 250_000_000)})
    fams = parse(rapl_text(None, str(root)))
    assert value(fams, "mlops_node_energy_joules_total", source="rapl") == 250


def test_wrap_around_keeps_the_total_rising(tmp_path):
    root = rapl_tree(tmp_path, {"intel-rapl:0": ("package-0", MAX - 1_000_000)})
    state = RaplState("boot-1")
    totals = []
    for raw in (MAX - 1_000_000, MAX - 10, 5_000_000, 9_000_000):
        set_energy(root, "intel-rapl:0", raw)
        fams = parse(rapl_text(state, str(root)))
        totals.append(value(fams, "mlops_rapl_zone_energy_joules_total", id="intel-rapl:0"))
        assert value(fams, "mlops_node_energy_joules_total") == totals[-1]
    assert totals == [(MAX - 1_000_000) / 1e6, (MAX - 10) / 1e6, (MAX + 5_000_000) / 1e6, (MAX + 9_000_000) / 1e6]


def test_state_continues_on_the_same_boot_and_restarts_on_a_new_one(tmp_path):
    root = rapl_tree(tmp_path / "root", {"intel-rapl:0": ("package-0", MAX - 2_000_000)})
    _tree(root, {"proc/sys/kernel/random/boot_id": "boot-1\n"})
    out, state_dir = tmp_path / "textfile", tmp_path / "state"
    out.mkdir()
    state_dir.mkdir()

    def collect() -> float:
        Collector(str(out), str(state_dir), root=str(root), pynvml_module=FakeNvml([])).collect_once()
        return value(parse((out / "mlops_energy.prom").read_text()), "mlops_rapl_zone_energy_joules_total")

    assert collect() == (MAX - 2_000_000) / 1e6
    assert (state_dir / "rapl-state.json").stat().st_mode & 0o777 == 0o600
    set_energy(root, "intel-rapl:0", 3_000_000)  # wrapped while the collector restarted
    assert collect() == (MAX + 3_000_000) / 1e6  # a new collector, the same boot: continues
    _tree(root, {"proc/sys/kernel/random/boot_id": "boot-2\n"})
    set_energy(root, "intel-rapl:0", 4_000_000)
    assert collect() == 4  # a new boot: from the raw value
    assert RaplState.load(str(state_dir / "rapl-state.json"), "boot-1").zones == {}
    (state_dir / "rapl-state.json").write_text("{not json")
    assert RaplState.load(str(state_dir / "rapl-state.json"), "boot-2").zones == {}


def test_rapl_missing_or_unreadable(tmp_path):
    fams = parse(rapl_text(None, str(tmp_path)))
    assert value(fams, "mlops_rapl_up") == 0 and "mlops_node_energy_joules_total" not in fams
    assert series(fams, "mlops_rapl_error_info") == [{"reason": "no powercap in sysfs (/sys/class/powercap)"}]
    (tmp_path / "sys/class/powercap/intel-rapl").mkdir(parents=True)
    fams = parse(rapl_text(None, str(tmp_path)))
    assert series(fams, "mlops_rapl_error_info")[0]["reason"].startswith("no RAPL zones")
    root = rapl_tree(tmp_path / "noread", {"intel-rapl:0": ("package-0", None)})
    fams = parse(rapl_text(None, str(root)))
    assert value(fams, "mlops_rapl_up") == 0
    assert series(fams, "mlops_rapl_error_info") == [{"reason": "energy_uj unreadable: No such file or directory"}]


def test_an_unreadable_zone_leaves_the_node_total_out(tmp_path):
    root = rapl_tree(tmp_path, {**TWO_PACKAGES, "intel-rapl:0:1": ("dram", None)})
    text, reason, unreadable = collector.read_rapl(RaplState("b"), str(root))
    fams = parse(text)
    assert reason is None and value(fams, "mlops_rapl_up") == 1
    assert set(unreadable) == {"intel-rapl:0:1"}
    assert series(fams, "mlops_rapl_zone_unavailable") == [{"zone": "dram", "id": "intel-rapl:0:1",
                                                           "parent": "intel-rapl:0"}]
    assert "mlops_node_energy_joules_total" not in fams  # a partial sum would read as a reset


# ---------------------------------------------------------------------------------------------
# Files and the process


def test_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "mlops_gpu.prom"
    collector.write_atomic(str(path), "a 1\n")
    collector.write_atomic(str(path), "a 2\n")
    assert path.read_text() == "a 2\n" and path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["mlops_gpu.prom"]

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(collector.os, "replace", fail)
    with pytest.raises(OSError):
        collector.write_atomic(str(path), "a 3\n")
    assert os.listdir(tmp_path) == ["mlops_gpu.prom"] and path.read_text() == "a 2\n"


def test_a_write_error_does_not_stop_the_collector(tmp_path, caplog):
    col = Collector(str(tmp_path / "missing"), root=str(tmp_path), pynvml_module=FakeNvml([]))
    with caplog.at_level(logging.ERROR, logger="mlops-collector"):
        col.collect_once()
        col.collect_once()
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 2  # one per file, once


def test_label_values_are_escaped():
    exp = metrics.Exposition({"m": ("gauge", "help with \\ and\nnewline")})
    exp.add("m", 1, {"a": 'x"y\\z\nw'})
    exp.add("m", 2, {"a": 'x"y\\z\nw'})  # the same series again: dropped
    exp.add("unknown", 1)
    text = exp.text()
    assert text == '# HELP m help with \\\\ and\\nnewline\n# TYPE m gauge\nm{a="x\\"y\\\\z\\nw"} 1\n'
    assert series(parse(text), "m") == [{"a": 'x"y\\z\nw'}]


def _shipped(tmp_path: Path) -> Path:
    ship = tmp_path / "ship"
    for rel in SHIPPED:
        (ship / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SRC / rel, ship / rel)
    return ship


def test_runs_from_the_shipped_files_alone_and_stops_on_sigterm(tmp_path):
    """As the service runs it: `python3 -m ...` with PYTHONPATH holding only the shipped files."""
    ship = _shipped(tmp_path)
    root = rapl_tree(tmp_path / "root", TWO_PACKAGES)
    out = tmp_path / "textfile"
    env = {**os.environ, "PYTHONPATH": str(ship), "PYTHONDONTWRITEBYTECODE": "1"}
    check = (f"import runpy, sys; sys.argv = ['collector', '--once', '--textfile-dir', {str(out)!r}, "
             f"'--root', {str(root)!r}]\n"
             "code = 0\ntry:\n  runpy.run_module('mlops_provision.monitoring.collector', run_name='__main__')\n"
             "except SystemExit as e:\n  code = e.code\n"
             "mods = [m.__file__ for n, m in sys.modules.items() if n.startswith('mlops_provision')]\n"
             f"assert all(f.startswith({str(ship)!r}) for f in mods), mods\nsys.exit(code)")
    res = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(out)) == ["mlops_energy.prom", "mlops_gpu.prom"]
    assert value(parse((out / "mlops_energy.prom").read_text()), "mlops_node_energy_joules_total") == 197
    assert value(parse((out / "mlops_gpu.prom").read_text()), "mlops_gpu_pci_devices") == 0

    (out / "mlops_gpu.prom").unlink()
    proc = subprocess.Popen([sys.executable, "-m", "mlops_provision.monitoring.collector", "--textfile-dir", str(out),
                             "--interval", "30", "--state-dir", str(tmp_path / "state"), "--root", str(root)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (out / "mlops_gpu.prom").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (out / "mlops_gpu.prom").exists()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert (tmp_path / "state" / "rapl-state.json").exists()
    assert not [name for name in os.listdir(out) if name.startswith(".")]
