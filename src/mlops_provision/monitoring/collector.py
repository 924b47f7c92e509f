"""The node's metrics collector: GPU metrics through NVML and CPU-side energy through RAPL, for
node-exporter's textfile directory.

Run as root by ``mlops-collector.service`` on every node (roles/node_exporter)::

    python3 -m mlops_provision.monitoring.collector --textfile-dir /var/lib/prometheus/node-exporter \\
        --interval 15 [--state-dir /var/lib/mlops-collector] [--once]

Every interval it writes ``mlops_gpu.prom`` (:func:`mlops_provision.gpu.metrics.gpu_text`) and
``mlops_energy.prom`` (:func:`rapl_text`) into the textfile directory, each atomically (a hidden
temporary file in the same directory, mode 0644, renamed over the old one: node-exporter never
reads half a file, and reads no hidden or non-``.prom`` file). Between writes, on a node with
GPUs, it waits in NVML's ``nvmlEventSetWait`` for XID critical-error events and counts them
(``mlops_gpu_xid_errors_total``/``mlops_gpu_xid_events_total``; with ``--once`` nothing is
watched and these series are left out). It never dies on a read error: what cannot be read is
left out and flagged in the metrics, and its reason is logged once (again only when it changes),
so a GPU-less node or a node without RAPL says so once, not every interval. SIGTERM (and SIGINT)
end it cleanly within a second.

It runs with ``PYTHONPATH`` holding only ``mlops_provision/__init__.py``,
``mlops_provision/gpu/{__init__,facts,metrics}.py`` and
``mlops_provision/monitoring/{__init__,collector}.py``: standard library and pynvml only, nothing
else of the package.

RAPL (``mlops_energy.prom``)
----------------------------
Every zone and subzone under ``/sys/class/powercap/intel-rapl:*`` (AMD's RAPL uses the same
names; ``intel-rapl-mmio:*`` duplicates the package zone and is left out) becomes
``mlops_rapl_zone_energy_joules_total{zone=<name>,id=<intel-rapl:0:1>,parent=<intel-rapl:0 or "">}``.
``energy_uj`` wraps around at ``max_energy_range_uj`` (a package every few minutes to hours):
per zone the last raw value and an accumulated total are kept (:class:`RaplState`), in memory
and, with ``--state-dir``, in ``rapl-state.json`` keyed by the boot id
(``/proc/sys/kernel/random/boot_id``), so that a restarted collector continues the count on the
same boot; on a new boot (or without saved state) a zone starts from its raw value. A decrease
of the raw value is one wrap-around (more than one between two reads, i.e. a collector down for
longer than a wrap period, cannot be seen and is undercounted).

``mlops_node_energy_joules_total{source="rapl"}`` is the node's CPU-side energy counted once
(:func:`node_energy_uj`). RAPL zones overlap: ``core`` (and ``uncore``) are parts of their
package, ``psys`` covers the whole platform (packages included). So:

* if a top-level ``psys`` zone exists, the node total is ``psys`` alone;
* else it is the sum of the top-level ``package-*`` zones plus every ``dram`` zone (DRAM is
  powered outside the package although the kernel lists it as a package's subzone).

The node total is left out of an interval where one of the zones it sums cannot be read (a
partial sum would look like a counter reset to Prometheus).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from typing import Any

from mlops_provision.gpu import metrics

log = logging.getLogger("mlops-collector")

GPU_FILE = "mlops_gpu.prom"
ENERGY_FILE = "mlops_energy.prom"
STATE_FILE = "rapl-state.json"
POWERCAP = "sys/class/powercap"
BOOT_ID = "proc/sys/kernel/random/boot_id"

#: name -> (type, help) of every metric of ``mlops_energy.prom`` but ``mlops_collector_*``.
RAPL_METRICS: dict[str, tuple[str, str]] = {
    "mlops_rapl_up": ("gauge", "1 when at least one RAPL zone's energy counter could be read, else 0."),
    "mlops_rapl_error_info": ("gauge", "Why no RAPL zone could be read (while mlops_rapl_up is 0)."),
    "mlops_rapl_zone_energy_joules_total": ("counter",
                                            "Energy of a RAPL zone, joules, corrected for the counter's "
                                            "wrap-around (zones overlap: do not sum them)."),
    "mlops_rapl_zone_unavailable": ("gauge", "1 for a RAPL zone whose energy counter could not be read now."),
    "mlops_node_energy_joules_total": ("counter",
                                       "The node's CPU-side energy, joules, each zone counted once (psys alone, "
                                       "else packages plus dram)."),
}


# ---------------------------------------------------------------------------------------------
# Files


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` by a rename: a hidden temporary file in the same directory,
    ``mode``, ``os.replace``. The temporary file is removed when anything fails; raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read(path: str) -> tuple[str | None, OSError | None]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip(), None
    except OSError as exc:
        return None, exc


def read_boot_id(root: str = "/") -> str | None:
    text, _ = _read(os.path.join(root, BOOT_ID))
    return text or None


# ---------------------------------------------------------------------------------------------
# RAPL


class RaplState:
    """Per RAPL zone (by id), the last raw ``energy_uj`` and the energy accumulated since it was
    first seen on this boot (µJ, wrap-arounds added back)."""

    def __init__(self, boot_id: str | None = None, zones: dict[str, dict[str, int]] | None = None):
        self.boot_id = boot_id
        self.zones: dict[str, dict[str, int]] = zones or {}

    @classmethod
    def load(cls, path: str | None, boot_id: str | None) -> RaplState:
        """The state saved at ``path`` when it is of boot ``boot_id``, else an empty one for it."""
        if not path or not boot_id:
            return cls(boot_id)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return cls(boot_id)
        if not isinstance(data, dict) or data.get("boot_id") != boot_id or not isinstance(data.get("zones"), dict):
            return cls(boot_id)
        zones = {}
        for zone_id, rec in data["zones"].items():
            if (isinstance(rec, dict) and isinstance(rec.get("last_raw_uj"), int)
                    and isinstance(rec.get("total_uj"), int)):
                zones[zone_id] = {"last_raw_uj": rec["last_raw_uj"], "total_uj": rec["total_uj"]}
        return cls(boot_id, zones)

    def save(self, path: str) -> None:
        """Write it to ``path`` (atomically); raises OSError."""
        write_atomic(path, json.dumps({"boot_id": self.boot_id, "zones": self.zones}, sort_keys=True) + "\n",
                     mode=0o600)

    def update(self, zone_id: str, raw: int, max_range: int | None) -> int:
        """Account a new raw reading of a zone; its total (µJ)."""
        rec = self.zones.get(zone_id)
        if rec is None:  # first seen on this boot: the counter's own value
            rec = self.zones[zone_id] = {"last_raw_uj": raw, "total_uj": raw}
            return raw
        last = rec["last_raw_uj"]
        if raw >= last:
            rec["total_uj"] += raw - last
        elif max_range and last <= max_range:  # wrapped around at max_energy_range_uj
            rec["total_uj"] += max_range - last + raw
        else:  # no range to wrap at: count from zero again
            rec["total_uj"] += raw
        rec["last_raw_uj"] = raw
        return rec["total_uj"]


def _zone_key(zone_id: str) -> tuple:
    return tuple(int(part) if part.isdigit() else -1 for part in zone_id.split(":")[1:])


def rapl_zones(root: str = "/") -> tuple[list[dict[str, Any]], str | None]:
    """The RAPL zones and subzones under ``<root>/sys/class/powercap``: per zone its ``id``,
    ``parent`` ("" for a top-level zone), ``name``, ``energy_uj`` and ``max_energy_range_uj``
    (None when unreadable, ``error`` then says why); and, when there is none, why."""
    base = os.path.join(root, POWERCAP)
    try:
        entries = os.listdir(base)
    except OSError:
        return [], "no powercap in sysfs (/sys/class/powercap)"
    ids = sorted((name for name in entries if name.startswith("intel-rapl:")), key=_zone_key)
    if not ids:
        return [], "no RAPL zones in /sys/class/powercap (no RAPL driver loaded, or a VM)"
    zones = []
    for zone_id in ids:
        path = os.path.join(base, zone_id)
        name, _ = _read(os.path.join(path, "name"))
        energy, exc = _read(os.path.join(path, "energy_uj"))
        max_range, _ = _read(os.path.join(path, "max_energy_range_uj"))
        zone: dict[str, Any] = {
            "id": zone_id, "parent": zone_id.rsplit(":", 1)[0] if zone_id.count(":") > 1 else "",
            "name": name or zone_id, "energy_uj": None, "error": None,
            "max_energy_range_uj": int(max_range) if max_range and max_range.isdigit() else None}
        if energy is not None and energy.isdigit():
            zone["energy_uj"] = int(energy)
        elif exc is not None:
            hint = " (root only)" if isinstance(exc, PermissionError) else ""
            zone["error"] = f"energy_uj unreadable: {exc.strerror}{hint}"
        else:
            zone["error"] = f"energy_uj unreadable: not a number: {energy!r}"
        zones.append(zone)
    return zones, None


def node_zones(zones: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The zones whose sum is the node's CPU-side energy: a top-level ``psys`` alone, else the
    top-level ``package-*`` zones and every ``dram`` zone (see the module's docstring)."""
    psys = [z for z in zones if not z["parent"] and z["name"] == "psys"]
    if psys:
        return psys
    return [z for z in zones if (not z["parent"] and z["name"].startswith("package")) or z["name"] == "dram"]


