"""The energy report: what each node and each GPU used over a window, read from Prometheus.

Where the figures come from (the PromQL is :func:`queries` and :func:`series_queries`):

- a node's CPU side: the RAPL counters of the node collector (``mlops_node_energy_joules_total``,
  its domains summed per host: package and DRAM are disjoint), their ``increase()`` over the window;
- a whole node where it has a BMC: the DCMI power reading of ipmi_exporter
  (``ipmi_dcmi_power_consumption_watts``), averaged over the window (source ``bmc``); it includes
  the CPUs and the GPUs, so the sources overlap and are never added up;
- each GPU: NVML's energy counter (``mlops_gpu_energy_joules_total``) and the share of the window
  its utilisation was below 5 %;
- a node's idle share: the CPUs' idle seconds over all their seconds.

Every figure is a measurement or ``None``: a node without a series gets ``None`` and a note, never a
zero that pretends to be a measurement. ``coverage`` is the share of the window's minutes that had
data: a report over 7 days of a node monitored for 2 says so (29 %), its kWh is what was measured in
those 2 days and its average W is over them. Every series is grouped by a ``host`` label, which the
scrape configuration sets. Standard library only: it runs wherever the CLI does.
"""

from __future__ import annotations

import base64
import datetime
import html
import http.client
import itertools
import json
import math
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlops_provision.errors import BadInput, Failed

J_PER_KWH = 3.6e6
#: The step of the subqueries that measure coverage and GPU idle time.
_RESOLUTION_S = 60
#: Below this share of the window, a figure gets a note saying how much of the window it covers.
_FULL = 0.99
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SINCE = re.compile(r"\s*(\d+)\s*([mhdw])\s*")

Sample = tuple[dict[str, str], float]
RangeSeries = tuple[dict[str, str], list[tuple[float, float]]]


class BadDuration(BadInput, ValueError):
    """A window the report cannot read: bad input for the CLI (exit 2), a ValueError for callers."""


class PrometheusError(Failed):
    """Prometheus did not answer a query: it refused the credentials, was not reached, failed the
    TLS verification, or the query failed. The message never carries the password."""


def parse_since(text: str) -> int:
    """``30m``, ``12h``, ``7d``, ``2w`` -> seconds; anything else raises :class:`BadDuration`
    (a ValueError) saying what is expected."""
    m = _SINCE.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise BadDuration(f"expected a duration like 30m, 12h, 7d or 2w (a whole number of minutes, hours, "
                          f"days or weeks), got {text!r}")
    seconds = int(m[1]) * _UNITS[m[2]]
    if seconds == 0:
        raise BadDuration(f"expected a duration longer than zero, like 30m, 12h, 7d or 2w, got {text!r}")
    return seconds


