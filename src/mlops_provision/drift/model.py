"""The drift report: pending changes of a check run and failed checks of `verify`, per host.

Read from structure only: a pending change's role is the role of its check-mode task (the
event's role); a failed check's roles are those it declares (its ``roles`` marker, the result's
``roles``), and whether `up` manages what it found is the result's ``managed`` field.

An item is *repairable* when `up` would repair it: a task that check mode says would change, or
a failed check that is managed and one of whose roles has a pending change on that host. The
rest is reported with a hint on what to do: a check that found state `up` does not manage (e.g.
a file next to ours in a drop-in directory) with the check's own hint; a managed check none of
whose roles has a pending change with :data:`NO_PENDING_HINT` (`up`, as check mode predicts it,
would not repair it).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlops_provision.errors import EXIT_DRIFT, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE
from mlops_provision.records import events
from mlops_provision.runner import RunSummary, reports_change
from mlops_provision.verify import CheckResult, VerifyReport

#: Lines of a diff kept per item (the whole diff stays in the run record's events).
DIFF_LINES = 60
#: A check that found state `up` does not manage, with the check's hint (or a general one).
UNMANAGED_HINT = "not managed by `up`: {hint}"
UNMANAGED_DEFAULT = ("it will not repair this; act on the message (remove or fix it by hand, or manage it "
                     "in the inventory), then run drift again")
#: A managed check that failed while check mode predicts no change in any of its roles there.
NO_PENDING_HINT = ("up reports no pending change for it: check mode of {roles} predicts nothing that "
                   "would repair this, so `up` will not as things stand; act on the message (fix it by hand "
                   "or in the inventory), then run drift again")
REPAIR_HINT = "`up` repairs this (run: mlops-provision up -i INV --limit {host})"
#: The role of a failed check that declares none (the checks' unit test keeps this from happening).
NO_ROLE = "unassigned"


@dataclass
class DriftItem:
    host: str
    role: str  # the task's role; a check's owning role (the first of its roles with a pending change)
    kind: str  # change (check mode would change it) | check (a verify check failed) | error
    what: str  # the task or the check
    detail: str = ""  # the diff, or the check's message
    repairable: bool = False
    hint: str = ""
    managed: bool = True  # False: the check found state `up` does not manage
    roles: list[str] = field(default_factory=list)  # a check's roles (a change: its task's role)


@dataclass
class HostDrift:
    host: str
    status: str = "clean"  # clean | drift | failed | unreachable
    message: str = ""
    items: list[DriftItem] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)  # roles whose tasks or checks ran here
    checks_passed: int = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(self.roles, 0)
        for item in self.items:
            out[item.role] = out.get(item.role, 0) + 1
        return out


@dataclass
class DriftReport:
    inventory: str
    started: str
    duration_s: float = 0.0
    check_s: float = 0.0
    verify_s: float = 0.0
    run_dir: str = ""
    exit_code: int = EXIT_OK
    hosts: list[HostDrift] = field(default_factory=list)

    @property
    def items(self) -> list[DriftItem]:
        return [i for h in self.hosts for i in h.items]

    def counts_line(self) -> str:
        drifted = [h.host for h in self.hosts if h.items]
        unmanaged = sum(not i.managed for i in self.items)
        no_pending = sum(i.managed and not i.repairable for i in self.items)
        return (f"{len(self.items)} drifted item(s) on {len(drifted)} of {len(self.hosts)} host(s) "
                f"({len(self.items) - unmanaged - no_pending} repairable by up, {unmanaged} not managed by up, "
                f"{no_pending} with no pending change in up)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["verb"] = "drift"
        d["counts"] = {h.host: h.counts() for h in self.hosts}
        d["total"] = len(self.items)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def render_diff(diff) -> str:
    """One unified diff from Ansible's ``diff`` result (a dict or a list of them)."""
    parts = diff if isinstance(diff, list) else [diff]
    out: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("prepared"):
            out += str(part["prepared"]).splitlines()
            continue
        before, after = part.get("before", ""), part.get("after", "")
        if isinstance(before, dict) or isinstance(after, dict):  # state changes: {'state': 'absent'}
            where = (before or {}).get("path") or (after or {}).get("path")
            if where:
                out.append(str(where))
            out += [f"- {k}: {v}" for k, v in (before or {}).items() if (after or {}).get(k) != v]
            out += [f"+ {k}: {v}" for k, v in (after or {}).items() if (before or {}).get(k) != v]
            continue
        out += list(difflib.unified_diff(str(before or "").splitlines(), str(after or "").splitlines(),
                                         part.get("before_header", "before"), part.get("after_header", "after"),
                                         lineterm=""))
    if len(out) > DIFF_LINES:
        out = [*out[:DIFF_LINES], f"... ({len(out) - DIFF_LINES} more lines in the run record)"]
    return "\n".join(out)