def node_energy_uj(zones: list[dict[str, Any]], totals: dict[str, int]) -> int | None:
    """The node's CPU-side energy (µJ) from the zones' ``totals`` (id -> µJ); None when there is
    no zone to sum or one of them has no total."""
    parts = node_zones(zones)
    if not parts or any(z["id"] not in totals for z in parts):
        return None
    return sum(totals[z["id"]] for z in parts)


def read_rapl(state: RaplState | None = None, root: str = "/") -> tuple[str, str | None, dict[str, str]]:
    """:func:`rapl_text` with what the collector logs: the text, why RAPL is down (None when up)
    and the zones that could not be read (id -> why)."""
    started = time.perf_counter()
    state = state if state is not None else RaplState(read_boot_id(root))
    exp = metrics.Exposition(RAPL_METRICS, metrics.COLLECTOR_METRICS)
    zones, reason = rapl_zones(root)
    totals: dict[str, int] = {}
    unreadable: dict[str, str] = {}
    for zone in zones:
        if zone["energy_uj"] is None:
            unreadable[zone["id"]] = zone["error"]
            continue
        totals[zone["id"]] = state.update(zone["id"], zone["energy_uj"], zone["max_energy_range_uj"])
    if zones and not totals:
        reason = next(iter(unreadable.values()))
    exp.add("mlops_rapl_up", bool(totals))
    if reason is not None:
        exp.add("mlops_rapl_error_info", 1, {"reason": reason})
    for zone in zones:
        labels = {"zone": zone["name"], "id": zone["id"], "parent": zone["parent"]}
        if zone["id"] in totals:
            exp.add("mlops_rapl_zone_energy_joules_total", totals[zone["id"]] / 1e6, labels)
        elif totals:  # some zones read, not this one
            exp.add("mlops_rapl_zone_unavailable", 1, labels)
    node = node_energy_uj(zones, totals)
    if node is not None:
        exp.add("mlops_node_energy_joules_total", node / 1e6, {"source": "rapl"})
    metrics.add_collector_metrics(exp, "rapl", started)
    return exp.text(), reason, unreadable if totals else {}


