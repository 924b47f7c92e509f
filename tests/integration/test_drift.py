"""`drift` on the session's converged container sandbox (tests/integration/conftest.py): injected
drifts across base, os_hardening, postgresql and mlflow, the "next to our files" kind included;
every one reported with its host and role in the human report, JSON, JUnit and Prometheus; `up`
repairs what it manages and what it does not manage stays reported with a hint; removed by hand,
the nodes are clean again (exit 0, zero items). The module leaves the shared hosts repaired and
proves it with that last clean drift.

The timer: installed on node1 acting as the management machine (the tool installed there from
this checkout), fired with `systemctl start`, its result read back."""

from __future__ import annotations

import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlops_provision import paths
from mlops_provision.sandbox import Sandbox
from mlops_provision.sandbox.core import InventoryDumper, InventoryLoader
from tests.conftest import ROOT, mp
from tests.integration.conftest import (
    MLFLOW_NEW,
    MLFLOW_OLD,
    assert_check_predicted,
    changed_by_host,
    node_ssh,
    received_alerts,
    variant,
    vault_password,
)

pytestmark = pytest.mark.integration
NODES = ["node1", "node2", "node3"]
PG = "/etc/postgresql/15/main"


@dataclass
class Drift:
    """One injected drift: where, what the report must say, and whether `up` repairs it."""

    host: str
    role: str
    key: str  # found in the item's task/check name or its diff/message
    managed: bool  # True: `up` repairs it; False: reported with a hint until removed by hand
    inject: str  # shell, run as root on the host
    undo: str = ""  # shell that removes an unmanaged drift after `up`


SELF_SIGNED = ("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=evil-ca -keyout /dev/null "
               "-out /usr/local/share/ca-certificates/evil-ca.crt 2>/dev/null")
WEAK_SERVER = ("printf 'server {\\n listen 8443 ssl;\\n server_name evil.invalid;\\n ssl_protocols TLSv1 TLSv1.2;\\n"
               " ssl_certificate /etc/mlflow/tls/mlflow.crt;\\n ssl_certificate_key /etc/mlflow/tls/mlflow.key;\\n"
               " return 404;\\n}\\n' > /etc/nginx/conf.d/zz-evil.conf")

