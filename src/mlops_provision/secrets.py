"""Keep secrets out of the terminal, the run summaries and the runner artifacts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

MASK = "********"
MIN_SECRET_LEN = 4

#: Variables whose values are secrets (masked in records), besides every vault plaintext.
SECRET_VARS: frozenset[str] = frozenset({
    "ansible_password", "ansible_become_password", "ansible_become_pass", "ansible_ssh_pass",
})
SECRET_SUFFIXES: tuple[str, ...] = ("_password", "_secret", "_token")


def is_secret_name(name: object) -> bool:
    """A variable whose value is a secret: :data:`SECRET_VARS` or a name ending in
    :data:`SECRET_SUFFIXES`."""
    return isinstance(name, str) and (name in SECRET_VARS or name.endswith(SECRET_SUFFIXES))


def secret_values(blocks: Iterable[object]) -> set[str]:
    """The value of every secret variable (:func:`is_secret_name`, at any depth) in
    ``blocks`` (mappings of variables), Jinja expressions and booleans excepted."""
    found: set[str] = set()

    def walk(value: object, secret: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, secret or is_secret_name(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, secret)
        elif secret and value is not None and not isinstance(value, bool):
            text = str(value)
            if text and "{{" not in text and "{%" not in text:
                found.add(text)

    for block in blocks:
        walk(block, False)
    return found


class Scrubber:
    """Replaces every known secret value (and its JSON-escaped form) with a mask."""

    def __init__(self, secrets: Iterable[str]):
        forms: set[str] = set()
        for secret in secrets:
            if not isinstance(secret, str) or len(secret) < MIN_SECRET_LEN:
                continue
            forms.add(secret)
            forms.add(json.dumps(secret)[1:-1])  # as it appears inside JSON strings
            forms.add(secret.strip())
        ordered = sorted((f for f in forms if len(f) >= MIN_SECRET_LEN), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern else value

    def data(self, value):
        """Scrub strings anywhere inside a JSON-like structure."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        return value

    def tree(self, root: Path) -> int:
        """Rewrite every file under root that contains a secret; returns how many changed."""
        changed = 0
        if not self._pattern:
            return 0
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            clean = self.text(text)
            if clean != text:
                path.write_text(clean)
                changed += 1
        return changed
