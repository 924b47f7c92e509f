"""Testinfra checks, one module per role or layer (``test_<role>.py``, ``test_kubernetes.py``).

They serve `mlops-provision verify`, drift checks and the Molecule verifier alike. Each check
reads the variables the role used: the role's defaults and OS vars, overlaid with the
inventory's values for that host (``MLOPS_INVENTORY`` names the inventory file).

Every check names the role(s) whose tasks make the state it proves with the ``roles`` marker
(``pytestmark = pytest.mark.roles("base")`` for a module, ``@pytest.mark.roles(...)`` where a
check differs), and says through :mod:`mlops_provision.checks.unmanaged` when what it found is
state `up` does not manage; `drift` reads both from the results, never names or message text.
"""