DRIFTS = [
    # base
    Drift("node2", "base", "zz-evil", False, "echo 'evil ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/zz-evil; "
          "chmod 440 /etc/sudoers.d/zz-evil", "rm -f /etc/sudoers.d/zz-evil"),
    Drift("node1", "base", "NOPASSWD", True, "echo '%mlops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/mlops-provision"),
    Drift("node3", "base", "evil-ca.crt", False, f"{SELF_SIGNED} && update-ca-certificates >/dev/null",
          "rm -f /usr/local/share/ca-certificates/evil-ca.crt && update-ca-certificates --fresh >/dev/null"),
    Drift("node2", "base", "added to the bundle by hand", False,
          "cat /usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt >> /etc/ssl/certs/ca-certificates.crt",
          "update-ca-certificates --fresh >/dev/null"),
    Drift("node1", "base", "evil.sources", False,
          "printf 'Types: deb\\nURIs: http://deb.evil.invalid/debian\\nSuites: bookworm\\nComponents: main\\n"
          "Enabled: no\\n' > /etc/apt/sources.list.d/evil.sources", "rm -f /etc/apt/sources.list.d/evil.sources"),
    Drift("node1", "base", "getent hosts", False, "sed -i '1i 192.0.2.66 node2' /etc/hosts",
          "sed -i '/^192.0.2.66 node2$/d' /etc/hosts"),
    Drift("node3", "base", "download source resolves from /etc/hosts", False, "echo '127.0.0.2 pypi.org' >> /etc/hosts",
          "sed -i '/^127.0.0.2 pypi.org$/d' /etc/hosts"),
    Drift("node2", "base", "extra-index-url", True,
          "echo 'extra-index-url = https://pypi.evil.invalid/simple' >> /etc/pip.conf"),
    Drift("node3", "base", "chrony", True, "systemctl stop chrony"),
    Drift("node1", "base", "maxdistance", True, "echo 'maxdistance 99' >> /etc/chrony/chrony.conf"),
    Drift("node3", "base", "admin group", True, "rm -f /etc/sudoers.d/mlops-provision"),
    Drift("node2", "base", "proxy", True,
          "echo 'Acquire::http::Proxy \"http://127.0.0.1:3128\";' > /etc/apt/apt.conf.d/80mlops-provision-proxy"),
    # os_hardening (what a container shows: files, sshd, login settings)
    Drift("node1", "os_hardening", "sshd_config.d/zz-evil.conf", False,
          "echo 'PasswordAuthentication yes' > /etc/ssh/sshd_config.d/zz-evil.conf",
          "rm -f /etc/ssh/sshd_config.d/zz-evil.conf"),
    Drift("node2", "os_hardening", "banner", True, "echo 'Welcome!' > /etc/issue.net"),
    Drift("node3", "os_hardening", "modprobe.d/zz-evil.conf", False,
          "echo 'install usb-storage /sbin/modprobe --ignore-install usb-storage' > /etc/modprobe.d/zz-evil.conf",
          "rm -f /etc/modprobe.d/zz-evil.conf"),
    Drift("node1", "os_hardening", "sysctl.d/90-evil.conf", False,
          "echo 'kernel.sysrq = 1' > /etc/sysctl.d/90-evil.conf", "rm -f /etc/sysctl.d/90-evil.conf"),
    Drift("node2", "os_hardening", "PASS_MAX_DAYS", True,
          "sed -i 's/^PASS_MAX_DAYS.*/PASS_MAX_DAYS 99999/' /etc/login.defs"),
    Drift("node3", "os_hardening", "maxauthtries", True,
          "sed -i 's/^MaxAuthTries .*/MaxAuthTries 10/' /etc/ssh/sshd_config"),
    Drift("node3", "os_hardening", "modules-load.d/evil.conf", False,
          "echo 'dummy' > /etc/modules-load.d/evil.conf", "rm -f /etc/modules-load.d/evil.conf"),
    # a command task's repair (check mode used to skip it: pam-auth-update)
    Drift("node2", "os_hardening", "pam-auth-update", True, "pam-auth-update --package --remove mlops-faillock"),
    Drift("node3", "os_hardening", "TMOUT", True, "rm -f /etc/profile.d/mlops-provision-tmout.sh"),
    # containerd (every node)
    Drift("node3", "containerd", "containerd", True, "systemctl stop containerd"),
    # postgresql (node1: group mlflow)
    Drift("node1", "postgresql", "conf.d/zz-evil.conf", False,
          f"echo \"log_statement = 'none'\" > {PG}/conf.d/zz-evil.conf && chown postgres: {PG}/conf.d/zz-evil.conf "
          "&& systemctl reload postgresql@15-main",
          f"rm -f {PG}/conf.d/zz-evil.conf && systemctl reload postgresql@15-main"),
    Drift("node1", "postgresql", "trust", True, f"echo 'host all all 0.0.0.0/0 trust' >> {PG}/pg_hba.conf"),
    Drift("node1", "postgresql", "60-mlops-provision.conf", True,
          f"echo 'work_mem = 1GB' >> {PG}/conf.d/60-mlops-provision.conf"),
    # mlflow (node1)
    Drift("node1", "mlflow", "conf.d/zz-evil.conf", False, WEAK_SERVER, "rm -f /etc/nginx/conf.d/zz-evil.conf"),
    Drift("node1", "mlflow", "sites-enabled/default", True,
          "echo 'server { listen 127.0.0.1:8081; return 404; }' > /etc/nginx/sites-enabled/default"),
    Drift("node1", "mlflow", "TLSv1.1", True,
          "sed -i '0,/ssl_protocols TLSv1.2 TLSv1.3;/s//ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3;/' "
          "/etc/nginx/conf.d/mlflow.conf"),
    Drift("node1", "mlflow", "backup", True, "systemctl disable --now mlflow-backup.timer"),
    Drift("node1", "mlflow", "MLflow server", True, "systemctl stop mlflow"),
    # installed != pinned, with the server stopped: drift names both versions
    Drift("node1", "mlflow", f"{MLFLOW_OLD} installed in /opt/mlflow/venv, {MLFLOW_NEW} pinned", True,
          f"sed -i 's/^Version: .*/Version: {MLFLOW_OLD}/' "
          "/opt/mlflow/venv/lib/python3*/site-packages/mlflow-*.dist-info/METADATA"),
    # node_exporter (every node) and prometheus (node1: group monitoring)
    Drift("node2", "node_exporter", "no-collector.hwmon", True,
          "sed -i 's/^ARGS=\"/ARGS=\"--no-collector.hwmon /' /etc/default/prometheus-node-exporter"),
    Drift("node3", "node_exporter", "collector", True, "systemctl stop mlops-collector"),
    Drift("node1", "prometheus", "retention.time=1d", True,
          "sed -i 's/retention.time=[^ ]*/retention.time=1d/' /etc/default/prometheus"),
]


