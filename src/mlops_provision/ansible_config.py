"""The admin's ansible.cfg, honoured. Ansible reads one configuration file (``ANSIBLE_CONFIG``,
else ``./ansible.cfg``, ``~/.ansible.cfg``, ``/etc/ansible/ansible.cfg``); this tool runs its
playbooks with its own (``ansible.cfg`` of the project: roles, modules, handler and fact
settings the playbooks need), so each setting of the admin's file that ours does not need
reaches ansible-playbook as its environment variable, which wins over any file. The admin's
connection settings (``remote_user``, ``private_key_file``, ``timeout``, ``[ssh_connection]
ssh_args`` with a ProxyJump, become settings...) therefore apply as in a plain
``ansible-playbook`` run; :data:`TOOLKIT_SETTINGS` stay ours, and the run says which of the
admin's settings it took."""

from __future__ import annotations

import configparser
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: Settings the toolkit's playbooks need as they are (where the roles, modules and module_utils
#: live, handlers run after a failure, facts gathered once per run, events without colour
#: codes): an admin's value for one of these is not used, and the run says so.
TOOLKIT_SETTINGS: frozenset[str] = frozenset({
    "DEFAULT_ROLES_PATH", "DEFAULT_MODULE_PATH", "DEFAULT_MODULE_UTILS_PATH",
    "DEFAULT_FORCE_HANDLERS", "DEFAULT_GATHERING", "RETRY_FILES_ENABLED", "DEFAULT_STDOUT_CALLBACK",
    "DEFAULT_ACTION_PLUGIN_PATH", "DEFAULT_FILTER_PLUGIN_PATH", "ANSIBLE_FORCE_COLOR", "ANSIBLE_NOCOLOR",
    # a prompt inside ansible-playbook would wait forever: the command asks (-J, --vault-id
    # LABEL@prompt) or reads a password file (ANSIBLE_BECOME_PASSWORD_FILE, the vault)
    "DEFAULT_ASK_PASS", "DEFAULT_BECOME_ASK_PASS", "DEFAULT_ASK_VAULT_PASS",
})

#: Settings the command itself reads from the admin's file and hands on resolved: the
#: inventory (when no -i is given) and the vault secrets (when no vault option is given).
USED_BY_THE_COMMAND: frozenset[str] = frozenset({
    "DEFAULT_HOST_LIST", "DEFAULT_VAULT_PASSWORD_FILE", "DEFAULT_VAULT_IDENTITY_LIST",
    "DEFAULT_VAULT_IDENTITY",
})

#: Value types Ansible resolves against the configuration file's directory.
PATH_TYPES = ("path", "pathspec", "pathlist", "tmppath", "tmp")

#: The plugins whose settings an admin's file may hold (connection and become).
PLUGINS: tuple[tuple[str, str], ...] = (("connection", "ssh"), ("connection", "paramiko_ssh"),
                                        ("become", "sudo"), ("become", "su"))


@dataclass
class AdminConfig:
    """The admin's configuration file and what it contributes."""

    file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # ANSIBLE_* -> value, as written
    taken: list[str] = field(default_factory=list)  # "section.key" taken
    kept_ours: list[str] = field(default_factory=list)  # "section.key" the toolkit keeps
    used: list[str] = field(default_factory=list)  # "section.key" the command reads itself
    #: its vault_password_file, resolved as Ansible resolves it (relative to the file); the
    #: command uses it when no vault option is given
    vault_password_file: Path | None = None
    #: its inventory (resolved likewise): the sources when neither -i nor ANSIBLE_INVENTORY
    #: is given, as for ansible-playbook
    inventory: list[Path] = field(default_factory=list)
    #: its vault_identity_list (label@source, sources resolved likewise)
    vault_ids: list[str] = field(default_factory=list)


def _definitions() -> list[dict]:
    from ansible import constants as C
    from ansible.plugins.loader import become_loader, connection_loader, init_plugin_loader

    init_plugin_loader()
    defs: list[dict] = [{**v, "setting": k} for k, v in C.config.get_configuration_definitions().items()]
    for kind, name in PLUGINS:
        loader = connection_loader if kind == "connection" else become_loader
        with warnings.catch_warnings():  # the ssh plugin's import warns about DSA keys
            warnings.filterwarnings("ignore", message=".*DSA.*")
            loader.get(name, class_only=True)  # loads its documented options into the config
        for key, value in (C.config.get_configuration_definitions(kind, name) or {}).items():
            defs.append({**value, "setting": f"{kind}.{name}.{key}"})
    return defs


