"""``mlops-provision init SITE``: a new site directory an admin can commit, made from nothing.

It holds an inventory skeleton (``hosts.yml``: every platform group, read from the playbooks,
each with a commented example host), ``group_vars/`` with fresh random secrets already
vault-encrypted (the ones the platform's rules demand: :data:`VAULT_SECRETS`), the vault
password (``.vault-password``, 0600) or the admin's own vault client script, a minimal
``ansible.cfg`` for Ansible's own commands in the site, a ``.gitignore``, CI templates for GitLab
and GitHub (validate on every push, drift on a schedule), and a git repository with a first
commit. The file templates live in ``templates/`` next to this module.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from mlops_provision.errors import BadInput, Failed

#: The vault password file init writes (default), relative to the site.
VAULT_PASSWORD_FILE = ".vault-password"
#: The git identity of the first commit when git has none configured.
INIT_NAME, INIT_EMAIL = "mlops-provision init", "mlops-provision-init@localhost"


def _password() -> str:
    """A random password: 24 bytes, 32 URL-safe characters (fits shells, URIs, YAML)."""
    return secrets.token_urlsafe(24)


def _key32() -> str:
    """32 random bytes in base64 (a Kubernetes Secrets encryption key)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


#: The secrets init makes: group -> vault variable -> how to make its value. Each goes into
#: ``group_vars/<group>/vault.yml`` (encrypted whole); ``group_vars/<group>/main.yml`` (a
#: template) hands it to the role's variable. They are what the site's rules demand
#: (:mod:`mlops_provision.site.rules`: ``group_secrets``, ``password_weakness``,
#: ``kubernetes_encryption_key``).
VAULT_SECRETS: dict[str, dict[str, Callable[[], str]]] = {
    "mlflow": {
        # the MLflow admin user's password (HTTP basic auth) and its PostgreSQL role's
        "vault_mlflow_admin_password": _password,
        "vault_mlflow_db_password": _password,
    },
    "control_plane": {
        "vault_kubernetes_control_plane_encryption_key": _key32,
    },
    "monitoring": {
        # the monitoring page's basic-auth password (also the Prometheus API `energy` reads)
        "vault_prometheus_web_password": _password,
    },
}

#: What each platform group is for, and the example host its comment shows (name, admin and
#: cluster address); a group not listed here gets a generic line and host.
GROUP_INFO: dict[str, tuple[str, str]] = {
    "control_plane": ("the cluster's control plane (Kubernetes API, scheduler, etcd)", "cp1"),
    "gpu_workers": ("nodes with NVIDIA GPUs that run training and inference jobs", "gpu1"),
    "cpu_workers": ("nodes without GPUs, for CPU jobs and supporting services", "cpu1"),
    "mlflow": ("the node(s) running the MLflow tracking server and its PostgreSQL", "cp1"),
    "monitoring": ("the node(s) running Prometheus, Alertmanager and the monitoring page", "cp1"),
}

#: Templates (in ``templates/``) -> where they go in the site; ``*.j2`` are rendered, the
#: rest copied. ``group_vars/`` is copied whole.
TEMPLATES: dict[str, str] = {
    "hosts.yml.j2": "hosts.yml",
    "ansible.cfg.j2": "ansible.cfg",
    "gitignore": ".gitignore",
    "gitlab-ci.yml.j2": ".gitlab-ci.yml",
    "github-workflow.yml.j2": ".github/workflows/mlops-provision.yml",
}


@dataclass
class InitResult:
    """What :func:`init_site` made."""

    site: Path
    #: the files written, relative to the site, sorted
    files: list[str] = field(default_factory=list)
    #: the vault password file written (default), or None with a vault client
    vault_password_file: Path | None = None
    #: the vault client script (absolute), or None
    vault_client: Path | None = None
    #: ``vault_password_file`` as the site's ansible.cfg names it (relative to the site, or absolute)
    ansible_cfg_vault: str = VAULT_PASSWORD_FILE
    #: the first commit's id, or None without git
    commit: str | None = None
    #: the first commit's author ("name <email>"), or None without git
    author: str | None = None

    @property
    def vault_source(self) -> Path:
        """What ANSIBLE_VAULT_PASSWORD_FILE / --vault-password-file should name for this site."""
        return self.vault_password_file or self.vault_client  # type: ignore[return-value]


