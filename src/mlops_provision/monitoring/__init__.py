"""The monitoring layer's Python: the node collector (``collector``) and the energy report."""
