"""What the roles and playbooks declare: each role's options (``meta/argument_specs.yml``, per
entry point) and defaults, the site's own variables, which roles a host runs (read from the
playbooks' ``hosts:`` and ``roles:``, never written again here; the ``hosts:`` patterns
resolved by Ansible), and the groups a site may declare (the groups those patterns name:
:func:`allowed_groups`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

#: Ansible's own groups, in every inventory.
ANSIBLE_GROUPS: tuple[str, ...] = ("all", "ungrouped")

#: Variables of the site itself (connection settings and platform-wide facts), typed like a
#: role's ``argument_specs`` options. ``format`` adds a check of the value: ``ip`` (an IP
#: address), ``host`` (an IP address or DNS hostname), ``cidr`` (a CIDR network), ``port``
#: (1-65535); on a list it applies to each element. The site-wide values the roles read
#: (mlops_data_dir, mlops_admin_cidrs, ...) are typed once, in role mlops's argument specs.
SITE_VARS: dict[str, dict[str, Any]] = {
    "ansible_host": {"type": "str", "format": "host",
                     "description": "Address Ansible connects to (IP address or DNS name)."},
    "ansible_port": {"type": "int", "format": "port", "description": "SSH port (default 22)."},
    "ansible_user": {"type": "str", "description": "SSH user."},
    "ansible_connection": {"type": "str", "choices": ["ssh", "local", "paramiko", "smart", "podman",
                                                      "docker", "containers.podman.podman",
                                                      "community.docker.docker"],
                           "description": "Connection plugin (podman, docker: Molecule's test "
                                          "containers)."},
    "ansible_ssh_private_key_file": {"type": "path", "description": "SSH private key."},
    "ansible_ssh_common_args": {"type": "str", "description": "Extra ssh/scp/sftp arguments."},
    "ansible_become": {"type": "bool", "description": "Use privilege escalation (sudo)."},
    "ansible_become_password": {"type": "str", "description": "sudo password (use vault)."},
    "ansible_become_pass": {"type": "str", "description": "sudo password (use vault)."},
    "ansible_password": {"type": "str", "description": "SSH password (use vault)."},
    "ansible_ssh_pass": {"type": "str", "description": "SSH password (use vault)."},
    "ansible_python_interpreter": {"type": "str", "description": "Python on the node."},
    "ansible_group_priority": {"type": "int", "description": "Group variable merge priority."},
    "mlops_node_address": {"type": "str", "format": "ip",
                           "description": "The node's address on the cluster network."},
    "mlops_drift_webhook_url": {"type": "str", "description": "HTTPS URL `drift` POSTs its JSON report to."},
    "mlops_drift_webhook_token": {"type": "str", "description": "Bearer token of the drift webhook (use vault)."},
    "mlops_drift_webhook_ca_file": {"type": "path",
                                    "description": "CA bundle the drift webhook's certificate must chain to "
                                                   "(default: the system's)."},
}


@dataclass
class RoleSpecs:
    """Every role's entry points and options, and its defaults."""

    #: role -> entry point -> option -> spec
    entry_points: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    #: option -> (role, spec), the first role declaring it
    options: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    #: role -> its defaults/main.yml
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (file, role, message) for each spec file that cannot be used
    broken: list[tuple[Path, str, str]] = field(default_factory=list)

    def spec_for(self, name: str) -> tuple[str, dict[str, Any]] | None:
        if name in SITE_VARS:
            return "site", SITE_VARS[name]
        return self.options.get(name)

    def default(self, name: str) -> Any:
        """The role default of ``name``: the declaring role's, else the one role that sets it
        for others (a defaults-only role such as ``mlops``)."""
        role = self.options.get(name, ("",))[0]
        if name in self.defaults.get(role, {}):
            return self.defaults[role][name]
        return next((d[name] for d in self.defaults.values() if name in d), None)


