"""Checks for the `mlflow` role (hosts of group mlflow): the server, its TLS proxy, the
certificate, authentication, the unit's sandboxing, the secrets' files and the backup timer.

HTTP(S) probes run on the node itself (curl to 127.0.0.1 with the server's name), so they prove
nginx and MLflow without depending on the firewall or the network in between."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mlops_provision.checks.conftest import listeners

pytestmark = pytest.mark.roles("mlflow")

SANDBOXING = {  # systemctl show property -> value the unit must have
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
    "ProtectHostname": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes", "RestrictNamespaces": "yes", "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "UMask": "0027", "Restart": "on-failure",
}


@dataclass
class Server:
    """The role's effective settings for this node (defaults, OS vars, inventory)."""

    name: str
    vars: dict
    names: list[str]
    in_container: bool

    def __getitem__(self, key: str):
        return self.vars[key]

    @property
    def data_dir(self) -> str:
        return self["mlflow_data_dir"]

    @property
    def site_ca(self) -> bool:
        return not self["mlflow_tls_certificate"] and not self["mlflow_tls_private_key"]


def _unrendered(value) -> bool:
    return isinstance(value, str) and "{{" in value


@pytest.fixture(scope="module")
def server(host, node) -> Server:
    if "mlflow" not in node.groups:
        pytest.skip("not in group mlflow: no MLflow server here")
    names = node["mlflow_server_names"]  # Ansible rendered it with the node's fqdn fact
    for key in ("mlflow_server_names", "mlflow_data_dir", "mlflow_artifacts_dir", "mlflow_backup_dir"):
        assert not _unrendered(node[key]), f"{key} = {node[key]!r} cannot be resolved without Ansible"
    return Server(name=node.name, vars=node.vars, names=names, in_container=node.in_container)


def _curl(host, server: Server, url: str, *args: str):
    """curl on the node, to nginx on 127.0.0.1 under the server's first name; trusts the site CA."""
    name = server.names[0]
    https, http = server["mlflow_https_port"], server["mlflow_http_port"]
    return host.run(
        "curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' --max-time 20 "
        f"--cacert {server['mlflow_tls_ca_file']} --resolve {name}:{https}:127.0.0.1 --resolve {name}:{http}:127.0.0.1 "
        + " ".join(args) + f" '{url.format(name=name, https=https, http=http)}'")


def _main_pid(host) -> int:
    """The server's process; a check that reads it fails plainly when the server does not run
    (its own check says so: 'MLflow server active and enabled')."""
    pid = int(host.check_output("systemctl show -p MainPID --value mlflow") or 0)
    assert pid, "mlflow.service is not running: nothing to read from its process"
    return pid


def test_server_running(host, server):
    """MLflow server active and enabled"""
    svc = host.service("mlflow")
    assert svc.is_running, "mlflow.service is not running"
    assert svc.is_enabled, "mlflow.service is not enabled at boot"


def test_installed_version(host, server):
    """MLflow in its virtualenv is the pinned version"""
    # Read from the package metadata, not the server: a stopped or crashed server still shows
    # which version `up` would move it from.
    venv = server["mlflow_venv"]
    res = host.run(f"{venv}/bin/python -c \"import importlib.metadata as m; print(m.version('mlflow'))\"")
    version = res.stdout.strip() if res.rc == 0 else "none"
    assert version == server["mlflow_version"], (
        f"MLflow {version} installed in {venv}, {server['mlflow_version']} pinned (mlflow_version)")


def test_server_listens_on_loopback_only(host, server):
    """MLflow listens only on 127.0.0.1"""
    found = listeners(host, server["mlflow_port"])
    assert found == {"127.0.0.1"}, f"port {server['mlflow_port']} is bound on {sorted(found) or 'nothing'}"


def test_nginx_listens(host, server):
    """nginx active, enabled, listening on the HTTPS and HTTP ports"""
    svc = host.service("nginx")
    assert svc.is_running and svc.is_enabled, "nginx is not running and enabled"
    for port in (server["mlflow_https_port"], server["mlflow_http_port"]):
        found = listeners(host, port)
        assert found & {"0.0.0.0", "*", "::"}, f"nginx does not listen on all addresses on port {port}: {found}"


