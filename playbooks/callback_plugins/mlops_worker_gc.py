# Loaded by every ansible-playbook run of these playbooks (a callback plugin next to them: our
# CLI, plain ansible-playbook, Molecule, AWX alike). It changes no result and prints nothing.
"""Callback plugin ``mlops_worker_gc``: each process ansible-playbook forks (a worker per task and
host) freezes the objects it inherits from the parent, so that its garbage collector never walks
them.

Ansible forks one short-lived worker per task and host. A worker's collections otherwise walk
the whole inherited heap (inventory, plays, loaded plugins), and writing each object's collector
header copies the parent's memory page by page into the child: CPU spent on no task. The
worker's own objects are still collected as usual; the parent is unchanged. Measured on a no-op
`up` of three sandbox containers: benchmarks/worker_gc.py, docs/performance.md."""

from __future__ import annotations

import gc
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: mlops_worker_gc
type: aggregate
short_description: forked workers leave the inherited heap to the parent's collector
description:
  - Registers gc.freeze to run in each process this ansible-playbook forks, so that a worker's
    garbage collections skip the objects it inherited (no copy-on-write of the parent's memory).
  - Changes no task, result or output.
"""

#: Whether the hook is registered (a forked child inherits the registration, and this flag).
_registered = False


def register() -> bool:
    """Freeze the inherited objects in every child this process forks from now on; once per
    process. Returns whether this call registered it."""
    global _registered
    if _registered:
        return False
    os.register_at_fork(after_in_child=gc.freeze)
    _registered = True
    return True


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mlops_worker_gc"
    CALLBACK_NEEDS_ENABLED = False  # on wherever the playbooks run, like the playbooks' own rules

    def __init__(self):
        super().__init__()
        register()