def load_role_specs(roles_dir: Path) -> RoleSpecs:
    specs = RoleSpecs()
    for spec_file in sorted(roles_dir.glob("*/meta/argument_specs.y*ml")):
        role = spec_file.parent.parent.name
        try:
            data = yaml.safe_load(spec_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            specs.broken.append((spec_file, role, f"cannot be read: {exc}"))
            continue
        entries = data.get("argument_specs") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            specs.broken.append((spec_file, role, "expected a mapping of entry points to their "
                                                  "options"))
            continue
        for entry, body in entries.items():
            options = (body or {}).get("options") if isinstance(body, dict) else None
            options = {k: v if isinstance(v, dict) else {} for k, v in (options or {}).items()}
            specs.entry_points.setdefault(role, {})[str(entry)] = options
            for name, opt in options.items():
                specs.options.setdefault(name, (role, opt))
    for defaults in sorted(roles_dir.glob("*/defaults/main.yml")):
        try:
            data = yaml.safe_load(defaults.read_text())
        except (OSError, yaml.YAMLError):
            continue  # the role is broken; ansible-lint and the role's own tests say how
        specs.defaults[defaults.parent.parent.name] = data if isinstance(data, dict) else {}
    return specs


@dataclass(frozen=True)
class PlayRoles:
    """One play of the playbooks: its name, its ``hosts:`` pattern as written, and the roles it
    runs."""

    name: str
    hosts: str | tuple[str, ...]
    roles: tuple[str, ...]


@lru_cache(maxsize=8)
def plays(playbooks_dir: Path) -> tuple[PlayRoles, ...]:
    """The plays of ``playbooks_dir/*.yml``: each play's ``hosts:`` pattern and its ``roles:``
    plus the roles its tasks include whole and unconditionally (``include_role``/
    ``import_role`` without ``tasks_from`` or ``when``), in the order they first appear. A play
    whose pattern is a template (only Ansible can render it) is left out."""
    out: list[PlayRoles] = []
    for book in sorted(playbooks_dir.glob("*.yml")):
        data = yaml.safe_load(book.read_text()) or []
        for play in data if isinstance(data, list) else []:
            if not isinstance(play, dict) or "hosts" not in play:
                continue
            roles = [r.get("role") or r.get("name") if isinstance(r, dict) else r
                     for r in play.get("roles") or []]
            for section in ("pre_tasks", "tasks", "post_tasks"):
                for task in play.get(section) or []:
                    roles += _included_roles(task)
            hosts = play["hosts"]
            hosts = tuple(str(h) for h in hosts) if isinstance(hosts, list) else str(hosts)
            if "{{" in str(hosts):
                continue
            unique = tuple(dict.fromkeys(r for r in roles if isinstance(r, str)))
            out.append(PlayRoles(str(play.get("name", "")), hosts, unique))
    return tuple(out)


def _included_roles(task: Any) -> list[str]:
    if not isinstance(task, dict):
        return []
    found: list[str] = []
    if "when" in task:
        return found  # a conditional include: the group does not always run the role
    for key in ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role",
                "import_role"):
        args = task.get(key)
        if (isinstance(args, dict) and isinstance(args.get("name"), str)
                and "tasks_from" not in args):  # one task file is a helper, not the role
            found.append(args["name"])
    for key in ("block", "rescue", "always"):
        for sub in task.get(key) or []:
            found += _included_roles(sub)
    return found


def roles_run(playbooks_dir: Path) -> set[str]:
    """Every role some play runs."""
    return {r for play in plays(playbooks_dir) for r in play.roles}


def roles_of(host: str, play_hosts: Callable[[str | tuple[str, ...]], Iterable[str]],
             playbooks_dir: Path) -> set[str]:
    """The roles ``host`` runs: those of every play whose ``hosts:`` pattern selects it, as
    ``play_hosts`` (Ansible's own host matching, :meth:`AnsibleSite.play_hosts`) resolves the
    pattern (``a:b``, ``a:&b``, ``a:!b``, globs, groups of groups)."""
    return {r for play in plays(playbooks_dir) if host in play_hosts(play.hosts)
            for r in play.roles}