def test_certificate(host, server):
    """certificate valid for the server names, chains to the site CA"""
    cert = x509.load_pem_x509_certificate(host.file(server["mlflow_tls_cert_file"]).content)
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc, "the certificate is not valid now"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    covered = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)}
    missing = [n for n in server.names if n not in covered]
    assert not missing, f"the certificate does not cover {missing} (it covers {sorted(covered)})"
    if server.site_ca:
        ca_pem = host.file(server["mlflow_tls_ca_file"]).content
        local = Path(server["mlflow_ca_certificate_path"])
        if not _unrendered(str(local)) and local.is_file():
            assert local.read_bytes().strip() == ca_pem.strip(), f"{server['mlflow_tls_ca_file']} differs from {local}"
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert.verify_directly_issued_by(ca)  # raises if not signed by the site CA
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    key = host.file(server["mlflow_tls_key_file"])
    assert key.user == "root" and key.mode == 0o600, f"{key.path}: {key.user} {key.mode:o}"


def test_https_verifies_and_requires_login(host, server):
    """HTTPS verifies against the CA; the API answers 401 without credentials"""
    health = _curl(host, server, "https://{name}:{https}/health")
    assert health.rc == 0 and health.stdout.startswith("200"), f"/health over HTTPS: {health.stdout} {health.stderr}"
    api = _curl(host, server, "https://{name}:{https}/api/2.0/mlflow/experiments/search?max_results=1")
    assert api.stdout.startswith("401"), f"API without credentials answered {api.stdout}"


def test_https_headers(host, server):
    """HTTPS answers carry HSTS and one X-Content-Type-Options, and no nginx version"""
    name, https = server.names[0], server["mlflow_https_port"]
    for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1", "/no-such-page"):
        res = host.run(f"curl -sS -o /dev/null -D - --max-time 20 --cacert {server['mlflow_tls_ca_file']} "
                       f"--resolve {name}:{https}:127.0.0.1 'https://{name}:{https}{path}'")
        assert res.rc == 0, f"{path}: {res.stderr}"
        headers = [line.partition(":") for line in res.stdout.splitlines()[1:] if ":" in line]
        names = [k.strip().lower() for k, _, _ in headers]
        values = {k.strip().lower(): v.strip() for k, _, v in headers}
        count = names.count("x-content-type-options")
        assert count == 1, f"{path}: X-Content-Type-Options sent {count} times"
        assert "strict-transport-security" in names, f"{path}: no HSTS header"
        assert re.fullmatch(r"nginx", values.get("server", "nginx")), f"{path}: Server: {values.get('server')}"


def test_http_redirects_to_https(host, server):
    """plain HTTP redirects to HTTPS"""
    res = _curl(host, server, "http://{name}:{http}/some/path?q=1")
    code, _, location = res.stdout.partition(" ")
    assert code == "301", f"HTTP answered {res.stdout}"
    assert location.startswith(f"https://{server.names[0]}") and location.endswith("/some/path?q=1"), location


def test_unknown_host_refused(host, server):
    """unknown Host names are refused (HTTPS 421, HTTP closed)"""
    wrong = _curl(host, server, "https://{name}:{https}/health", "-H 'Host: wrong.example'")
    assert wrong.stdout.startswith("421"), f"a wrong Host header got {wrong.stdout}"
    http = _curl(host, server, "http://{name}:{http}/", "-H 'Host: wrong.example'")
    assert http.stdout.startswith("000"), f"plain HTTP with a wrong Host got {http.stdout}"
    if not [n for n in server.names if re.fullmatch(r"[0-9.]+|.*:.*", n)]:
        port = server["mlflow_https_port"]
        sni = host.run(f"curl -sk -o /dev/null --max-time 10 --resolve wrong.example:{port}:127.0.0.1 "
                       f"https://wrong.example:{port}/")
        assert sni.rc == 35, f"a TLS handshake for an unknown name was not refused (curl rc {sni.rc})"


