"""drift without hosts: the merge of check-mode events and check results (by the roles a check
declares and whether it is managed, never by names or message text), exit codes, the renderers
(JUnit, Prometheus textfile), the run record and history, thread-safe host matching, the timer's
units, and the webhook against a real HTTPS server on 127.0.0.1 with a CA made for the test."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import ssl
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlops_provision.drift import model, outputs, run, timer
from mlops_provision.errors import BadInput
from mlops_provision.runner import HostResult, RunSummary
from mlops_provision.site.resolve import AnsibleSite
from mlops_provision.verify import CheckResult, VerifyReport
from tests.conftest import mp, tls_ca_and_cert
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


def test_a_no_log_change_is_still_pending(tmp_path):
    """A no_log task's result is censored (its `changed` too, in ansible-runner's event): its line
    says it changed. Check mode's Tang bind is such a task: drift must list it."""
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified"}
    event = _event(1, "node1", "disk_encryption", "Disk_encryption | Bind each volume to the Tang servers", censored)
    event["stdout"] = "changed: [node1] => (item=data)"
    quiet = _event(2, "node1", "disk_encryption", "Disk_encryption | Read the keys", dict(censored))
    quiet["stdout"] = "ok: [node1]"
    items = model.pending_changes(_events(tmp_path, event, quiet))
    assert [(i.host, i.role, i.what) for i in items] == [
        ("node1", "disk_encryption", "Disk_encryption | Bind each volume to the Tang servers")]
    assert "no_log" in items[0].detail


def test_a_no_log_loop_change_is_pending(tmp_path):
    """A no_log loop (the Tang bind loops over the volumes): neither the task's result nor its own
    line says it changed; its items' lines do."""
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified"}
    task = "Disk_encryption | Bind each volume to the Tang servers"
    item = _event(1, "node1", "disk_encryption", task, dict(censored), kind="runner_item_on_ok")
    item["stdout"] = "changed: [node1] => (item=None)"
    done = _event(2, "node1", "disk_encryption", task, dict(censored))
    done["stdout"] = ""
    items = model.pending_changes(_events(tmp_path, item, done))
    assert [(i.host, i.what) for i in items] == [("node1", task)]


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


def _check(host: str, module: str, what: str, outcome: str, message: str = "", *roles: str,
           managed: bool = True, hint: str = "") -> CheckResult:
    return CheckResult(host, module, what, outcome, message, roles=list(roles), managed=managed, hint=hint)


