"""The sandbox's generated inventory: hosts, groups, generated vault-encrypted secrets.

The YAML classes that keep ``!vault`` values (VaultText, InventoryLoader/Dumper) live here, in
one place, for the sandbox and its tests.
"""

from __future__ import annotations

import glob
import secrets
from pathlib import Path

import yaml

from mlops_provision.sandbox.image import HOST_CA_GLOB, host_debian_mirror
from mlops_provision.sandbox.model import State
from mlops_provision.site.roles import platform_groups  # the groups the playbooks name
from mlops_provision.site.rules import GROUP_SECRETS  # the one definition (validate uses it)

#: The sandbox's ansible-vault password file, next to its inventory.
VAULT_PASSWORD = "vault-password"
#: Where the sandbox's Alertmanager sends alerts: a port on the monitoring server's loopback.
SANDBOX_ALERT_WEBHOOK = "http://127.0.0.1:9099/alerts"


class VaultText(str):
    """An ansible-vault ciphertext, written to YAML as ``!vault |``."""


class InventoryDumper(yaml.SafeDumper):
    """Writes inventories with vault values (:class:`VaultText`) as ``!vault |``."""


class InventoryLoader(yaml.SafeLoader):
    """Reads inventories, keeping ``!vault`` values as :class:`VaultText`."""


InventoryDumper.add_representer(
    VaultText, lambda dumper, value: dumper.represent_scalar("!vault", str(value), style="|"))
InventoryLoader.add_constructor(
    "!vault", lambda loader, node: VaultText(loader.construct_scalar(node)))


def sandbox_vault_password(inventory: Path) -> Path | None:
    """The vault password file of a sandbox inventory (``SITE/.mlops-provision/sandbox/
    inventory.yml``), or None for any other inventory."""
    inv = Path(inventory).resolve()
    if inv.is_dir():
        return None
    box = inv.parent
    if box.name != "sandbox" or box.parent.name != ".mlops-provision":
        return None
    candidate = box / VAULT_PASSWORD
    return candidate if candidate.is_file() else None


def ensure_vault_password(path: Path) -> Path:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path


def group_secrets(inventory: Path, vault_password: Path, group: str) -> dict[str, VaultText]:
    """The group's generated secrets, vault-encrypted; those of the current inventory are kept.
    Random, as the vault password is (:func:`ensure_vault_password`), never the example site's:
    validate refuses those, as published (``site.rules.published_secrets_used``)."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    current: dict = {}
    if inventory.exists():
        data = yaml.load(inventory.read_text(), Loader=InventoryLoader) or {}
        current = (((data.get("all") or {}).get("children") or {}).get(group) or {}).get("vars") or {}
    vault = VaultLib([("default", VaultSecret(ensure_vault_password(vault_password).read_bytes().strip()))])
    out = {}
    for name in GROUP_SECRETS[group]:
        old = current.get(name)
        if isinstance(old, VaultText):
            try:
                vault.decrypt(str(old).strip())
                out[name] = old
                continue
            except Exception:  # another vault password (an older sandbox): generate anew
                pass
        out[name] = VaultText(vault.encrypt(secrets.token_urlsafe(24)).decode())
    return out


def group_vars(directory: Path, inventory: Path, vault_password: Path, group: str) -> dict:
    """Variables the sandbox gives a group (generated secrets, names the tests use)."""
    out: dict = dict(group_secrets(inventory, vault_password, group)) if group in GROUP_SECRETS else {}
    if group == "mlflow":
        # The admin-side client reaches MLflow at https://localhost:<published port>. The site CA
        # stays in the sandbox directory also for copies of this inventory made elsewhere.
        out |= {"mlflow_extra_server_names": ["localhost"],
                "mlflow_ca_certificate_path": str(directory / "mlflow-ca.crt"),
                "mlflow_ca_key_path": str(directory / "mlflow-ca.key.vault")}
    if group == "monitoring":
        # The admin-side client (`energy`, a browser) reaches the page at https://localhost:<port>;
        # alerts go to a webhook on the server's loopback (SANDBOX_ALERT_WEBHOOK: nothing listens
        # there unless a test or an admin starts a receiver; docs/sandbox.md).
        out |= {"prometheus_extra_server_names": ["localhost"],
                "prometheus_alert_webhooks": [{"name": "sandbox", "url": SANDBOX_ALERT_WEBHOOK}]}
    return out


def write_inventory(directory: Path, state: State, key: Path, site_vars: dict,
                    connect_timeout_s: int = 10) -> Path:
    """Write ``directory/inventory.yml`` for the nodes of ``state``; returns its path.
    ``connect_timeout_s``: how long SSH may take to reach a node (``ansible_timeout``, which
    `up`, `drift` and `verify` read)."""
    inventory_path = directory / "inventory.yml"
    vault_password = directory / VAULT_PASSWORD
    groups: dict[str, dict] = {g: {"hosts": {}} for g in platform_groups()}
    for node in state.nodes:
        for g in node.groups:
            groups[g]["hosts"][node.name] = None
    inventory = {
        "all": {
            "hosts": {n.name: {"ansible_host": "127.0.0.1", "ansible_port": n.ssh_port,
                               "mlops_node_address": n.address}
                      | ({"monitoring_page_url": f"https://localhost:{n.ports['monitoring']}/"}
                         if "monitoring" in n.ports else {})
                      for n in state.nodes},
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                           "-o UserKnownHostsFile=/dev/null",
                "ansible_timeout": connect_timeout_s,
                # every `sandbox up` makes nodes with new host keys: not checked here (a real
                # site's are: host_key_checking stays on)
                "ansible_host_key_checking": False,
                "base_extra_ca_certificates": sorted(glob.glob(HOST_CA_GLOB)),
                # the nodes' read-only seed mount is read-only by design: no filesystem alert
                "node_exporter_filesystem_mount_points_exclude":
                    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+|mlops-seed)($|/)",
                # the mirror the image came from, as a site names its own: base writes it as
                # deb822 sources with Signed-By
                "base_apt_mirror": host_debian_mirror(),
                **site_vars,
            },
            "children": {g: v for g, v in groups.items() if v["hosts"]},
        }
    }
    for group, body in inventory["all"]["children"].items():
        extra = group_vars(directory, inventory_path, vault_password, group)
        if extra:
            body["vars"] = extra
    header = ("# Generated by `mlops-provision sandbox up` "
              f"({state.kind}, {len(state.nodes)} node(s)); rewritten on every `sandbox up`.\n"
              "# The host's extra CA certificates are passed on so that pip works inside the nodes.\n"
              f"# Vault values decrypt with {VAULT_PASSWORD} next to this file (mlops-provision finds it).\n")
    ensure_vault_password(vault_password)
    inventory_path.write_text(header + yaml.dump(inventory, Dumper=InventoryDumper, sort_keys=False))
    return inventory_path