def test_unit_sandboxing_configured(host, server):
    """MLflow unit sandboxing configured"""
    props = ",".join(SANDBOXING)
    shown = dict(line.split("=", 1) for line in
                 host.check_output(f"systemctl show -p {props} mlflow").splitlines())
    # systemd lists address families in its own order
    wrong = {k: (shown.get(k), v) for k, v in SANDBOXING.items()
             if sorted(shown.get(k, "").split()) != sorted(v.split())}
    assert not wrong, f"mlflow.service (got, expected): {wrong}"
    user = host.check_output("systemctl show -p User --value mlflow")
    assert user == server["mlflow_user"], f"mlflow.service runs as {user!r}"
    status = host.file(f"/proc/{_main_pid(host)}/status").content_string
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), "the server process may gain privileges"
    assert re.search(r"^CapEff:\s+0+$", status, re.M), "the server process has capabilities"


def test_unit_sandboxing_in_effect(host, server):
    """MLflow unit sandboxing in effect (read-only system, private mounts)"""
    pid = _main_pid(host)
    usr = host.check_output(f"findmnt -N {pid} -no OPTIONS --target /usr")
    assert usr.split(",")[0] == "ro", (
        f"/usr is {usr.split(',')[0]} for the server: its ProtectSystem is not applied (a container "
        "without CAP_SYS_ADMIN gets no mount namespace)")
    data = host.check_output(f"findmnt -N {pid} -no OPTIONS --target {server.data_dir}")
    assert data.split(",")[0] == "rw", f"{server.data_dir} is {data} for the server"
    own = host.check_output("findmnt -N 1 -no OPTIONS --target /usr")
    assert own.split(",")[0] == "rw", f"/usr is {own.split(',')[0]} for PID 1: not the server's own mount namespace"


def test_secret_files(host, server):
    """environment and auth config files are 0640 root:mlflow"""
    for path in (server["mlflow_env_file"], server["mlflow_auth_config"]):
        f = host.file(path)
        assert f.exists, f"{path} is missing"
        assert (f.user, f.group, f.mode) == ("root", server["mlflow_group"], 0o640), (
            f"{path}: {f.user}:{f.group} {f.mode:o}")
    env = host.file(server["mlflow_env_file"]).content_string
    assert re.search(r"^PGPASSWORD=", env, re.M), "the database password is not passed by the environment file"
    cmdline = host.file(f"/proc/{_main_pid(host)}/cmdline").content_string.replace("\0", " ")
    user = cmdline.split("://", 1)[1].split("@", 1)[0]
    assert ":" not in user, "a password is in the backend store URI on the server's command line"
    unit = host.file("/etc/systemd/system/mlflow.service").content_string
    for key in ("mlflow_db_password", "mlflow_admin_password"):
        secret = server.vars.get(key)
        if secret and not _unrendered(secret):  # known when the checks can decrypt the inventory
            assert secret not in unit and secret not in cmdline, f"{key} is in the unit or on the command line"


def test_data_placement(host, server):
    """artifacts and databases where configured, owned by the server"""
    for path in (server.data_dir, server["mlflow_artifacts_dir"]):
        d = host.file(path)
        assert d.is_directory and d.user == server["mlflow_user"] and d.mode == 0o750, (
            f"{path}: {d.user} {d.mode:o}")
    shown = host.check_output("systemctl show -p RequiresMountsFor --value mlflow").split()
    assert server.data_dir in shown, f"mlflow.service does not wait for {server.data_dir}: {shown}"
    owners = host.check_output(
        f"runuser -u postgres -- psql -p {server['mlflow_db_port']} -tAc "
        "\"SELECT datname || '=' || pg_get_userbyid(datdba) FROM pg_database\"")
    for db in (server["mlflow_db_name"], server["mlflow_auth_db_name"]):
        assert f"{db}={server['mlflow_db_user']}" in owners.split(), f"database {db} is not owned by the MLflow role"


