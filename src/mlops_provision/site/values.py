"""Judge one value against a role option's spec: the type with Ansible's own argument-spec
validator (so a value is accepted exactly when the role accepts it), then the site's naming
conventions on top (``*_port``, ``*_cidr``, ``url``...). Messages name what is expected and
what was found, with "did you mean" hints.

==========================  ==============================================================
name ends in                the value must be
==========================  ==============================================================
``_cidr``                   a CIDR network string, host bits clear (``192.0.2.0/24``)
``_cidrs``                  a list of such CIDR strings
``_port``                   an int port number, 1-65535
``_ports``                  a list of such port numbers
``url`` (a sub-key)         an http:// or https:// URL with a valid host and port
``_host``, ``_address``     an IP address or DNS hostname (not empty)
``_user``, ``_username``,   a non-empty string
``_group``, ``_name``
==========================  ==============================================================

A string holding a Jinja expression (``{{`` or ``{%``) is accepted for any type: only
Ansible can judge it, when it renders it.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from mlops_provision.secrets import is_secret_name
from mlops_provision.site.yamlfile import VaultValue, text_of

__all__ = ["is_secret_name"]


_WORDS = {"str": "str", "path": "str (a path)", "int": "int", "float": "float",
          "bool": "bool (true or false)", "list": "list", "dict": "mapping", "raw": "any value"}
_FORMAT_WORDS = {
    "ip": "an IP address", "host": "an IP address or DNS hostname",
    "name": "a host name (RFC 1123: letters, digits and '-', labels of 1-63 characters, "
            "253 in all)",
    "cidr": "a CIDR network such as 192.0.2.0/24", "port": "a port number (int 1-65535)",
    "url": "an http:// or https:// URL such as http://192.0.2.5:7500",
}
_FORMAT_PLURALS = {
    "ip": "IP addresses", "host": "IP addresses or DNS hostnames", "name": "host names",
    "cidr": "CIDR networks such as 192.0.2.0/24", "port": "port numbers (int 1-65535)",
    "url": "http:// or https:// URLs",
}
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def is_hostname(name: str) -> bool:
    """An RFC 1123 host name (a trailing dot allowed): labels of letters, digits and '-'."""
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def normal_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower().rstrip(".")


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, VaultValue):
        return "vault-encrypted str"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def got(value: Any, hide: bool) -> str:
    if value is None:
        return "null (an empty value; write \"\" for an empty string, [] for an empty list)"
    name = type_name(value)
    if hide or isinstance(value, VaultValue | list | dict):
        return name
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name} {text}"


def suggest(word: Any, choices: Iterable[Any], cutoff: float = 0.75) -> str:
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean '{match[0]}'?)" if match else ""


def plain(value: Any) -> Any:
    """A copy of ``value`` with plain dicts and vault values replaced by their plaintext."""
    if isinstance(value, VaultValue):
        return value.plaintext
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _url_ok(value: str) -> tuple[bool, str]:
    try:
        url = urllib.parse.urlsplit(value)
        port = url.port
    except ValueError:
        return False, "bad port"
    if url.scheme not in ("http", "https"):
        return False, "scheme is not http or https"
    host = url.hostname or ""
    if not (is_ip(host) or is_hostname(host)):
        return False, "no valid host"
    return port != 0, "" if port != 0 else "bad port"


def format_error(fmt: str, value: Any, hide: bool) -> str | None:
    """Why ``value`` does not have format ``fmt``, or None if it does (or cannot be judged)."""
    if isinstance(value, VaultValue):
        value, hide = value.plaintext, True
        if value is None:
            return None
    if is_template(value) or fmt not in _FORMAT_WORDS:
        return None
    ok, detail = False, ""
    if fmt == "port":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
    elif isinstance(value, str):
        if fmt == "ip":
            ok = is_ip(value)
        elif fmt == "host":
            ok = is_ip(value) or is_hostname(value)
        elif fmt == "name":
            ok = is_hostname(value)
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
    return (f"expected {_FORMAT_WORDS[fmt]}, got {got(value, hide)}"
            + (f" ({detail})" if detail and not hide else ""))


def describe(spec: dict[str, Any]) -> str:
    typ = spec.get("type") or "str"
    fmt = spec.get("format")
    if typ == "list":
        if fmt in _FORMAT_PLURALS:
            return f"list of {_FORMAT_PLURALS[fmt]}"
        elements = spec.get("elements")
        return f"list of {_WORDS.get(elements, 'any value')}" if elements else "list"
    if fmt in _FORMAT_WORDS:
        return _FORMAT_WORDS[fmt]
    return _WORDS.get(typ, "any value")


def with_conventions(name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
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
    elif name.endswith(("_host", "_address")) and typ in ("str", "raw"):
        spec.setdefault("format", "host")
    elif name.endswith(("_user", "_username", "_group", "_name")) and typ == "str":
        spec["nonempty"] = True
    return spec


def ansible_accepts(value: Any, spec: dict[str, Any]) -> tuple[bool, Any, str]:
    """Whether Ansible's :class:`ArgumentSpecValidator` accepts ``value`` for an option of
    ``spec`` (type, elements, choices, sub-options; ``required`` is judged per host
    elsewhere), the value as Ansible converts it, and Ansible's message if not."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    option = {k: v for k, v in spec.items()
              if k in ("type", "elements", "choices", "options", "no_log")}
    option["type"] = option.get("type") or "str"
    if "options" in option:
        option["options"] = {k: {kk: vv for kk, vv in (v or {}).items() if kk != "format"}
                             for k, v in option["options"].items()}
    result = ArgumentSpecValidator({"value": option}).validate({"value": value})
    if result.error_messages:
        return False, value, "; ".join(result.error_messages)
    return True, result.validated_parameters.get("value", value), ""


