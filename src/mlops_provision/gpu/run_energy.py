"""The GPU energy of an MLflow run: NVML's energy counters read when the training code starts and
when it ends, the difference logged as the run's metrics.

Training code calls it; it needs only the standard library, ``pynvml`` (nvidia-ml-py, in every
CUDA image that uses NVML) and ``mlflow``, so this one file can be copied into a training image
as it is::

    import mlflow
    from run_energy import GpuEnergy          # or mlops_provision.gpu.run_energy

    with mlflow.start_run():
        with GpuEnergy():                     # logs when the block ends, even on an exception
            train()

Metrics of the run: ``gpu_energy_joules`` and ``gpu_energy_kwh`` (the GPUs together),
``gpu_average_power_watts`` (over the block's duration), ``gpu<N>_energy_joules`` per GPU (N:
NVML's index); the tag ``mlops.gpu_energy`` says which GPUs were measured (index and UUID) and
why any was not.

What it measures: NVML's counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the
driver loaded, Volta and newer) is the whole GPU's. A GPU shared with other work (another process,
MIG instances) counts that work too, so MIG instances are not measured. The GPUs are those of
``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUIDs), else every GPU NVML sees (in a Kubernetes
pod: the GPUs allocated to it). A counter that went down during the run (the driver reloaded) is
not measured.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

TAG = "mlops.gpu_energy"
J_PER_KWH = 3.6e6


@dataclass
class _Gpu:
    index: int
    uuid: str
    handle: Any
    start_mj: int | None = None


@dataclass
class GpuEnergy:
    """A context manager: counters read on entry, the difference logged into the active MLflow
    run on exit. ``nvml`` and ``mlflow`` are the modules to use (default: import them);
    ``visible`` overrides ``CUDA_VISIBLE_DEVICES``; ``clock`` is the monotonic clock."""

    nvml: Any = None
    mlflow: Any = None
    visible: str | None = None
    clock: Any = time.monotonic
    gpus: list[_Gpu] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    tag: str = ""
    _started: float = 0.0
    _nvml_up: bool = False

    def __enter__(self) -> GpuEnergy:
        self._started = self.clock()
        nv = self.nvml
        if nv is None:
            try:
                import pynvml as nv
            except ImportError:
                self.notes.append("not measured: pynvml (nvidia-ml-py) is not installed")
                return self
            self.nvml = nv
        try:
            nv.nvmlInit()
        except Exception as exc:
            self.notes.append(f"not measured: NVML did not start ({exc})")
            return self
        self._nvml_up = True
        for gpu in self._visible_gpus():
            try:
                gpu.start_mj = int(nv.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
            except Exception as exc:
                self.notes.append(f"gpu{gpu.index} not measured: no energy counter ({exc})")
                continue
            self.gpus.append(gpu)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.measure()
        self.log()

    def _visible_gpus(self) -> list[_Gpu]:
        nv = self.nvml
        wanted = self.visible if self.visible is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
        found: list[_Gpu] = []
        if wanted is None:
            entries: list[str] = [str(i) for i in range(int(nv.nvmlDeviceGetCount()))]
        else:
            entries = [e.strip() for e in wanted.split(",") if e.strip()]
        for entry in entries:
            if entry.startswith("MIG-"):
                self.notes.append(f"{entry} not measured: a MIG instance shares its GPU's energy counter")
                continue
            try:
                handle = (nv.nvmlDeviceGetHandleByUUID(entry) if entry.startswith("GPU-")
                          else nv.nvmlDeviceGetHandleByIndex(int(entry)))
                index, uuid = int(nv.nvmlDeviceGetIndex(handle)), str(nv.nvmlDeviceGetUUID(handle))
            except Exception as exc:
                self.notes.append(f"{entry} not measured: NVML does not find it ({exc})")
                continue
            found.append(_Gpu(index=index, uuid=uuid, handle=handle))
        return found

    def measure(self) -> dict[str, float]:
        """The metrics: each GPU's joules since entry, their sum in joules and kWh, and the
        average power over the elapsed time (none when no GPU was measured)."""
        seconds = max(self.clock() - self._started, 0.0)
        total, measured = 0.0, []
        for gpu in self.gpus:
            try:
                end_mj = int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
            except Exception as exc:
                self.notes.append(f"gpu{gpu.index} not measured: the counter could not be read at the end ({exc})")
                continue
            if gpu.start_mj is None or end_mj < gpu.start_mj:
                self.notes.append(f"gpu{gpu.index} not measured: its counter went down (the driver reloaded)")
                continue
            joules = (end_mj - gpu.start_mj) / 1000.0
            self.metrics[f"gpu{gpu.index}_energy_joules"] = joules
            total += joules
            measured.append(f"gpu{gpu.index} {gpu.uuid}")
        if measured:
            self.metrics["gpu_energy_joules"] = total
            self.metrics["gpu_energy_kwh"] = total / J_PER_KWH
            if seconds > 0:
                self.metrics["gpu_average_power_watts"] = total / seconds
        if self._nvml_up:  # NVML counts its inits: one shutdown for ours
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()
            self._nvml_up = False
        self.tag = "; ".join([("measured: " + ", ".join(measured)) if measured else "no GPU measured",
                              *self.notes])
        return self.metrics

    def log(self) -> None:
        """Log the metrics and the tag into the active MLflow run (a run must be active)."""
        mlflow = self.mlflow
        if mlflow is None:
            import mlflow
        if self.metrics:
            mlflow.log_metrics(self.metrics)
        mlflow.set_tag(TAG, self.tag)
