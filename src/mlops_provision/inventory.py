"""Load a site's Ansible YAML inventory and validate it, without contacting any host.

``load(path)`` reads the inventory the way Ansible does (the YAML inventory file, plus
``group_vars/`` and ``host_vars/`` next to it), decrypts ansible-vault values, and checks it
against what the roles declare. Every problem is collected, so that one run reports all of
them; each names the file (and line where known), the host or group, the variable or key,
and what is expected. If there is any problem ``load`` raises :class:`InventoryInvalid`.

What is checked
---------------
* YAML syntax; the inventory's shape (top level ``all:`` only; under a group only
  ``hosts``, ``vars`` and ``children``; a host is a mapping of its variables or nothing);
  keys repeated in one mapping.
* Group names: only :data:`ALLOWED_GROUPS`, in the inventory and as ``group_vars/`` files;
  ``host_vars/`` files must name a host of the inventory.
* Variable names: a variable must be an option of a role (``roles/*/meta/argument_specs.yml``)
  or a site variable (:data:`SITE_VARS`). Two prefixes are let through unchecked:
  ``ansible_*`` (Ansible has many connection and behaviour variables; the common ones are
  typed in :data:`SITE_VARS`) and ``vault_*`` (the usual ansible-vault indirection: a
  ``vault_db_password`` holds the encrypted value, and a typed variable refers to it as
  ``"{{ vault_db_password }}"``).
* Types, from the role's argument specs (``type``, ``elements``, ``choices``, ``options``) or
  :data:`SITE_VARS`: ``bool`` must be a YAML boolean, ``int`` an integer (not a boolean),
  ``str``/``path`` a string (so an unquoted ``12.4`` is a float, not a str). A string holding a
  Jinja expression (``{{`` or ``{%``) is accepted for any type, as it can only be judged when
  Ansible renders it. A vault-encrypted value counts as a str.
* Naming conventions, on top of the declared type:

  ======================  ==================================================================
  name ends in            the value must be
  ======================  ==================================================================
  ``_cidr``               a CIDR network string, host bits clear (``192.0.2.0/24``)
  ``_cidrs``              a list of such CIDR strings
  ``_port``               an int port number, 1-65535
  ``_ports``              a list of such port numbers
  ``url`` (a sub-key)     an http:// or https:// URL with a valid host and port
  ======================  ==================================================================

* Required role options (``required: true``) are set for every host.
* Every host has an ``ansible_host`` (an IP address or DNS hostname) unless its
  ``ansible_connection`` is ``local``; no two hosts share an ``ansible_host``/``ansible_port``
  pair (port 22 by default) or a ``mlops_node_address``.
* Vault: inline ``!vault`` values and whole vault-encrypted files must decrypt with the vault
  password (``vault_password_file`` or ``$ANSIBLE_VAULT_PASSWORD_FILE``).
* Secrets a group's roles need (:data:`GROUP_SECRETS`, e.g. the MLflow admin and database
  passwords for group ``mlflow``) are set for every host of the group, and vault-encrypted: an
  inline ``!vault`` value, a value from a vault-encrypted file, or ``"{{ vault_x }}"`` naming
  one of those. Login passwords (:data:`STRONG_PASSWORDS`) must be strong: at least
  :data:`MIN_PASSWORD_LENGTH` characters, not a well-known password, not the user name.
* Ports: on each host, the ``*_port`` variables of the roles it runs (:data:`GROUP_ROLES`; a
  role's default counts when the inventory does not set the variable) are all different, except
  those naming a port a role connects to (:data:`CLIENT_PORTS`).

Variable precedence (:meth:`Inventory.hostvars`) is Ansible's default, lowest first: the
``all`` group's inline ``vars:``; the other groups' inline ``vars:``; ``group_vars/all``;
the other groups' ``group_vars`` files; the host's inline variables; ``host_vars/<host>``.
Groups are ordered as Ansible does: by depth below ``all`` (parents before children), then
``ansible_group_priority``, then name.
"""

from __future__ import annotations

import difflib
import ipaddress
import keyword
import os
import re
import subprocess
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops_provision import paths

#: The groups a site inventory may use. ``all`` and ``ungrouped`` are Ansible's own.
ALLOWED_GROUPS: tuple[str, ...] = (
    "all", "ungrouped", "control_plane", "gpu_workers", "cpu_workers", "mlflow",
)
#: The keys a group of a YAML inventory may have.
GROUP_KEYS: tuple[str, ...] = ("hosts", "vars", "children")

#: Variables of the site itself (connection settings and platform-wide facts), typed like a
#: role's ``argument_specs`` options. ``format`` adds a check of the value: ``ip`` (an IP
#: address), ``host`` (an IP address or DNS hostname), ``cidr`` (a CIDR network), ``port``
#: (1-65535); on a list it applies to each element.
SITE_VARS: dict[str, dict[str, Any]] = {
    "ansible_host": {"type": "str", "format": "host",
                     "description": "Address Ansible connects to (IP address or DNS name)."},
    "ansible_port": {"type": "int", "format": "port", "description": "SSH port (default 22)."},
    "ansible_user": {"type": "str", "description": "SSH user."},
    "ansible_connection": {"type": "str", "choices": ["ssh", "local", "paramiko"],
                           "description": "Connection plugin."},
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
    "mlops_admin_cidrs": {"type": "list", "elements": "str", "format": "cidr",
                          "description": "Networks administrators connect from."},
    "mlops_data_dir": {"type": "path",
                       "description": "Where services keep their data (the encrypted volume's mount "
                                      "point; default /srv/mlops)."},
}