def yaml_surprise(value: Any, spec: dict[str, Any], text: str | None, hide: bool) -> str | None:
    """Why ``value`` is not what was meant for a string option (``type: str`` or ``path``):
    YAML read an unquoted word as a boolean (``on``, ``yes``, ``off``) or a number (``12.10``
    is 12.1); None when it did not. Judged on the value as loaded: Ansible's validator turns
    True into "True" (or, with choices, back into "on") and 12.10 into "12.1" without a word,
    and the role then sees the boolean or the number."""
    if (spec.get("type") or "str") not in ("str", "path"):
        return None
    choices = spec.get("choices")
    want = (f"expected one of {', '.join(_quoted(c) for c in choices)} (a string)" if choices
            else "expected a string")
    if isinstance(value, bool):
        word = "" if hide else (text or str(value).lower())
        return (f"{want}, got the boolean {str(value).lower()}: YAML reads an unquoted "
                f"{word or 'yes, no, on, off, true or false'} as a boolean; quote it"
                + (f' ("{word}")' if word else ""))
    if isinstance(value, float):
        if hide:
            return f"{want}, got a number: YAML reads an unquoted number as a number; quote it"
        word = text or repr(value)
        read = f"the number {value!r}" if word != repr(value) else "a number"
        return (f"{want}, got the number {value!r}: YAML reads an unquoted {word} as {read}; "
                f'quote it ("{word}")')
    return None


def _quoted(choice: Any) -> str:
    """A choice as it must be written: quoted when YAML would read it unquoted as another type."""
    import yaml

    text = str(choice)
    return f'"{text}"' if not isinstance(yaml.safe_load(text), str) else text


def _surprises(value: Any, spec: dict[str, Any], text: str | None, hide: bool,
               path: str) -> list[tuple[str, str]]:
    """:func:`yaml_surprise` of a string option, or of each item of a list of strings."""
    typ = spec.get("type") or "str"
    if typ in ("str", "path"):
        msg = yaml_surprise(value, spec, text, hide)
        return [(path, msg)] if msg else []
    if typ == "list" and spec.get("elements") in ("str", "path") and isinstance(value, list):
        item = {"type": spec["elements"], "choices": spec.get("choices")}
        found = [(f"{path}[{i}]", yaml_surprise(v, item, text_of(value, i), hide))
                 for i, v in enumerate(value)]
        return [(p, m) for p, m in found if m]
    return []


