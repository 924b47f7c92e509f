"""Cross-field rules of the GPU layer, run by ``validate`` before any host is touched.

Types and choices (an unknown source, a branch that is not a branch) are in the roles'
``meta/argument_specs.yml``. What needs two fields is here, as a pure function of one host's
resolved variables: :func:`problems` returns ``(key, expected)`` pairs. :func:`gpu_rules` is the
adapter for the site model's host rules (``mlops_provision.site.rules.HOST_RULES``).

The CUDA compatibility table is read from the cuda role (``roles/cuda/vars/main.yml``), and the
branch Debian's archive carries per release from the nvidia_driver role
(``roles/nvidia_driver/vars/main.yml``): one table each, for the role and for validate.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mlops_provision.releases import describe, suite_of

#: Role defaults these rules fall back on when the inventory does not set a key.
DEFAULTS_FROM = ("nvidia_driver", "cuda", "containerd")
MOK_KEYS = ("nvidia_driver_mok_key", "nvidia_driver_mok_cert", "nvidia_driver_mok_password")


def _roles_dir() -> Path:
    from mlops_provision import paths

    return paths.roles_dir()


@lru_cache(maxsize=4)
def compat_table(roles_dir: str | None = None) -> dict[str, str]:
    """Driver branch -> newest CUDA "MAJOR.MINOR" it runs (the cuda role's table)."""
    path = Path(roles_dir or _roles_dir()) / "cuda" / "vars" / "main.yml"
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in (data.get("cuda_driver_max_cuda") or {}).items()}


@lru_cache(maxsize=4)
def debian_branches(roles_dir: str | None = None) -> dict[str, str]:
    """Debian release -> the one driver branch its archive carries (the nvidia_driver role's
    ``nvidia_driver_debian_branch``)."""
    path = Path(roles_dir or _roles_dir()) / "nvidia_driver" / "vars" / "main.yml"
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in (data.get("nvidia_driver_debian_branch") or {}).items()}


@lru_cache(maxsize=4)
def containerd_series(roles_dir: str | None = None) -> dict[str, str]:
    """Debian release -> the containerd series its archive carries (the containerd role's
    ``containerd_debian_series``, also the default ``containerd_version``)."""
    path = Path(roles_dir or _roles_dir()) / "containerd" / "vars" / "main.yml"
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in (data.get("containerd_debian_series") or {}).items()}


@lru_cache(maxsize=4)
def supported_releases(roles_dir: str | None = None) -> tuple[str, ...]:
    """The Debian releases the nvidia_driver role supports (``meta/main.yml`` platforms)."""
    path = Path(roles_dir or _roles_dir()) / "nvidia_driver" / "meta" / "main.yml"
    data = yaml.safe_load(path.read_text()) or {}
    platforms = (data.get("galaxy_info") or {}).get("platforms") or []
    return tuple(str(v) for p in platforms if isinstance(p, dict) and p.get("name") == "Debian"
                 for v in p.get("versions") or [])


def debian_branch_problem(branch: str, release: str | None, roles_dir: str | None = None) -> str:
    """Why ``nvidia_driver_source: debian`` cannot install ``branch`` ("" when it can). An
    unknown ``release`` (validate reads no host) stands for the releases the role supports:
    the branch must be one of theirs, and the message says which release was assumed."""
    table = debian_branches(roles_dir)
    releases = (release,) if release else supported_releases(roles_dir)
    carried = {r: table[r] for r in releases if r in table}
    if branch in carried.values():
        return ""
    if not carried:
        return (f"Debian {' or '.join(releases) or '(no release)'} is not in the table of the "
                "branches Debian's archive carries (nvidia_driver_debian_branch, "
                "roles/nvidia_driver/vars/main.yml): expected nvidia_driver_source: nvidia")
    ships = ", ".join(f"Debian {r} carries branch {b} only" for r, b in carried.items())
    assumed = "" if release else (
        f" (the release assumed: {' and '.join(carried)}, what role nvidia_driver supports, "
        "roles/nvidia_driver/meta/main.yml)")
    wanted = " or ".join(f'"{b}"' for b in dict.fromkeys(carried.values()))
    return (f"branch {branch} is not in Debian's archive: {ships}{assumed}; expected "
            f"nvidia_driver_branch {wanted} with nvidia_driver_source: debian, or "
            f"nvidia_driver_source: nvidia for branch {branch} (NVIDIA's repository)")


