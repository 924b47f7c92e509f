"""Helpers for checks of state `up` does not manage: files next to ours in the drop-in
directories a role owns, and how a check says that `up` will not repair what it found.

A file in a role's directory is *ours* when its name is one the role writes; it is the
*distribution's* when a Debian package owns it (``dpkg-query -S``), it is a link that resolves to
a file a package owns (Debian's alternatives: the NVIDIA driver's /etc/modprobe.d/nvidia.conf),
or it is a name the distribution installs by other means (``extra``). Anything else was put there by someone else:
drift that `up` leaves unless the role's ``<role>_purge_unmanaged`` is on (then the role removes
it with the project's ``mlops_unmanaged`` module, library/). `drift` reads :data:`MARK` in a failed
check's message to tell such findings apart.
"""

from __future__ import annotations

import shlex

MARK = "[not managed by up: {}]"
REMOVE_HINT = "review and remove the file(s) by hand; `up` leaves files it did not write"


def unmanaged(hint: str = REMOVE_HINT) -> str:
    """The marker a failed check's message ends with when `up` would not repair it."""
    return MARK.format(hint.replace("]", ")"))


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


def stranger_message(directory: str, files: list[str], purge_var: str, purging: bool) -> str:
    """The failure message for files found next to ours. With the role's ``purge_var`` on, `up`
    removes them (a repairable drift); otherwise it carries the marker and what to do."""
    found = f"not written by mlops-provision nor a package, in {directory}: {', '.join(files)}"
    if purging:
        return f"{found} (`up` removes them: {purge_var} is on)"
    return f"{found} {unmanaged(f'remove them by hand, or set {purge_var}: true and run up to remove them')}"