# --------------------------------------------------------------------------- groups
#: A term of a ``hosts:`` pattern that is a glob, a range or a ``~regex``: not a group's name.
_NOT_A_NAME = re.compile(r"[*?\[\]~]")


def pattern_terms(pattern: str | tuple[str, ...]) -> list[tuple[str, str]]:
    """The terms of a ``hosts:`` pattern (``a:b``, ``a,b``, ``a:&b``, ``a:!b``, or a list of
    patterns) as ``(operator, name)`` pairs, operator "" (union), "&" or "!", in order; globs,
    ranges and ``~regex`` terms left out."""
    out: list[tuple[str, str]] = []
    for text in pattern if isinstance(pattern, tuple) else (pattern,):
        for part in re.split(r"[:,]", text):
            part = part.strip()
            op = part[:1] if part[:1] in ("&", "!") else ""
            name = part[len(op):]
            if name and not _NOT_A_NAME.search(name):
                out.append((op, name))
    return out


@lru_cache(maxsize=8)
def runtime_groups(roles_dir: Path, playbooks_dir: Path) -> frozenset[str]:
    """Groups a run makes (``group_by`` keys in the roles' tasks and the playbooks, e.g.
    ``kubernetes_upgrade_pending``): named in ``hosts:`` patterns, never declared by a site."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("group_by", "ansible.builtin.group_by"):
                    group = value.get("key") if isinstance(value, dict) else None
                    if isinstance(group, str) and "{{" not in group:
                        found.add(group)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for file in sorted([*roles_dir.glob("*/tasks/**/*.y*ml"), *playbooks_dir.glob("*.yml")]):
        try:
            text = file.read_text()
            if "group_by" in text:  # parse only the few files that can hold one
                walk(yaml.safe_load(text))
        except (OSError, yaml.YAMLError):
            continue  # a broken file: ansible-lint and the role's own tests say how
    return frozenset(found)


@lru_cache(maxsize=8)
def allowed_groups(playbooks_dir: Path | None = None, roles_dir: Path | None = None) -> tuple[str, ...]:
    """The groups a site inventory may use: Ansible's own (``all``, ``ungrouped``) and those the
    playbooks' ``hosts:`` patterns name (in the order they first appear), less the groups a run
    makes (:func:`runtime_groups`). The playbooks are the one list of the platform's groups."""
    from mlops_provision import paths

    playbooks_dir = playbooks_dir or paths.playbook().parent
    roles_dir = roles_dir or paths.roles_dir()
    made = runtime_groups(roles_dir, playbooks_dir)
    named = [name for play in plays(playbooks_dir) for _, name in pattern_terms(play.hosts)]
    return ANSIBLE_GROUPS + tuple(dict.fromkeys(
        n for n in named if n not in ANSIBLE_GROUPS and n not in made))


def platform_groups() -> tuple[str, ...]:
    """The platform's groups (:func:`allowed_groups` of the project without Ansible's own), in
    the order the playbooks first name them."""
    return tuple(g for g in allowed_groups() if g not in ANSIBLE_GROUPS)


def role_groups(role: str, playbooks_dir: Path | None = None) -> tuple[str, ...]:
    """The groups whose hosts run ``role``: the names the ``hosts:`` patterns of the plays that
    run it add (not those they intersect with or exclude), e.g. ``("control_plane",)`` for
    kubernetes_control_plane. For messages; which hosts run a role is Ansible's answer
    (:func:`roles_of`)."""
    from mlops_provision import paths

    playbooks_dir = playbooks_dir or paths.playbook().parent
    return tuple(dict.fromkeys(name for play in plays(playbooks_dir) if role in play.roles
                               for op, name in pattern_terms(play.hosts) if not op))


def __getattr__(name: str) -> Any:
    """``ALLOWED_GROUPS``: :func:`allowed_groups` of the project's playbooks, read when first
    asked for (kept for ``from mlops_provision.site import ALLOWED_GROUPS``)."""
    if name == "ALLOWED_GROUPS":
        return allowed_groups()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