def test_backup_timer(host, server):
    """backup timer active and enabled; backup and restore scripts installed"""
    timer = host.service("mlflow-backup.timer")
    assert timer.is_running and timer.is_enabled, "mlflow-backup.timer is not active and enabled"
    calendar = host.check_output("systemctl show -p TimersCalendar --value mlflow-backup.timer")
    assert "OnCalendar=" in calendar, calendar
    for script in (server["mlflow_backup_script"], server["mlflow_restore_script"]):
        f = host.file(script)
        assert f.exists and f.user == "root" and f.mode == 0o750, f"{script} missing or not root's 0750"
    backups = host.file(server["mlflow_backup_dir"])
    assert backups.is_directory and backups.mode == 0o700, f"{backups.path} is not a 0700 directory"



# --- nginx's effective configuration and files next to ours (drift) --------------------------


@pytest.mark.parametrize("directory", ["/etc/nginx/conf.d", "/etc/nginx/sites-enabled"])
def test_nginx_dropins_only_ours(host, server, directory):
    """nginx conf.d and sites-enabled hold only our site"""
    from mlops_provision.checks.unmanaged import assert_only_ours, strangers

    ours = {Path(server["mlflow_os_nginx_site"]).name}
    if server.name in server["monitoring_server_hosts"]:  # the monitoring page shares nginx here
        ours.add(Path(server["monitoring_nginx_site"]).name)
    found = strangers(host, directory, ours=ours)
    removed_by_up = [f for f in found if f in server["mlflow_os_nginx_default_sites"]]  # the role removes these
    assert not removed_by_up, f"the distribution's default site is enabled: {removed_by_up}"
    assert_only_ours(directory, found, "mlflow_purge_unmanaged", server["mlflow_purge_unmanaged"])


def test_nginx_effective_tls(host, server):
    """nginx -T: every TLS server speaks TLS 1.2/1.3 only"""
    # nginx -T prints each file after "# configuration file PATH:"; included files' server blocks
    # start at their file's top level, nginx.conf's inside http. A server without ssl_protocols
    # inherits http's (Debian's nginx.conf allows TLSv1 and TLSv1.1).
    text = host.check_output("nginx -T 2>/dev/null")
    http_protocols, servers, block, depth = None, [], None, 0
    for raw in text.splitlines():
        if raw.startswith("# configuration file "):
            depth, block = 0, None
            continue
        line = raw.split("#", 1)[0].strip()
        if block is None and re.match(r"^server\s*\{", line):
            block = {"depth": depth, "ssl": False, "protocols": None, "names": "server"}
            servers.append(block)
        m = re.match(r"^ssl_protocols\s+([^;]+);", line)
        if m and block is None:
            http_protocols = m.group(1).split()
        elif m:
            block["protocols"] = m.group(1).split()
        if block is not None and re.match(r"^listen\s+.*\bssl\b", line):
            block["ssl"] = True
        if block is not None and line.startswith("server_name"):
            block["names"] = line.rstrip(";")
        depth += line.count("{") - line.count("}")
        if block is not None and depth <= block["depth"]:
            block = None
    weak = [(b["names"], b["protocols"] or http_protocols) for b in servers
            if b["ssl"] and set(b["protocols"] or http_protocols or []) - {"TLSv1.2", "TLSv1.3"}]
    assert any(b["ssl"] for b in servers), "nginx -T shows no TLS server"
    assert not weak, f"TLS servers allowing old protocols (server, ssl_protocols): {weak}"


def test_nginx_exporter_running_on_node_address(host, server):
    """nginx exporter active, on the node's address, reading nginx's status"""
    svc = host.service(server["mlflow_os_nginx_exporter_service"])
    assert svc.is_running and svc.is_enabled, f"{server['mlflow_os_nginx_exporter_service']} not running/enabled"
    address, port = server["mlflow_nginx_exporter_listen_address"], server["monitoring_nginx_exporter_port"]
    found = listeners(host, port)
    assert found == {address}, f"port {port}: listening on {sorted(found)}, expected {address}"
    host_part = f"[{address}]" if ":" in address else address
    text = host.check_output(f"curl -fsS --max-time 10 http://{host_part}:{port}/metrics")
    assert "nginx_up 1" in text.splitlines(), "the exporter cannot read nginx's status (nginx_up is not 1)"
