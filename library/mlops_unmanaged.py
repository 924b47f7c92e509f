#!/usr/bin/python
"""Files in a directory a role owns that neither the role nor a Debian package put there.

The roles call it to remove such files where the inventory asks for it (``<role>_purge_unmanaged``);
the checks (src/mlops_provision/checks/unmanaged.py) report the same files as drift. Which files
those are is defined once, in src/mlops_provision/checks/unmanaged_files.py (module_utils/ links it).
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mlops_unmanaged_files import unmanaged

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
    def run(argv: list[str]) -> str:
        return module.run_command(argv)[1]

    files = unmanaged(p["path"], p["ours"], p["prefix"], p["extra"], p["recurse"], run=run)
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
