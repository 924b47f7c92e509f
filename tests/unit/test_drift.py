"""drift without hosts: the merge of check-mode events and check results, exit codes, the
renderers (JUnit, Prometheus textfile), run history, the timer's units, and the webhook against
a real HTTPS server on 127.0.0.1 with a CA made for the test."""

from __future__ import annotations

import datetime
import http.server
import json
import re
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mlops_provision.drift import model, outputs, run, timer
from mlops_provision.errors import BadInput
from mlops_provision.runner import HostResult, RunSummary
from mlops_provision.verify import CheckResult, VerifyReport
from tests.conftest import mp
from tests.unit.test_cli import BAD, _connections


def _event(counter: int, host: str, role: str, task: str, res: dict, kind: str = "runner_on_ok") -> dict:
    return {"counter": counter, "event": kind, "event_data": {"host": host, "role": role, "task": task, "res": res}}


def _events(tmp_path: Path, *events: dict) -> Path:
    d = tmp_path / "artifacts" / "ansible"
    (d / "job_events").mkdir(parents=True)
    for e in events:
        (d / "job_events" / f"{e['counter']}-x.json").write_text(json.dumps(e))
    return d


def _summary(*hosts: HostResult) -> RunSummary:
    return RunSummary(verb="drift", inventory="i", playbook="p", check=True, limit=None, tags=None,
                      started="t", hosts=list(hosts))


def _verify(*results: CheckResult) -> VerifyReport:
    return VerifyReport(inventory="i", results=list(results))


def test_pending_changes_carry_role_task_and_diff(tmp_path):
    d = _events(
        tmp_path,
        _event(1, "node1", "base", "Base | Configure pip", {"changed": True, "diff": {
            "before": "cert = /etc/ssl/a\n", "after": "cert = /etc/ssl/b\n",
            "before_header": "/etc/pip.conf", "after_header": "/etc/pip.conf"}}),
        _event(2, "node2", "mlops.os_hardening", "Os_hardening | Write the login banner", {"changed": True, "results": [
            {"changed": True, "item": "/etc/issue", "diff": {"before": "x\n", "after": "Authorized\n"}},
            {"changed": False, "item": "/etc/issue.net"}]}),
        _event(3, "node1", "base", "Base | unchanged", {"changed": False}),
        _event(4, "node1", "base", "Base | failed", {"changed": True}, kind="runner_on_failed"),
    )
    items = model.pending_changes(d)
    assert [(i.host, i.role, i.what) for i in items] == [
        ("node1", "base", "Base | Configure pip"), ("node2", "os_hardening", "Os_hardening | Write the login banner")]
    assert "-cert = /etc/ssl/a" in items[0].detail and "+cert = /etc/ssl/b" in items[0].detail
    assert "+Authorized" in items[1].detail
    assert all(i.repairable and i.kind == "change" for i in items)


def test_merge_marks_checks_without_pending_change_as_unmanaged():
    changes = [model.DriftItem("node1", "base", "change", "Base | Configure pip", "diff", True)]
    verify = _verify(
        CheckResult("node1", "base", "pip trusts the system CA bundle", "failed", "wrong cert"),
        CheckResult("node1", "base", "no file next to ours in sudoers.d", "failed",
                    "/etc/sudoers.d/evil [not managed by up: remove it]"),
        CheckResult("node1", "os_hardening", "login banner", "failed", "differs"),
        CheckResult("node1", "postgresql", "cluster active", "passed"),
        CheckResult("node2", "base", "chrony running", "passed"),
        CheckResult("node2", "mlflow", "server", "skipped"))
    hosts = model.merge(_summary(HostResult("node1", ok=3, changed=1), HostResult("node2", ok=3)),
                        changes, verify, ["node1", "node2"])
    node1, node2 = hosts
    assert node1.status == "drift" and node2.status == "clean"
    by_what = {i.what: i for i in node1.items}
    assert by_what["pip trusts the system CA bundle"].repairable  # base has a pending change
    unmanaged = by_what["no file next to ours in sudoers.d"]
    assert not unmanaged.repairable and unmanaged.hint == "not managed by `up`: remove it"
    banner = by_what["login banner"]  # no pending change in its role: `up` would not repair it
    assert not banner.repairable and "not managed by `up`" in banner.hint
    assert node1.counts() == {"base": 3, "os_hardening": 1, "postgresql": 0}
    assert node2.counts() == {"base": 0, "mlflow": 0}
    assert model.exit_code(hosts, verify) == 4


