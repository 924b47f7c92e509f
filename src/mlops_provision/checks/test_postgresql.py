"""Checks for the `postgresql` role (hosts of group mlflow): the cluster runs where configured,
listens only where told, waits for its data volume, and lets no one in without a password."""

from __future__ import annotations

import pytest

from mlops_provision.checks.conftest import listeners

pytestmark = pytest.mark.roles("postgresql")


@pytest.fixture(scope="module")
def pg(node):
    if "mlflow" not in node.groups:
        pytest.skip("not in group mlflow: no PostgreSQL here")
    return node


def _service(pg) -> str:
    return pg["postgresql_os_service"]


def _data_dir(pg) -> str:
    return pg["postgresql_cluster_data_dir"]  # postgresql_data_dir, or the role's default


def test_cluster_running(host, pg):
    """PostgreSQL cluster active and enabled"""
    svc = host.service(_service(pg))
    assert svc.is_running, f"{_service(pg)} is not running"
    assert svc.is_enabled, f"{_service(pg)} is not enabled at boot"


def test_listens_only_where_configured(host, pg):
    """PostgreSQL listens only on its configured addresses"""
    found = listeners(host, pg["postgresql_port"])
    assert found, f"nothing listens on port {pg['postgresql_port']}"
    wanted = set(pg["postgresql_listen_addresses"])
    assert found <= wanted, f"PostgreSQL listens on {sorted(found)}, configured: {sorted(wanted)}"


def test_data_directory(host, pg):
    """PostgreSQL data directory is the configured one, postgres-only"""
    lines = host.check_output("pg_lsclusters --no-header").splitlines()
    mine = [line.split() for line in lines
            if line.split()[:2] == [pg["postgresql_os_version"], pg["postgresql_cluster_name"]]]
    assert mine, f"no cluster {pg['postgresql_os_version']}/{pg['postgresql_cluster_name']}: {lines}"
    assert mine[0][5] == _data_dir(pg), f"the cluster's data is in {mine[0][5]}, expected {_data_dir(pg)}"
    data = host.file(_data_dir(pg))
    assert data.user == "postgres" and data.mode == 0o700, f"{data.path}: {data.user} {data.mode:o}"


def test_waits_for_its_volume(host, pg):
    """PostgreSQL waits for its data volume at boot"""
    mounts = host.check_output(f"systemctl show -p RequiresMountsFor --value {_service(pg)}").split()
    assert _data_dir(pg) in mounts, f"{_service(pg)} RequiresMountsFor={mounts}"


def test_no_passwordless_network_access(host, pg):
    """pg_hba.conf: no trust, network logins by SCRAM only"""
    conf = host.file(f"{pg['postgresql_os_config_dir']}/pg_hba.conf")
    rules = [line.split() for line in conf.content_string.splitlines() if line.strip() and not line.startswith("#")]
    assert rules, "pg_hba.conf has no rules"
    assert not [r for r in rules if r[-1] in ("trust", "password", "md5")], f"weak rules: {rules}"
    assert all(r[-1] in ("scram-sha-256", "reject") for r in rules if r[0].startswith("host")), rules


# --- effective settings and files next to ours (drift) ---------------------------------------


def _psql(host, pg, sql: str) -> list[list[str]]:
    out = host.check_output(f"runuser -u postgres -- psql -XAt -F '|' -p {pg['postgresql_port']} -c \"{sql}\"")
    return [line.split("|") for line in out.splitlines() if line.strip()]


def test_conf_d_only_ours(host, pg):
    """PostgreSQL conf.d holds only our file"""
    from mlops_provision.checks.unmanaged import assert_only_ours, strangers

    directory, ours = pg["postgresql_conf_file"].rsplit("/", 1)  # the role's conf.d and file
    found = strangers(host, directory, ours={ours})
    assert_only_ours(directory, found, "postgresql_purge_unmanaged", pg["postgresql_purge_unmanaged"])


def test_settings_come_from_our_files(host, pg):
    """pg_settings: every file setting comes from postgresql.conf or ours"""
    from mlops_provision.checks.unmanaged import Unmanaged

    ours = pg["postgresql_conf_file"].rsplit("/", 1)[1]
    rows = _psql(host, pg, "select name, setting, sourcefile from pg_settings where sourcefile is not null "
                           "and sourcefile not like '%/postgresql.conf' "
                           f"and sourcefile not like '%/{ours}'")
    conf_d = pg["postgresql_conf_file"].rsplit("/", 1)[0] + "/"
    purged = pg["postgresql_purge_unmanaged"] and all(r[2].startswith(conf_d) for r in rows)
    message = f"settings from other files (name, value, file): {rows}"
    if rows and not purged:
        raise Unmanaged(message, "remove the file by hand")
    assert not rows, f"{message} (`up` removes the file: postgresql_purge_unmanaged is on)"
    pending = _psql(host, pg, "select name from pg_settings where pending_restart")
    assert not pending, f"changed settings wait for a restart: {pending}"


def test_effective_hba_rules(host, pg):
    """pg_hba_file_rules: network logins by SCRAM only, no trust"""
    rows = _psql(host, pg, "select line_number, type, database, user_name, auth_method, error from pg_hba_file_rules")
    assert rows, "pg_hba_file_rules is empty"
    bad = [r for r in rows if r[5] or r[4] in ("trust", "password", "md5")
           or (r[1].startswith("host") and r[4] not in ("scram-sha-256", "reject"))]
    assert not bad, f"weak or broken rules (line, type, db, user, method, error): {bad}"


def test_exporter_running_on_node_address(host, pg):
    """PostgreSQL exporter active, on the node's address, reading the server"""
    svc = host.service(pg["postgresql_os_exporter_service"])
    assert svc.is_running and svc.is_enabled, f"{pg['postgresql_os_exporter_service']} not running/enabled"
    address, port = pg["postgresql_exporter_listen_address"], pg["monitoring_postgres_exporter_port"]
    found = listeners(host, port)
    assert found == {address}, f"port {port}: listening on {sorted(found)}, expected {address}"
    host_part = f"[{address}]" if ":" in address else address
    text = host.check_output(f"curl -fsS --max-time 10 http://{host_part}:{port}/metrics")
    assert "pg_up 1" in text.splitlines(), "the exporter cannot read the server (pg_up is not 1)"