def test_merge_reads_roles_and_managed_from_the_checks():
    changes = [model.DriftItem("node1", "base", "change", "Base | Configure pip", "diff", True),
               model.DriftItem("node1", "kubernetes_worker", "change", "Kubernetes_worker | Label the node", "", True),
               model.DriftItem("node2", "os_hardening", "change", "Os_hardening | Apply the kernel parameters", "",
                               True)]
    verify = _verify(
        _check("node1", "base", "pip trusts the system CA bundle", "failed", "wrong cert", "base"),
        _check("node1", "base", "sudoers.d holds only ours", "failed", "/etc/sudoers.d/evil", "base",
               managed=False, hint="remove it"),
        # test_kubernetes.py covers three roles: each check is its own role's
        _check("node1", "kubernetes", "nodes labelled", "failed", "node3 lacks labels",
               "kubernetes_worker", "kubernetes_control_plane"),
        _check("node1", "kubernetes", "system pods running", "failed", "calico down", "kubernetes_control_plane"),
        _check("node1", "kubernetes", "labels someone else set", "failed", "x", "kubernetes_worker",
               managed=False, hint="remove them by hand"),
        # the old text mark in a message means nothing now: only the field does
        _check("node1", "base", "pip index pinned", "failed", "x [not managed by up: y]", "base"),
        _check("node1", "os_hardening", "kernel parameters", "failed", "kernel.sysrq", "os_hardening"),
        _check("node1", "postgresql", "cluster active", "passed", "", "postgresql"),
        _check("node2", "kubernetes", "kernel parameters for Kubernetes", "failed", "net.ipv4.ip_forward",
               "os_hardening"),
        _check("node2", "base", "chrony running", "passed", "", "base"),
        _check("node2", "mlflow", "server", "skipped", "", "mlflow"))
    hosts = model.merge(_summary(HostResult("node1", ok=3, changed=2), HostResult("node2", ok=3, changed=1)),
                        changes, verify, ["node1", "node2"])
    node1, node2 = hosts
    assert node1.status == "drift" and node2.status == "drift"
    by_what = {i.what: i for i in node1.items}
    pip = by_what["pip trusts the system CA bundle"]  # base has a pending change here
    assert pip.repairable and pip.role == "base" and pip.hint.startswith("`up` repairs this")
    stranger = by_what["sudoers.d holds only ours"]
    assert not stranger.repairable and not stranger.managed and stranger.hint == "not managed by `up`: remove it"
    assert stranger.detail == "/etc/sudoers.d/evil"
    labels = by_what["nodes labelled"]  # a kubernetes_worker check, kubernetes_worker pending: up repairs it
    assert labels.repairable and labels.role == "kubernetes_worker"
    assert labels.roles == ["kubernetes_worker", "kubernetes_control_plane"]
    pods = by_what["system pods running"]  # managed, but no pending change in its role here
    assert not pods.repairable and pods.managed and pods.role == "kubernetes_control_plane"
    assert pods.hint.startswith("up reports no pending change for it: ") and "kubernetes_control_plane" in pods.hint
    foreign = by_what["labels someone else set"]  # its role has a pending change, but up does not manage it
    assert not foreign.repairable and foreign.hint == "not managed by `up`: remove them by hand"
    assert by_what["pip index pinned"].repairable
    sysctl = by_what["kernel parameters"]  # os_hardening's change is node2's, not node1's
    assert not sysctl.repairable and sysctl.hint.startswith("up reports no pending change for it: ")
    k8s_sysctl, = [i for i in node2.items if i.kind == "check"]  # test_kubernetes.py, os_hardening's state
    assert k8s_sysctl.repairable and k8s_sysctl.role == "os_hardening"
    assert not any(i.role == "kubernetes" for h in hosts for i in h.items)  # a file name is no role
    assert node1.counts() == {"base": 4, "kubernetes_control_plane": 1, "kubernetes_worker": 3,
                              "os_hardening": 1, "postgresql": 0}
    assert node2.counts() == {"base": 0, "mlflow": 0, "os_hardening": 2}
    assert model.exit_code(hosts, verify) == 4
    report = model.DriftReport(inventory="i", started="t", hosts=hosts)
    line = report.counts_line()
    assert "7 repairable by up, 2 not managed by up, 2 with no pending change in up" in line, line
    item = report.to_dict()["hosts"][0]["items"][0]
    assert {"managed", "roles", "repairable", "hint", "role"} <= set(item)


def test_a_check_without_roles_is_never_repairable():
    changes = [model.DriftItem("n", "base", "change", "t", "", True)]
    verify = _verify(CheckResult("n", "base", "c", "failed", "m"))
    host, = model.merge(_summary(HostResult("n")), changes, verify, ["n"])
    check, = [i for i in host.items if i.kind == "check"]
    assert not check.repairable and check.role == model.NO_ROLE


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
    verify = _verify(_check("node1", "postgresql", "no unmanaged conf.d file", "failed", "x.conf", "postgresql",
                            managed=False, hint="remove it"),
                     _check("node1", "kubernetes", "kernel parameters", "failed", "sysrq", "os_hardening"),
                     _check("node2", "base", "chrony", "passed", "", "base"))
    r = model.DriftReport(inventory="inv", started="t", run_dir=str(tmp_path), duration_s=12.5)
    r.hosts = model.merge(_summary(HostResult("node1"), HostResult("node2")), changes, verify, ["node1", "node2"])
    r.exit_code = model.exit_code(r.hosts, verify)
    return r


def test_junit_has_a_suite_per_host_and_a_failure_per_item(tmp_path):
    path = tmp_path / "drift.xml"
    outputs.write_junit(_report(tmp_path), path)
    suites = {s.get("name"): s for s in ET.parse(path).getroot().findall("testsuite")}
    assert sorted(suites) == ["node1", "node2"]
    assert suites["node1"].get("failures") == "3" and suites["node2"].get("failures") == "0"
    classes = {c.get("classname") for c in suites["node1"].iter("testcase") if c.find("failure") is not None}
    assert classes == {"node1.base", "node1.postgresql", "node1.os_hardening"}
    kinds = {f.get("type") for f in suites["node1"].iter("failure")}
    assert kinds == {"repairable", "unmanaged", "no-pending-change"}


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
    assert samples[("mlops_drift_items", "node1", "os_hardening")] == 1
    assert ("mlops_drift_items", "node1", "kubernetes") not in samples
    assert samples[("mlops_drift_items", "node2", "base")] == 0
    assert samples[("mlops_drift_unmanaged_items", "node1", None)] == 2
    assert samples[("mlops_drift_last_run_exit_code", None, None)] == 4
    assert samples[("mlops_drift_last_run_timestamp_seconds", None, None)] > 1.7e9
    assert not list(tmp_path.glob(".*.tmp"))