def rapl_text(state: RaplState | None = None, root: str = "/") -> str:
    """The text of ``mlops_energy.prom`` now. ``state`` carries the zones' totals from one call
    to the next (it is updated); without it, each zone's total is its raw counter. Never raises
    on what it reads."""
    return read_rapl(state, root)[0]


# ---------------------------------------------------------------------------------------------
# The service


class Collector:
    """One node's collector: :meth:`collect_once` writes both files, :meth:`run` loops."""

    def __init__(self, textfile_dir: str, state_dir: str | None = None, interval: float = 15.0,
                 root: str = "/", pynvml_module=None, watch_xid: bool = True):
        self.textfile_dir = textfile_dir
        self.state_dir = state_dir
        self.interval = interval
        self.root = root
        self.pynvml_module = pynvml_module
        self.watch_xid = watch_xid
        self.stopping = False
        self.watcher: metrics.XidWatcher | None = None
        self._said: dict[str, str | None] = {}
        self.state_path = os.path.join(state_dir, STATE_FILE) if state_dir else None
        self.rapl_state = RaplState.load(self.state_path, read_boot_id(root))

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def _say(self, key: str, message: str | None, level: int = logging.WARNING, cleared: str | None = None) -> None:
        """Log ``message`` under ``key`` only when it differs from the last one (None: all well,
        said as ``cleared`` when something was wrong before)."""
        before = self._said.get(key)
        if message == before:
            return
        self._said[key] = message
        if message is not None:
            log.log(level, "%s", message)
        elif before is not None and cleared:
            log.info("%s", cleared)

    def _write(self, name: str, text: str) -> None:
        path = os.path.join(self.textfile_dir, name)
        try:
            write_atomic(path, text)
        except OSError as exc:
            self._say(f"write:{name}", f"cannot write {path}: {exc.strerror or exc}", logging.ERROR)
        else:
            self._say(f"write:{name}", None, cleared=f"writing {path} again")

    def collect_once(self) -> None:
        """Read and write both files; never raises on a read or a write."""
        try:
            self._collect_gpu()
        except Exception as exc:  # a bug: the energy file still comes, the loop goes on
            self._say("gpu:bug", f"GPU collection failed: {type(exc).__name__}: {exc}", logging.ERROR)
        try:
            self._collect_rapl()
        except Exception as exc:
            self._say("rapl:bug", f"RAPL collection failed: {type(exc).__name__}: {exc}", logging.ERROR)

    def _collect_gpu(self) -> None:
        reading = metrics.read_gpus(self.pynvml_module, self.root, self.watcher)
        self._write(GPU_FILE, reading.text)
        self._say("pci", None if reading.pci_devices else
                  "no NVIDIA GPU on the PCI bus: mlops_gpu_pci_devices 0", logging.INFO,
                  cleared=f"{reading.pci_devices} NVIDIA GPU(s) on the PCI bus")
        self._say("nvml", f"NVML not available: {reading.reason}" if reading.reason else None,
                  logging.INFO if not reading.pci_devices else logging.WARNING,
                  cleared=f"NVML up: {reading.gpu_count} GPU(s)")
        fields = "; ".join(f"{gpu}: " + ", ".join(f"{name} ({why})" for name, why in flags.items())
                           for gpu, flags in reading.unavailable.items())
        self._say("fields", f"GPU fields not readable (left out): {fields}" if fields else None,
                  cleared="every GPU field readable again")
        if self.watcher is not None:
            for (uuid, code), count in sorted(self.watcher.take_new().items()):
                log.warning("XID %s on GPU %s: %d event(s)", code, uuid or "(unknown)", count)
        self._watch(reading)

    def _watch(self, reading: metrics.GpuReading) -> None:
        """Keep the XID event set open for the GPUs read now (and closed without any)."""
        if not self.watch_xid:
            return
        if not (reading.nvml_up and reading.gpu_count):
            if self.watcher is not None:
                self.watcher.close()
            return
        if self.watcher is None:
            nv, _ = metrics.load_nvml(self.pynvml_module)
            if nv is None:
                return
            self.watcher = metrics.XidWatcher(nv)
        if not self.watcher.matches(reading.uuids):
            self.watcher.open()
        self._say("xid", f"XID events not watched: {self.watcher.reason}" if self.watcher.reason else None,
                  cleared="watching XID events")
        unwatched = ", ".join(f"{uuid} ({why})" for uuid, why in self.watcher.unavailable.items())
        self._say("xid-gpus", f"XID events not watched on: {unwatched}" if unwatched else None)

    def _collect_rapl(self) -> None:
        text, reason, unreadable = read_rapl(self.rapl_state, self.root)
        self._write(ENERGY_FILE, text)
        self._say("rapl", f"RAPL not available: {reason}" if reason else None, logging.INFO,
                  cleared="RAPL zones readable")
        zones = ", ".join(f"{zone_id} ({why})" for zone_id, why in unreadable.items())
        self._say("rapl-zones", f"RAPL zones not readable: {zones}" if zones else None)
        if self.state_path:
            try:
                self.rapl_state.save(self.state_path)
            except OSError as exc:
                self._say("state", f"cannot save the RAPL state to {self.state_path}: {exc.strerror or exc}",
                          logging.ERROR)
            else:
                self._say("state", None)

    def wait_until(self, deadline: float) -> None:
        """Until ``deadline`` (time.monotonic) or a stop: in NVML's event wait when XID events are
        watched, else asleep; at most a second at a time, so that SIGTERM ends it promptly."""
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.watcher is not None and self.watcher.watching:
                self.watcher.wait(min(left, 1.0))
            else:
                time.sleep(min(left, 1.0))

    def run(self, once: bool = False) -> int:
        for directory in (self.textfile_dir, self.state_dir):
            try:
                if directory:
                    os.makedirs(directory, mode=0o755, exist_ok=True)
            except OSError as exc:
                log.error("cannot create %s: %s", directory, exc.strerror or exc)
        try:
            while not self.stopping:
                deadline = time.monotonic() + self.interval
                self.collect_once()
                if once:
                    break
                self.wait_until(deadline)
        finally:
            if self.watcher is not None:
                self.watcher.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m mlops_provision.monitoring.collector",
        description="Write the node's GPU (NVML) and energy (RAPL) metrics into node-exporter's textfile directory.")
    parser.add_argument("--textfile-dir", required=True, help="node-exporter's textfile directory")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between writes (default 15)")
    parser.add_argument("--state-dir", help="where the RAPL totals are kept across restarts on one boot")
    parser.add_argument("--once", action="store_true", help="write both files once and exit (no XID watch)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)  # the system root sysfs is read under (tests)
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    collector = Collector(args.textfile_dir, args.state_dir, args.interval, args.root, watch_xid=not args.once)
    signal.signal(signal.SIGTERM, collector.stop)
    signal.signal(signal.SIGINT, collector.stop)
    log.info("writing %s and %s to %s every %gs", GPU_FILE, ENERGY_FILE, args.textfile_dir, args.interval)
    return collector.run(once=args.once)


if __name__ == "__main__":
    sys.exit(main())
