"""Errors a user can see, and the exit code each one means (docs/cli.md).

Code raises one of these; the CLI turns them into a message on stderr and the exit code in one
place (:func:`exit_for`), so no traceback reaches a user:

=====  =================  ==========================================================
code   class              meaning
=====  =================  ==========================================================
0      (none)             everything worked
1      ``Failed``         the operation failed (a build, a command, a host's task)
2      ``BadInput``       the user's input is wrong; nothing was touched
3      ``Unreachable``    a host did not answer (SSH timeout, refused connection)
4      (none)             drift found / changes pending (`drift`, `up --check`)
=====  =================  ==========================================================

``MlopsError`` itself exits 1. Subclasses elsewhere mix in one of the three, e.g.
``class SandboxUnreachable(SandboxError, Unreachable)``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
#: `drift` found drift, `up --check` has changes pending: not an error, a finding.
EXIT_DRIFT = 4


class MlopsError(Exception):
    """An error meant for the user: a one-line message, optional detail lines, an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, details: Iterable[str] = (), hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.hint = hint

    def lines(self) -> list[str]:
        """What the user sees: the message, then each detail indented, then the hint."""
        out = [self.message, *(f"  {d}" for d in self.details)]
        if self.hint:
            out.append(f"  {self.hint}")
        return out


class Failed(MlopsError):
    """The operation was attempted and failed (exit 1)."""

    exit_code = EXIT_FAILED


class BadInput(MlopsError):
    """The user's input is invalid; nothing was run or changed (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class Unreachable(MlopsError):
    """A host did not answer (exit 3). Not bad input: the same command may work on a retry."""

    exit_code = EXIT_UNREACHABLE


def command_failed(exc: subprocess.CalledProcessError, what: str) -> Failed:
    """A :class:`Failed` for a host command that exited non-zero, with the tail of its stderr."""
    cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
    stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    tail = [line for line in stderr.strip().splitlines()[-10:] if line.strip()]
    return Failed(f"{what}: `{cmd}` exited {exc.returncode}", details=tail)


def exit_for(exc: BaseException) -> tuple[int, list[str]]:
    """The exit code and the lines to print for an exception that reached the CLI."""
    if isinstance(exc, MlopsError):
        return exc.exit_code, exc.lines()
    if isinstance(exc, subprocess.CalledProcessError):
        err = command_failed(exc, "a command failed")
        return err.exit_code, err.lines()
    if isinstance(exc, KeyboardInterrupt):
        return 130, ["interrupted"]
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return EXIT_FAILED, [f"{exc.strerror or exc}{where}"]
    return EXIT_FAILED, [f"unexpected error: {type(exc).__name__}: {exc}",
                         "  (set MLOPS_DEBUG=1 to see the traceback)"]
