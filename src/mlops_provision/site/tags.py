"""The tags a playbook's tasks carry, read from the playbooks and roles (every ``tags:`` of a
play, a role entry, a block, a task, an import), and what ``--tags``/``--skip-tags`` ask for.
A tag that no task carries selects nothing: ``ansible-playbook`` runs nothing and reports ok,
so it is refused before any host is touched. The agreement with ``ansible-playbook
--list-tags`` is a unit test."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

#: Ansible's special tags, valid in every playbook.
SPECIAL_TAGS: tuple[str, ...] = ("all", "tagged", "untagged", "always", "never")


def _tags_in(data: Any, out: set[str]) -> None:
    if isinstance(data, dict):
        tags = data.get("tags")
        if isinstance(tags, str):
            out.update(t.strip() for t in tags.split(",") if t.strip())
        elif isinstance(tags, list):
            out.update(str(t) for t in tags)
        for value in data.values():
            _tags_in(value, out)
    elif isinstance(data, list):
        for value in data:
            _tags_in(value, out)


@lru_cache(maxsize=8)
def playbook_tags(playbooks_dir: Path, roles_dir: Path) -> frozenset[str]:
    """Every tag written in the playbooks and in the roles' tasks and handlers."""
    found: set[str] = set()
    files = [*playbooks_dir.glob("*.yml"), *roles_dir.glob("*/tasks/*.yml"),
             *roles_dir.glob("*/handlers/*.yml")]
    for file in sorted(files):
        try:
            _tags_in(yaml.safe_load(file.read_text()), found)
        except (OSError, yaml.YAMLError):
            continue
    return frozenset(found)


def unknown_tags(requested: str | None, known: frozenset[str]) -> list[str]:
    """The names in a comma-separated ``--tags``/``--skip-tags`` value that no task carries."""
    if not requested:
        return []
    names = [t.strip() for t in requested.split(",") if t.strip()]
    return [t for t in names if t not in known and t not in SPECIAL_TAGS]
