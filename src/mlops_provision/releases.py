"""The Debian releases the platform supports, and the release of a host where the inventory
says it (``ansible_distribution_release`` or ``ansible_distribution_major_version`` set as
inventory variables, the names Ansible gives the facts). What each release carries (driver
branch, CUDA, containerd) is data in the roles' vars, keyed by suite; validate reads the same
tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Debian release number -> suite, oldest first. The roles' meta/main.yml list the same suites.
RELEASES: dict[str, str] = {"12": "bookworm", "13": "trixie"}
#: Debian's current stable release: the sandbox's default.
CURRENT = "13"


def suite_of(values: Mapping[str, Any]) -> str | None:
    """The suite of a host whose inventory variables are ``values``, or None when they do not
    say (validate then checks what every supported release carries)."""
    suite = values.get("ansible_distribution_release")
    if isinstance(suite, str) and suite:
        return suite
    number = values.get("ansible_distribution_major_version")
    if number is not None and str(number) in RELEASES:
        return RELEASES[str(number)]
    return None


def describe(suite: str) -> str:
    """``Debian 13 (trixie)`` for ``trixie``; the suite itself when it is not one of ours."""
    number = next((n for n, s in RELEASES.items() if s == suite), None)
    return f"Debian {number} ({suite})" if number else f"Debian {suite}"
