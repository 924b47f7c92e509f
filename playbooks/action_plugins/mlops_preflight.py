# The preflight of playbooks/site.yml: `mlops-provision validate` on the inventory this
# ansible-playbook loaded, with the vault secrets it was given. It runs on the controller only
# (no module, no connection) and fails with validate's own lines when the site is invalid.
"""Action plugin ``mlops_preflight``: the checks of ``mlops-provision validate``
(:mod:`mlops_provision.site.preflight`) on the inventory sources of the running
``ansible-playbook`` and its vault secrets. Options: ``inventory`` (a path or a list, relative to
the project): check these instead of Ansible's sources (AWX, whose inventory is a script)."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from ansible.plugins.action import ActionBase

#: The checkout this plugin belongs to (playbooks/action_plugins/ -> the project).
PROJECT = Path(__file__).resolve().parents[2]


def _preflight():
    """:mod:`mlops_provision.site.preflight` from this checkout's ``src/`` (an AWX project, an
    execution environment: the package need not be installed; an installed one may be another
    version than the roles being run), else the installed package."""
    src = PROJECT / "src"
    if (src / "mlops_provision" / "__init__.py").is_file() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from mlops_provision.site import preflight

    return preflight


@contextmanager
def _this_project():
    """The rules read this checkout's roles and playbooks (the ones being run), whatever the
    installed package or ``MLOPS_PROVISION_HOME`` would point at."""
    before = os.environ.get("MLOPS_PROVISION_HOME")
    os.environ["MLOPS_PROVISION_HOME"] = str(PROJECT)
    try:
        with warnings.catch_warnings():
            # the site model initialises Ansible's plugin loader, already done in this process
            warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already")
            yield
    finally:
        if before is None:
            os.environ.pop("MLOPS_PROVISION_HOME", None)
        else:
            os.environ["MLOPS_PROVISION_HOME"] = before


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("inventory",))
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        given = self._task.args.get("inventory")
        if given:  # the site's inventory in the project; the run's may be AWX's script
            sources = [given] if isinstance(given, str) else [str(s) for s in given]
            base, hosts = PROJECT, list(task_vars.get("groups", {}).get("all", []))
        else:
            sources = self._sources(task_vars)
            base, hosts = None, None
        with _this_project():
            answer = _preflight().check(sources, self._vault_secrets(), base, hosts)
        result.update(changed=False, msg=answer.text)
        if not answer.ok:
            result["failed"] = True
        return result

    @staticmethod
    def _sources(task_vars):
        """The inventory sources of this run, as given: ``-i``, ``ANSIBLE_INVENTORY``,
        ansible.cfg."""
        # The run's InventoryManager (ansible-core 2.19: HostVars keeps it); else the CLI's -i.
        inventory = getattr(task_vars.get("hostvars"), "_inventory", None)
        sources = list(getattr(inventory, "_sources", None) or [])
        if not sources:
            from ansible import constants as C
            from ansible import context

            sources = list(context.CLIARGS.get("inventory") or C.DEFAULT_HOST_LIST or [])
        return sources

    def _vault_secrets(self):
        """The ``(vault_id, VaultSecret)`` pairs this run was given (``--vault-id``,
        ``--vault-password-file``, ``--ask-vault-pass``, an AWX vault credential)."""
        secrets = getattr(getattr(self._loader, "_vault", None), "secrets", None)
        if not secrets:
            from ansible.parsing.vault import VaultSecretsContext

            current = VaultSecretsContext.current(optional=True)
            secrets = current.secrets if current is not None else []
        return list(secrets or [])
