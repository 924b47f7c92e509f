"""The local sandbox: real test hosts (systemd containers or QEMU VMs) behind SSH on 127.0.0.1.

``core.Sandbox`` runs the lifecycle; ``backend.Backend`` is the interface that
``containers.ContainerBackend`` and ``vms.VmBackend`` implement; ``image`` builds what both boot.
"""

from mlops_provision.sandbox.core import Sandbox, build_image, missing_host_packages
from mlops_provision.sandbox.errors import SandboxBadInput, SandboxError, SandboxUnreachable

__all__ = ["Sandbox", "SandboxBadInput", "SandboxError", "SandboxUnreachable", "build_image",
           "missing_host_packages"]
