"""A real sandbox for the integration tests: brought up once per module, torn down after."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_provision.sandbox import Sandbox, missing_host_packages
from mlops_provision.sandbox.core import VAULT_PASSWORD, InventoryDumper, InventoryLoader
from tests.conftest import mp


def require_host_tools(kind: str) -> None:
    missing = missing_host_packages(kind)
    if missing:  # a failure, not a skip: the README's setup command installs these
        pytest.fail(f"sandbox host packages missing: {' '.join(missing)} (run scripts/setup.sh)")


def bring_up(site: Path, nodes: int, kind: str) -> Path:
    require_host_tools(kind)
    res = mp("sandbox", "up", "--site", site, "--nodes", str(nodes), "--kind", kind, timeout=1800)
    assert res.rc == 0, res.stderr
    return site / ".mlops-provision" / "sandbox" / "inventory.yml"


def tear_down(site: Path) -> None:
    res = mp("sandbox", "down", "--site", site)
    assert res.rc == 0, res.stderr
    shutil.rmtree(site, ignore_errors=True)


def edit_inventory(inventory: Path, edit, path: Path | None = None) -> Path:
    """Write the sandbox inventory, changed by ``edit(data)``, to ``path`` (default: in place).
    Vault values stay encrypted (``VaultText``)."""
    data = yaml.load(inventory.read_text(), Loader=InventoryLoader)
    edit(data)
    path = path or inventory
    path.write_text(yaml.dump(data, Dumper=InventoryDumper, sort_keys=False))
    return path


def variant(inventory: Path, name: str, edit) -> Path:
    """A copy of the sandbox inventory in its own site directory, changed by ``edit(data)``.
    Pass ``vault_password(inventory)`` to commands on a variant (the CLI finds the sandbox's
    own only for the sandbox's inventory)."""
    site = inventory.parent.parent.parent / name
    site.mkdir(exist_ok=True)
    return edit_inventory(inventory, edit, site / "inventory.yml")


def vault_password(inventory: Path) -> Path:
    """The sandbox's vault password file (it encrypts the secrets `sandbox up` generates), for
    the sandbox's inventory or a variant of it."""
    own = inventory.parent / VAULT_PASSWORD
    if own.exists():
        return own
    return inventory.parent.parent / ".mlops-provision" / "sandbox" / VAULT_PASSWORD


def node_ssh(inventory: Path, node: str, command: str, check: bool = True,
             timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command on a sandbox node over the sandbox's own SSH key (not through Ansible)."""
    box = Sandbox(inventory.parent.parent.parent)
    target = next(n for n in box.state().nodes if n.name == node)
    return subprocess.run([*box.ssh_command(target), command], check=check, capture_output=True, text=True,
                          timeout=timeout)


def by_host(summary: dict) -> dict[str, dict]:
    return {h["host"]: h for h in summary["hosts"]}
