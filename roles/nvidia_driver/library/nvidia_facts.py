#!/usr/bin/python
"""Ansible module: the node's hardware and NVML facts (the same record `mlops-provision facts` prints)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nvidia_facts
short_description: Hardware, Secure Boot, NVIDIA PCI and NVML facts of a node
description:
  - CPU, memory, disks, kernel, Secure Boot state, NVIDIA PCI devices (vendor 0x10de) and, through
    NVML (pynvml), the driver and every GPU. A field that cannot be read is null and its reason is
    listed under C(unavailable). Never fails on a node without a GPU or driver.
  - Sets the fact C(mlops_gpu_facts).
options: {}
author: mlops-provision
"""

RETURN = r"""
ansible_facts:
  description: C(mlops_gpu_facts), the record.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mlops_gpu_facts import collect


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts={"mlops_gpu_facts": collect()})


if __name__ == "__main__":
    main()