@pytest.mark.parametrize(("status", "items", "verify_results", "code"), [
    ("ok", False, True, 0), ("ok", True, True, 4), ("unreachable", True, True, 3),
    ("failed", True, True, 1), ("ok", False, False, 1)])
def test_exit_codes(status, items, verify_results, code):
    changes = [model.DriftItem("n", "base", "change", "t", "", True)] if items else []
    verify = _verify(CheckResult("n", "base", "c", "passed")) if verify_results else _verify()
    hosts = model.merge(_summary(HostResult("n", status=status)), changes, verify, ["n"])
    assert model.exit_code(hosts, verify) == code


def _report(tmp_path) -> model.DriftReport:
    changes = [model.DriftItem("node1", "base", "change", "Base | pip", "-a\n+b", True, "up")]
    verify = _verify(CheckResult("node1", "postgresql", "no unmanaged conf.d file", "failed", "x.conf"),
                     CheckResult("node2", "base", "chrony", "passed"))
    r = model.DriftReport(inventory="inv", started="t", run_dir=str(tmp_path), duration_s=12.5)
    r.hosts = model.merge(_summary(HostResult("node1"), HostResult("node2")), changes, verify, ["node1", "node2"])
    r.exit_code = model.exit_code(r.hosts, verify)
    return r


def test_junit_has_a_suite_per_host_and_a_failure_per_item(tmp_path):
    path = tmp_path / "drift.xml"
    outputs.write_junit(_report(tmp_path), path)
    suites = {s.get("name"): s for s in ET.parse(path).getroot().findall("testsuite")}
    assert sorted(suites) == ["node1", "node2"]
    assert suites["node1"].get("failures") == "2" and suites["node2"].get("failures") == "0"
    classes = {c.get("classname") for c in suites["node1"].iter("testcase") if c.find("failure") is not None}
    assert classes == {"node1.base", "node1.postgresql"}
    kinds = {f.get("type") for f in suites["node1"].iter("failure")}
    assert kinds == {"repairable", "unmanaged"}


LINE = re.compile(r'^([a-z_]+)\{((?:[a-z]+="(?:[^"\\]|\\.)*",?)*)\} (-?[0-9.e+]+)$')


