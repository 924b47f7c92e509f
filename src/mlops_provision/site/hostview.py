"""One host as the rules see it: its variables as Ansible resolved them, the roles it runs,
and, for messages, where each effective value is written (file, block, line)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_provision.site.layout import Block, Layout
from mlops_provision.site.problems import Problems
from mlops_provision.site.roles import RoleSpecs
from mlops_provision.site.values import is_template, plain
from mlops_provision.site.yamlfile import VaultValue

_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass
class HostView:
    """A host, its resolved inventory variables and the roles it runs."""

    name: str
    vars: dict[str, Any]  # as Ansible resolved them (vault decrypted, not templated)
    groups: list[str]  # Ansible's group_names
    roles: set[str]
    specs: RoleSpecs
    inventory: Path
    line: int | None  # the host's line in the inventory file
    blocks: list[Block] = field(default_factory=list)  # the host's blocks, lowest first
    vault_failed: bool = False
    problems: Problems = field(default_factory=Problems)

    def value(self, key: str, default: Any = None) -> Any:
        """The inventory's value, else the role's default, else ``default``."""
        if key in self.vars:
            return self.vars[key]
        found = self.specs.default(key)
        return default if found is None else found

    def block(self, key: str) -> Block | None:
        """The block the effective value of ``key`` comes from (None: not in the inventory)."""
        with_key = [b for b in self.blocks if key in b.vars]
        same = [b for b in with_key if plain(b.vars[key]) == self.vars.get(key)]
        return (same or with_key or [None])[-1]

    def problem(self, key: str, expected: str, at_host: bool = False,
                cause: tuple[str, ...] = ()) -> None:
        """Report ``key``: where its effective value is written, or at the host's entry. A key
        the inventory does not set whose value (a role default) is wrong because of other keys
        (``cause``) is reported where the first of those that the inventory sets is written:
        one group_vars line, one problem, however many hosts it reaches."""
        self._report(self.problems.add, key, expected, at_host, cause)

    def warn(self, key: str, expected: str, at_host: bool = False,
             cause: tuple[str, ...] = ()) -> None:
        """As :meth:`problem`, a warning: reported, the site stays valid."""
        self._report(self.problems.warn, key, expected, at_host, cause)

    def _report(self, add: Any, key: str, expected: str, at_host: bool,
                cause: tuple[str, ...]) -> None:
        block, line = None, self.line
        if not at_host:
            block = self.block(key)
            if block is not None:
                line = block.line(key)
        if at_host or block is None:
            for other in cause:
                block = self.block(other)
                if block is not None:
                    line = block.line(other)
                    break
        if block is None:
            add(self.inventory, f"host '{self.name}'", key, expected, self.line)
        else:
            add(block.file, block.where, key, expected, line, host=self.name)

    def source(self, key: str, seen: tuple[str, ...] = ()) -> tuple[str, Any, Block | None]:
        """How ``key`` is set, and the block that sets it: ("vault", plaintext), ("plain",
        value), ("missing", name) for a ``{{ name }}`` naming an unset variable, ("template",
        value) for an expression only Ansible can judge."""
        block = self.block(key)
        if block is None:
            return "missing", key, None
        value = block.vars[key]
        if isinstance(value, VaultValue):
            return "vault", value.plaintext, block
        if block.vault_file:
            return "vault", value, block
        if is_template(value):
            ref = _REFERENCE.fullmatch(value.strip())
            if ref and ref.group(1) not in seen:
                if ref.group(1) not in self.vars:
                    return "missing", ref.group(1), block
                kind, found, where = self.source(ref.group(1), (*seen, key))
                return kind, found, where
            return "template", value, block
        return "plain", value, block

    def problem_in(self, block: Block | None, key: str, expected: str) -> None:
        """Report ``key`` in ``block`` (the host's entry when None)."""
        if block is None:
            self.problem(key, expected, at_host=True)
        else:
            self.problems.add(block.file, block.where, key, expected, block.line(key),
                              host=self.name)


def host_blocks(layout: Layout, host: str, group_order: list[str]) -> list[Block]:
    """The blocks that apply to ``host``, in Ansible's precedence (lowest first); for
    messages only: the values themselves come from Ansible."""
    groups = [b for g in group_order for b in layout.blocks_of("group", g) if b.inline]
    files = [b for g in group_order for b in layout.blocks_of("group", g) if not b.inline]
    own = layout.blocks_of("host", host)
    return [*groups, *files, *(b for b in own if b.inline), *(b for b in own if not b.inline)]