def check(value: Any, spec: dict[str, Any], hide: bool, path: str = "",
          text: str | None = None) -> list[tuple[str, str]]:
    """(key suffix, message) for each way ``value`` breaks ``spec`` (an argument_specs option
    with the conventions applied). ``text``: how the value was written, when YAML read an
    unquoted word as a boolean or a number (:func:`yaml_surprise`)."""
    if is_template(value):
        return []
    shown = value
    if isinstance(value, VaultValue):
        if value.plaintext is None:
            return []  # reported as a vault problem
        hide, value = True, value.plaintext
    surprises = _surprises(value, spec, text, hide, path)
    if surprises:
        return surprises
    if isinstance(value, list | dict) and _holds(value, is_template):
        return _locate(value, spec, hide, path)  # judge what Ansible can judge now
    if _holds(value, lambda v: isinstance(v, VaultValue)):
        hide = True
    ok, converted, _why = ansible_accepts(plain(value), spec)
    if not ok:
        return _locate(value, spec, hide, path) or [
            (path, f"expected {describe(spec)}, got {got(shown, hide)}")]
    out: list[tuple[str, str]] = []
    typ = spec.get("type") or "str"
    if typ == "list" and spec.get("format"):
        for i, item in enumerate(converted or []):
            msg = format_error(spec["format"], item, hide)
            if msg:
                out.append((f"{path}[{i}]", msg))
    elif typ == "list" and spec.get("options"):
        # The items as written: Ansible's converted ones carry every absent sub-option as None.
        for i, item in enumerate(value if isinstance(value, list) else converted or []):
            out += check(item, {"type": "dict", "options": spec["options"]}, hide, f"{path}[{i}]")
    elif spec.get("format"):
        msg = format_error(spec["format"], converted, hide)
        if msg:
            out.append((path, msg))
    elif spec.get("nonempty") and isinstance(converted, str) and not converted.strip():
        out.append((path, f"expected a non-empty {describe(spec)}, got an empty string"))
    if typ == "dict" and spec.get("options") and isinstance(value, dict):
        for k, v in value.items():
            sub = spec["options"].get(k)
            if sub is not None:
                out += check(v, with_conventions(k, sub), hide or is_secret_name(k),
                             f"{path}.{k}", text_of(value, k))
    return out


def _locate(value: Any, spec: dict[str, Any], hide: bool, path: str) -> list[tuple[str, str]]:
    """Where inside ``value`` Ansible's objection lies, worded for the user; [] if at the top."""
    typ = spec.get("type") or "str"
    out: list[tuple[str, str]] = []
    if typ == "list" and isinstance(value, list) and (spec.get("elements") or spec.get("options")):
        item_spec = {"type": spec.get("elements") or "raw"}
        for k in ("choices", "options", "format"):
            if spec.get(k):
                item_spec[k] = spec[k]
        for i, item in enumerate(value):
            out += check(item, item_spec, hide, f"{path}[{i}]", text_of(value, i))
    elif typ == "dict" and isinstance(value, dict) and spec.get("options"):
        options = spec["options"]
        for k, v in value.items():
            if k not in options:
                out.append((f"{path}.{k}", f"unknown key '{k}': expected one of "
                                           f"{', '.join(sorted(options))}{suggest(k, options)}"))
            else:
                out += check(v, with_conventions(k, options[k]), hide or is_secret_name(k),
                             f"{path}.{k}", text_of(value, k))
        for k, opt in options.items():
            if (opt or {}).get("required") and k not in value:
                out.append((f"{path}.{k}", f"required: expected {describe(opt)}"))
    elif spec.get("choices") and not isinstance(value, dict | list):
        ok, _, _ = ansible_accepts(value, {k: v for k, v in spec.items() if k != "choices"})
        if ok:
            choices = spec["choices"]
            hint = "" if hide else suggest(value, choices, 0.6)
            out.append((path, f"expected one of {', '.join(str(c) for c in choices)}, "
                              f"got {got(value, hide)}{hint}"))
    return out


def _holds(value: Any, test: Any) -> bool:
    """Whether ``test`` holds for ``value`` or anything inside it."""
    if isinstance(value, dict):
        return any(_holds(v, test) for v in value.values())
    if isinstance(value, list):
        return any(_holds(v, test) for v in value)
    return bool(test(value))
