"""The GPU energy of an MLflow run (mlops_provision.gpu.run_energy) on this GPU-less machine: NVML
is a fake whose energy counters the test moves, MLflow a recorder of what would be logged."""

from __future__ import annotations

import pynvml
import pytest

from mlops_provision.gpu.run_energy import TAG, GpuEnergy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeNvml:
    """Two or more GPUs with energy counters in millijoules; ``counters[i]`` is a list read one
    value per call (the last one repeats), an exception where the GPU has no counter."""

    def __init__(self, counters: dict[int, list | Exception], init_error: Exception | None = None):
        self.counters = {i: (c if isinstance(c, Exception) else list(c)) for i, c in counters.items()}
        self.init_error = init_error
        self.inits = self.shutdowns = 0

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.counters)

    def nvmlDeviceGetHandleByIndex(self, index):
        if index not in self.counters:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for index in self.counters:
            if uuid == f"GPU-{index:04d}":
                return index
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetIndex(self, handle):
        return handle

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-{handle:04d}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        counter = self.counters[handle]
        if isinstance(counter, Exception):
            raise counter
        return counter.pop(0) if len(counter) > 1 else counter[0]


class Recorder:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics):
        self.metrics.update(metrics)

    def set_tag(self, key, value):
        self.tags[key] = value


def run(nvml: FakeNvml, seconds: float, visible: str | None = None, fail: bool = False) -> Recorder:
    """The training block: ``seconds`` long, raising when ``fail``."""
    clock, mlflow = Clock(), Recorder()
    try:
        with GpuEnergy(nvml=nvml, mlflow=mlflow, visible=visible, clock=clock):
            clock.now += seconds
            if fail:
                raise RuntimeError("training failed")
    except RuntimeError:
        pass
    return mlflow


def test_energy_of_every_gpu_and_the_average_power():
    # gpu0: 300 W for 60 s = 18 kJ; gpu1: 100 W = 6 kJ (counters in mJ)
    nvml = FakeNvml({0: [5_000_000, 5_000_000 + 18_000_000], 1: [7_000, 7_000 + 6_000_000]})
    mlflow = run(nvml, 60.0)
    assert mlflow.metrics == pytest.approx({"gpu0_energy_joules": 18_000.0, "gpu1_energy_joules": 6_000.0,
                                            "gpu_energy_joules": 24_000.0, "gpu_energy_kwh": 24_000 / 3.6e6,
                                            "gpu_average_power_watts": 400.0})
    assert mlflow.tags[TAG] == "measured: gpu0 GPU-0000, gpu1 GPU-0001"
    assert nvml.inits == nvml.shutdowns == 1


def test_logged_when_the_training_fails():
    mlflow = run(FakeNvml({0: [0, 1_000_000]}), 10.0, fail=True)
    assert mlflow.metrics["gpu_energy_joules"] == pytest.approx(1_000.0)


@pytest.mark.parametrize("visible", ["1", "GPU-0001", " 1 "])
def test_only_the_visible_gpus(visible):
    mlflow = run(FakeNvml({0: [0, 9_000_000], 1: [0, 2_000_000]}), 4.0, visible=visible)
    assert mlflow.metrics == pytest.approx({"gpu1_energy_joules": 2_000.0, "gpu_energy_joules": 2_000.0,
                                            "gpu_energy_kwh": 2_000 / 3.6e6, "gpu_average_power_watts": 500.0})


def test_a_counter_reset_is_not_measured_the_others_are():
    mlflow = run(FakeNvml({0: [8_000_000, 1_000], 1: [0, 3_000_000]}), 3.0)
    assert "gpu0_energy_joules" not in mlflow.metrics and mlflow.metrics["gpu_energy_joules"] == pytest.approx(3_000.0)
    assert "gpu0 not measured: its counter went down (the driver reloaded)" in mlflow.tags[TAG]


def test_no_counter_mig_and_unknown_gpus_are_named_not_zero():
    nvml = FakeNvml({0: pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED), 1: [0, 1_000]})
    mlflow = run(nvml, 1.0, visible="0,MIG-abc,7")
    assert "gpu0_energy_joules" not in mlflow.metrics and "gpu7_energy_joules" not in mlflow.metrics
    tag = mlflow.tags[TAG]
    assert tag.startswith("no GPU measured") and mlflow.metrics == {}
    for note in ("gpu0 not measured: no energy counter", "MIG-abc not measured: a MIG instance",
                 "7 not measured: NVML does not find it"):
        assert note in tag, tag


def test_without_nvml_the_run_says_why_and_logs_no_figure():
    nvml = FakeNvml({}, init_error=pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    mlflow = run(nvml, 5.0)
    assert mlflow.metrics == {} and nvml.shutdowns == 0
    assert mlflow.tags[TAG].startswith("no GPU measured; not measured: NVML did not start")