def admin_config_file(environ: dict[str, str] | None = None) -> Path | None:
    """The file Ansible itself would read for the admin (not ours)."""
    from ansible.config.manager import find_ini_config_file

    environ = os.environ if environ is None else environ
    saved = os.environ.get("ANSIBLE_CONFIG")
    try:
        if environ.get("ANSIBLE_CONFIG"):
            os.environ["ANSIBLE_CONFIG"] = environ["ANSIBLE_CONFIG"]
        found = find_ini_config_file()
    finally:
        if saved is None:
            os.environ.pop("ANSIBLE_CONFIG", None)
        else:
            os.environ["ANSIBLE_CONFIG"] = saved
    return Path(found) if found else None


def _env_value(value: object, kind: str | None) -> str:
    """A resolved setting as its environment variable spells it."""
    if isinstance(value, list | tuple):
        sep = os.pathsep if kind in ("pathspec", "pathlist") else ","
        return sep.join(str(v) for v in value)
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


@lru_cache(maxsize=8)
def _read(file: Path, ours: Path) -> AdminConfig:
    out = AdminConfig(file)
    if file.resolve() == ours.resolve():
        return out  # run from the project's own directory: ours is the admin's
    # as Ansible reads it: ';' starts an inline comment, '#' only a whole line
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read(file)
    except configparser.Error:
        return out  # Ansible reports a broken file itself
    from ansible.config.manager import ConfigManager

    try:
        manager = ConfigManager(str(file))
    except Exception:  # Ansible reports a broken file itself
        return out

    def resolved(name: str) -> object:
        value, origin = manager.get_config_value_and_origin(name)
        return value if origin == str(file) else None

    vault = resolved("DEFAULT_VAULT_PASSWORD_FILE")
    if vault:
        out.vault_password_file = Path(str(vault))
    out.inventory = [Path(str(p)) for p in resolved("DEFAULT_HOST_LIST") or []]
    for identity in resolved("DEFAULT_VAULT_IDENTITY_LIST") or []:
        label, sep, source = str(identity).partition("@")
        if sep and source != "prompt" and not os.path.isabs(source):
            source = str(file.parent / source)  # as Ansible reads it: next to the file
        out.vault_ids.append(f"{label}@{source}" if sep else str(identity))
    for definition in _definitions():
        env = [e["name"] for e in definition.get("env") or [] if e.get("name")]
        for ini in definition.get("ini") or []:
            section, key = ini.get("section"), ini.get("key")
            if not (section and key and parser.has_option(section, key)) or not env:
                continue
            where = f"{section}.{key}"
            setting = definition["setting"]
            if setting in TOOLKIT_SETTINGS or setting in USED_BY_THE_COMMAND:
                listed = out.kept_ours if setting in TOOLKIT_SETTINGS else out.used
                if where not in listed:
                    listed.append(where)
                continue
            if any(name in os.environ for name in env):
                continue  # the admin's environment wins over the file, as in Ansible
            value: object = parser.get(section, key)
            if definition.get("type") in PATH_TYPES and "." not in setting:  # base settings: resolved
                value = _env_value(manager.get_config_value(setting), definition.get("type"))
            elif definition.get("type") in PATH_TYPES and not os.path.isabs(str(value)):
                value = str(file.parent / str(value))
            out.env.setdefault(env[0], str(value))
            if where not in out.taken:
                out.taken.append(where)
    return out


def admin_config(ours: Path, environ: dict[str, str] | None = None) -> AdminConfig:
    """What the admin's ansible.cfg contributes to a run of ours (nothing if there is none)."""
    file = admin_config_file(environ)
    if file is None or not file.is_file():
        return AdminConfig()
    return _read(file, ours)


def ssh_timeout(hostvars: dict) -> int:
    """The seconds Ansible gives SSH to reach a host: its ``ansible_timeout`` (or
    ``ansible_ssh_timeout``), else Ansible's setting (``ANSIBLE_TIMEOUT``, ansible.cfg's
    ``timeout``; 10 by default). A value Ansible would still template counts as unset."""
    from ansible import constants

    for name in ("ansible_timeout", "ansible_ssh_timeout"):
        value = hostvars.get(name)
        if isinstance(value, (int, str)) and str(value).strip().isdigit():
            return int(value)
    return int(constants.config.get_config_value("DEFAULT_TIMEOUT"))
