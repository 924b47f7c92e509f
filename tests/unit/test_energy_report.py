"""The energy report without a cluster: a fake Prometheus on 127.0.0.1 (a thread of http.server)
answers /api/v1/query and /api/v1/query_range with canned JSON chosen by substrings of the query and
asks for basic auth; the figures (kWh, average W, idle shares, coverage), the None-and-a-note of a
node without RAPL, the UTC buckets of the chart, the errors (401 without the password in them,
connection refused, API errors), TLS verified against a CA made for the test, the text table and
the self-contained HTML file."""

from __future__ import annotations

import base64
import http.server
import json
import re
import socket
import ssl
import threading
import urllib.parse

import pytest

from mlops_provision.monitoring import energy
from mlops_provision.monitoring.energy import Prometheus, PrometheusError
from tests.conftest import tls_ca_and_cert

#: A UTC midnight: the report's buckets line up with it.
NOW = 1_700_006_400
USER, PASSWORD = "reader", "s3cret-pa55word"


def _vec(*samples: tuple[dict, float]) -> list[dict]:
    return [{"metric": labels, "value": [NOW, repr(float(value))]} for labels, value in samples]


def _mat(*series: tuple[dict, list[tuple[float, float]]]) -> list[dict]:
    return [{"metric": labels, "values": [[t, repr(float(v))] for t, v in points]} for labels, points in series]


