"""The SSH connections a command opens are closed when it ends.

Ansible keeps one SSH master connection per host open (ansible.cfg: ``ControlPersist``) so that a
run's tasks reuse it. Left to themselves those masters outlive the command by the persist time:
a scheduled drift check (a systemd oneshot service) would then end with processes still in its
cgroup, and a CI job with stray ``ssh`` processes. Each command gets its own control directory
(``ANSIBLE_SSH_CONTROL_PATH_DIR``) and, at its end, asks every master there to exit. A control
directory the admin set themselves is left alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "ANSIBLE_SSH_CONTROL_PATH_DIR"


def close_masters(control_dir: Path) -> None:
    """Ask every SSH master whose socket is in ``control_dir`` to exit (``ssh -O exit``)."""
    for sock in sorted(control_dir.iterdir()) if control_dir.is_dir() else []:
        # the host argument is required by ssh's syntax; the socket path decides
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "mlops-provision"],
                           capture_output=True, timeout=10, check=False)


@contextmanager
def command_connections() -> Iterator[Path | None]:
    """A private SSH control directory for one command; its masters closed when it ends."""
    if os.environ.get(ENV):
        yield None
        return
    control_dir = Path(tempfile.mkdtemp(prefix="mp-ssh-"))  # short: socket paths are limited
    os.environ[ENV] = str(control_dir)
    try:
        yield control_dir
    finally:
        os.environ.pop(ENV, None)
        close_masters(control_dir)
        shutil.rmtree(control_dir, ignore_errors=True)


def mux_config(control_dir: Path) -> str:
    """An ``ssh -F`` file that gives every host one master connection in ``control_dir``, then
    reads the admin's own and the system's SSH configuration (jump hosts, keys) as usual."""
    return (f"# mlops-provision: one SSH master per host, closed when the command ends\n"
            f"ControlMaster auto\nControlPath {control_dir}/%C\nControlPersist 120s\n"
            f"Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n")
