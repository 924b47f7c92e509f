"""A site made by `mlops-provision init`, filled in as docs/first-site.md says, converges a
sandbox node with its own fresh secrets: node1 of the session's container sandbox (the MLflow
server), taken over by the new site. Run from the site directory as an admin does: no -i and
no vault flag (the site's ansible.cfg names both). Afterwards MLflow takes the new site's admin
password and refuses the sandbox's.

Runs after every other reader of the shared container sandbox (it takes node1 over for good):
the last container module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_provision.sandbox import Sandbox
from mlops_provision.sandbox.core import InventoryLoader
from tests.integration.conftest import by_host

pytestmark = pytest.mark.integration
NODE = "node1"
CLI = [sys.executable, "-m", "mlops_provision.cli"]


def in_site(site: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """`mlops-provision ARGS` run in the site directory, with nothing of the suite's in the
    environment that would point it at another inventory or vault password."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANSIBLE_INVENTORY", "ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_CONFIG",
                        "ANSIBLE_VAULT_IDENTITY_LIST")}
    proc = subprocess.run([*CLI, *args], cwd=site, env=env, capture_output=True, text=True, timeout=timeout)
    sys.stderr.write(f"\n[init site] mlops-provision {' '.join(args)}: rc={proc.returncode}\n")
    return proc


@pytest.fixture(scope="module")
def site(tmp_path_factory, converged_containers, container_inventory) -> Path:
    """`init`, then the admin's edits: node1 in control_plane and mlflow with its address and
    SSH settings, the site-wide settings the sandbox needs in group_vars/all.yml (its CA
    bundle for pip, its admin network), the MLflow name the admin reaches it by. The secrets
    stay init's."""
    site = tmp_path_factory.mktemp("init") / "mysite"
    made = subprocess.run([*CLI, "init", str(site)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    sandbox = yaml.load(container_inventory.read_text(), Loader=InventoryLoader)["all"]
    node = sandbox["hosts"][NODE]
    connection = {k: v for k, v in sandbox["vars"].items() if k.startswith("ansible_")}
    hosts = {"all": {"children": {
        "control_plane": {"hosts": {NODE: {**node, **connection}}},
        "mlflow": {"hosts": {NODE: None}},
    }}}
    (site / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    settings = {k: v for k, v in sandbox["vars"].items() if not k.startswith("ansible_")}
    all_vars = site / "group_vars" / "all.yml"
    filled = {**yaml.safe_load(all_vars.read_text()), **settings}
    all_vars.write_text("---\n# init's settings, filled in for the sandbox\n" + yaml.safe_dump(filled, sort_keys=False))
    mlflow_vars = site / "group_vars" / "mlflow" / "main.yml"
    mlflow_vars.write_text(mlflow_vars.read_text() + "mlflow_extra_server_names: [localhost]\n")
    return site


def _password(site: Path) -> str:
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret((site / ".vault-password").read_bytes().strip()))])
    data = yaml.safe_load(vault.decrypt((site / "group_vars" / "mlflow" / "vault.yml").read_bytes()))
    return data["vault_mlflow_admin_password"]


def test_a_site_made_by_init_validates_converges_and_verifies(site, container_inventory) -> None:
    valid = in_site(site, "validate")
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "valid (1 host(s): node1)" in valid.stdout
    up = in_site(site, "up", "--limit", NODE, "--output", "json")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    summary = json.loads(up.stdout)
    assert by_host(summary)[NODE]["failed"] == 0
    changed = {t for tasks in summary["changed_tasks"][NODE].values() for t in tasks}
    # its own secrets reached the node (the database password in the server's environment file;
    # the admin password: below)
    assert "Mlflow | Write the server's secrets (environment file, root:mlflow 0640)" in changed, sorted(changed)
    again = in_site(site, "up", "--limit", NODE, "--output", "json")
    assert again.returncode == 0 and by_host(json.loads(again.stdout))[NODE]["changed"] == 0, again.stdout[-3000:]
    proved = in_site(site, "verify", "--limit", NODE, "--output", "json")
    assert proved.returncode == 0, proved.stdout[-3000:] + proved.stderr[-2000:]


def test_mlflow_takes_the_new_sites_password_and_refuses_the_old(site, container_inventory) -> None:
    import requests

    from tests.integration.test_mlflow import _secret

    node = next(n for n in Sandbox(container_inventory.parent.parent.parent).state().nodes if n.name == NODE)
    url = f"https://localhost:{node.ports['https']}/api/2.0/mlflow/users/get?username=admin"
    ca = str(site / "mlflow-ca.crt")  # the new site's own CA signed the server's certificate anew
    new = requests.get(url, auth=("admin", _password(site)), verify=ca, timeout=30)
    assert new.status_code == 200, new.text
    old = requests.get(url, auth=("admin", _secret(container_inventory, "mlflow_admin_password")), verify=ca,
                       timeout=30)
    assert old.status_code == 401