def format_since(seconds: int) -> str:
    """Seconds as the largest whole unit: 604800 -> ``7d``, 5400 -> ``90m``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --------------------------------------------------------------------------- the client


def _ts(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _float(value: Any) -> float:
    return float(value)  # Prometheus sends numbers as strings, "NaN" and "+Inf" included


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error, not followed: urllib would send the Authorization header along,
    to whatever host the redirect names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Prometheus:
    """A client of Prometheus' HTTP API (``/api/v1/query``, ``/api/v1/query_range``): GET with the
    parameters URL-encoded, basic auth when a username is given (credentials in the URL are taken
    out of it), TLS verified against the system's CAs or ``cafile`` (used for https only).
    Prometheus' warnings are collected in :attr:`warnings`."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 cafile: str | None = None, timeout: float = 30) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if "@" in parts.netloc:
            userinfo, host = parts.netloc.rsplit("@", 1)
            user, _, secret = userinfo.partition(":")
            username = username if username is not None else urllib.parse.unquote(user)
            password = password if password is not None else urllib.parse.unquote(secret)
            parts = parts._replace(netloc=host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(f"a Prometheus URL is http(s)://HOST[:PORT][/PATH], got {urllib.parse.urlunsplit(parts)!r}")
        self.base_url = urllib.parse.urlunsplit(parts._replace(query="", fragment="")).rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self.warnings: list[str] = []
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if parts.scheme == "https":
            try:
                handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile)))
            except (OSError, ssl.SSLError) as exc:
                raise PrometheusError(f"cannot read the CA file {cafile}: "
                                      f"{getattr(exc, 'strerror', None) or exc}") from exc
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"Prometheus({self.base_url!r}, username={self.username!r})"

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query (at ``at``, Unix seconds, or Prometheus' now): ``[(labels, value)]``,
        a scalar as one sample without labels."""
        params = {"query": expr, "timeout": f"{self.timeout:g}"}
        if at is not None:
            params["time"] = _ts(at)
        data = self._get("query", params, expr)
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "vector":
            return [(r.get("metric") or {}, _float(r["value"][1])) for r in result]
        if kind == "scalar":
            return [({}, _float(result[1]))]
        raise self._error(f"an instant query answered a {kind or 'missing'} result, not a vector", expr)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[RangeSeries]:
        """A range query from ``start`` to ``end`` (Unix seconds) every ``step`` seconds:
        ``[(labels, [(time, value), ...])]``."""
        params = {"query": expr, "start": _ts(start), "end": _ts(end), "step": _ts(step),
                  "timeout": f"{self.timeout:g}"}
        data = self._get("query_range", params, expr)
        if data.get("resultType") != "matrix":
            raise self._error(f"a range query answered a {data.get('resultType') or 'missing'} result, "
                              f"not a matrix", expr)
        return [(r.get("metric") or {}, [(float(t), _float(v)) for t, v in r.get("values") or []])
                for r in data.get("result") or []]

    # -- internals

    def _get(self, endpoint: str, params: dict[str, str], expr: str) -> dict:
        url = f"{self.base_url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        headers = {"Accept": "application/json", "User-Agent": "mlops-provision-energy"}
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self._password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc, expr) from exc
        except urllib.error.URLError as exc:
            raise self._error(self._reason(exc.reason)) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._error(self._reason(exc)) from exc
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "status" not in doc:
            raise self._error("the answer is not Prometheus' API (is the URL Prometheus' base, without /api/v1?)")
        if doc["status"] != "success":
            raise self._error(f"the query failed: {doc.get('error') or doc.get('errorType') or 'no reason given'}",
                              expr)
        self.warnings.extend(str(w) for w in doc.get("warnings") or [])
        return doc.get("data") or {}

    def _reason(self, reason: object) -> str:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return (f"TLS verification failed: {reason.verify_message or reason} (is the CA that signed its "
                    f"certificate given as cafile?)")
        if isinstance(reason, ssl.SSLError):
            return f"TLS failure: {reason.reason or reason}"
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused (is Prometheus listening there?)"
        if isinstance(reason, TimeoutError):
            return f"no answer within {self.timeout:g}s"
        if isinstance(reason, socket.gaierror):
            return f"cannot resolve the host name ({reason.strerror})"
        if isinstance(reason, OSError):
            return reason.strerror or str(reason) or type(reason).__name__
        return str(reason) or type(reason).__name__

    def _http_error(self, exc: urllib.error.HTTPError, expr: str) -> PrometheusError:
        if exc.code == 401:
            who = f"user {self.username!r}" if self.username is not None else "none were given"
            return self._error(f"credentials refused (HTTP 401; {who})")
        if exc.code == 403:
            return self._error(f"access forbidden (HTTP 403) for user {self.username!r}")
        if 300 <= exc.code < 400:
            return self._error(f"redirected (HTTP {exc.code}) to {exc.headers.get('Location')}: give that URL, "
                               f"redirects are not followed")
        if exc.code == 404:
            return self._error("HTTP 404 Not Found (is the URL Prometheus' base, without /api/v1?)")
        try:
            doc = json.loads(exc.read())
        except (OSError, ValueError, http.client.HTTPException):
            doc = None
        if isinstance(doc, dict) and doc.get("error"):
            return self._error(f"the query failed (HTTP {exc.code}): {doc['error']}", expr)
        return self._error(f"HTTP {exc.code} {exc.reason}")

    def _error(self, message: str, expr: str | None = None) -> PrometheusError:
        text = f"Prometheus at {self.base_url}: {message}"
        details = [f"query: {expr}"] if expr else []
        if self._password and len(self._password) >= 3:  # a server may echo what it was sent
            text = text.replace(self._password, "***")
            details = [d.replace(self._password, "***") for d in details]
        return PrometheusError(text, details=details)


# --------------------------------------------------------------------------- the report


def queries(since_s: int) -> dict[str, str]:
    """The report's instant queries over a window of ``since_s`` seconds, by what they measure.

    Coverage counts, per series, the window's minutes that had a sample (a subquery at a 1-minute
    step, each step looking back up to Prometheus' 5 minutes); the node's idle share divides the idle
    seconds by all CPU seconds, which stays right when node_exporter covered part of the window (a
    ``rate()`` over the whole window would be diluted by the minutes without data)."""
    r, sub = f"[{since_s}s]", f"[{since_s}s:{_RESOLUTION_S}s]"
    return {
        "rapl_joules": f"sum by (host) (increase(mlops_node_energy_joules_total{r}))",
        "rapl_samples": f"max by (host) (count_over_time(mlops_node_energy_joules_total{sub}))",
        "rapl_error": f"max by (host, reason) (max_over_time(mlops_rapl_error_info{r}))",
        "bmc_watts": f"avg by (host) (avg_over_time(ipmi_dcmi_power_consumption_watts{r}))",
        "bmc_samples": f"max by (host) (count_over_time(ipmi_dcmi_power_consumption_watts{sub}))",
        "cpu_idle_share": (f'sum by (host) (increase(node_cpu_seconds_total{{mode="idle"}}{r}))'
                           f" / sum by (host) (increase(node_cpu_seconds_total{r}))"),
        "gpu_joules": f"sum by (host, gpu, uuid, model) (increase(mlops_gpu_energy_joules_total{r}))",
        "gpu_samples": f"max by (host, gpu) (count_over_time(mlops_gpu_energy_joules_total{sub}))",
        "gpu_idle_share": f"avg by (host, gpu) (avg_over_time((mlops_gpu_utilization_ratio < bool 0.05){sub}))",
    }


def series_queries(range_s: int) -> dict[str, str]:
    """The chart's queries, joules per bucket of ``range_s`` seconds ending at the evaluation time.

    From the raw counters, not the ``mlops:node_energy_joules:increase1h`` recording rule: a rule
    has data only from when it was loaded (the raw counters go back as far as Prometheus keeps them),
    and the buckets then need no summing of hours. The BMC's power is integrated over 1-minute steps,
    so a bucket with part of its minutes missing is not counted as full."""
    return {
        "rapl": f"sum by (host) (increase(mlops_node_energy_joules_total[{range_s}s]))",
        "bmc": (f"sum by (host) (sum_over_time(ipmi_dcmi_power_consumption_watts[{range_s}s:{_RESOLUTION_S}s]))"
                f" * {_RESOLUTION_S}"),
        "gpus": f"sum by (host, gpu) (increase(mlops_gpu_energy_joules_total[{range_s}s]))",
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _by(samples: list[Sample], *labels: str) -> dict[tuple[str, ...], float | None]:
    return {tuple(metric.get(label, "") for label in labels): _finite(value) for metric, value in samples}


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _when(ts: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime(fmt)


def _partial(what: str, coverage: float | None, since_s: int) -> str | None:
    if coverage is None or coverage >= _FULL:
        return None
    return (f"{what}: data covers {coverage:.0%} of the window (about {_span(coverage * since_s)} of "
            f"{_span(since_s)}): its kWh is what was measured then, its average W is over that time")


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def _buckets(start: int, end: int, step: int) -> list[tuple[int, int]]:
    """The window cut at UTC day (or hour) boundaries: whole buckets, a partial first and last."""
    edges = [start, *range((start // step + 1) * step, end, step), end]
    return list(itertools.pairwise(edges))


def _series(prom: Prometheus, start: int, end: int, step: int) -> dict:
    """Energy per bucket: whole buckets in one range query per source, partial ones by instant
    queries over their own length, so the buckets add up to the window."""
    buckets = _buckets(start, end, step)
    labels = {"rapl": ("host",), "bmc": ("host",), "gpus": ("host", "gpu")}
    values: dict[str, dict[tuple[str, ...], list[float | None]]] = {name: {} for name in labels}
    at_end = {b1: i for i, (_, b1) in enumerate(buckets)}

    def put(name: str, metric: dict[str, str], i: int, joules: float | None) -> None:
        key = tuple(metric.get(label, "") for label in labels[name])
        row = values[name].setdefault(key, [None] * len(buckets))
        row[i] = None if joules is None else joules / J_PER_KWH

    whole = [b for b in buckets if b[1] - b[0] == step]
    if whole:
        for name, expr in series_queries(step).items():
            for metric, points in prom.query_range(expr, whole[0][1], whole[-1][1], step):
                for t, v in points:
                    if (i := at_end.get(round(t))) is not None:
                        put(name, metric, i, _finite(v))
    for i, (b0, b1) in enumerate(buckets):
        if b1 - b0 != step:
            for name, expr in series_queries(b1 - b0).items():
                for metric, v in prom.query(expr, at=b1):
                    put(name, metric, i, _finite(v))
    return {
        "step_s": step,
        "timezone": "UTC",
        "buckets": [[b0, b1] for b0, b1 in buckets],
        "rapl": [{"host": k[0], "kwh": v} for k, v in sorted(values["rapl"].items())],
        "bmc": [{"host": k[0], "kwh": v} for k, v in sorted(values["bmc"].items())],
        "gpus": [{"host": k[0], "gpu": k[1], "kwh": v} for k, v in sorted(values["gpus"].items())],
    }


def energy_report(prom: Prometheus, since_s: int, now: float | None = None, *,
                  hosts: Iterable[str] = ()) -> dict:
    """Energy per node and per GPU over ``[now - since_s, now]`` (``now``: Unix seconds, default
    the clock), as a plain dict (JSON-ready; times are Unix seconds)::

        {"since_s", "start", "end", "generated",
         "nodes": [{"host", "rapl_kwh", "rapl_avg_w", "bmc_kwh", "bmc_avg_w", "idle_share",
                    "coverage", "bmc_coverage"}],
         "gpus": [{"host", "gpu", "uuid", "model", "kwh", "avg_w", "idle_share", "coverage"}],
         "series": {"step_s", "timezone", "buckets": [[start, end]], "rapl": [{"host", "kwh": []}],
                    "bmc": [...], "gpus": [{"host", "gpu", "kwh": []}]},
         "totals": {"rapl_kwh", "rapl_avg_w", "bmc_kwh", "bmc_avg_w", "gpu_kwh", "gpu_avg_w",
                    "nodes", "gpus"},
         "notes": [str]}

    ``None`` where there is no data, with a note. ``coverage`` (RAPL's, the BMC's, the GPU's) is
    the share of the window with data; kWh is what was measured, average W is over the measured
    time. ``hosts`` (the inventory's) get a row even when Prometheus has nothing about them. The
    series' buckets are UTC days (UTC hours when the window is 2 days or less)."""
    if since_s <= 0:
        raise BadDuration(f"the window must be longer than zero seconds, got {since_s}")
    generated = int(time.time())
    end = int(now if now is not None else generated)
    start = end - since_s
    got = {name: prom.query(expr, at=end) for name, expr in queries(since_s).items()}
    notes: list[str] = []
    expected = since_s / _RESOLUTION_S

    def cover(count: float | None) -> float | None:
        return None if count is None else max(0.0, min(1.0, count / expected))

    node = {name: _by(got[name], "host") for name in ("rapl_joules", "rapl_samples", "bmc_watts", "bmc_samples",
                                                        "cpu_idle_share")}
    rapl_errors: dict[str, list[str]] = {}
    for metric, _ in got["rapl_error"]:
        rapl_errors.setdefault(metric.get("host", ""), []).append(metric.get("reason", ""))
    gpu_joules = _by(got["gpu_joules"], "host", "gpu", "uuid", "model")
    gpu_samples = _by(got["gpu_samples"], "host", "gpu")
    gpu_idle = _by(got["gpu_idle_share"], "host", "gpu")
    unlabelled = [name for name, samples in got.items() if any(not m.get("host") for m, _ in samples)]
    if unlabelled:
        notes.append(f"series without a host label were left out ({', '.join(unlabelled)}): the scrape "
                     f"configuration must set `host` on every target")

    names = {k[0] for v in node.values() for k in v} | {k[0] for k in gpu_joules} | {k[0] for k in gpu_idle}
    names |= set(hosts)
    names.discard("")
    nodes, no_rapl, no_bmc = [], [], []
    for host in sorted(names):
        joules, watts = node["rapl_joules"].get((host,)), node["bmc_watts"].get((host,))
        coverage, bmc_coverage = cover(node["rapl_samples"].get((host,))), cover(node["bmc_samples"].get((host,)))
        row: dict[str, Any] = {"host": host, "rapl_kwh": None, "rapl_avg_w": None, "bmc_kwh": None,
                               "bmc_avg_w": None, "idle_share": None, "coverage": coverage,
                               "bmc_coverage": bmc_coverage}
        if joules is None:
            no_rapl.append(host)
        else:
            measured = since_s * coverage if coverage else since_s
            row["rapl_kwh"], row["rapl_avg_w"] = joules / J_PER_KWH, joules / measured
            if note := _partial(f"{host} RAPL", coverage, since_s):
                notes.append(note)
        if watts is None:
            no_bmc.append(host)
        else:
            measured = since_s * bmc_coverage if bmc_coverage else since_s
            row["bmc_avg_w"], row["bmc_kwh"] = watts, watts * measured / J_PER_KWH
            if note := _partial(f"{host} BMC", bmc_coverage, since_s):
                notes.append(note)
        if (idle := node["cpu_idle_share"].get((host,))) is not None:
            row["idle_share"] = max(0.0, min(1.0, idle))
        nodes.append(row)
    for host in no_rapl:
        why = "; ".join(r for r in rapl_errors.get(host, []) if r)
        notes.append(f"{host}: no RAPL energy (mlops_node_energy_joules_total) in the window: its CPU-side "
                     f"energy is unknown (shown as -), not zero" + (f" (the collector: {why})" if why else ""))
    if no_bmc and len(no_bmc) == len(nodes):
        notes.append("no BMC power reading (ipmi_dcmi_power_consumption_watts) in the window: whole-node "
                     "power is not reported")
    elif no_bmc:
        notes.append(f"no BMC power reading for {', '.join(no_bmc)} (whole-node power not reported)")

    gpus = []
    keys = set(gpu_joules) | {(h, g, None, None) for h, g in gpu_idle if not any(k[:2] == (h, g) for k in gpu_joules)}
    for host, gpu, uuid, model in sorted(keys, key=lambda k: (k[0], _natural(k[1]), k[2] or "")):
        if not host:
            continue
        joules, coverage = gpu_joules.get((host, gpu, uuid, model)), cover(gpu_samples.get((host, gpu)))
        row = {"host": host, "gpu": gpu, "uuid": uuid or None, "model": model or None, "kwh": None,
               "avg_w": None, "idle_share": gpu_idle.get((host, gpu)), "coverage": coverage}
        if joules is None:
            notes.append(f"{host} GPU {gpu}: no energy counter (mlops_gpu_energy_joules_total) in the window: "
                         f"its energy is unknown (shown as -), not zero")
        else:
            measured = since_s * coverage if coverage else since_s
            row["kwh"], row["avg_w"] = joules / J_PER_KWH, joules / measured
            if note := _partial(f"{host} GPU {gpu}", coverage, since_s):
                notes.append(note)
        gpus.append(row)

    step = 86400 if since_s > 2 * 86400 else 3600
    series = _series(prom, start, end, step)
    totals = {"rapl_kwh": _sum(n["rapl_kwh"] for n in nodes), "rapl_avg_w": _sum(n["rapl_avg_w"] for n in nodes),
              "bmc_kwh": _sum(n["bmc_kwh"] for n in nodes), "bmc_avg_w": _sum(n["bmc_avg_w"] for n in nodes),
              "gpu_kwh": _sum(g["kwh"] for g in gpus), "gpu_avg_w": _sum(g["avg_w"] for g in gpus),
              "nodes": len(nodes), "gpus": len(gpus)}
    if not nodes:
        notes.append("Prometheus has no energy, power or CPU series with a host label in the window")
    for warning in dict.fromkeys(getattr(prom, "warnings", [])):
        notes.append(f"Prometheus warned: {warning}")
    return {"since_s": since_s, "start": start, "end": end, "generated": generated, "nodes": nodes, "gpus": gpus,
            "series": series, "totals": totals, "notes": notes}


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text or ""))


# --------------------------------------------------------------------------- rendering

_HEADER = ("host", "source", "kWh", "avg W", "idle %", "coverage")
_OVERLAP = ("rapl is the CPU side (packages and DRAM, or the platform's psys zone), bmc the whole node as its BMC "
            "reads it (GPUs included), gpu NVML's counters: the sources overlap, do not add them up.")


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _pct(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value * 100, fmt)


def _gpu_name(g: dict) -> str:
    return f"gpu {g['gpu']}" + (f" {g['model']}" if g.get("model") else "")


def _rows(report: dict) -> list[tuple[str, list[str]]]:
    """The table's rows, (section, cells): one row per node and source, one per GPU, the totals."""
    rows: list[tuple[str, list[str]]] = []
    for n in report["nodes"]:
        idle = _pct(n["idle_share"])
        rows.append(("nodes", [n["host"], "rapl", _num(n["rapl_kwh"], ".3f"), _num(n["rapl_avg_w"], ".1f"), idle,
                               _pct(n["coverage"], ".0f") + ("%" if n["coverage"] is not None else "")]))
        if n["bmc_avg_w"] is not None:
            cov = n.get("bmc_coverage")
            rows.append(("nodes", [n["host"], "bmc", _num(n["bmc_kwh"], ".3f"), _num(n["bmc_avg_w"], ".1f"), idle,
                                   _pct(cov, ".0f") + ("%" if cov is not None else "")]))
    for g in report["gpus"]:
        rows.append(("gpus", [g["host"], _gpu_name(g), _num(g["kwh"], ".3f"), _num(g["avg_w"], ".1f"),
                              _pct(g["idle_share"]), _pct(g["coverage"], ".0f") + ("%" if g["coverage"] is not None
                                                                                   else "")]))
    t = report["totals"]
    for source, kwh, watts in (("rapl", t["rapl_kwh"], t["rapl_avg_w"]), ("bmc", t["bmc_kwh"], t["bmc_avg_w"]),
                               ("gpus", t["gpu_kwh"], t["gpu_avg_w"])):
        rows.append(("totals", ["total", source, _num(kwh, ".3f"), _num(watts, ".1f"), "-", "-"]))
    return rows


def _window(report: dict) -> str:
    return (f"{format_since(report['since_s'])} from {_when(report['start'])} to {_when(report['end'])} UTC")


def render_table(report: dict) -> str:
    """A fixed-width table: a row per node and source (``rapl``, ``bmc``), a row per GPU, the
    totals (summed over what has data), then the notes; ``-`` where there is no data."""
    rows = _rows(report)
    widths = [max(len(cells[i]) for cells in [list(_HEADER)] + [c for _, c in rows]) for i in range(len(_HEADER))]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                            strict=True))).rstrip()

    out = [f"Energy over {_window(report)}", "", line(_HEADER)]
    section = "nodes"
    for name, cells in rows:
        if name != section:
            out.append("")
            section = name
        out.append(line(cells))
    out += ["", _OVERLAP]
    out += [f"note: {n}" for n in report["notes"]]
    return "\n".join(out) + "\n"


