"""mlops-provision: provision, harden and prove an on-prem MLOps platform."""

__version__ = "0.1.0"
