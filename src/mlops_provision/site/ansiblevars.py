"""The ``ansible_*`` variables Ansible reads from an inventory, in one place, taken from Ansible
itself: the connection variables of ``ansible.constants.MAGIC_VARIABLE_MAPPING``, the ``vars:``
of Ansible's configuration options (``ansible_python_interpreter``...), the ``ansible_*_interpreter``
pattern, and the ``vars:`` of the options of the plugins a site uses: the connections the site
may name (``SITE_VARS['ansible_connection']``), privilege escalation (sudo, su) and the shell
(sh). ``validate`` warns about any other ``ansible_*`` name: Ansible ignores it (a typo such
as ``ansible_become_passwd`` leaves sudo without its password)."""

from __future__ import annotations

import re
import warnings
from functools import lru_cache

#: Ansible's documented pattern: the interpreter of a module language on the node.
INTERPRETER = re.compile(r"ansible_[a-z0-9]+_interpreter")
#: Privilege escalation and shell plugins whose options an inventory sets.
BECOME_PLUGINS: tuple[str, ...] = ("sudo", "su")
SHELL_PLUGINS: tuple[str, ...] = ("sh",)


#: The connection password and the become (sudo) password, as Ansible names them.
PASSWORD_VARS: tuple[str, ...] = ("ansible_password", "ansible_ssh_pass",
                                  "ansible_become_password", "ansible_become_pass")


@lru_cache(maxsize=1)
def _quick() -> frozenset[str]:
    """The names known without loading any plugin's documentation."""
    from ansible import constants as C

    from mlops_provision.site.roles import SITE_VARS

    names = {n for names in C.MAGIC_VARIABLE_MAPPING.values() for n in names}
    names |= {v["name"] for option in C.config.get_configuration_definitions().values()
              for v in (option.get("vars") or []) if isinstance(v, dict) and "name" in v}
    names |= {n for n in SITE_VARS if n.startswith("ansible_")}
    names |= set(PASSWORD_VARS)
    return frozenset(n for n in names if n.startswith("ansible_"))


@lru_cache(maxsize=1)
def known() -> frozenset[str]:
    """Every ``ansible_*`` variable Ansible reads from an inventory (the plugins' option
    documentation is loaded once, and only when a name is not among the common ones)."""
    from ansible import constants as C
    from ansible.plugins.loader import become_loader, connection_loader, shell_loader

    from mlops_provision.site.resolve import _init_plugins
    from mlops_provision.site.roles import SITE_VARS

    _init_plugins()
    names = set(_quick())
    connections = ("ssh", "paramiko_ssh", "local", *SITE_VARS["ansible_connection"]["choices"])
    for loader, plugins in ((connection_loader, connections), (become_loader, BECOME_PLUGINS),
                            (shell_loader, SHELL_PLUGINS)):
        for name in dict.fromkeys(plugins):
            try:
                with warnings.catch_warnings():  # the ssh plugin's import warns about DSA keys
                    warnings.simplefilter("ignore", DeprecationWarning)
                    warnings.filterwarnings("ignore", message=".*DSA.*")
                    plugin = loader.get(name, class_only=True)
            except Exception:  # a collection that is not installed: nothing to learn from it
                plugin = None
            if plugin is None:
                continue
            options = C.config.get_configuration_definitions(loader.type, plugin._load_name)
            names |= {v["name"] for option in (options or {}).values()
                      for v in (option.get("vars") or []) if isinstance(v, dict) and "name" in v}
    return frozenset(n for n in names if n.startswith("ansible_"))


def is_known(name: str) -> bool:
    """Whether Ansible reads the inventory variable ``name`` (an ``ansible_*`` name)."""
    return name in _quick() or bool(INTERPRETER.fullmatch(name)) or name in known()