def _items(report: dict, host: str, role: str) -> list[dict]:
    return [i for h in report["hosts"] if h["host"] == host for i in h["items"] if i["role"] == role]


def _matches(item: dict, key: str) -> bool:
    return key.lower() in (item["what"] + "\n" + item["detail"]).lower()


def _human_sections(text: str) -> dict[str, str]:
    """The human report split by host: 'nodeN: status ...' starts a section."""
    sections, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^(node\d+): ", line)
        if m:
            current = m.group(1)
            sections[current] = ""
        if current:
            sections[current] += line + "\n"
    return sections


def _prometheus(path: Path) -> dict[tuple[str, str], float]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r'^mlops_drift_items\{site="[^"]*",host="([^"]+)",role="([^"]+)"\} (\d+)$', line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def _drift(inventory: Path, tmp: Path, name: str, *args: str):
    junit, prom = tmp / f"{name}.xml", tmp / f"{name}.prom"
    res = mp("drift", "-i", inventory, "--junit", junit, "--prometheus", prom, *args, timeout=900)
    return res, junit, prom


@pytest.fixture(scope="module")
def site(converged_containers, container_inventory):
    return container_inventory


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("drift")


@pytest.fixture(scope="module")
def injected(site, outdir, alert_receiver):
    """Every drift injected, then `up --check` (what check mode predicts: ``predicted``), then one
    `drift` (human report; JSON from its run record). The monitoring server's alert receiver runs
    before (test_drift_found_alert_reaches_the_webhook)."""
    for d in DRIFTS:
        node_ssh(site, d.host, d.inject)
    check = mp("up", "-i", site, "--check", "--output", "json", timeout=900)
    (outdir / "predicted.json").write_text(check.stdout)
    res, junit, prom = _drift(site, outdir, "injected")
    (outdir / "injected.txt").write_text(res.stdout + res.stderr)
    run_dir = Path(re.search(r"run record: (\S+)", res.stdout).group(1))
    report = json.loads((run_dir / "summary.json").read_text())
    print(f"\n[figure] drift of 3 containers with {len(DRIFTS)} injected drifts: {res.seconds:.0f}s "
          f"(check mode {report['check_s']}s, checks {report['verify_s']}s)")
    return res, report, junit, prom


@pytest.fixture(scope="module")
def predicted(injected, outdir) -> dict:
    """`up --check`'s JSON summary on the injected nodes."""
    return json.loads((outdir / "predicted.json").read_text())


@pytest.fixture(scope="module")
def repaired(site, injected) -> dict:
    """`up` on the injected nodes (it repairs what it manages); its JSON summary."""
    up = mp("up", "-i", site, "--output", "json", timeout=1800)
    assert up.rc == 0, up.stdout[-3000:] + up.stderr[-3000:]
    return up.json()


def test_at_least_25_drifts_across_every_container_role():
    assert len(DRIFTS) >= 28
    assert {d.role for d in DRIFTS} == {"base", "os_hardening", "containerd", "postgresql", "mlflow",
                                        "node_exporter", "prometheus"}
    assert sum(not d.managed for d in DRIFTS) >= 8  # the "next to our files" kind


def test_drift_exits_4_and_reports_every_injection_in_json(injected):
    res, report, _junit, _prom = injected
    assert res.rc == 4, res.stdout[-4000:] + res.stderr[-3000:]
    assert report["exit_code"] == 4 and report["verb"] == "drift"
    missing = [d for d in DRIFTS if not any(_matches(i, d.key) for i in _items(report, d.host, d.role))]
    assert not missing, [(d.host, d.role, d.key) for d in missing]


def test_unmanaged_drifts_carry_a_hint(injected):
    _res, report, _junit, _prom = injected
    for d in DRIFTS:
        items = [i for i in _items(report, d.host, d.role) if _matches(i, d.key)]
        if not d.managed:
            assert any(not i["repairable"] and "not managed by `up`" in i["hint"] for i in items), (d, items)
        else:
            assert any(i["repairable"] for i in items), (d, items)