def test_prometheus_textfile_format(tmp_path):
    path = tmp_path / "drift.prom"
    outputs.write_prometheus(_report(tmp_path), '/srv/site "a"', path)
    text = path.read_text()
    assert text.endswith("\n")
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) mlops_drift_[a-z_]+ ", line), line
            continue
        m = LINE.match(line)
        assert m, f"not exposition format: {line}"
        labels = dict(re.findall(r'([a-z]+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        samples[(m.group(1), labels.get("host"), labels.get("role"))] = float(m.group(3))
        assert labels["site"] == '/srv/site \\"a\\"'
    assert samples[("mlops_drift_items", "node1", "base")] == 1
    assert samples[("mlops_drift_items", "node1", "postgresql")] == 1
    assert samples[("mlops_drift_items", "node2", "base")] == 0
    assert samples[("mlops_drift_unmanaged_items", "node1", None)] == 1
    assert samples[("mlops_drift_last_run_exit_code", None, None)] == 4
    assert samples[("mlops_drift_last_run_timestamp_seconds", None, None)] > 1.7e9
    assert not list(tmp_path.glob(".*.tmp"))


def test_history_lists_the_last_drift_runs(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text("all: {}\n")
    runs = tmp_path / ".mlops-provision" / "runs"
    for stamp, code in (("20260101T000000.0Z", 0), ("20260102T000000.0Z", 4)):
        (runs / f"{stamp}-drift").mkdir(parents=True)
        (runs / f"{stamp}-drift" / "summary.json").write_text(json.dumps(
            {"verb": "drift", "started": stamp, "exit_code": code, "total": code,
             "counts": {"node1": {"base": code}}}))
    (runs / "20260103T000000.0Z-up").mkdir()
    (runs / "20260104T000000.0Z-drift").mkdir()  # killed: no summary
    got = run.history(inv)
    assert [h["exit_code"] for h in got] == [None, 4, 0]
    assert got[1]["hosts"] == {"node1": 4}
    res = mp("drift", "-i", inv, "--history")
    assert res.rc == 0 and "exit 4  4 item(s)  node1 4" in res.stdout, res.stdout + res.stderr


def test_timer_units(tmp_path):
    inv = tmp_path / "site" / "inventory.yml"
    inv.parent.mkdir()
    inv.write_text("all: {}\n")
    units = timer.units(inv, "30m", vault_password_file=tmp_path / "pw")
    name = timer.unit_name(inv)
    assert sorted(units) == [f"{name}.service", f"{name}.timer"]
    assert "OnUnitActiveSec=30min" in units[f"{name}.timer"]
    service = units[f"{name}.service"]
    assert "SuccessExitStatus=4" in service and f"drift -i {inv.resolve()}" in service
    assert "--prometheus" in service and "--vault-password-file" in service
    with pytest.raises(BadInput):
        timer.units(inv, "hourly")


def test_drift_bad_inventory_exits_2_and_contacts_no_host(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    inv = tmp_path / "hosts.yml"
    inv.write_text(BAD.format(port=sock.getsockname()[1]))
    res = mp("drift", "-i", inv)
    assert res.rc == 2 and "base_admin_group_sudo" in res.stderr, res.stdout + res.stderr
    assert _connections(sock) == 0
    sock.close()


# --------------------------------------------------------------------------- webhook


def _cert(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp_path / f"{name}-ca.pem", tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def https_server(tmp_path):
    """An HTTPS server on 127.0.0.1 that records POSTs; ``fail_first`` answers 503 that often."""
    ca, cert, key = _cert(tmp_path, "hook")
    state = {"posts": [], "fail_first": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["posts"].append((self.headers.get("Authorization"), json.loads(body)))
            code = 503 if len(state["posts"]) <= state["fail_first"] else 201
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/hook", ca, state
    server.shutdown()


def test_webhook_posts_the_report_with_the_token(https_server):
    url, ca, state = https_server
    assert outputs.post_webhook(url, {"total": 3}, token="t0k", cafile=str(ca), backoff=0) == 201
    assert state["posts"] == [("Bearer t0k", {"total": 3})]


def test_webhook_retries_server_errors_a_bounded_number_of_times(https_server):
    url, ca, state = https_server
    state["fail_first"] = 2
    assert outputs.post_webhook(url, {}, cafile=str(ca), attempts=3, backoff=0) == 201
    assert len(state["posts"]) == 3
    state["posts"].clear()
    state["fail_first"] = 10
    with pytest.raises(outputs.WebhookFailed, match="after 2 attempt"):
        outputs.post_webhook(url, {}, cafile=str(ca), attempts=2, backoff=0)
    assert len(state["posts"]) == 2


def test_webhook_verifies_tls(https_server, tmp_path):
    url, _ca, state = https_server
    other_ca = _cert(tmp_path, "other")[0]
    with pytest.raises(outputs.WebhookFailed, match="CERTIFICATE_VERIFY_FAILED"):
        outputs.post_webhook(url, {}, cafile=str(other_ca), attempts=1)
    with pytest.raises(outputs.WebhookFailed, match="https"):
        outputs.post_webhook(url.replace("https", "http"), {})
    assert state["posts"] == []


def test_webhook_timeout_is_bounded(tmp_path):
    ca = _cert(tmp_path, "slow")[0]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the TCP connection, never answers the TLS handshake
    import time

    t0 = time.monotonic()
    with pytest.raises(outputs.WebhookFailed):
        outputs.post_webhook(f"https://127.0.0.1:{silent.getsockname()[1]}/", {}, cafile=str(ca),
                             timeout=0.5, attempts=2, backoff=0)
    assert time.monotonic() - t0 < 5
    silent.close()