def _role(data: dict) -> str:
    role = data.get("role") or ""
    return role.rsplit(".", 1)[-1] if role else "site"


def pending_changes(artifact_dir: Path) -> list[DriftItem]:
    """The tasks a check-mode run would change, per host, from its (scrubbed) job events."""
    items = []
    found = events(artifact_dir)
    # A no_log loop's result is censored twice over: only its items' lines say they changed.
    by_item = {(d.get("host"), d.get("task")) for e in found if e.get("event") == "runner_item_on_ok"
               for d in [e.get("event_data") or {}] if reports_change(e, d)}
    for event in found:
        data = event.get("event_data") or {}
        res = data.get("res") or {}
        changed = reports_change(event, data) or (data.get("host"), data.get("task")) in by_item
        if event.get("event") != "runner_on_ok" or not changed or not data.get("host"):
            continue
        diffs = [res["diff"]] if res.get("diff") else []
        labels = []
        for sub in res.get("results") or []:
            if isinstance(sub, dict) and sub.get("changed"):
                labels.append(str(sub.get("_ansible_item_label", sub.get("item", "")))[:80])
                if sub.get("diff"):
                    diffs.append(sub["diff"])
        detail = "\n".join(filter(None, (render_diff(d) for d in diffs)))
        if not detail and res.get("censored"):  # no_log: the result is hidden, not the change
            detail = "would change (its output is hidden: no_log)"
        if not detail:
            detail = ("items: " + ", ".join(labels)) if labels else str(res.get("msg") or "would change")
        role = _role(data)
        items.append(DriftItem(host=data["host"], role=role, kind="change",
                               what=str(data.get("task") or ""), detail=detail, repairable=True,
                               hint=REPAIR_HINT.format(host=data["host"]), roles=[role]))
    return items


def check_item(r: CheckResult, pending_roles: set[tuple[str, str]]) -> DriftItem:
    """The drift item of a failed (or errored) check: repairable when the check is managed and one
    of its roles has a pending change on its host (``pending_roles``: (host, role) pairs); its role
    is the first of its roles with a pending change, else its first."""
    roles = list(r.roles)
    pending = [role for role in roles if (r.host, role) in pending_roles]
    repairable = r.managed and bool(pending)
    if not r.managed:
        hint = UNMANAGED_HINT.format(hint=r.hint or UNMANAGED_DEFAULT)
    elif repairable:
        hint = REPAIR_HINT.format(host=r.host)
    else:
        hint = NO_PENDING_HINT.format(roles=", ".join(roles) or "no role")
    return DriftItem(host=r.host, role=(pending or roles or [NO_ROLE])[0],
                     kind="check" if r.outcome == "failed" else "error", what=r.check, detail=r.message,
                     repairable=repairable, hint=hint, managed=r.managed, roles=roles)


def merge(check: RunSummary | None, changes: list[DriftItem], verify: VerifyReport | None,
          hosts: list[str]) -> list[HostDrift]:
    """One :class:`HostDrift` per host from the check run's summary and pending changes and the
    verify report."""
    out = {h: HostDrift(host=h) for h in hosts}
    ran: dict[str, set[str]] = {h: set() for h in hosts}
    for item in changes:
        out.setdefault(item.host, HostDrift(host=item.host)).items.append(item)
        ran.setdefault(item.host, set()).add(item.role)
    pending_roles = {(i.host, i.role) for i in changes}
    for r in (verify.results if verify else []):
        host = out.setdefault(r.host, HostDrift(host=r.host))
        ran.setdefault(r.host, set()).update(r.roles)  # counted per role, 0 when clean
        if r.outcome == "passed":
            host.checks_passed += 1
        elif r.outcome in ("failed", "error"):
            host.items.append(check_item(r, pending_roles))
    for h in (check.hosts if check else []):
        host = out.setdefault(h.host, HostDrift(host=h.host))
        if h.status in ("failed", "unreachable"):
            host.status, host.message = h.status, f"{h.task}: {h.message}" if h.task else h.message
    for name, host in out.items():
        host.roles = sorted(ran.get(name, set()) | {i.role for i in host.items})
        if host.status == "clean" and host.items:
            host.status = "drift"
        host.items.sort(key=lambda i: (i.role, i.kind, i.what))
    return [out[h] for h in sorted(out)]


def exit_code(hosts: list[HostDrift], verify: VerifyReport | None) -> int:
    """1 a host failed (or no check ran), 3 a host was unreachable, 4 drift found, 0 clean."""
    if any(h.status == "failed" for h in hosts):
        return EXIT_FAILED
    if any(h.status == "unreachable" for h in hosts):
        return EXIT_UNREACHABLE
    if verify is None or not verify.results or any(i.kind == "error" for h in hosts for i in h.items):
        return EXIT_FAILED
    if any(h.items for h in hosts):
        return EXIT_DRIFT
    return EXIT_OK