#: The roles a host runs, by the groups it is in (playbooks/*.yml).
GROUP_ROLES: dict[str, tuple[str, ...]] = {
    "all": ("base", "os_hardening", "disk_encryption", "audit", "firewall"),
    "mlflow": ("postgresql", "mlflow"),
}
#: Secrets every host of a group must have, vault-encrypted.
GROUP_SECRETS: dict[str, tuple[str, ...]] = {
    "mlflow": ("mlflow_admin_password", "mlflow_db_password"),
}
#: Passwords people log in with, checked for strength: password variable -> user name variable.
STRONG_PASSWORDS: dict[str, str] = {"mlflow_admin_password": "mlflow_admin_username"}
MIN_PASSWORD_LENGTH = 12
#: Well-known passwords (defaults shipped by software, the most common choices), lower case.
WEAK_PASSWORDS: frozenset[str] = frozenset({
    "password1234", "password12345", "password123456", "passwordpassword", "123456789012",
    "1234567890123", "12345678901234", "qwertyuiopas", "qwerty123456", "administrator",
    "administrator1", "adminadminadmin", "admin1234567", "admin12345678", "changeme1234",
    "changemechangeme", "letmein12345", "iloveyou1234", "welcome12345", "mlflow123456",
    "mlflowmlflow", "mlflow-admin", "mlflowadmin123", "p@ssw0rd1234", "passw0rd1234",
    "secretsecret", "default12345", "trustno12345",
})
#: ``*_port`` variables naming a port a role connects to, not one it listens on.
CLIENT_PORTS: frozenset[str] = frozenset({"mlflow_db_port"})
#: ``*_port`` variables of different roles naming the same service's port (sshd's: configured by
#: os_hardening, opened by firewall): one service, so equal values are no clash.
SHARED_PORTS: tuple[frozenset[str], ...] = (frozenset({"os_hardening_ssh_port", "firewall_ssh_port"}),)

#: Variables whose values are secrets (scrubbed from logs), besides every vault plaintext.
SECRET_VARS: frozenset[str] = frozenset({
    "ansible_password", "ansible_become_password", "ansible_become_pass", "ansible_ssh_pass",
})
SECRET_SUFFIXES: tuple[str, ...] = ("_password", "_secret", "_token")

NO_VAULT_PASSWORD = ("is encrypted with ansible-vault but no vault password was given "
                     "(--vault-password-file or ANSIBLE_VAULT_PASSWORD_FILE)")
BAD_VAULT_PASSWORD = "cannot be decrypted with the given vault password"

_VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")  # Ansible's search order for vars files
_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_VAULT_HEADER = b"$ANSIBLE_VAULT;"


# --------------------------------------------------------------------------- public API

@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory."""

    file: str
    where: str  # "host 'node1'", "group 'gpu_workers'", "inventory", ...
    key: str
    expected: str
    line: int | None = None  # 1-based line of the key in ``file``, when known

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        return f"{loc}: {self.where}: {self.key}: {self.expected}"


class InventoryInvalid(Exception):
    """The inventory has problems; ``problems`` lists all of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the inventory:\n"
                         + "\n".join(f"  {p}" for p in self.problems))


class Inventory:
    """A validated inventory: hosts, groups and each host's merged, decrypted variables."""

    def __init__(self, path: Path, site_dir: Path, groups: dict[str, list[str]],
                 host_groups: dict[str, list[str]], hostvars: dict[str, dict[str, Any]],
                 secrets: set[str]):
        self.path = path
        self.site_dir = site_dir
        self.hosts: list[str] = sorted(hostvars)
        self.groups: dict[str, list[str]] = groups
        self._host_groups = host_groups
        self._hostvars = hostvars
        self._secrets = secrets

    def hostvars(self, host: str) -> dict[str, Any]:
        """The host's inventory variables, merged with Ansible's precedence, vault decrypted."""
        return _plain(self._hostvars[host])

    def host_groups(self, host: str) -> list[str]:
        """The groups the host is in (parents of its groups included), sorted, without ``all``:
        Ansible's ``group_names``."""
        return list(self._host_groups[host])

    def secrets(self) -> set[str]:
        """Every vault plaintext (each string of a vault-encrypted file), the vault password,
        and the value of every password/secret/token variable (:data:`SECRET_VARS`,
        :data:`SECRET_SUFFIXES`), Jinja expressions excepted: for scrubbing logs."""
        return set(self._secrets)

    def __repr__(self) -> str:
        return f"Inventory({str(self.path)!r}, hosts={self.hosts!r})"


def load(path: str | os.PathLike[str], vault_password_file: str | os.PathLike[str] | None = None,
         roles_dir: str | os.PathLike[str] | None = None, strict: bool = True) -> Inventory:
    """Load and validate the inventory at ``path`` (a YAML file, or a directory holding
    ``hosts.yml``). Raises :class:`InventoryInvalid` listing every problem found.

    ``strict=False`` only reads: it returns what could be loaded despite problems (the checks
    use it on inventories that other tools generate, such as Molecule's)."""
    if vault_password_file is None:
        vault_password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE") or None
    if roles_dir is None:
        roles_dir = paths.roles_dir()
    validator = _Validator(Path(path), vault_password_file, Path(roles_dir))
    validator.strict = strict
    return validator.run()


# --------------------------------------------------------------------------- YAML loading

class VaultValue:
    """An inline ``!vault`` value; ``plaintext`` is set once decrypted."""

    __slots__ = ("ciphertext", "line", "plaintext")

    def __init__(self, ciphertext: str, line: int):
        self.ciphertext = ciphertext
        self.line = line
        self.plaintext: str | None = None

    def __repr__(self) -> str:
        return "VaultValue(<encrypted>)"