_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
            "#bab0ac")


def _ticks(top: float) -> list[float]:
    if top <= 0:
        top = 1.0
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _svg_chart(labels: list[str], series: list[tuple[str, list[float | None]]], unit: str = "kWh") -> str:
    """A grouped bar chart as inline SVG: a group per bucket, a bar per series, a legend; each bar
    carries its value as a tooltip (an SVG <title>, no script). A bucket without data is a grey tick."""
    esc = html.escape
    n, k = len(labels), max(1, len(series))
    bar = max(3, min(18, 640 // max(1, n * k)))
    group = bar * k + 10
    longest = max((len(label) for label in labels), default=0)
    rotate = longest * 6.5 > group - 4  # about 6.5 px a character at 11 px
    top, plot_h = 14, 220
    left = max(64, round(longest * 5)) if rotate else 64  # a rotated label reaches 6.5 * cos 40° px a character left
    bottom = round(24 + longest * 6.5 * 0.65) if rotate else 34
    legend_y = top + plot_h + bottom
    width = max(420, left + n * group + 20)
    height = legend_y + 18 * len(series) + 8
    ticks = _ticks(max((v for _, vs in series for v in vs if v is not None), default=0.0))
    ymax = ticks[-1]
    y = lambda v: top + plot_h - v / ymax * plot_h  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">']
    for t in ticks:
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="12" y="{top + plot_h / 2:.0f}" transform="rotate(-90 12 {top + plot_h / 2:.0f})" '
               f'text-anchor="middle">{esc(unit)}</text>')
    for i, label in enumerate(labels):
        x0 = left + i * group + 5
        for j, (name, values) in enumerate(series):
            v, x = values[i], x0 + j * bar
            color = _PALETTE[j % len(_PALETTE)]
            if v is None:
                out.append(f'<rect x="{x}" y="{top + plot_h - 2}" width="{bar - 1}" height="2" fill="#bbb">'
                           f'<title>{esc(name)}, {esc(label)}: no data</title></rect>')
            else:
                out.append(f'<rect x="{x}" y="{y(v):.1f}" width="{bar - 1}" height="{top + plot_h - y(v):.1f}" '
                           f'fill="{color}"><title>{esc(name)}, {esc(label)}: {v:.3f} {esc(unit)}</title></rect>')
        cx, ly = x0 + (group - 10) / 2, top + plot_h + 14
        anchor = f'text-anchor="end" transform="rotate(-40 {cx:.1f} {ly})"' if rotate else 'text-anchor="middle"'
        out.append(f'<text x="{cx:.1f}" y="{ly}" {anchor}>{esc(label)}</text>')
    out.append(f'<line x1="{left}" x2="{width - 10}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#333"/>')
    for j, (name, _) in enumerate(series):
        ly = legend_y + 18 * j
        out.append(f'<rect x="{left}" y="{ly}" width="12" height="12" fill="{_PALETTE[j % len(_PALETTE)]}"/>'
                   f'<text x="{left + 18}" y="{ly + 10}">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _bucket_label(b0: int, b1: int, step: int) -> str:
    """``Thu 11-09`` for a whole day, ``11-08 from 03:00`` / ``11-15 to 03:00`` for the partial
    first and last; ``11-14 23:00`` for an hour, ``11-14 23:20-24:00`` for a partial one."""
    if step >= 86400:
        if b1 - b0 == step:
            return _when(b0, "%a %m-%d")
        return _when(b0, "%m-%d from %H:%M") if b0 % step else _when(b0, "%m-%d to ") + _when(b1, "%H:%M")
    if b1 - b0 == step:
        return _when(b0, "%m-%d %H:%M")
    return f"{_when(b0, '%m-%d %H:%M')}-{'24:00' if b1 % 86400 == 0 else _when(b1, '%H:%M')}"


def write_html(report: dict, path: Path | str) -> None:
    """One self-contained HTML file (no script, nothing fetched): the title with the window and the
    generation time, the table, the notes, and an SVG bar chart of the energy per day (per hour
    for a window of 2 days or less) per node (RAPL, then the BMC where present) and per GPU."""
    esc = html.escape
    generated = report.get("generated") or time.time()
    title = f"Energy report: {_window(report)}, generated {_when(generated)} UTC"
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{esc(title)}</title>",
           "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
           "th,td{padding:.2em .7em;border-bottom:1px solid #ddd}td.n{text-align:right;font-variant-numeric:"
           "tabular-nums}tr.s td{border-top:2px solid #999}</style>", "</head>", "<body>",
           f"<h1>{esc(title)}</h1>", "<table>", "<thead><tr>"
           + "".join(f"<th>{esc(h)}</th>" for h in _HEADER) + "</tr></thead>", "<tbody>"]
    section = "nodes"
    for name, cells in _rows(report):
        css = ' class="s"' if name != section else ""
        section = name
        tds = (f'<td class="n">{esc(c)}</td>' if i >= 2 else f"<td>{esc(c)}</td>" for i, c in enumerate(cells))
        out.append(f"<tr{css}>{''.join(tds)}</tr>")
    out += ["</tbody>", "</table>", f"<p>{esc(_OVERLAP)}</p>"]
    if report["notes"]:
        out.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in report["notes"]) + "</ul>")
    s = report["series"]
    labels = [_bucket_label(b0, b1, s["step_s"]) for b0, b1 in s["buckets"]]
    per = "day" if s["step_s"] >= 86400 else "hour"
    charts = [(f"CPU-side energy per {per} and node (RAPL)", [(r["host"], r["kwh"]) for r in s["rapl"]]),
              (f"Whole-node energy per {per} (BMC)", [(r["host"], r["kwh"]) for r in s["bmc"]]),
              (f"GPU energy per {per}", [(f"{r['host']} gpu {r['gpu']}", r["kwh"]) for r in s["gpus"]])]
    for heading, series in charts:
        if series:
            out += [f"<h2>{esc(heading)}, {esc(s['timezone'])}</h2>", _svg_chart(labels, series)]
    if not any(series for _, series in charts):
        out.append("<p>No energy series in the window: nothing to chart.</p>")
    out += ["</body>", "</html>"]
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")
