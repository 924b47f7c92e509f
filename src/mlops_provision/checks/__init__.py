"""Testinfra checks, one module per role (``test_<role>.py``).

They serve `mlops-provision verify`, drift checks and the Molecule verifier alike. Each check
reads the variables the role used: the role's defaults and OS vars, overlaid with the
inventory's values for that host (``MLOPS_INVENTORY`` names the inventory file).
"""