# --------------------------------------------------------------------------- checks
def _check_site(site: Path) -> None:
    if site.exists() and not site.is_dir():
        raise BadInput(f"{site} exists and is not a directory: expected a new or empty directory "
                       "for the site")
    if site.is_dir() and any(site.iterdir()):
        raise BadInput(f"{site} is not empty: expected a new or empty directory for the site",
                       hint="init never writes into an existing site; pick another directory")


def _client_password(client: Path) -> bytes:
    """Run the vault client as Ansible runs it (its own ``get_file_vault_secret``: a script
    named ``*-client`` gets ``--vault-id default``), and return the password it prints."""
    if not client.is_file():
        raise BadInput(f"vault client {client} is not a file: expected an executable that prints "
                       "the vault password")
    if not os.access(client, os.X_OK):
        raise BadInput(f"vault client {client} is not executable: expected an executable that "
                       "prints the vault password", hint=f"chmod +x {client}")
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import get_file_vault_secret

    try:
        secret = get_file_vault_secret(str(client), vault_id="default", loader=DataLoader())
        secret.load()
    except (AnsibleError, OSError) as exc:
        why = str(getattr(exc, "message", None) or exc).removesuffix(": None")  # stderr: the terminal's
        raise BadInput(f"vault client {client} failed: {why}") from exc
    if not secret.bytes:
        raise BadInput(f"vault client {client} printed no password")
    return secret.bytes


# --------------------------------------------------------------------------- content
def _template(name: str) -> str:
    return (resources.files("mlops_provision.site") / "templates" / name).read_text(encoding="utf-8")


def _render(name: str, **values: object) -> str:
    """A template rendered by Jinja with ``[[ ]]``/``[% %]`` delimiters, so that the ``{{ }}``
    of Ansible and GitHub expressions in the files stay as they are."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(block_start_string="[%", block_end_string="%]", variable_start_string="[[",
                      variable_end_string="]]", comment_start_string="[#", comment_end_string="#]",
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                      undefined=StrictUndefined, autoescape=False)
    env.filters["yaml_str"] = lambda value: json.dumps(str(value))  # a JSON string is YAML
    return env.from_string(_template(name)).render(**values)


def _groups() -> list[dict]:
    """The platform groups (read from the playbooks), each with its description and the lines
    of its commented example host."""
    from mlops_provision.site.roles import platform_groups

    out, described = [], {}
    for n, name in enumerate(platform_groups(), start=1):
        description, host = GROUP_INFO.get(name, (f"hosts of group {name}",
                                                  f"{name.replace('_', '-')}1"))
        if host in described:  # listed under an earlier group: its variables are there
            example = [f"{host}:  # also in {described[host]}: its variables are set there"]
        else:
            described[host] = name
            example = [f"{host}:", f"  ansible_host: 192.0.2.{10 * n + 1}",
                       f"  mlops_node_address: 198.51.100.{10 * n + 1}"]
        out.append({"name": name, "description": description, "example": example})
    return out


def _vault_text(group: str, values: dict[str, str]) -> str:
    head = (f"---\n# The secrets of group {group}, made at random by `mlops-provision init` on "
            f"{datetime.now(UTC):%Y-%m-%d}.\n# This file is vault-encrypted: `ansible-vault view|edit "
            f"group_vars/{group}/vault.yml`.\n")
    return head + yaml.safe_dump(values, default_flow_style=False, sort_keys=False)


def _tool_source() -> tuple[str, str]:
    """The git repository (``origin``) of this mlops-provision checkout and what CI installs
    from it, for the CI templates: the checkout's commit when the remote has it, else the
    remote's default branch ("" and "main" without a remote). Credentials in an https URL are
    left out."""
    from mlops_provision import paths

    try:
        root = paths.project_root()
    except RuntimeError:
        return "", "main"

    def git(*args: str) -> str:
        try:
            run = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                 timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return run.stdout.strip() if run.returncode == 0 else ""

    url = git("remote", "get-url", "origin")
    if not url:
        return "", "main"
    ref = git("rev-parse", "HEAD")
    if not ref or not git("branch", "--remotes", "--contains", ref):  # not pushed: CI cannot fetch it
        ref = git("symbolic-ref", "--short", "refs/remotes/origin/HEAD").removeprefix("origin/")
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url, ref or "main"


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """A new file (never an existing one), created with ``mode`` from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.chmod(path, mode)  # whatever the umask


# --------------------------------------------------------------------------- git
def _git(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=site, capture_output=True, text=True, timeout=120,
                          check=False)


