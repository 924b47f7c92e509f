"""The local sandbox: real test hosts (systemd containers or QEMU VMs) behind SSH on 127.0.0.1."""

from mlops_provision.sandbox.core import Sandbox, SandboxError, missing_host_packages

__all__ = ["Sandbox", "SandboxError", "missing_host_packages"]