def test_human_report_names_host_role_and_item(injected):
    res, _report, _junit, _prom = injected
    sections = _human_sections(res.stdout)
    assert sorted(sections) == NODES
    missing = [d for d in DRIFTS
               if not any(f"[{d.role}]" in block and d.key.lower() in block.lower()
                          for block in [sections[d.host]])]
    assert not missing, [(d.host, d.role, d.key) for d in missing]
    assert "hint: not managed by `up`" in res.stdout and "repair: up" in res.stdout


def test_junit_has_every_injection_under_its_host_and_role(injected):
    _res, _report, junit, _prom = injected
    failures = {}
    for suite in ET.parse(junit).getroot().findall("testsuite"):
        for case in suite.findall("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if bad is not None:
                failures.setdefault(case.get("classname"), []).append(
                    (case.get("name") + "\n" + (bad.text or "")).lower())
    missing = [d for d in DRIFTS if not any(d.key.lower() in t for t in failures.get(f"{d.host}.{d.role}", []))]
    assert not missing, [(d.host, d.role, d.key) for d in missing]


def test_prometheus_counts_every_drifted_host_and_role(injected):
    _res, report, _junit, prom = injected
    samples = _prometheus(prom)
    for d in DRIFTS:
        assert samples.get((d.host, d.role), 0) >= 1, (d.host, d.role)
    for h in report["hosts"]:
        for role, count in report["counts"][h["host"]].items():
            assert samples[(h["host"], role)] == count
    assert re.search(r'^mlops_drift_last_run_exit_code\{site="[^"]+"\} 4$', prom.read_text(), re.M)


def test_drift_found_alert_reaches_the_webhook(site, injected, alert_receiver):
    """The drift run hands each node its findings (node-exporter textfile); Prometheus on the
    monitoring server fires DriftFound for every drifted host and Alertmanager delivers it to the
    sandbox's webhook receiver: end to end, nothing stubbed."""
    _res, report, _junit, _prom = injected
    drifted = {h["host"] for h in report["hosts"] if h["items"]}
    assert drifted
    deadline, got = time.monotonic() + 300, set()
    while time.monotonic() < deadline:
        got = {a["labels"].get("host") for a in received_alerts(site, alert_receiver)
               if a["labels"].get("alertname") == "DriftFound" and a["status"] == "firing"}
        if drifted <= got:
            break
        time.sleep(10)
    print(f"\n[figure] DriftFound delivered for {sorted(got)} "
          f"{300 - max(0, deadline - time.monotonic()):.0f}s after the drift run")
    assert drifted <= got, f"DriftFound delivered for {sorted(got)}, drifted hosts {sorted(drifted)}"
    sample = next(a for a in received_alerts(site, alert_receiver) if a["labels"].get("alertname") == "DriftFound")
    assert sample["annotations"].get("summary"), sample


def test_check_mode_predicts_exactly_what_up_repairs(predicted, repaired):
    """Per host, the tasks `up --check` reported changed are the tasks the following `up` changed
    (handlers included), and `up --check` exited 4 because some were; every managed drift made a
    change on its host."""
    assert_check_predicted(predicted, repaired, NODES)
    assert predicted["exit_code"] == 4
    done = changed_by_host(repaired)
    assert {d.host for d in DRIFTS if d.managed} <= set(done), done


def test_drift_lists_what_check_mode_predicts(predicted, injected):
    """drift's pending changes (its own check run) are `up --check`'s, task for task."""
    _res, report, _junit, _prom = injected
    pending = {}
    for h in report["hosts"]:
        for i in h["items"]:
            if i["kind"] == "change":
                pending.setdefault(h["host"], set()).add(i["what"])
    assert pending == changed_by_host(predicted)


def test_up_repairs_what_it_manages_and_the_rest_stays_reported(site, outdir, injected, repaired):
    res, _junit, _prom = _drift(site, outdir, "after-up", "--output", "json")
    assert res.rc == 4, res.stdout[-3000:] + res.stderr[-3000:]
    report = res.json()
    items = [i for h in report["hosts"] for i in h["items"]]
    assert not [i for i in items if i["repairable"]], [i for i in items if i["repairable"]]
    left = [d for d in DRIFTS if any(_matches(i, d.key) for i in _items(report, d.host, d.role))]
    assert sorted((d.host, d.key) for d in left) == sorted((d.host, d.key) for d in DRIFTS if not d.managed)
    # Files next to ours say so (structured: managed false); a check of ours that still fails
    # because of them (sshd's effective settings, nginx's TLS) says up has nothing pending for it.
    assert all(i["hint"].startswith(("not managed by `up`", "up reports no pending change")) for i in items), items
    assert any(i["hint"].startswith("not managed by `up`") and i["managed"] is False for i in items)


PURGE = ("base_purge_unmanaged", "os_hardening_purge_unmanaged", "postgresql_purge_unmanaged",
         "mlflow_purge_unmanaged")


def test_purge_switch_lets_up_remove_the_files_nobody_manages(site, outdir, injected):
    """With the roles' <role>_purge_unmanaged on, drift calls node1's strange files repairable and
    `up` removes them; what is not a file in a directory a role owns (the /etc/hosts line) stays."""
    purging = variant(site, "purge", lambda data: data["all"]["vars"].update(dict.fromkeys(PURGE, True)))
    password = vault_password(site)
    files = [d for d in DRIFTS if d.host == "node1" and not d.managed and d.key != "getent hosts"]
    assert len(files) == 5, files
    res = mp("drift", "-i", purging, "--vault-password-file", password, "--limit", "node1", "--output", "json",
             timeout=1800)
    assert res.rc == 4, res.stdout[-3000:] + res.stderr[-3000:]
    items = res.json()["hosts"][0]["items"]
    for d in files:
        found = [i for i in items if i["role"] == d.role and _matches(i, d.key) and i["kind"] == "check"]
        assert found and all(i["repairable"] for i in found), (d.key, found)
    hosts_line = [i for i in items if _matches(i, "getent hosts")]
    assert hosts_line and not any(i["repairable"] for i in hosts_line), hosts_line
    up = mp("up", "-i", purging, "--vault-password-file", password, "--limit", "node1", "--output", "json",
            timeout=1800)
    assert up.rc == 0, up.stdout[-3000:] + up.stderr[-3000:]
    paths = ["/etc/apt/sources.list.d/evil.sources", "/etc/ssh/sshd_config.d/zz-evil.conf",
             "/etc/sysctl.d/90-evil.conf", f"{PG}/conf.d/zz-evil.conf", "/etc/nginx/conf.d/zz-evil.conf"]
    left = node_ssh(site, "node1", "ls " + " ".join(paths) + " 2>/dev/null; grep -c '^192.0.2.66 node2$' /etc/hosts",
                    check=False).stdout.split()
    assert left == ["1"], left  # every file gone, the /etc/hosts line still there


def test_removed_by_hand_the_nodes_are_clean_again(site, outdir):
    for d in DRIFTS:
        if d.undo:
            node_ssh(site, d.host, d.undo)
    res, junit, prom = _drift(site, outdir, "clean", "--output", "json")
    report = res.json()
    assert res.rc == 0, [(h["host"], i["role"], i["what"], i["detail"][:300]) for h in report["hosts"]
                         for i in h["items"]]
    assert report["total"] == 0 and all(h["status"] == "clean" for h in report["hosts"])
    assert sorted(h["host"] for h in report["hosts"]) == NODES
    assert all(h["checks_passed"] > 10 for h in report["hosts"])
    assert all(v == 0 for v in _prometheus(prom).values()) and _prometheus(prom)
    assert all(s.get("failures") == "0" for s in ET.parse(junit).getroot().findall("testsuite"))
    history = mp("drift", "-i", site, "--history", "--output", "json").json()
    assert [h["exit_code"] for h in history[:3]] == [0, 4, 4]
    assert history[0]["hosts"] == dict.fromkeys(NODES, 0)


def test_verify_leaves_a_record(site):
    res = mp("verify", "-i", site, "--limit", "node2", "-k", "chrony", "--output", "json")
    assert res.rc == 0, res.stdout[-2000:]
    runs = sorted((paths.site_state_dir(site) / "runs").glob("*-verify"))
    assert runs, "no verify record"
    data = json.loads((runs[-1] / "summary.json").read_text())
    assert data["verb"] == "verify" and data["results"] and data["exit_code"] == 0


# --------------------------------------------------------------------------- the timer


def _ssh_stdin(site: Path, node: str, command: str, data: bytes) -> None:
    box = Sandbox(site.parent.parent.parent)
    target = next(n for n in box.state().nodes if n.name == node)
    res = subprocess.run([*box.ssh_command(target), command], input=data, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]


def test_timer_on_a_management_node_fires_and_writes_its_result(site):
    """node1 acts as the management machine: the tool installed there from this checkout, the
    timer installed for a site whose inventory reaches node2 over the cluster network; the
    service fired; its results read back; the timer removed."""
    source = subprocess.run(["tar", "-C", str(ROOT), "-cz", "--exclude=__pycache__", "pyproject.toml", "README.md",
                             "ansible.cfg", "src", "playbooks", "roles"], capture_output=True, check=True).stdout
    _ssh_stdin(site, "node1", "rm -rf /opt/mp-src && mkdir -p /opt/mp-src && tar -C /opt/mp-src -xz", source)
    install = node_ssh(site, "node1", "python3 -m venv /opt/mp && /opt/mp/bin/pip install -q -e /opt/mp-src",
                       check=False, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]

    data = yaml.load(site.read_text(), Loader=InventoryLoader)
    key = Path(data["all"]["vars"]["ansible_ssh_private_key_file"])
    for host in data["all"]["hosts"].values():  # the cluster network, as a management machine sees it
        host["ansible_host"], host["ansible_port"] = host["mlops_node_address"], 22
    data["all"]["vars"]["ansible_ssh_private_key_file"] = "/root/site/sandbox-key"
    files = {"/root/site/inventory.yml": yaml.dump(data, Dumper=InventoryDumper, sort_keys=False).encode(),
             "/root/site/vault-password": vault_password(site).read_bytes(), "/root/site/sandbox-key": key.read_bytes()}
    cas = data["all"]["vars"].get("base_extra_ca_certificates", [])  # the admin machine's files, kept aside
    files.update({f"/root/site/ca/{Path(p).name}": Path(p).read_bytes() for p in cas})
    data["all"]["vars"]["base_extra_ca_certificates"] = [f"/root/site/ca/{Path(p).name}" for p in cas]
    files["/root/site/inventory.yml"] = yaml.dump(data, Dumper=InventoryDumper, sort_keys=False).encode()
    for path, body in files.items():
        _ssh_stdin(site, "node1", f"mkdir -p {Path(path).parent} && cat > {path} && chmod 600 {path}", body)

    mp_on_node1 = ("cd /root/site && /opt/mp/bin/mlops-provision drift -i /root/site/inventory.yml "
                   "--vault-password-file /root/site/vault-password --limit node2")
    res = node_ssh(site, "node1", f"{mp_on_node1} --install-timer --every 1h", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    unit = re.search(r"installed (\S+)\.service", res.stdout).group(1)
    timer = node_ssh(site, "node1", f"systemctl show -p ActiveState -p UnitFileState -p NextElapseUSecMonotonic "
                                    f"{unit}.timer").stdout
    assert "ActiveState=active" in timer and "UnitFileState=enabled" in timer, timer
    fired = node_ssh(site, "node1", f"systemctl start {unit}.service; systemctl show -p Result -p ExecMainStatus "
                                    f"{unit}.service", check=False, timeout=900)
    print(f"\n[timer] {fired.stdout.strip()}")
    result = json.loads(node_ssh(site, "node1", "cat /root/site/.mlops-provision/drift.json").stdout)
    assert [h["host"] for h in result["hosts"]] == ["node2"] and result["exit_code"] in (0, 4), result
    journal = node_ssh(site, "node1", f"journalctl -u {unit}.service --no-pager | tail -5", check=False).stdout
    assert "Result=success" in fired.stdout, fired.stdout + fired.stderr + journal
    # drift closed its SSH masters as it ended: nothing was left for systemd to stop.
    assert "timed out" not in journal and "Killing" not in journal, journal
    prom = node_ssh(site, "node1", "cat /root/site/.mlops-provision/drift.prom").stdout
    assert f'mlops_drift_last_run_exit_code{{site="/root/site"}} {result["exit_code"]}' in prom
    history = node_ssh(site, "node1", f"{mp_on_node1} --history").stdout
    assert "-drift" in history and f"exit {result['exit_code']}" in history, history
    gone = node_ssh(site, "node1", f"{mp_on_node1} --uninstall-timer; ls /etc/systemd/system/{unit}.* 2>&1",
                    check=False)
    assert "removed" in gone.stdout and "No such file" in gone.stdout, gone.stdout
    node_ssh(site, "node1", "rm -rf /opt/mp /opt/mp-src /root/site")  # node1 back to a plain node
