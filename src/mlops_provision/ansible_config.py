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
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: Settings the toolkit's playbooks need as they are (where the roles, modules and module_utils
#: live, the inventory given with -i, handlers run after a failure, facts gathered once per
#: run): an admin's value for one of these is not used, and the run says so.
TOOLKIT_SETTINGS: frozenset[str] = frozenset({
    "DEFAULT_ROLES_PATH", "DEFAULT_MODULE_PATH", "DEFAULT_MODULE_UTILS_PATH", "DEFAULT_HOST_LIST",
    "DEFAULT_FORCE_HANDLERS", "DEFAULT_GATHERING", "RETRY_FILES_ENABLED", "DEFAULT_STDOUT_CALLBACK",
    "DEFAULT_ACTION_PLUGIN_PATH", "DEFAULT_FILTER_PLUGIN_PATH",
    # the vault password file: the command reads it from the admin's file (AdminConfig) and
    # hands it to every process it starts, resolved
    "DEFAULT_VAULT_PASSWORD_FILE",
})

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
    #: its vault_password_file, resolved as Ansible resolves it (relative to the file); the
    #: command uses it when no vault option is given
    vault_password_file: Path | None = None
    #: its inventory (resolved likewise): the sources when neither -i nor ANSIBLE_INVENTORY
    #: is given, as for ansible-playbook
    inventory: list[Path] = field(default_factory=list)


def _definitions() -> list[dict]:
    from ansible import constants as C
    from ansible.plugins.loader import become_loader, connection_loader, init_plugin_loader

    init_plugin_loader()
    defs: list[dict] = [{**v, "setting": k} for k, v in C.config.get_configuration_definitions().items()]
    for kind, name in PLUGINS:
        loader = connection_loader if kind == "connection" else become_loader
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


@lru_cache(maxsize=8)
def _read(file: Path, ours: Path) -> AdminConfig:
    out = AdminConfig(file)
    if file.resolve() == ours.resolve():
        return out  # run from the project's own directory: ours is the admin's
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        parser.read(file)
    except configparser.Error:
        return out  # Ansible reports a broken file itself
    from ansible.config.manager import ConfigManager

    try:
        manager = ConfigManager(str(file))
        vault = manager.get_config_value("DEFAULT_VAULT_PASSWORD_FILE")
        origin = manager.get_config_value_and_origin("DEFAULT_HOST_LIST")[1]
        inventory = manager.get_config_value("DEFAULT_HOST_LIST") if origin == str(file) else []
    except Exception:  # Ansible reports a broken file itself
        vault, inventory = None, []
    if vault:
        out.vault_password_file = Path(str(vault))
    out.inventory = [Path(str(p)) for p in inventory or []]
    for definition in _definitions():
        env = [e["name"] for e in definition.get("env") or [] if e.get("name")]
        for ini in definition.get("ini") or []:
            section, key = ini.get("section"), ini.get("key")
            if not (section and key and parser.has_option(section, key)) or not env:
                continue
            where = f"{section}.{key}"
            if definition["setting"] in TOOLKIT_SETTINGS:
                if where not in out.kept_ours:
                    out.kept_ours.append(where)
                continue
            out.env.setdefault(env[0], parser.get(section, key))
            if where not in out.taken:
                out.taken.append(where)
    return out


def admin_config(ours: Path, environ: dict[str, str] | None = None) -> AdminConfig:
    """What the admin's ansible.cfg contributes to a run of ours (nothing if there is none)."""
    file = admin_config_file(environ)
    if file is None or not file.is_file():
        return AdminConfig()
    return _read(file, ours)
