"""The sandbox's errors; each maps to the CLI's exit code through mlops_provision.errors."""

from __future__ import annotations

from mlops_provision.errors import BadInput, MlopsError, Unreachable


class SandboxError(MlopsError):
    """A sandbox operation failed (exit 1): an image build, podman or QEMU refusing to start."""


class SandboxBadInput(SandboxError, BadInput):
    """Wrong request (exit 2): unknown kind, too many nodes, missing host packages, another
    sandbox in the way."""


class SandboxUnreachable(SandboxError, Unreachable):
    """A node started but does not answer SSH (exit 3)."""
