"""Checks of what is written, before the cross-field rules: each block's variable names and
types (Ansible's argument-spec validator, :func:`values.check`), and each host's required
options (one :class:`ArgumentSpecValidator` call per role entry point) and address."""

from __future__ import annotations

import keyword
from typing import Any

from mlops_provision.site import ansiblevars
from mlops_provision.site.hostview import HostView
from mlops_provision.site.layout import Block
from mlops_provision.site.problems import Problems
from mlops_provision.site.roles import SITE_VARS, RoleSpecs
from mlops_provision.site.values import (
    check,
    describe,
    is_secret_name,
    is_template,
    suggest,
    with_conventions,
)
from mlops_provision.site.yamlfile import VaultValue, text_of


def check_block(block: Block, specs: RoleSpecs, problems: Problems) -> None:
    known = list(SITE_VARS) + list(specs.options)
    for name, value in block.vars.items():
        line = block.line(name)
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            problems.add(block.file, block.where, name, "invalid variable name: expected "
                                                        "letters, digits and underscores, not "
                                                        "starting with a digit", line)
            continue
        found = specs.spec_for(name)
        if found is None:
            if name.startswith(("vault_", "molecule_")):  # molecule_*: Molecule's own
                continue
            if not name.startswith("ansible_"):
                problems.add(block.file, block.where, name,
                             f"unknown variable '{name}'{suggest(name, known)}: expected a role "
                             "option (roles/*/meta/argument_specs.yml), a site variable, or a "
                             "name starting with ansible_ or vault_", line)
                continue
            if not ansiblevars.is_known(name):
                problems.warn(block.file, block.where, name,
                              f"Ansible reads no inventory variable '{name}'"
                              f"{suggest(name, ansiblevars.known())}: it is ignored; expected a "
                              "connection, become (sudo), shell or interpreter setting (their "
                              "names: ansible-doc -t connection ssh, ansible-doc -t become sudo)",
                              line)
        spec = with_conventions(name, found[1] if found else None)
        hide = is_secret_name(name) or block.vault_file
        for suffix, msg in check(value, spec, hide, text=text_of(block.vars, name)):
            problems.add(block.file, block.where, name + suffix, msg, line)


def decrypt_block(block: Block, vault: Any, problems: Problems) -> None:
    """Decrypt the block's inline ``!vault`` values; report those that do not decrypt."""
    def walk(value: Any, key: str, line: int | None) -> None:
        if isinstance(value, VaultValue):
            value.plaintext = vault.decrypt(value.ciphertext)
            if value.plaintext is None:
                vault.failed = True
                problems.add(block.file, block.where, key, f"the !vault value {vault.error}",
                             value.line or line)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}", line)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]", line)

    for k, v in block.vars.items():
        walk(v, str(k), block.line(k))


def required_roles(host: HostView, all_run: set[str]) -> list[str]:
    """The roles whose required options the host must set: those it runs, and roles no
    playbook runs yet (a new role is checked everywhere until a playbook places it)."""
    return sorted(r for r in host.specs.entry_points if r in host.roles or r not in all_run)


def check_required(host: HostView, all_run: set[str]) -> None:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible.module_utils.errors import RequiredError

    for role in required_roles(host, all_run):
        for options in host.specs.entry_points[role].values():
            required = {k: o for k, o in options.items() if o.get("required")}
            if not required:
                continue
            spec = {k: {"type": o.get("type") or "str", "required": True}
                    for k, o in required.items()}
            given = {k: host.vars[k] for k in required if k in host.vars}
            given = {k: ("x" if is_template(v) else v) for k, v in given.items()}
            result = ArgumentSpecValidator(spec).validate(given)
            if any(isinstance(e, RequiredError) for e in result.errors.errors):
                for var in sorted(set(required) - set(given)):
                    host.problem(var, f"required by role '{role}': expected "
                                      f"{describe(required[var])}, set in the inventory, "
                                      "group_vars or host_vars", at_host=True)
