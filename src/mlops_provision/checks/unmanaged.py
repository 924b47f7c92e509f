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

import shlex

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
    ``prefix``) nor a Debian package put there; sorted full paths. A missing directory has none."""
    depth = "" if recurse else "-maxdepth 1"
    found = host.run(f"find {shlex.quote(directory)} -mindepth 1 {depth} ! -type d -printf '%P\\n' 2>/dev/null")
    names = [n for n in found.stdout.splitlines() if n.strip()]
    keep = (ours or set()) | (extra or set())
    candidates = [n for n in names if n not in keep and not (prefix and n.startswith(prefix))]
    if not candidates:
        return []
    full = [f"{directory.rstrip('/')}/{n}" for n in candidates]
    packaged = _packaged(host, full)
    rest = [p for p in full if p not in packaged]
    if not rest:
        return []
    # A link (Debian's alternatives) is the distribution's when what it resolves to is a package's.
    resolved = host.run("for p in " + " ".join(shlex.quote(p) for p in rest)
                        + "; do [ -L \"$p\" ] && printf '%s\\t%s\\n' \"$p\" \"$(readlink -f \"$p\")\"; done; true")
    links = dict(line.split("\t", 1) for line in resolved.stdout.splitlines() if "\t" in line)
    targets = _packaged(host, sorted(set(links.values()))) if links else set()
    return sorted(p for p in rest if links.get(p) not in targets)


def _packaged(host, paths: list[str]) -> set[str]:
    """Those of ``paths`` a Debian package owns."""
    owned = host.run("dpkg-query -S " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null")
    return {line.split(": ", 1)[1].strip() for line in owned.stdout.splitlines()
            if ": " in line and not line.startswith("diversion ")}


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