class _Handler(http.server.BaseHTTPRequestHandler):
    state: dict

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        self.state["requests"].append((url.path, params))
        if url.path.startswith("/old/"):
            return self._send(302, {}, {"Location": "http://elsewhere.invalid" + url.path[4:]})
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != want:
            return self._send(401, {"status": "error", "error": "unauthorized"},
                              {"WWW-Authenticate": 'Basic realm="prometheus"'})
        kind = {"/api/v1/query": "query", "/api/v1/query_range": "query_range"}.get(url.path)
        if kind is None:
            return self._send(404, {"status": "error", "error": "not found"})
        answer = next((a for substring, a in self.state[kind].items() if substring in params["query"]), [])
        if isinstance(answer, Exception):
            return self._send(400, {"status": "error", "errorType": "bad_data", "error": str(answer)})
        result_type = "vector" if kind == "query" else "matrix"
        self._send(200, {"status": "success", "data": {"resultType": result_type, "result": answer}})

    def _send(self, code: int, doc: dict, headers: dict | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                            **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(state: dict, context: ssl.SSLContext | None = None):
    handler = type("Handler", (_Handler,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    scheme = "https" if context is not None else "http"
    return server, f"{scheme}://127.0.0.1:{server.server_address[1]}"


def _state(query: dict | None = None, query_range: dict | None = None) -> dict:
    return {"query": query or {}, "query_range": query_range or {}, "requests": []}


@pytest.fixture
def fake():
    """A fake Prometheus over http: (state, url). Fill state["query"] / state["query_range"]
    (substring of the query -> result list, or an Exception for an API error)."""
    state = _state()
    server, url = _serve(state)
    yield state, url
    server.shutdown()
    server.server_close()


def _client(url: str, **kw) -> Prometheus:
    return Prometheus(url, username=USER, password=PASSWORD, timeout=5, **kw)


# A one-hour window: n1 has RAPL (3.6e6 J = 1 kWh, 1000 W), a BMC and two GPUs; n2 has only a BMC for
# half the hour and node_exporter, and a GPU with a utilisation but no energy counter.
N1, N2 = {"host": "n1"}, {"host": "n2"}
G0 = {"host": "n1", "gpu": "0", "uuid": "GPU-aaa", "model": "NVIDIA H100"}
G1 = {"host": "n1", "gpu": "1", "uuid": "GPU-bbb", "model": "NVIDIA H100"}
HOUR = {
    "increase(mlops_node_energy_joules_total": _vec((N1, 3.6e6)),
    "count_over_time(mlops_node_energy_joules_total": _vec((N1, 60)),
    "avg_over_time(ipmi_dcmi_power_consumption_watts": _vec((N1, 1500), (N2, 400)),
    "count_over_time(ipmi_dcmi_power_consumption_watts": _vec((N1, 60), (N2, 30)),
    "node_cpu_seconds_total": _vec((N1, 0.25), (N2, 0.9)),
    "mlops_rapl_error_info": _vec(({"host": "n2", "reason": "no /sys/class/powercap/intel-rapl:* zone"}, 1)),
    "increase(mlops_gpu_energy_joules_total": _vec((G0, 1.8e6), (G1, 0.72e6)),
    "count_over_time(mlops_gpu_energy_joules_total": _vec(({"host": "n1", "gpu": "0"}, 60),
                                                          ({"host": "n1", "gpu": "1"}, 60)),
    "mlops_gpu_utilization_ratio": _vec(({"host": "n1", "gpu": "0"}, 0.1), ({"host": "n1", "gpu": "1"}, 0.75),
                                        ({"host": "n2", "gpu": "0"}, 1.0)),
}
HOUR_RANGE = {
    "increase(mlops_node_energy_joules_total": _mat((N1, [(NOW, 3.6e6)])),
    "ipmi_dcmi_power_consumption_watts": _mat((N1, [(NOW, 5.4e6)]), (N2, [(NOW, 0.72e6)])),
    "increase(mlops_gpu_energy_joules_total": _mat(({"host": "n1", "gpu": "0"}, [(NOW, 1.8e6)])),
}


@pytest.fixture
def hour_report(fake):
    state, url = fake
    state["query"].update(HOUR)
    state["query_range"].update(HOUR_RANGE)
    return energy.energy_report(_client(url), 3600, now=NOW, hosts=["n1", "n3"]), state


# --------------------------------------------------------------------------- parse_since


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
                                               (" 7d ", 604800)])
def test_parse_since_reads_minutes_hours_days_weeks(text, seconds):
    assert energy.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7s", "1.5d", "-1d", "0d", "d7", "7 days", "7dd", None])
def test_parse_since_refuses_anything_else_saying_what_it_expects(text):
    with pytest.raises(ValueError, match="like 30m, 12h, 7d or 2w"):
        energy.parse_since(text)


# --------------------------------------------------------------------------- the report


def test_kwh_and_average_watts_from_the_counters(hour_report):
    report, _ = hour_report
    assert (report["since_s"], report["start"], report["end"]) == (3600, NOW - 3600, NOW)
    n1 = next(n for n in report["nodes"] if n["host"] == "n1")
    assert n1["rapl_kwh"] == pytest.approx(1.0) and n1["rapl_avg_w"] == pytest.approx(1000.0)
    assert n1["bmc_avg_w"] == pytest.approx(1500.0) and n1["bmc_kwh"] == pytest.approx(1.5)
    assert n1["idle_share"] == pytest.approx(0.25)
    assert n1["coverage"] == pytest.approx(1.0) and n1["bmc_coverage"] == pytest.approx(1.0)
    g0, g1 = report["gpus"][:2]
    assert (g0["host"], g0["gpu"], g0["uuid"], g0["model"]) == ("n1", "0", "GPU-aaa", "NVIDIA H100")
    assert g0["kwh"] == pytest.approx(0.5) and g0["avg_w"] == pytest.approx(500.0)
    assert g1["kwh"] == pytest.approx(0.2) and g1["avg_w"] == pytest.approx(200.0)
    t = report["totals"]
    assert t["rapl_kwh"] == pytest.approx(1.0) and t["gpu_kwh"] == pytest.approx(0.7)
    assert t["bmc_kwh"] == pytest.approx(1.5 + 0.2) and t["bmc_avg_w"] == pytest.approx(1900.0)
    assert (t["nodes"], t["gpus"]) == (3, 3)
    json.dumps(report)  # plain data


def test_gpu_idle_share_is_the_share_of_the_window_below_5_percent(hour_report):
    report, state = hour_report
    shares = {(g["host"], g["gpu"]): g["idle_share"] for g in report["gpus"]}
    assert shares == {("n1", "0"): pytest.approx(0.1), ("n1", "1"): pytest.approx(0.75), ("n2", "0"): 1.0}
    sent = [p["query"] for path, p in state["requests"] if "mlops_gpu_utilization_ratio" in p["query"]]
    assert sent == ["avg by (host, gpu) (avg_over_time((mlops_gpu_utilization_ratio < bool 0.05)[3600s:60s]))"]


def test_a_node_without_rapl_is_none_with_a_note_never_zero(hour_report):
    report, _ = hour_report
    n2 = next(n for n in report["nodes"] if n["host"] == "n2")
    assert n2["rapl_kwh"] is None and n2["rapl_avg_w"] is None and n2["coverage"] is None
    assert n2["idle_share"] == pytest.approx(0.9)
    assert any(n.startswith("n2: no RAPL energy") and "not zero" in n
               and n.endswith("(the collector: no /sys/class/powercap/intel-rapl:* zone)") for n in report["notes"])
    # the BMC saw n2 for half the hour: the kWh of that half, the average over it, and a note
    assert n2["bmc_coverage"] == pytest.approx(0.5)
    assert n2["bmc_avg_w"] == pytest.approx(400.0) and n2["bmc_kwh"] == pytest.approx(0.2)
    assert any(n.startswith("n2 BMC: data covers 50% of the window") for n in report["notes"])
    # an inventory host Prometheus knows nothing about: a row of None and notes
    n3 = next(n for n in report["nodes"] if n["host"] == "n3")
    assert all(n3[k] is None for k in n3 if k != "host")
    assert any(n.startswith("n3: no RAPL") for n in report["notes"])
    assert "no BMC power reading for n3" in "\n".join(report["notes"])
    # a GPU with a utilisation but no energy counter
    g = next(g for g in report["gpus"] if g["host"] == "n2")
    assert g["kwh"] is None and g["avg_w"] is None and any(n.startswith("n2 GPU 0: no energy") for n in report["notes"])


def test_every_query_is_evaluated_at_the_end_of_the_window(hour_report):
    _, state = hour_report
    instant = [p for path, p in state["requests"] if path == "/api/v1/query"]
    assert len(instant) == len(energy.queries(3600)) and all(p["time"] == str(NOW) for p in instant)
    assert {p["query"] for p in instant} == set(energy.queries(3600).values())
    ranges = [p for path, p in state["requests"] if path == "/api/v1/query_range"]
    assert [(p["start"], p["end"], p["step"]) for p in ranges] == [(str(NOW), str(NOW), "3600")] * 3


def test_the_series_is_energy_per_hour_for_a_short_window(hour_report):
    report, _ = hour_report
    s = report["series"]
    assert s["step_s"] == 3600 and s["buckets"] == [[NOW - 3600, NOW]]
    assert s["rapl"] == [{"host": "n1", "kwh": [pytest.approx(1.0)]}]
    assert s["bmc"] == [{"host": "n1", "kwh": [pytest.approx(1.5)]}, {"host": "n2", "kwh": [pytest.approx(0.2)]}]
    assert s["gpus"] == [{"host": "n1", "gpu": "0", "kwh": [pytest.approx(0.5)]}]


def test_seven_days_of_a_node_monitored_for_two_says_so(fake):
    state, url = fake
    state["query"].update({"increase(mlops_node_energy_joules_total": _vec((N1, 2 * 86400 * 100.0)),
                           "count_over_time(mlops_node_energy_joules_total": _vec((N1, 2 * 1440))})
    day = 86400
    state["query_range"]["increase(mlops_node_energy_joules_total"] = _mat(
        (N1, [(NOW - day, 8.64e6), (NOW, 8.64e6)]))
    report = energy.energy_report(_client(url), 7 * day, now=NOW)
    n1 = report["nodes"][0]
    assert n1["coverage"] == pytest.approx(2 / 7)
    assert n1["rapl_kwh"] == pytest.approx(4.8) and n1["rapl_avg_w"] == pytest.approx(100.0)
    assert any(n.startswith("n1 RAPL: data covers 29% of the window (about 2.0 days of 7.0 days)")
               for n in report["notes"])
    s = report["series"]
    assert s["step_s"] == day and s["buckets"] == [[NOW - (7 - i) * day, NOW - (6 - i) * day] for i in range(7)]
    assert s["rapl"] == [{"host": "n1", "kwh": [None] * 5 + [pytest.approx(2.4)] * 2}]
    assert [(p["start"], p["end"], p["step"]) for path, p in state["requests"] if path.endswith("range")] == \
        [(str(NOW - 6 * day), str(NOW), str(day))] * 3


def test_the_series_buckets_are_utc_days_with_partial_ends(fake):
    """3 days to 05:00 UTC: 19 h of the first day, two whole days in one range query, 5 h of today;
    the partial buckets are instant queries over their own length."""
    state, url = fake
    day, now = 86400, NOW + 5 * 3600
    energy.energy_report(_client(url), 3 * day, now=now)
    s = [(path, p) for path, p in state["requests"] if "[" in p["query"] and "increase(mlops_node" in p["query"]]
    assert [(path, p["query"], p.get("time"), p.get("start"), p.get("end")) for path, p in s] == [
        ("/api/v1/query", "sum by (host) (increase(mlops_node_energy_joules_total[259200s]))", str(now), None, None),
        ("/api/v1/query_range", "sum by (host) (increase(mlops_node_energy_joules_total[86400s]))", None,
         str(NOW - day), str(NOW)),
        ("/api/v1/query", "sum by (host) (increase(mlops_node_energy_joules_total[68400s]))", str(NOW - 2 * day),
         None, None),
        ("/api/v1/query", "sum by (host) (increase(mlops_node_energy_joules_total[18000s]))", str(now), None, None)]


def test_no_data_at_all_is_said_not_invented(fake):
    _, url = fake
    report = energy.energy_report(_client(url), 3600, now=NOW)
    assert report["nodes"] == [] and report["gpus"] == []
    assert all(v is None for k, v in report["totals"].items() if k not in ("nodes", "gpus"))
    assert any("no energy, power or CPU series" in n for n in report["notes"])
    assert "-" in energy.render_table(report)


# --------------------------------------------------------------------------- errors


def test_refused_credentials_say_so_without_the_password(fake):
    _, url = fake
    for client in (Prometheus(url, username=USER, password="wrong-" + PASSWORD, timeout=5),
                   Prometheus(url, timeout=5)):
        with pytest.raises(PrometheusError, match="credentials refused") as err:
            energy.energy_report(client, 3600, now=NOW)
        text = "\n".join(err.value.lines()) + repr(err.value) + repr(client)
        assert PASSWORD not in text and "wrong-" not in text
        assert err.value.exit_code == 1


def test_credentials_in_the_url_are_taken_out_of_it(fake):
    state, url = fake
    state["query"]["up"] = _vec((N1, 1))
    client = Prometheus(url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/", timeout=5)
    assert client.query("up", at=NOW) == [({"host": "n1"}, 1.0)]
    assert client.base_url == url and PASSWORD not in repr(client)


def test_an_api_error_carries_prometheus_reason_and_the_query(fake):
    state, url = fake
    state["query"]["rate(("] = ValueError('1:7: parse error: unexpected "("')
    with pytest.raises(PrometheusError, match=r"the query failed .*parse error") as err:
        _client(url).query("rate((")
    assert err.value.details == ["query: rate(("]


def test_a_redirect_is_not_followed_and_a_wrong_path_is_explained(fake):
    state, url = fake
    moved = re.escape("redirected (HTTP 302) to http://elsewhere.invalid/api/v1/query")
    with pytest.raises(PrometheusError, match=moved):
        _client(url + "/old").query("up")
    with pytest.raises(PrometheusError, match=re.escape("404 Not Found (is the URL Prometheus' base, without /api")):
        _client(url + "/api/v1").query("up")
    assert [path for path, _ in state["requests"]] == ["/old/api/v1/query", "/api/v1/api/v1/query"]


def test_a_refused_connection_is_named(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PrometheusError, match="connection refused"):
        _client(f"http://127.0.0.1:{port}").query("up")


def test_a_url_that_is_not_http_is_bad_input():
    with pytest.raises(energy.BadInput, match="http"):
        Prometheus("ftp://example.org")


# --------------------------------------------------------------------------- TLS


def test_https_is_verified_against_the_ca_given(tmp_path):
    ca, cert, key = tls_ca_and_cert(tmp_path, "prom")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    state = _state({"up": _vec((N1, 1))})
    server, url = _serve(state, context)
    try:
        assert _client(url, cafile=str(ca)).query("up") == [({"host": "n1"}, 1.0)]
        with pytest.raises(PrometheusError, match=r"TLS verification failed.*cafile"):
            _client(url).query("up")
        with pytest.raises(PrometheusError, match="TLS verification failed"):
            _client(url, cafile=str(tls_ca_and_cert(tmp_path, "other")[0])).query("up")
        assert len(state["requests"]) == 1  # nothing was sent over the unverified connections
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_ca_file_is_named(tmp_path):
    with pytest.raises(PrometheusError, match="cannot read the CA file"):
        Prometheus("https://127.0.0.1:9090", cafile=str(tmp_path / "none.pem"))


# --------------------------------------------------------------------------- rendering


def test_the_table_shows_hosts_figures_and_dashes(hour_report):
    report, _ = hour_report
    table = energy.render_table(report)
    lines = table.splitlines()
    assert lines[0] == "Energy over 1h from 2023-11-14 23:00 to 2023-11-15 00:00 UTC"
    header = next(line for line in lines if line.startswith("host"))
    assert header.split() == ["host", "source", "kWh", "avg", "W", "idle", "%", "coverage"]
    row = lambda host, source: next(line.split() for line in lines if line.split()[:2] == [host, source])  # noqa: E731
    assert row("n1", "rapl") == ["n1", "rapl", "1.000", "1000.0", "25.0", "100%"]
    assert row("n1", "bmc") == ["n1", "bmc", "1.500", "1500.0", "25.0", "100%"]
    assert row("n2", "rapl") == ["n2", "rapl", "-", "-", "90.0", "-"]
    assert row("n2", "bmc") == ["n2", "bmc", "0.200", "400.0", "90.0", "50%"]
    assert row("n1", "gpu")[2:] == ["0", "NVIDIA", "H100", "0.500", "500.0", "10.0", "100%"]
    assert row("total", "rapl") == ["total", "rapl", "1.000", "1000.0", "-", "-"]
    assert row("total", "gpus") == ["total", "gpus", "0.700", "700.0", "-", "-"]
    assert any(line.startswith("note: n2: no RAPL energy") for line in lines)
    # fixed width: the figures of a column end in the same place
    ends = {line.rindex("1000.0") + 6 for line in lines if " 1000.0 " in line}
    assert len(ends) == 1


def test_the_html_file_is_self_contained_with_an_svg_chart_and_escaped_names(fake, tmp_path):
    state, url = fake
    b = {"host": "<b>"}
    state["query"].update({"increase(mlops_node_energy_joules_total": _vec((b, 3.6e6), (N1, 7.2e6)),
                           "count_over_time(mlops_node_energy_joules_total": _vec((b, 60), (N1, 60)),
                           "increase(mlops_gpu_energy_joules_total": _vec(({**G0, "model": "A&B <GPU>"}, 1e6))})
    state["query_range"].update({"increase(mlops_node_energy_joules_total": _mat((b, [(NOW, 3.6e6)]),
                                                                                  (N1, [(NOW, 7.2e6)])),
                                 "increase(mlops_gpu_energy_joules_total": _mat(({"host": "n1", "gpu": "0"},
                                                                                 [(NOW, 1e6)]))})
    report = energy.energy_report(_client(url), 3600, now=NOW)
    out = tmp_path / "energy.html"
    energy.write_html(report, out)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2  # nodes (RAPL) and GPUs
    assert "<b>" not in page and "&lt;b&gt;" in page and "A&amp;B &lt;GPU&gt;" in page
    assert "<title>Energy report: 1h from 2023-11-14 23:00 to 2023-11-15 00:00 UTC, generated " in page
    assert "<script" not in page and "src=" not in page and "href=" not in page and "@import" not in page
    assert "<title>&lt;b&gt;, 11-14 23:00: 1.000 kWh</title>" in page
    assert "<title>n1, 11-14 23:00: 2.000 kWh</title>" in page