def _commit(site: Path) -> tuple[str, str]:
    """``git init`` and a first commit of everything (the .gitignore keeps the password out);
    the author is git's configured one, else :data:`INIT_NAME` for this commit only."""
    for args in (["init", "--quiet"], ["add", "--all"]):
        run = _git(site, *args)
        if run.returncode != 0:
            raise Failed(f"git {' '.join(args)} failed in {site}", details=run.stderr.splitlines()[-5:])
    identity = []
    for key, default in (("user.name", INIT_NAME), ("user.email", INIT_EMAIL)):
        if not _git(site, "config", key).stdout.strip():
            identity += ["-c", f"{key}={default}"]
    run = _git(site, *identity, "commit", "--quiet", "-m", "New mlops-provision site (mlops-provision init)")
    if run.returncode != 0:
        raise Failed(f"git commit failed in {site}; the site's files are written, commit them yourself",
                     details=(run.stderr or run.stdout).splitlines()[-5:])
    return (_git(site, "rev-parse", "HEAD").stdout.strip(),
            _git(site, "log", "-1", "--format=%an <%ae>").stdout.strip())


# --------------------------------------------------------------------------- init
def init_site(path: str | os.PathLike[str], vault_client: str | os.PathLike[str] | None = None,
              git: bool = True) -> InitResult:
    """Make a new site in ``path`` (created, or an empty directory). ``vault_client``: an
    executable that prints the vault password (relative to the current directory, or absolute);
    init runs it, writes no password file, and names it in the site's ansible.cfg (relative to
    the site when given relative). ``git``: ``git init`` and a first commit.

    Raises :class:`~mlops_provision.errors.BadInput` (exit 2), before anything is written, when
    ``path`` is not empty, the client is not executable or fails, or git is missing;
    :class:`~mlops_provision.errors.Failed` (exit 1) when git fails once the files are written."""
    site = Path(path)
    _check_site(site)
    if git and shutil.which("git") is None:
        raise BadInput("git is not installed: install it, or pass --no-git")
    from ansible.parsing.vault import VaultLib, VaultSecret

    result = InitResult(site=site)
    if vault_client is not None:
        client = Path(vault_client)
        password = _client_password(client)
        result.vault_client = client.absolute()
        result.ansible_cfg_vault = (str(client) if client.is_absolute() else
                                    os.path.relpath(client.absolute(), site.absolute()))
    else:
        password = secrets.token_urlsafe(32).encode("ascii")  # 32 random bytes, 43 characters

    site.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def put(rel: str, data: str | bytes, mode: int = 0o644) -> None:
        _write(site / rel, data, mode)
        written.append(rel)

    if vault_client is None:
        put(VAULT_PASSWORD_FILE, password + b"\n", 0o600)
        result.vault_password_file = site / VAULT_PASSWORD_FILE

    tool_git, tool_ref = _tool_source()
    vault_comment = (f"The vault password: printed by the vault client {result.ansible_cfg_vault}"
                     if vault_client is not None else
                     f"The vault password: {VAULT_PASSWORD_FILE}, made by init (kept out of git)")
    values = {"groups": _groups(), "vault_password_file": result.ansible_cfg_vault,
              "vault_comment": vault_comment, "tool_git": tool_git, "tool_ref": tool_ref}
    values["width"] = max(len(g["name"]) for g in values["groups"]) if values["groups"] else 0
    for name, target in TEMPLATES.items():
        put(target, _render(name, **values) if name.endswith(".j2") else _template(name))
    group_vars = resources.files("mlops_provision.site") / "templates" / "group_vars"
    for rel in _tree(group_vars):
        put(f"group_vars/{rel}", (group_vars / rel).read_text(encoding="utf-8"))

    vault = VaultLib([("default", VaultSecret(password))])
    for group, made in VAULT_SECRETS.items():
        text = _vault_text(group, {name: make() for name, make in made.items()})
        put(f"group_vars/{group}/vault.yml", vault.encrypt(text), 0o600)

    result.files = sorted(written)
    if git:
        result.commit, result.author = _commit(site)
    return result


def _tree(folder) -> list[str]:
    """The files under a package folder (a ``Traversable``), relative, sorted."""
    out: list[str] = []
    for entry in folder.iterdir():
        if entry.is_dir():
            out += [f"{entry.name}/{rel}" for rel in _tree(entry)]
        elif entry.is_file() and not entry.name.startswith("."):
            out.append(entry.name)
    return sorted(out)
