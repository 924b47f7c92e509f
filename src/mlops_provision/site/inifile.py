"""An INI inventory as the line index reads it: the same shape as a YAML inventory
(``all`` with ``hosts``, ``vars`` and ``children``), each mapping remembering the line of each
key, values parsed as Ansible's ``ini`` inventory plugin parses them. What the variables mean
and which host is in which group stays Ansible's answer (:mod:`mlops_provision.site.resolve`);
this only points messages at ``file:line``."""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from mlops_provision.site.yamlfile import LineDict, YamlError

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[;#].*)?$")
#: A host line that starts like a section: an IPv6 address with a port, [2001:db8::1]:2222
_IPV6_HOST = re.compile(r"^\[[0-9A-Fa-f:.]+\](?::\d+)?(?:\s|$)")


def _value(text: str) -> Any:
    """An INI value as Ansible's ini plugin reads it: a Python literal where it is one, else the
    text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    """As Ansible coerces literals: tuples and sets become lists, bytes text."""
    if isinstance(value, tuple | set | frozenset | list):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {_coerce(k): _coerce(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _group(groups: LineDict, name: str, line: int) -> LineDict:
    if name not in groups:
        groups[name] = LineDict()
        groups.lines[name] = line
    return groups[name]


def _child(body: LineDict, key: str, line: int) -> LineDict:
    if not isinstance(body.get(key), LineDict):
        body[key] = LineDict()
        body.lines[key] = line
    return body[key]


def parse(text: str) -> LineDict:
    """The inventory as ``{"all": {"hosts", "vars", "children": {group: ...}}}``, every group
    named at the top level under ``all.children`` (Ansible makes a group without a parent a child
    of ``all``; a group named in a ``:children`` section is a child of that group there too).
    Raises :class:`YamlError` (the line index's error) where Ansible's ini plugin would fail."""
    top = LineDict()
    root = _group(top, "all", 1)
    groups = _child(root, "children", 1)
    bodies: dict[str, LineDict] = {"all": root}
    nested: set[str] = set()
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and not _IPV6_HOST.match(line):
            match = _SECTION.match(line)
            if not match:
                raise YamlError(f"invalid INI section header {line!r} at line {number}: expected "
                                "[group], [group:vars] or [group:children]", number)
            section, kind = match.group(1), match.group(2) or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise YamlError(f"invalid INI section [{section}:{kind}] at line {number}: expected "
                                ":vars or :children", number)
            if section not in bodies:
                bodies[section] = _group(groups, section, number)
            continue
        if section == "ungrouped" and kind == "hosts":
            body = root  # hosts before any section, or in [ungrouped]: hosts of all
        else:
            body = bodies[section] if section in bodies else _group(groups, section, number)
            bodies[section] = body
        if kind == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise YamlError(f"invalid variable line {line!r} at line {number}: expected "
                                "key=value", number)
            target = _child(body, "vars", number)
            target[key.strip()] = _value(value.strip())
            target.lines[key.strip()] = number
        elif kind == "children":
            name = line.split()[0]
            target = _child(body, "children", number)
            if name not in bodies:
                bodies[name] = _group(groups, name, number)
            target.setdefault(name, bodies[name])
            target.lines.setdefault(name, number)
            nested.add(name)
        else:
            if line == "---":
                raise YamlError(f"invalid host '---' at line {number}: a sign of a YAML file",
                                number)
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as exc:
                raise YamlError(f"invalid host line at line {number}: {exc}", number) from None
            hostvars = LineDict()
            for token in tokens[1:]:
                key, sep, value = token.partition("=")
                if not sep:
                    raise YamlError(f"invalid host line at line {number}: expected key=value "
                                    f"host variables, got {token!r}", number)
                hostvars[key] = _value(value)
                hostvars.lines[key] = number
            hosts = _child(body, "hosts", number)
            earlier = hosts.get(tokens[0])
            if isinstance(earlier, LineDict):  # listed again: Ansible merges its variables
                earlier.update(hostvars)
                earlier.lines.update(hostvars.lines)
            else:
                hosts[tokens[0]] = hostvars or None
                hosts.lines.setdefault(tokens[0], number)
    # a group only named as a child of another is not also a child of all (it would be read twice)
    for name in nested:
        if name in groups and groups[name] is bodies.get(name) and _only_nested(name, bodies):
            del groups[name]
    return top


def _only_nested(name: str, bodies: dict[str, LineDict]) -> bool:
    return any(isinstance(b.get("children"), dict) and name in b["children"]
               for key, b in bodies.items() if key not in ("all", name))