@lru_cache(maxsize=4)
def role_defaults(roles_dir: str | None = None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for role in DEFAULTS_FROM:
        path = Path(roles_dir or _roles_dir()) / role / "defaults" / "main.yml"
        if path.is_file():
            merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def _version(text: object) -> tuple[int, ...] | None:
    parts = str(text).split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _templated(value: object) -> bool:
    return isinstance(value, str) and "{{" in value


def problems(values: Mapping[str, Any], roles: set[str], vaulted: set[str] = frozenset(),
             roles_dir: str | None = None) -> list[tuple[str, str]]:
    """Problems of one host: ``values`` are its inventory variables (role defaults fill the rest),
    ``roles`` the roles it runs, ``vaulted`` the keys whose value comes from ansible-vault."""
    found: list[tuple[str, str]] = []
    defaults = role_defaults(roles_dir)

    def get(key: str) -> Any:
        return values[key] if key in values else defaults.get(key)

    table = compat_table(roles_dir)
    branch = str(get("nvidia_driver_branch"))
    if "nvidia_driver" in roles and get("nvidia_driver_source") == "debian" and not _templated(branch):
        why = debian_branch_problem(branch, suite_of(values), roles_dir)
        if why:
            found.append(("nvidia_driver_branch", why))
    if "cuda" in roles and not _templated(get("cuda_toolkits")) and branch in table:
        toolkits = get("cuda_toolkits")
        toolkits = toolkits if isinstance(toolkits, list) else []
        max_cuda = table[branch]
        bad = [str(t) for t in toolkits if _version(t) is None]
        if bad:
            found.append(("cuda_toolkits", f"expected versions as MAJOR.MINOR (e.g. \"12.2\"), got {', '.join(bad)}"))
        too_new = [str(t) for t in toolkits if _version(t) and _version(t) > _version(max_cuda)]
        if too_new:
            found.append(("cuda_toolkits", f"CUDA {', '.join(too_new)} cannot run on driver branch {branch} "
                                           f"(nvidia_driver_branch): expected {max_cuda} or older, or a newer "
                                           "branch (compatibility table: roles/cuda/vars/main.yml)"))
        default = get("cuda_default")
        if not _templated(default) and str(default) not in [str(t) for t in toolkits]:
            found.append(("cuda_default", f"expected one of cuda_toolkits ({', '.join(map(str, toolkits))}), "
                                          f"got {default}"))
        if get("cuda_source") == "debian" and len(toolkits) != 1:
            found.append(("cuda_toolkits", "expected exactly one version with cuda_source: debian (Debian 12 "
                                           "carries CUDA 11.8 only)"))
    if "containerd" in roles:
        found += _containerd_problems(values, get, roles_dir)
    if "nvidia_driver" in roles and get("nvidia_driver_secure_boot") == "on":
        for key in MOK_KEYS:
            if not values.get(key):
                found.append((key, "required with nvidia_driver_secure_boot: on (the site's module-signing "
                                   "key pair and MOK password): expected a vault-encrypted value"))
            elif key not in vaulted:
                found.append((key, "is plain text: expected a vault-encrypted value "
                                   "(`ansible-vault encrypt_string --name " + key + "`)"))
    return found


def _containerd_problems(values: Mapping[str, Any], get: Any, roles_dir: str | None) -> list[tuple[str, str]]:
    """The series the site names must be the one the host's release carries (every supported
    release's when the inventory does not say which); CDI needs 1.7 or newer."""
    series = containerd_series(roles_dir)
    suite = suite_of(values)
    carried = {suite: series[suite]} if suite in series else dict(series)
    version = str(get("containerd_version"))
    found = []
    if "containerd_version" in values and not _templated(version) and version not in carried.values():
        found.append(("containerd_version", f"{', '.join(describe(s) + ' carries ' + v for s, v in carried.items())}: "
                                            f"expected that series or no containerd_version (the release's own), "
                                            f"got {version}"))
    else:
        if not _templated(version):
            carried = {s: v for s, v in carried.items() if v == version}
        if get("containerd_cdi") is True and carried and all(_version(v) < (1, 7) for v in carried.values()):
            which = ", ".join(f"containerd {v} ({describe(s)})" for s, v in carried.items())
            found.append(("containerd_cdi", f"CDI needs containerd 1.7 or newer: expected false with {which}"))
    return found


#: For a key the inventory leaves at the role default: the keys that make the default wrong,
#: where the problem is reported (one group_vars line, one problem, however many hosts).
CAUSES: dict[str, tuple[str, ...]] = {
    "nvidia_driver_branch": ("nvidia_driver_source",),
    "cuda_toolkits": ("nvidia_driver_branch", "cuda_source", "cuda_default"),
    "cuda_default": ("cuda_toolkits",),
    "containerd_cdi": ("containerd_version",),
    **dict.fromkeys(MOK_KEYS, ("nvidia_driver_secure_boot",)),
}


def gpu_rules(host) -> None:
    """Host rule for the site model: ``host`` is a ``site.hostview.HostView``."""
    vaulted = {key for key in MOK_KEYS if key in host.vars and host.source(key)[0] == "vault"}
    for key, expected in problems(host.vars, set(host.roles), vaulted):
        host.problem(key, expected, at_host=key not in host.vars, cause=CAUSES.get(key, ()))
