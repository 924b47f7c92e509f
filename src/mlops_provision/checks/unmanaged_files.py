"""Which files in a directory a role owns nobody manages: the one definition, run on the node.

Both readers run this file on the node itself: the ``mlops_unmanaged`` Ansible module (the roles
remove such files where ``<role>_purge_unmanaged`` is on) imports it as
``ansible.module_utils.mlops_unmanaged_files`` (``module_utils/`` at the repository's top holds a
link to this file), and the checks (:func:`mlops_provision.checks.unmanaged.strangers`) send it to
the node with its arguments as JSON and read the JSON it prints. Standard library only: the node
has nothing else.

A file is the role's when its name is in ``ours`` or starts with ``prefix``; the distribution's
when a Debian package owns it (``dpkg-query -S``), it is a link that resolves to a file a package
owns (Debian's alternatives, e.g. the NVIDIA driver's /etc/modprobe.d/nvidia.conf), or its name is
in ``extra``. Every other regular file or link is unmanaged. Directories are never listed.
"""

from __future__ import annotations

import os


def names(path: str, recurse: bool) -> list[str]:
    """The files (and links) under ``path``, relative to it; none for a missing directory."""
    if not os.path.isdir(path):
        return []
    if not recurse:
        return sorted(n for n in os.listdir(path)
                      if os.path.islink(os.path.join(path, n)) or not os.path.isdir(os.path.join(path, n)))
    found = []
    for root, dirs, files in os.walk(path):
        found += [os.path.relpath(os.path.join(root, f), path) for f in files]
        found += [os.path.relpath(os.path.join(root, d), path) for d in dirs if os.path.islink(os.path.join(root, d))]
    return sorted(found)


def packaged(paths: list[str], run) -> set[str]:
    """Those of ``paths`` a Debian package owns; ``run(argv)`` returns a command's output."""
    if not paths:
        return set()
    out = run(["dpkg-query", "-S", *paths])  # exits 1 when some belong to no package
    return {line.split(": ", 1)[1].strip() for line in out.splitlines()
            if ": " in line and not line.startswith("diversion ")}


def unmanaged(path: str, ours=(), prefix: str = "mlops-provision", extra=(), recurse: bool = False,
              run=None) -> list[str]:
    """The unmanaged files in ``path``: sorted full paths."""
    keep = set(ours) | set(extra)
    full = [os.path.join(path, n) for n in names(path, recurse)
            if n not in keep and not (prefix and n.startswith(prefix))]
    if not full:
        return []
    owned = packaged(full, run)
    rest = [p for p in full if p not in owned]
    # A link (Debian's alternatives) is the distribution's when what it resolves to is a package's.
    links = {p: os.path.realpath(p) for p in rest if os.path.islink(p)}
    targets = packaged(sorted(set(links.values())), run)
    return sorted(p for p in rest if links.get(p) not in targets)


def _run(argv: list[str]) -> str:
    import subprocess

    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


if __name__ == "__main__":  # the checks: `python3 -c SOURCE ARGS_JSON`
    import json
    import sys

    print(json.dumps(unmanaged(run=_run, **json.loads(sys.argv[1]))))
