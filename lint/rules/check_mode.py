"""ansible-lint rule ``mlops-check-mode``: check mode must predict the real run.

Ansible's ``command``/``shell`` modules skip themselves under ``--check`` (without
``creates``/``removes``) and report no change, and a task guarded by ``not ansible_check_mode``
is skipped silently: either way ``up --check`` and ``drift`` say nothing of a change the real run
makes. In the roles a command that changes a node goes through ``mlops_apply`` (library/), which
reports the change in check mode; a command that only reads says so (``changed_when: false``) and
runs in check mode too (``check_mode: false``), so that the guards built on it decide the same in
both modes. A task that cannot change anything (assert, debug, set_fact, a wait) may be skipped in
check mode. Exceptions carry ``# noqa: mlops-check-mode`` with the reason on the same line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ansiblelint.rules import AnsibleLintRule

if TYPE_CHECKING:
    from ansiblelint.errors import MatchError
    from ansiblelint.file_utils import Lintable
    from ansiblelint.utils import Task

COMMANDS = {f"{prefix}{name}" for prefix in ("", "ansible.builtin.", "ansible.legacy.")
            for name in ("command", "shell", "raw")}
#: Modules that change nothing on a host: they may be skipped in check mode.
NO_CHANGE = {f"{prefix}{name}" for prefix in ("", "ansible.builtin.", "ansible.legacy.")
             for name in ("assert", "debug", "set_fact", "fail", "meta", "stat", "slurp",
                          "include_tasks", "import_tasks", "include_vars", "include_role",
                          "import_role", "wait_for", "set_stats", "pause")}


def _mentions_check_mode(when) -> bool:
    items = when if isinstance(when, list) else [when]
    return any("ansible_check_mode" in str(w) and "not" in str(w) for w in items if w is not None)


class CheckModePredictsRule(AnsibleLintRule):
    """Check mode must report every change the real run makes."""

    id = "mlops-check-mode"
    description = __doc__
    severity = "HIGH"
    tags = ["mlops", "idempotency"]
    version_changed = "26.10.1"

    def matchtask(self, task: Task, file: Lintable | None = None) -> list[MatchError]:
        raw = task.raw_task
        module = task["action"]["__ansible_module__"]
        out = []
        if module in COMMANDS:
            args = task["action"]
            read = raw.get("changed_when") in (False, "false", "False")
            if not read and "creates" not in args and "removes" not in args:
                out.append(self.create_matcherror(
                    message=f"{module} that changes state: check mode skips it and reports nothing; "
                            "use mlops_apply (it reports the change in check mode), or changed_when: false "
                            "for a read", filename=file, lineno=task.line))
            elif read and raw.get("check_mode") is not False and not _mentions_check_mode(raw.get("when")):
                out.append(self.create_matcherror(
                    message=f"a read ({module}, changed_when: false) without check_mode: false: "
                            "check mode skips it, so the guards built on it decide differently",
                    filename=file, lineno=task.line))
        if _mentions_check_mode(raw.get("when")) and module not in NO_CHANGE and not (
                module in COMMANDS and raw.get("changed_when") in (False, "false", "False")):
            out.append(self.create_matcherror(
                message=f"{module} skipped in check mode (when: not ansible_check_mode): the real run's "
                        "change is never predicted", filename=file, lineno=task.line))
        return out