def test_each_node_gets_its_own_findings_and_the_hosts_drift_could_not_check(tmp_path):
    """host_prometheus_texts: one file per checked host with its own series only; a host the run
    could not check gets none, and every other file says it is down (DriftCheckFailed)."""
    r = _report(tmp_path)
    r.hosts = model.merge(_summary(HostResult("node1"), HostResult("node2"), HostResult("node3", status="unreachable")),
                          [], _verify(), ["node1", "node2", "node3"])
    texts = outputs.host_prometheus_texts(r, "/srv/site")
    assert sorted(texts) == ["node1", "node2"]
    for host, text in texts.items():
        hosts_named = set(re.findall(r'host="([a-z0-9]+)"', text))
        assert hosts_named == {host, "node3"}, (host, hosts_named)
        assert f'mlops_drift_host_up{{site="/srv/site",host="{host}"}} 1' in text
        assert 'mlops_drift_host_up{site="/srv/site",host="node3"} 0' in text
        assert text.count("# TYPE mlops_drift_host_up gauge") == 1


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
    (runs / "20260105T000000.0Z-drift").mkdir()  # killed after the check run: the runner's summary only
    (runs / "20260105T000000.0Z-drift" / "summary.json").write_text(json.dumps(
        _summary(HostResult("node1", changed=2)).to_dict() | {"started": "20260105", "exit_code": 4}))
    got = run.history(inv)
    assert [h["exit_code"] for h in got] == [None, None, 4, 0]
    assert got[2]["hosts"] == {"node1": 4}
    res = mp("drift", "-i", inv, "--history")
    assert res.rc == 0 and "exit 4  4 item(s)  node1 4" in res.stdout, res.stdout + res.stderr


class _FakeSite:
    """What run_drift asks of a site, with every host matching counted by thread."""

    def __init__(self, path: Path):
        self.path = path
        self.matched: list[str] = []

    def matching(self, pattern):
        self.matched.append(threading.current_thread().name)
        return ["node1", "node2"] if pattern == "all" else []

    def secrets(self):
        return {"s3cret"}


