"""kubeadm's upgrade rule, written once: ``validate`` applies it to the inventory's declared
versions (:func:`mlops_provision.site.rules.kubernetes_versions`), and the kubernetes_node role
applies it on each node to the installed version, as the filter ``mlops_kubeadm_upgrade_problem``
(``roles/kubernetes_node/filter_plugins/mlops_kubeadm.py`` is a link to this file, as
``roles/nvidia_driver/module_utils/mlops_gpu_facts.py`` is to ``gpu/facts.py``).

How many minor versions one upgrade may move is data, ``kubernetes_node_max_minor_skew`` in
``roles/kubernetes_node/vars/main.yml``: the role passes it to the filter, ``validate`` reads it
from there. Standard library only: Ansible loads this file as a plugin, outside this package.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


def version_of(text: object) -> tuple[int, int, int] | None:
    """``"1.33.1"`` (or ``"v1.33.1"``) as a tuple; None for anything else."""
    found = _VERSION.match(text) if isinstance(text, str) else None
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def upgrade_problem(current: tuple[int, int, int], target: tuple[int, int, int],
                    max_minor_skew: int) -> str:
    """Why kubeadm cannot go from ``current`` to ``target`` ("" when it can): no downgrade,
    at most ``max_minor_skew`` minor versions at a time, within a major version."""
    if target < current:
        return "a downgrade, which kubeadm does not support"
    if target[0] != current[0] or target[1] - current[1] > max_minor_skew:
        step = "one minor" if max_minor_skew == 1 else f"{max_minor_skew} minors"
        return (f"a skip of minor versions: kubeadm upgrades {step} at a time, go to "
                f"{current[0]}.{current[1] + max_minor_skew}.x first")
    return ""


def upgrade_problem_of(installed: object, target: object, max_minor_skew: int | str) -> str:
    """The filter: :func:`upgrade_problem` of two version strings ("" when the upgrade, or
    keeping the version, is allowed)."""
    have, want = version_of(installed), version_of(target)
    if have is None:
        return f"an upgrade from '{installed}', which is not a version (MAJOR.MINOR.PATCH)"
    if want is None:
        return f"'{target}', which is not a pinned version (MAJOR.MINOR.PATCH)"
    return upgrade_problem(have, want, int(max_minor_skew))


class FilterModule:
    """Ansible's entry point for the filter plugin."""

    def filters(self) -> dict:
        return {"mlops_kubeadm_upgrade_problem": upgrade_problem_of}
