"""One model of a site, as Ansible sees it.

``load(path)`` reads the inventory (the YAML file, ``group_vars/``, ``host_vars/``, vault)
with Ansible's own machinery (``DataLoader``, ``InventoryManager``, ``VariableManager``), so
that hosts, groups, precedence and vault mean what they mean to Ansible; type-checks role
options with Ansible's argument-spec validator; runs the platform's cross-field rules
(:mod:`mlops_provision.site.rules`); and keeps a line index of the files only to name
``file:line`` in messages. Every problem is collected; if there is any, ``load`` raises
:class:`InventoryInvalid` (exit code 2) naming file, line, host or group, key and what is
expected.

Modules: ``yamlfile`` (safe YAML with lines, alias bound), ``layout`` (files, blocks, shape),
``vault``, ``roles`` (argument specs, site variables, the plays and their roles from the playbooks),
``values`` (one value against a spec), ``check`` (names, types, required), ``ansiblevars``
(the ``ansible_*`` variables Ansible reads), ``resolve`` (Ansible's answers), ``hostview`` +
``rules`` (cross-field rules, and warnings), ``problems``, ``load``.
"""

from mlops_provision.site.load import Site, load
from mlops_provision.site.problems import (
    BAD_VAULT_PASSWORD,
    NO_VAULT_PASSWORD,
    InventoryInvalid,
    Problem,
)
from mlops_provision.site.roles import ALLOWED_GROUPS, SITE_VARS
from mlops_provision.site.rules import GROUP_SECRETS


def hosts_matching(site: Site, pattern: str | None) -> list[str]:
    """The hosts an Ansible ``--limit pattern`` selects (names, groups, globs, ``~regex``,
    ``a:b`` union, ``a:&b`` intersection, ``a:!b`` difference), through Ansible's own
    ``InventoryManager``; every host when ``pattern`` is empty."""
    return site.matching(pattern)


__all__ = ["ALLOWED_GROUPS", "BAD_VAULT_PASSWORD", "GROUP_SECRETS", "NO_VAULT_PASSWORD",
           "SITE_VARS", "InventoryInvalid", "Problem", "Site", "hosts_matching", "load"]