def test_drift_record_keeps_the_check_runs_summary_as_check_json(tmp_path, monkeypatch):
    """The runner seals the check run's record with its summary.json; the drift report takes that
    name and the runner's file lives on, unchanged, as check.json. The checks get the hosts that
    run_drift resolved before starting them."""
    site = _FakeSite(tmp_path / "hosts.yml")
    run_dir = tmp_path / "runs" / "20260101T000000.0Z-drift"
    got_hosts = {}

    def run_playbook(site_, *, verb, limit, check, vault_password_file, on_change):
        assert (verb, limit, check) == ("drift", "all", True)
        summary = _summary(HostResult("node1", ok=2), HostResult("node2", ok=2))
        summary.run_dir = str(run_dir)
        _events(run_dir, _event(1, "node1", "base", "Base | pip", {"changed": True}))
        (run_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")  # as seal() does
        return summary

    def run_checks(site_, *, limit, hosts, vault_password_file):
        got_hosts["hosts"] = hosts
        return _verify(_check("node1", "base", "pip", "failed", "s3cret in pip.conf", "base"),
                       _check("node2", "base", "chrony", "passed", "", "base"))

    monkeypatch.setattr(run, "run_playbook", run_playbook)
    monkeypatch.setattr(run, "run_checks", run_checks)
    report = run.run_drift(site, limit="all")
    assert got_hosts["hosts"] == ["node1", "node2"] and site.matched == ["MainThread"]
    runner_text = json.dumps(_summary(HostResult("node1", ok=2), HostResult("node2", ok=2)).to_dict()
                             | {"run_dir": str(run_dir)}, indent=2) + "\n"
    assert (run_dir / "check.json").read_text() == runner_text  # the runner's own file, renamed
    assert oct((run_dir / "check.json").stat().st_mode & 0o777) == "0o600"
    drift = json.loads((run_dir / "summary.json").read_text())
    assert drift["verb"] == "drift" and drift["total"] == 2 and drift["exit_code"] == report.exit_code == 4
    item = next(i for i in drift["hosts"][0]["items"] if i["kind"] == "check")
    assert item["repairable"] and item["roles"] == ["base"] and "s3cret" not in item["detail"]
    verify = json.loads((run_dir / "verify.json").read_text())
    assert verify["results"][0]["roles"] == ["base"] and "s3cret" not in json.dumps(verify)
    assert run.history(tmp_path / "hosts.yml") == []  # its runs live under SITE/.mlops-provision/runs
    shutil.move(str(tmp_path / "runs"), tmp_path / ".mlops-provision" / "runs")
    assert [h["total"] for h in run.history(tmp_path / "hosts.yml")] == [2]


def test_keep_check_summary_writes_one_where_the_runner_left_none(tmp_path):
    from mlops_provision.secrets import Scrubber

    run.keep_check_summary(tmp_path, _summary(HostResult("n")), Scrubber(set()))
    assert json.loads((tmp_path / "check.json").read_text())["hosts"][0]["host"] == "n"
    assert not (tmp_path / "summary.json").exists()


SITE = """\
all:
  children:
    control_plane:
      hosts:
        cp1: {}
    gpu_workers:
      hosts:
        gpu1: {}
        gpu2: {}
    cpu_workers:
      hosts:
        cpu1: {}
        cpu2: {}
        cpu3: {}
    rack_a:
      hosts:
        gpu1: {}
        cpu1: {}
        cp1: {}
    mlflow:
      hosts:
        ml1: {}
"""


def test_host_matching_is_thread_safe(tmp_path):
    """Several threads resolve different --limit patterns at once through one InventoryManager
    (drift's check run and its checks do): each gets its own pattern's hosts."""
    (tmp_path / "hosts.yml").write_text(SITE)
    ansible = AnsibleSite(tmp_path / "hosts.yml", [])
    expected = {
        None: ["cp1", "cpu1", "cpu2", "cpu3", "gpu1", "gpu2", "ml1"],
        "gpu_workers": ["gpu1", "gpu2"],
        "cpu_workers:&rack_a": ["cpu1"],
        "all:!rack_a": ["cpu2", "cpu3", "gpu2", "ml1"],
        "mlflow": ["ml1"],
        "cpu*": ["cpu1", "cpu2", "cpu3"],
        "control_plane,gpu2": ["cp1", "gpu2"],
        "nosuchhost": [],
    }
    assert {p: ansible.matching(p) for p in expected} == expected  # one at a time
    subset = ansible.inventory.subset

    def slow_subset(pattern):  # a subset that takes a moment (an @file limit): others run meanwhile
        subset(pattern)
        time.sleep(0.0002)

    ansible.inventory.subset = slow_subset
    patterns = list(expected)
    threads, rounds = 8, 60
    barrier = threading.Barrier(threads)
    wrong: list = []

    def resolve(index: int) -> None:
        barrier.wait()
        for n in range(rounds):
            pattern = patterns[(index + n) % len(patterns)]
            got = ansible.matching(pattern)
            if got != expected[pattern]:
                wrong.append((pattern, got))
            if n % 10 == 0:
                hosts = ansible.hosts()  # the plain listing is never narrowed by another's pattern
                if hosts != expected[None]:
                    wrong.append(("hosts()", hosts))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        workers = [threading.Thread(target=resolve, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong, wrong[:5]
    assert ansible.matching(None) == expected[None]


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


@pytest.fixture
def https_server(tmp_path):
    """An HTTPS server on 127.0.0.1 that records POSTs; ``fail_first`` answers 503 that often."""
    ca, cert, key = tls_ca_and_cert(tmp_path, "hook")
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
    other_ca = tls_ca_and_cert(tmp_path, "other")[0]
    with pytest.raises(outputs.WebhookFailed, match="CERTIFICATE_VERIFY_FAILED"):
        outputs.post_webhook(url, {}, cafile=str(other_ca), attempts=1)
    with pytest.raises(outputs.WebhookFailed, match="https"):
        outputs.post_webhook(url.replace("https", "http"), {})
    assert state["posts"] == []


def test_webhook_timeout_is_bounded(tmp_path):
    ca = tls_ca_and_cert(tmp_path, "slow")[0]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the TCP connection, never answers the TLS handshake
    t0 = time.monotonic()
    with pytest.raises(outputs.WebhookFailed):
        outputs.post_webhook(f"https://127.0.0.1:{silent.getsockname()[1]}/", {}, cafile=str(ca),
                             timeout=0.5, attempts=2, backoff=0)
    assert time.monotonic() - t0 < 5
    silent.close()