class _LineDict(dict):
    """A YAML mapping that remembers the (1-based) line of each key."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []  # (key, line, first line)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[_LineDict]:
    data = _LineDict()
    yield data
    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            ident, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if ident in seen:
                loader.duplicates.append((key_node.value, line, seen[ident]))
            seen[ident] = line
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark)
        data[key] = loader.construct_object(value_node, deep=False)
        data.lines[key] = key_node.start_mark.line + 1


def _construct_vault(loader: _Loader, node: yaml.Node) -> VaultValue:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "a !vault value must be a string (the vault text)", node.start_mark)
    return VaultValue(loader.construct_scalar(node), node.start_mark.line + 1)


def _construct_unsafe(loader: _Loader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return dict(loader.construct_mapping(node, deep=True))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("!vault", _construct_vault)
_Loader.add_constructor("!unsafe", _construct_unsafe)


# --------------------------------------------------------------------------- value checks

def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _is_secret_name(name: Any) -> bool:
    return isinstance(name, str) and (name in SECRET_VARS or name.endswith(SECRET_SUFFIXES))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, VaultValue):
        return "vault-encrypted str"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _got(value: Any, hide: bool) -> str:
    if value is None:
        return "null (an empty value; write \"\" for an empty string, [] for an empty list)"
    name = _type_name(value)
    if hide or isinstance(value, VaultValue | list | dict):
        return name
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name} {text}"


def _suggest(word: Any, choices: Iterable[Any], cutoff: float = 0.75) -> str:
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean '{match[0]}'?)" if match else ""


_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str | VaultValue), "str"),
    "path": (lambda v: isinstance(v, str | VaultValue), "str (a path)"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "int"),
    "float": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "float"),
    "bool": (lambda v: isinstance(v, bool), "bool (true or false)"),
    "list": (lambda v: isinstance(v, list), "list"),
    "dict": (lambda v: isinstance(v, dict), "mapping"),
    "raw": (lambda v: True, "any value"),
}

_FORMAT_WORDS = {
    "ip": "an IP address",
    "host": "an IP address or DNS hostname",
    "cidr": "a CIDR network such as 192.0.2.0/24",
    "port": "a port number (int 1-65535)",
    "url": "an http:// or https:// URL such as http://192.0.2.5:7500",
}

_FORMAT_PLURALS = {
    "ip": "IP addresses",
    "host": "IP addresses or DNS hostnames",
    "cidr": "CIDR networks such as 192.0.2.0/24",
    "port": "port numbers (int 1-65535)",
    "url": "http:// or https:// URLs",
}

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_hostname(name: str) -> bool:
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _url_ok(value: str) -> tuple[bool, str]:
    """Whether ``value`` is an http(s) URL with a valid host (and port), and if not, why."""
    try:
        url = urllib.parse.urlsplit(value)
        port = url.port
    except ValueError:
        return False, "bad port"
    if url.scheme not in ("http", "https"):
        return False, "scheme is not http or https"
    host = url.hostname or ""
    if not (_is_ip(host) or _is_hostname(host)):
        return False, "no valid host"
    return port != 0, "" if port != 0 else "bad port"


def _format_error(fmt: str, value: Any, hide: bool) -> str | None:
    """Why ``value`` does not have format ``fmt``, or None if it does (or cannot be judged)."""
    if isinstance(value, VaultValue):
        value, hide = value.plaintext, True
        if value is None:
            return None
    if _is_template(value):
        return None
    want = _FORMAT_WORDS.get(fmt)
    if want is None:
        return None
    ok = False
    detail = ""
    if fmt == "port":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
    elif isinstance(value, str):
        if fmt == "ip":
            ok = _is_ip(value)
        elif fmt == "host":
            ok = _is_ip(value) or _is_hostname(value)
        elif fmt == "cidr":
            if "/" not in value:
                detail = "no /prefix length"
            else:
                try:
                    ipaddress.ip_network(value, strict=True)
                    ok = True
                except ValueError as exc:
                    detail = "host bits set" if "host bits set" in str(exc) else "not a network"
        elif fmt == "url":
            ok, detail = _url_ok(value)
    if ok:
        return None
    got = _got(value, hide)
    return f"expected {want}, got {got}" + (f" ({detail})" if detail and not hide else "")


def _describe(spec: dict[str, Any]) -> str:
    typ = spec.get("type") or "str"
    word = _TYPES.get(typ, _TYPES["raw"])[1]
    fmt = spec.get("format")
    if typ == "list":
        elements = spec.get("elements")
        if fmt in _FORMAT_PLURALS:
            return f"list of {_FORMAT_PLURALS[fmt]}"
        if elements:
            return f"list of {_TYPES.get(elements, _TYPES['raw'])[1]}"
        return "list"
    if fmt in _FORMAT_WORDS:
        return _FORMAT_WORDS[fmt]
    return word


def _check(value: Any, spec: dict[str, Any], hide: bool, path: str = "") -> list[tuple[str, str]]:
    """(key suffix, message) for each way ``value`` breaks ``spec`` (an argument_specs option)."""
    if _is_template(value):
        return []
    typ = spec.get("type") or "str"  # Ansible's default option type
    test = _TYPES.get(typ, _TYPES["raw"])[0]
    if not test(value):
        return [(path, f"expected {_describe(spec)}, got {_got(value, hide)}")]
    out: list[tuple[str, str]] = []
    if typ == "list":
        item_spec: dict[str, Any] = {"type": spec.get("elements") or "raw"}
        for k in ("choices", "options", "format"):
            if spec.get(k):
                item_spec[k] = spec[k]
        for i, item in enumerate(value):
            out += _check(item, item_spec, hide, f"{path}[{i}]")
        return out
    choices = spec.get("choices")
    if choices and not isinstance(value, VaultValue | dict) and value not in choices:
        hint = "" if hide else _suggest(value, choices, 0.6)
        out.append((path, f"expected one of {', '.join(str(c) for c in choices)}, "
                          f"got {_got(value, hide)}{hint}"))
    if spec.get("format"):
        msg = _format_error(spec["format"], value, hide)
        if msg:
            out.append((path, msg))
    options = spec.get("options")
    if typ == "dict" and options:
        for k, v in value.items():
            if k not in options:
                out.append((f"{path}.{k}", f"unknown key '{k}': expected one of "
                                           f"{', '.join(sorted(options))}{_suggest(k, options)}"))
            else:
                out += _check(v, _with_conventions(k, options[k]), hide or _is_secret_name(k),
                              f"{path}.{k}")
        for k, opt in options.items():
            if (opt or {}).get("required") and k not in value:
                out.append((f"{path}.{k}", f"required: expected {_describe(opt)}"))
    return out


def _with_conventions(name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    """The spec of variable ``name`` with the naming conventions (module docstring) applied."""
    spec = dict(spec) if spec else {"type": "raw"}
    typ = spec.get("type") or "str"
    if name == "url":
        spec["format"] = "url"
    elif name.endswith(("_cidrs", "_ports")):
        if typ == "raw":
            spec["type"] = "list"
        spec.setdefault("elements", "str" if name.endswith("_cidrs") else "int")
        spec["format"] = "cidr" if name.endswith("_cidrs") else "port"
    elif name.endswith(("_cidr", "_port")):
        if typ == "raw":
            spec["type"] = "str" if name.endswith("_cidr") else "int"
        spec["format"] = "cidr" if name.endswith("_cidr") else "port"
    return spec


def _plain(value: Any) -> Any:
    """A copy of ``value`` with plain dicts and vault values replaced by their plaintext."""
    if isinstance(value, VaultValue):
        return value.plaintext
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- the inventory model

@dataclass(eq=False)
class _Block:
    """One set of variables and where it was written."""

    file: Path
    where: str
    vars: dict[Any, Any]
    vault_file: bool = False

    def line(self, key: Any) -> int | None:
        return getattr(self.vars, "lines", {}).get(key)


@dataclass(eq=False)
class _Group:
    name: str
    children: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    inline: list[_Block] = field(default_factory=list)
    files: list[_Block] = field(default_factory=list)
    depth: int = 0
    priority: int = 1


@dataclass(eq=False)
class _Host:
    name: str
    line: int | None
    inline: list[_Block] = field(default_factory=list)
    files: list[_Block] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)


class _Validator:
    def __init__(self, path: Path, vault_password_file: str | os.PathLike[str] | None,
                 roles_dir: Path):
        self.given = path
        self.vault_password_file = vault_password_file
        self.roles_dir = roles_dir
        self.problems: list[Problem] = []
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, _Host] = {}
        self.blocks: list[_Block] = []
        self.options: dict[str, tuple[str, dict[str, Any]]] = {}  # var -> (role, spec)
        self.defaults: dict[str, dict[str, Any]] = {}  # role -> its defaults/main.yml
        self.vault: Any = None  # VaultLib, once a password is read
        self.vault_error: str | None = None
        self.vault_failed = False  # a vault value or file could not be decrypted
        self._decrypted: dict[str, str | None] = {}
        self.secrets: set[str] = set()
        self.strict = True  # False: return what loaded despite problems (see load())

    # -- helpers

    def problem(self, file: Path | str, where: str, key: Any, expected: str,
                line: int | None = None) -> None:
        problem = Problem(str(file), where, str(key), expected, line)
        if problem not in self.problems:  # a group's value is judged once per host
            self.problems.append(problem)

    # -- main

    def run(self) -> Inventory:
        inv = self.find_inventory_file()
        if inv is None:
            raise InventoryInvalid(self.problems)
        self.inv = inv
        self.site_dir = inv.parent
        self.load_role_specs()
        self.read_vault_password()
        self.groups["all"] = _Group("all")
        self.groups["ungrouped"] = _Group("ungrouped", depth=1)
        data = self.read_yaml(inv, "inventory")
        if data is not _FAILED:
            self.parse_inventory(data)
        self.settle_groups()
        self.load_vars_files("group_vars", self.groups, "group")
        self.load_vars_files("host_vars", self.hosts, "host")
        for block in self.blocks:
            self.decrypt_block(block)
            self.check_block(block)
        hostvars = {h: self.merged(h) for h in sorted(self.hosts)}
        self.check_hosts(hostvars)
        for host_name, hv in hostvars.items():
            self.check_group_secrets(host_name, hv)
            self.check_port_clashes(host_name, hv)
        self.collect_secrets()
        if self.problems and self.strict:
            order = {id(p): i for i, p in enumerate(self.problems)}
            self.problems.sort(key=lambda p: (p.file, p.line or 0, order[id(p)]))
            raise InventoryInvalid(self.problems)
        return Inventory(
            path=inv, site_dir=self.site_dir,
            groups={g: sorted(self.members(g)) for g in sorted(self.groups)},
            host_groups={h: sorted(g for g in self.all_groups_of(h) if g != "all")
                         for h in self.hosts},
            hostvars={h: {k: v[0] for k, v in hv.items()} for h, hv in hostvars.items()},
            secrets=self.secrets,
        )

    def find_inventory_file(self) -> Path | None:
        path = self.given
        if path.is_dir():
            for name in ("hosts.yml", "hosts.yaml"):
                if (path / name).is_file():
                    return path / name
            self.problem(path, "inventory", "hosts.yml",
                         "expected a YAML inventory file, or a directory holding hosts.yml")
            return None
        if not path.is_file():
            self.problem(path, "inventory", "(file)",
                         "no such file: expected a YAML inventory file, or a directory holding "
                         "hosts.yml")
            return None
        return path

    # -- files

    def read_yaml(self, file: Path, where: str) -> Any:
        """The file's data, or _FAILED after recording why it cannot be read."""
        try:
            raw = file.read_bytes()
        except OSError as exc:
            self.problem(file, where, "(file)", f"cannot be read: {exc.strerror}")
            return _FAILED
        vault_file = raw.lstrip().startswith(_VAULT_HEADER)
        if vault_file:
            text = self.decrypt(raw.decode("ascii", "replace"))
            if text is None:
                self.problem(file, where, "(whole file)", f"the file {self.vault_error}")
                self.vault_failed = True
                return _FAILED
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.problem(file, where, "(file)", "expected UTF-8 text")
                return _FAILED
        loader = _Loader(text)
        try:
            data = loader.get_single_data()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            at = f" at line {line}, column {mark.column + 1}" if mark else ""
            what = exc.problem or exc.context or "syntax error"
            self.problem(file, where, "(syntax)", f"invalid YAML{at}: {what}", line)
            return _FAILED
        except yaml.YAMLError as exc:
            self.problem(file, where, "(syntax)", f"invalid YAML: {exc}")
            return _FAILED
        finally:
            loader.dispose()
        for key, line, first in loader.duplicates:
            self.problem(file, where, key, f"repeated key (first at line {first}): expected "
                                           "each key once in a mapping; Ansible keeps only the "
                                           "last", line)
        if vault_file:
            self.secrets.update(s for s in _strings(data) if s and not _is_template(s))
            return _VaultData(data)
        return data

    def load_role_specs(self) -> None:
        if not self.roles_dir.is_dir():
            self.problem(self.roles_dir, "roles", "(directory)",
                         "expected the roles directory (with roles/*/meta/argument_specs.yml)")
            return
        for spec_file in sorted(self.roles_dir.glob("*/meta/argument_specs.y*ml")):
            role = spec_file.parent.parent.name
            data = self.read_yaml(spec_file, f"role '{role}'")
            if data is _FAILED:
                continue
            specs = (data or {}).get("argument_specs") if isinstance(data, dict) else None
            if not isinstance(specs, dict):
                self.problem(spec_file, f"role '{role}'", "argument_specs",
                             "expected a mapping of entry points to their options")
                continue
            for entry in specs.values():
                options = (entry or {}).get("options") if isinstance(entry, dict) else None
                for name, opt in (options or {}).items():
                    self.options.setdefault(name, (role, opt if isinstance(opt, dict) else {}))
            defaults = spec_file.parent.parent / "defaults" / "main.yml"
            if defaults.is_file():
                data = self.read_yaml(defaults, f"role '{role}'")
                self.defaults[role] = data if isinstance(data, dict) else {}

    # -- vault

    def read_vault_password(self) -> None:
        if self.vault_password_file is None:
            self.vault_error = NO_VAULT_PASSWORD
            return
        from ansible.parsing.vault import VaultLib, VaultSecret

        pw_file = Path(self.vault_password_file)
        where, key = "vault password file", "--vault-password-file"
        try:
            if not pw_file.is_file():
                raise OSError(0, "no such file")
            if os.access(pw_file, os.X_OK):  # a script that prints the password, as in Ansible
                run = subprocess.run([str(pw_file)], capture_output=True, timeout=60, check=False)
                if run.returncode != 0:
                    raise OSError(0, f"the script exited with status {run.returncode}")
                password = run.stdout.strip(b"\r\n")
            else:
                password = pw_file.read_bytes().strip()
        except (OSError, subprocess.SubprocessError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self.problem(pw_file, where, key, f"cannot be read ({reason}): expected a file "
                                              "holding the vault password")
            self.vault_error = BAD_VAULT_PASSWORD
            return
        if not password:
            self.problem(pw_file, where, key, "is empty: expected the vault password")
            self.vault_error = BAD_VAULT_PASSWORD
            return
        self.vault = VaultLib([("default", VaultSecret(password))])
        self.secrets.add(password.decode("utf-8", "replace"))
        self.vault_error = BAD_VAULT_PASSWORD

    def decrypt(self, vaulttext: str) -> str | None:
        if vaulttext in self._decrypted:
            return self._decrypted[vaulttext]
        plaintext = None
        if self.vault is not None:
            from ansible.errors import AnsibleError

            try:
                plaintext = self.vault.decrypt(vaulttext.strip()).decode("utf-8")
            except (AnsibleError, ValueError, UnicodeDecodeError):
                plaintext = None
        self._decrypted[vaulttext] = plaintext
        if plaintext:
            self.secrets.add(plaintext)
        return plaintext

    def decrypt_block(self, block: _Block) -> None:
        def walk(value: Any, key: str, line: int | None) -> None:
            if isinstance(value, VaultValue):
                value.plaintext = self.decrypt(value.ciphertext)
                if value.plaintext is None:
                    self.vault_failed = True
                    self.problem(block.file, block.where, key,
                                 f"the !vault value {self.vault_error}", value.line or line)
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(v, f"{key}.{k}", line)
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    walk(v, f"{key}[{i}]", line)

        for k, v in block.vars.items():
            walk(v, str(k), block.line(k))

    # -- inventory structure

    def parse_inventory(self, data: Any) -> None:
        inv = self.inv
        if isinstance(data, _VaultData):
            data = data.data
        if data is None:
            self.problem(inv, "inventory", "all", "the inventory is empty: expected a mapping "
                                                  "with the single key 'all'")
            return
        if not isinstance(data, dict):
            self.problem(inv, "inventory", "(top level)",
                         f"expected a mapping with the single key 'all' (an Ansible YAML "
                         f"inventory), got {_type_name(data)}")
            return
        if "all" in data:
            self.parse_group("all", data["all"], None, _line_of(data, "all"))
        for key in data:
            if key != "all":
                self.problem(inv, "inventory", key,
                             f"unexpected top-level key '{key}': expected only 'all' at the top "
                             "level, with the groups under all: children:", _line_of(data, key))
                if not self.strict:  # read it as Ansible does (Molecule writes such inventories)
                    self.parse_group(key, data[key], "all", _line_of(data, key))

    def parse_group(self, name: Any, body: Any, parent: str | None, line: int | None) -> None:
        inv = self.inv
        name = str(name)
        where = f"group '{name}'"
        if parent is not None:
            pwhere = f"group '{parent}'"
            if name not in ALLOWED_GROUPS:
                self.problem(inv, pwhere, name, _unknown_group(name), line)
            elif name == "all":
                self.problem(inv, pwhere, name, "'all' cannot be a child group: expected one "
                                                f"of {', '.join(_site_groups())}", line)
                return
        group = self.groups.setdefault(name, _Group(name))
        if parent is not None:
            self.groups[parent].children.add(name)
        if body is None:
            return
        if not isinstance(body, dict):
            self.problem(inv, where, name, "expected a mapping with hosts, vars and/or children "
                                           f"(or nothing), got {_got(body, False)}", line)
            return
        for key in body:
            if key not in GROUP_KEYS:
                hint = _suggest(key, GROUP_KEYS, 0.6)
                self.problem(inv, where, key, f"unknown key '{key}': expected one of "
                                              f"{', '.join(GROUP_KEYS)}{hint}", _line_of(body, key))
        hosts = body.get("hosts")
        if isinstance(hosts, dict):
            for host, hvars in hosts.items():
                self.parse_host(host, hvars, name, _line_of(hosts, host))
        elif hosts is not None:
            self.problem(inv, where, "hosts", "expected a mapping of host names, each with its "
                                              f"variables or nothing, got {_got(hosts, False)}",
                         _line_of(body, "hosts"))
        gvars = body.get("vars")
        if isinstance(gvars, dict):
            block = _Block(inv, where, gvars)
            group.inline.append(block)
            self.blocks.append(block)
            prio = gvars.get("ansible_group_priority")
            if isinstance(prio, int) and not isinstance(prio, bool):
                group.priority = prio
        elif gvars is not None:
            self.problem(inv, where, "vars", "expected a mapping of variable names to values, "
                                             f"got {_got(gvars, False)}", _line_of(body, "vars"))
        children = body.get("children")
        if isinstance(children, dict):
            for child, cbody in children.items():
                self.parse_group(child, cbody, name, _line_of(children, child))
        elif children is not None:
            self.problem(inv, where, "children", "expected a mapping of group names, got "
                                                 f"{_got(children, False)}",
                         _line_of(body, "children"))

    def parse_host(self, pattern: Any, hvars: Any, group: str, line: int | None) -> None:
        from ansible.parsing.utils.addresses import parse_address
        from ansible.plugins.inventory import detect_range, expand_hostname_range

        pattern = str(pattern)
        port = None
        try:
            name, port = parse_address(pattern, allow_ranges=True)
        except Exception:
            name = pattern
        try:
            names = expand_hostname_range(name) if detect_range(name) else [name]
        except Exception as exc:
            self.problem(self.inv, f"group '{group}'", pattern,
                         f"invalid host range: {exc}", line)
            return
        where = f"host '{pattern}'"
        blocks = []
        if port is not None:
            blocks.append(_Block(self.inv, where, {"ansible_port": port}))
        if isinstance(hvars, dict):
            blocks.append(_Block(self.inv, where, hvars))
        elif hvars is not None:
            self.problem(self.inv, where, pattern, "expected a mapping of the host's variables "
                                                   f"(or nothing), got {_got(hvars, False)}", line)
        self.blocks.extend(blocks)
        for host_name in names:
            host = self.hosts.setdefault(host_name, _Host(host_name, line))
            host.groups.add(group)
            host.inline.extend(blocks)
            self.groups[group].hosts.add(host_name)

    def settle_groups(self) -> None:
        """Check for cycles, compute depths (as Ansible: longest path from all), ungrouped."""
        reported: set[frozenset[str]] = set()

        def visit(name: str, depth: int, stack: list[str]) -> None:
            group = self.groups[name]
            group.depth = max(group.depth, depth)
            for child in sorted(group.children):
                if child in stack:
                    loop = [*stack[stack.index(child):], child]
                    if frozenset(loop) not in reported:
                        reported.add(frozenset(loop))
                        self.problem(self.inv, f"group '{name}'", child,
                                     f"groups nest in a cycle ({' -> '.join(loop)}): expected "
                                     "a tree of groups")
                    continue
                visit(child, depth + 1, [*stack, child])

        visit("all", 0, ["all"])
        for host in self.hosts.values():
            if host.groups <= {"all", "ungrouped"}:
                host.groups.add("ungrouped")
                self.groups["ungrouped"].hosts.add(host.name)

    def parents(self, name: str) -> set[str]:
        return {g.name for g in self.groups.values() if name in g.children}

    def ancestors(self, names: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(self.parents(name))
        return seen

    def all_groups_of(self, host: str) -> set[str]:
        return self.ancestors(self.hosts[host].groups) | {"all"}

    def members(self, group: str) -> set[str]:
        return {h for h in self.hosts if group in self.all_groups_of(h)}

    def load_vars_files(self, dirname: str, entities: dict[str, Any], kind: str) -> None:
        """group_vars/ or host_vars/ next to the inventory, found as Ansible finds them."""
        base = self.site_dir / dirname
        if not base.is_dir():
            return
        names: dict[str, list[Path]] = {}
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(".") or entry.name.endswith("~"):
                continue
            stem, ext = os.path.splitext(entry.name)
            if entry.is_dir() and not ext:
                names.setdefault(entry.name, []).append(entry)
            elif entry.is_file() and ext in _VARS_EXTENSIONS:
                names.setdefault(stem if ext else entry.name, []).append(entry)
        for name, found in sorted(names.items()):
            where = f"{kind} '{name}'"
            if name not in entities:
                if kind == "group" and name in ALLOWED_GROUPS:
                    pass  # a known group this site leaves empty: still check the file
                elif kind == "group":
                    for f in found:
                        self.problem(f, where, name, _unknown_group(name))
                    continue
                else:
                    for f in found:
                        self.problem(f, where, name, f"no host '{name}' in the inventory: "
                                                     f"expected a file named after one of its "
                                                     f"hosts{_suggest(name, self.hosts, 0.6)}")
                    continue
            # Ansible takes the first of name, name.yml, name.yaml, name.json that exists
            found.sort(key=lambda p: _VARS_EXTENSIONS.index(os.path.splitext(p.name)[1]
                                                           if p.is_file() else ""))
            used, ignored = found[0], found[1:]
            for f in ignored:
                self.problem(f, where, name, f"ignored by Ansible because {used} is used: "
                                             "expected only one vars file or directory per "
                                             f"{kind}")
            files = (_dir_files(used) if used.is_dir() else [used])
            blocks = []
            for f in files:
                data = self.read_yaml(f, where)
                if data is _FAILED:
                    continue
                vault_file = isinstance(data, _VaultData)
                if vault_file:
                    data = data.data
                if data is None:
                    continue
                if not isinstance(data, dict):
                    self.problem(f, where, "(top level)", "expected a mapping of variable names "
                                                          f"to values, got {_got(data, False)}")
                    continue
                blocks.append(_Block(f, where, data, vault_file))
            self.blocks.extend(blocks)
            if name in entities:
                entities[name].files.extend(blocks)

    # -- variables

    def spec_for(self, name: str) -> tuple[str, dict[str, Any]] | None:
        if name in SITE_VARS:
            return "site", SITE_VARS[name]
        return self.options.get(name)

    def check_block(self, block: _Block) -> None:
        known = list(SITE_VARS) + list(self.options)
        for name, value in block.vars.items():
            line = block.line(name)
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                self.problem(block.file, block.where, name,
                             "invalid variable name: expected letters, digits and underscores, "
                             "not starting with a digit", line)
                continue
            found = self.spec_for(name)
            if found is None:
                if name.startswith("vault_"):
                    continue
                if not name.startswith("ansible_"):
                    self.problem(block.file, block.where, name,
                                 f"unknown variable '{name}'{_suggest(name, known)}: expected "
                                 "a role option (roles/*/meta/argument_specs.yml), a site "
                                 "variable, or a name starting with ansible_ or vault_", line)
                    continue
            spec = _with_conventions(name, found[1] if found else None)
            hide = _is_secret_name(name) or block.vault_file
            for suffix, msg in _check(value, spec, hide):
                self.problem(block.file, block.where, name + suffix, msg, line)

    def merged(self, host_name: str) -> dict[str, tuple[Any, _Block]]:
        """The host's variables in Ansible's precedence, each with the block that set it."""
        host = self.hosts[host_name]
        groups = sorted((self.groups[g] for g in self.all_groups_of(host_name) if g != "all"),
                        key=lambda g: (g.depth, g.priority, g.name))
        everyone = self.groups["all"]
        layers: list[_Block] = [
            *everyone.inline,
            *(b for g in groups for b in g.inline),
            *everyone.files,
            *(b for g in groups for b in g.files),
            *host.inline,
            *host.files,
        ]
        out: dict[str, tuple[Any, _Block]] = {}
        for block in layers:
            for k, v in block.vars.items():
                out[k] = (v, block)
        return out

    def check_hosts(self, hostvars: dict[str, dict[str, tuple[Any, _Block]]]) -> None:
        required = {n: (role, spec) for n, (role, spec) in self.options.items()
                    if spec.get("required")}
        seen_addr: dict[tuple[str, int], str] = {}
        seen_node: dict[str, str] = {}
        for name, hv in hostvars.items():
            host = self.hosts[name]
            where = f"host '{name}'"
            for var, (role, spec) in sorted(required.items()):
                if var not in hv:
                    self.problem(self.inv, where, var,
                                 f"required by role '{role}': expected {_describe(spec)}, set in "
                                 "the inventory, group_vars or host_vars", host.line)
            connection = _plain(hv.get("ansible_connection", (None,))[0])
            if connection == "local":
                continue
            if "ansible_host" not in hv:
                self.problem(self.inv, where, "ansible_host",
                             "the host has no address: expected ansible_host (an IP address or "
                             "DNS name to reach it over SSH), or ansible_connection: local",
                             host.line)
            else:
                address, block = hv["ansible_host"]
                address = _plain(address)
                port = _plain(hv.get("ansible_port", (22,))[0])
                if (isinstance(address, str) and not _is_template(address)
                        and isinstance(port, int) and not isinstance(port, bool)):
                    key = (_normal_address(address), port)
                    if key in seen_addr:
                        self.problem(block.file, where, "ansible_host",
                                     f"address {address} port {port} is also used by host "
                                     f"'{seen_addr[key]}': expected each host to have its own "
                                     "ansible_host/ansible_port pair",
                                     block.line("ansible_host"))
                    else:
                        seen_addr[key] = name
            if "mlops_node_address" in hv:
                node, block = hv["mlops_node_address"]
                node = _plain(node)
                if isinstance(node, str) and _is_ip(node):
                    normal = _normal_address(node)
                    if normal in seen_node:
                        self.problem(block.file, where, "mlops_node_address",
                                     f"address {node} is also used by host '{seen_node[normal]}':"
                                     " expected each host to have its own mlops_node_address",
                                     block.line("mlops_node_address"))
                    else:
                        seen_node[normal] = name
            self.check_tang(where, hv)

    def check_tang(self, where: str, hv: dict[str, tuple[Any, _Block]]) -> None:
        """Tang binding removes the node's keyfile: the escrow must stay on, the threshold fit."""
        servers = _plain(hv.get("disk_encryption_tang_servers", ([], None))[0])
        if not isinstance(servers, list) or not servers:
            return
        escrow, block = hv.get("disk_encryption_escrow", (True, None))
        if _plain(escrow) is False and block is not None:
            self.problem(block.file, where, "disk_encryption_escrow",
                         "expected true while disk_encryption_tang_servers is set: the keyfile "
                         "leaves the node, and the escrowed key is the only key besides Tang",
                         block.line("disk_encryption_escrow"))
        threshold, block = hv.get("disk_encryption_tang_threshold", (1, None))
        threshold = _plain(threshold)
        if (block is not None and isinstance(threshold, int) and not isinstance(threshold, bool)
                and not 1 <= threshold <= len(servers)):
            self.problem(block.file, where, "disk_encryption_tang_threshold",
                         f"expected 1 to {len(servers)} (the number of "
                         f"disk_encryption_tang_servers), got {threshold}",
                         block.line("disk_encryption_tang_threshold"))

    # -- rules of the groups' roles

    def _source(self, hv: dict[str, tuple[Any, _Block]], key: str,
                seen: tuple[str, ...] = ()) -> tuple[str, Any, _Block]:
        """How ``key`` is set for a host: ("vault", plaintext, block), ("plain", value, block),
        ("missing", referenced name, block) for a ``{{ name }}`` naming an unset variable, or
        ("template", value, block) for an expression only Ansible can judge."""
        value, block = hv[key]
        if isinstance(value, VaultValue):
            return "vault", value.plaintext, block
        if block.vault_file:
            return "vault", value, block
        if _is_template(value):
            ref = _REFERENCE.fullmatch(value.strip())
            if ref and ref.group(1) not in seen:
                name = ref.group(1)
                if name not in hv:
                    return "missing", name, block
                return self._source(hv, name, (*seen, key))
            return "template", value, block
        return "plain", value, block

    def check_group_secrets(self, host_name: str, hv: dict[str, tuple[Any, _Block]]) -> None:
        host = self.hosts[host_name]
        groups = self.all_groups_of(host_name)
        for group in sorted(groups & set(GROUP_SECRETS)):
            for key in GROUP_SECRETS[group]:
                role = self.options.get(key, ("?",))[0]
                how = (f"expected a vault-encrypted str (`ansible-vault encrypt_string --name {key}`, or "
                       "a variable of a vault-encrypted file)")
                if key not in hv:
                    self.problem(self.inv, f"host '{host_name}'", key,
                                 f"required for hosts in group '{group}' (role {role}): {how}", host.line)
                    continue
                kind, value, block = self._source(hv, key)
                line = block.line(key)
                if kind == "missing" and not self.vault_failed:  # else: likely in what failed to decrypt
                    self.problem(block.file, block.where, key, f"refers to '{value}', which is not set: {how}",
                                 line)
                elif kind == "plain":
                    self.problem(block.file, block.where, key,
                                 f"is plain text: {how}; a password must never be written in clear", line)
                elif kind == "vault" and isinstance(value, str) and key in STRONG_PASSWORDS:
                    weak = self._weakness(value, hv, STRONG_PASSWORDS[key])
                    if weak:
                        self.problem(block.file, block.where, key,
                                     f"is too weak ({weak}): expected at least {MIN_PASSWORD_LENGTH} "
                                     "characters, not a well-known password, not the user name", line)

    def _weakness(self, password: str, hv: dict[str, tuple[Any, _Block]], user_var: str) -> str:
        role = self.options.get(user_var, ("",))[0]
        user = _plain(hv[user_var][0]) if user_var in hv else self.defaults.get(role, {}).get(user_var)
        if len(password) < MIN_PASSWORD_LENGTH:
            return f"{len(password)} characters"
        if password.lower() in WEAK_PASSWORDS or len(set(password)) == 1:
            return "a well-known password"
        if isinstance(user, str) and password.lower() == user.lower():
            return "the same as the user name"
        return ""

    def check_port_clashes(self, host_name: str, hv: dict[str, tuple[Any, _Block]]) -> None:
        roles = {r for g in self.all_groups_of(host_name) for r in GROUP_ROLES.get(g, ())}
        ports: dict[int, list[str]] = {}
        for name, (role, _spec) in sorted(self.options.items()):
            if role not in roles or not name.endswith("_port") or name in CLIENT_PORTS:
                continue
            value = _plain(hv[name][0]) if name in hv else self.defaults.get(role, {}).get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                ports.setdefault(value, []).append(name)
        for port, names in sorted(ports.items()):
            services = {next((min(s) for s in SHARED_PORTS if n in s), n) for n in names}
            if len(services) < 2:
                continue
            for name in names:
                others = ", ".join(f"{o} (role {self.options[o][0]})" for o in names if o != name)
                msg = (f"port {port} is also {others} on host '{host_name}': expected each service a "
                       "host runs to have its own port")
                if name in hv:
                    block = hv[name][1]
                    self.problem(block.file, block.where, name, msg, block.line(name))
            if not any(n in hv for n in names):  # two roles' defaults: a defect of the roles
                self.problem(self.inv, f"host '{host_name}'", names[0],
                             f"port {port} is the default of {', '.join(names)}: expected different ports",
                             self.hosts[host_name].line)

    def collect_secrets(self) -> None:
        def walk(value: Any, secret: bool) -> None:
            if isinstance(value, VaultValue):
                value = value.plaintext
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, secret or _is_secret_name(k))
            elif isinstance(value, list):
                for v in value:
                    walk(v, secret)
            elif secret and value is not None and not isinstance(value, bool):
                text = str(value)
                if text and not _is_template(text):
                    self.secrets.add(text)

        for block in self.blocks:
            walk(block.vars, False)
        self.secrets.discard("")


class _Failed:
    pass


_FAILED: Any = _Failed()


@dataclass
class _VaultData:
    """Data read from a whole vault-encrypted file."""

    data: Any


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _dir_files(directory: Path) -> list[Path]:
    """Vars files in a group_vars/<group>/ directory, in Ansible's order."""
    out: list[Path] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        ext = os.path.splitext(entry.name)[1]
        if entry.is_dir() and not ext:
            out.extend(_dir_files(entry))
        elif entry.is_file() and ext in _VARS_EXTENSIONS:
            out.append(entry)
    return out


def _line_of(mapping: Any, key: Any) -> int | None:
    return getattr(mapping, "lines", {}).get(key)


def _site_groups() -> list[str]:
    return sorted(g for g in ALLOWED_GROUPS if g not in ("all", "ungrouped"))


def _unknown_group(name: str) -> str:
    return (f"unknown group '{name}': expected one of {', '.join(_site_groups())}"
            f"{_suggest(name, _site_groups(), 0.6)}")


def _normal_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower().rstrip(".")
