"""Where things live: the project's Ansible content, the per-site state and the cache."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIRNAME = ".mlops-provision"


def project_root() -> Path:
    """The directory that holds ``playbooks/`` and ``roles/``.

    ``MLOPS_PROVISION_HOME`` overrides it; otherwise it is the source checkout the
    package is installed from (``pip install -e .``).
    """
    env = os.environ.get("MLOPS_PROVISION_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "playbooks" / "site.yml").is_file() and (parent / "roles").is_dir():
            return parent
    raise RuntimeError(
        "cannot find the mlops-provision playbooks: install the package from its checkout "
        "(pip install -e .) or set MLOPS_PROVISION_HOME to the checkout"
    )


def roles_dir() -> Path:
    return project_root() / "roles"


def playbook(name: str = "site.yml") -> Path:
    return project_root() / "playbooks" / name


def checks_dir() -> Path:
    return Path(__file__).resolve().parent / "checks"


def cache_dir() -> Path:
    """Shared cache for sandbox images (built once, reused by every site and test run)."""
    env = os.environ.get("MLOPS_PROVISION_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "mlops-provision"


def site_state_dir(inventory: Path) -> Path:
    """``<site>/.mlops-provision``: the site is the directory holding the inventory file."""
    inv = inventory.resolve()
    site = inv if inv.is_dir() else inv.parent
    return site / STATE_DIRNAME
