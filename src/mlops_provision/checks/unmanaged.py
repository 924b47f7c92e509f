"""Helpers for checks of state `up` does not manage: files next to ours in the drop-in
directories a role owns, and how a check says that `up` will not repair what it found.

A file in a role's directory is *ours* when its name is one the role writes; it is the
*distribution's* when a Debian package owns it (``dpkg-query -S``), it is a link that resolves to
a file a package owns (Debian's alternatives: the NVIDIA driver's /etc/modprobe.d/nvidia.conf),
or it is a name the distribution installs by other means (``extra``). Anything else was put there by someone else:
drift that `up` leaves unless the role's ``<role>_purge_unmanaged`` is on (then the role removes
it with the project's ``mlops_unmanaged`` module, library/).

A check says "`up` does not manage what I found" in structure, never in its message: it raises
:class:`Unmanaged` (an ``AssertionError`` carrying a hint on what to do), or records the property
:data:`PROPERTY` (``record_property("unmanaged", hint)``) before it fails. The verify plugin
writes either as the result's ``managed: false`` and ``hint`` fields; `drift` reads those.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

#: Run on the node by :func:`strangers` (the same file the ``mlops_unmanaged`` module imports).
_SOURCE = (Path(__file__).parent / "unmanaged_files.py").read_text()

#: The ``record_property`` name by which a check says what it found is not managed by `up`
#: (its value: the hint on what to do).
PROPERTY = "unmanaged"
REMOVE_HINT = "review and remove the file(s) by hand; `up` leaves files it did not write"


class Unmanaged(AssertionError):
    """A failed check whose finding `up` does not manage (it would not repair it); ``hint`` says
    what to do instead. The message stays the finding alone."""

    def __init__(self, message: str, hint: str = REMOVE_HINT):
        super().__init__(message)
        #: read by the verify plugin (by this name: the class need not be imported there)
        self.unmanaged_hint = hint


def strangers(host, directory: str, ours: set[str] | None = None, prefix: str = "mlops-provision",
              extra: set[str] | None = None, recurse: bool = False) -> list[str]:
    """Files in ``directory`` that neither the role (names in ``ours`` or starting with
    ``prefix``) nor a Debian package put there; sorted full paths. A missing directory has none.
    Decided on the node by :mod:`mlops_provision.checks.unmanaged_files`, the code the roles'
    ``mlops_unmanaged`` module runs, so that the checks and the purge agree file for file."""
    args = {"path": directory, "ours": sorted(ours or ()), "prefix": prefix, "extra": sorted(extra or ()),
            "recurse": recurse}
    out = host.check_output(f"python3 -c {shlex.quote(_SOURCE)} {shlex.quote(json.dumps(args))}")
    return json.loads(out)


def assert_only_ours(directory: str, files: list[str], purge_var: str, purging: bool) -> None:
    """Fail when ``files`` (found next to ours in ``directory``) is not empty. With the role's
    ``purge_var`` on, `up` removes them: a plain failure (drift that `up` repairs); otherwise
    :class:`Unmanaged`, with what to do."""
    if not files:
        return
    found = f"not written by mlops-provision nor a package, in {directory}: {', '.join(files)}"
    if purging:
        raise AssertionError(f"{found} (`up` removes them: {purge_var} is on)")
    raise Unmanaged(found, f"remove them by hand, or set {purge_var}: true and run up to remove them")
