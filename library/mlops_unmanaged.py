#!/usr/bin/python
"""Files in a directory a role owns that neither the role nor a Debian package put there.

The roles call it to remove such files where the inventory asks for it (``<role>_purge_unmanaged``);
the checks (src/mlops_provision/checks/unmanaged.py) report the same files as drift.
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mlops_unmanaged
short_description: Find, and optionally remove, files nobody manages in a directory a role owns
description:
  - A file is the role's when its name is in O(ours) or starts with O(prefix); the distribution's
    when a Debian package owns it (C(dpkg-query -S)), it is a link that resolves to a file a package
    owns (Debian's alternatives, e.g. the NVIDIA driver's /etc/modprobe.d/nvidia.conf), or its name
    is in O(extra). Every other regular file (or link) is unmanaged. Directories are never removed.
options:
  path: {description: The directory (a missing one holds nothing)., type: path, required: true}
  ours: {description: Names (relative to O(path)) the role writes., type: list, elements: str, default: []}
  prefix: {description: Names starting with it are the role's; empty for none., type: str, default: mlops-provision}
  extra: {description: Names the distribution installs by other means., type: list, elements: str, default: []}
  recurse: {description: Look in subdirectories too., type: bool, default: false}
  remove: {description: Remove the unmanaged files (reported as a change; not in check mode)., type: bool,
           default: false}
"""

RETURN = r"""
files: {description: The unmanaged files found (full paths, sorted)., type: list, elements: str, returned: always}
"""


def _names(path: str, recurse: bool) -> list[str]:
    if not os.path.isdir(path):
        return []
    if not recurse:
        return sorted(n for n in os.listdir(path) if not os.path.isdir(os.path.join(path, n))
                      or os.path.islink(os.path.join(path, n)))
    found = []
    for root, _dirs, files in os.walk(path):
        found += [os.path.relpath(os.path.join(root, f), path) for f in files]
    return sorted(found)


def unmanaged(module: AnsibleModule, path: str, ours: set[str], prefix: str, extra: set[str],
              recurse: bool) -> list[str]:
    candidates = [n for n in _names(path, recurse)
                  if n not in ours | extra and not (prefix and n.startswith(prefix))]
    full = [os.path.join(path, n) for n in candidates]
    if not full:
        return []
    packaged = _packaged(module, full)
    # A link (Debian's alternatives) is the distribution's when what it resolves to is a package's.
    links = {p: os.path.realpath(p) for p in full if p not in packaged and os.path.islink(p)}
    targets = _packaged(module, sorted(set(links.values()))) if links else set()
    return sorted(p for p in full if p not in packaged and links.get(p) not in targets)


def _packaged(module: AnsibleModule, paths: list[str]) -> set[str]:
    """Those of ``paths`` a Debian package owns."""
    _rc, out, _err = module.run_command(["dpkg-query", "-S", *paths])  # rc 1 when some are nobody's
    return {line.split(": ", 1)[1].strip() for line in out.splitlines()
            if ": " in line and not line.startswith("diversion ")}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "ours": {"type": "list", "elements": "str", "default": []},
            "prefix": {"type": "str", "default": "mlops-provision"},
            "extra": {"type": "list", "elements": "str", "default": []},
            "recurse": {"type": "bool", "default": False},
            "remove": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    files = unmanaged(module, p["path"], set(p["ours"]), p["prefix"], set(p["extra"]), p["recurse"])
    changed = bool(p["remove"] and files)
    if changed and not module.check_mode:
        for path in files:
            try:
                os.unlink(path)
            except OSError as exc:
                module.fail_json(msg=f"cannot remove {path}: {exc}", files=files)
    listed = "".join(f"{f}\n" for f in files)
    diff = {"before": listed, "after": "" if p["remove"] else listed,
            "before_header": f"{p['path']}: unmanaged files", "after_header": f"{p['path']}: after up"}
    module.exit_json(changed=changed, files=files, diff=diff)


if __name__ == "__main__":
    main()
