"""`mlops-provision drift`: one run that finds every change to a managed node.

A drift run is check mode with diffs (what `up` would change) and the `verify` checks (the state
the services really use), run concurrently and merged into one report per host
(:mod:`.model`); it leaves a run record and renders to a table, JSON, JUnit, a Prometheus
textfile and an optional webhook (:mod:`.outputs`); :mod:`.timer` schedules it with systemd.
"""

from mlops_provision.drift.model import DriftItem, DriftReport, HostDrift, merge
from mlops_provision.drift.run import history, run_drift

__all__ = ["DriftItem", "DriftReport", "HostDrift", "history", "merge", "run_drift"]
