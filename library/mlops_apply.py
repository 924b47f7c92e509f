#!/usr/bin/python
"""Run a command that converges state, and say so in check mode instead of skipping.

Ansible's ``command`` module skips itself in check mode (without ``creates``/``removes``) and
reports no change, so a run under ``--check`` cannot see a repair that a real run makes. The
roles call this module for every command that changes a node: the task's ``when:`` holds the
guard that decides the change is due (read by tasks that run in check mode too), and this module
then reports ``changed`` in both modes, running the command only in a real run, with a diff that
says what it would do and why (and the state before and after where the role knows it).
"""

from __future__ import annotations

import shlex

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mlops_apply
short_description: Run a converging command; in check mode report the change it would make
description:
  - Call it only when the change is due (the task's C(when) holds the guard). In a real run it
    runs O(argv) and reports a change; a non-zero exit fails the task. In check mode it runs
    nothing and reports the same change, with a diff naming the command and O(why).
options:
  argv: {description: The command and its arguments (no shell)., type: list, elements: str, required: true}
  why: {description: Why the change is due (shown in check mode's and the real run's diff)., type: str, required: true}
  before: {description: The state before, as text, where the role read it (for the diff)., type: str}
  after: {description: The state after, as text, where the role knows it (for the diff)., type: str}
  chdir: {description: Run the command in this directory., type: path}
  stdin: {description: Text passed to the command on its standard input (never logged)., type: str}
  stdin_add_newline: {description: Append a newline to O(stdin)., type: bool, default: true}
  ok_rcs: {description: Exit codes that mean success., type: list, elements: int, default: [0]}
"""

RETURN = r"""
cmd: {description: The command., type: list, returned: always}
rc: {description: Its exit code (0 in check mode, where it does not run)., type: int, returned: always}
stdout: {description: Its output (empty in check mode)., type: str, returned: always}
stderr: {description: Its error output (empty in check mode)., type: str, returned: always}
"""


def _diff(params: dict) -> dict:
    command = " ".join(shlex.quote(a) for a in params["argv"])
    header = f"{command}  # {params['why']}"
    before, after = params.get("before"), params.get("after")
    if before is None and after is None:
        return {"prepared": f"run: {header}"}
    return {"before_header": f"now ({params['why']})", "after_header": f"after: {command}",
            "before": (before or "").rstrip("\n") + "\n", "after": (after or "").rstrip("\n") + "\n"}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "argv": {"type": "list", "elements": "str", "required": True},
            "why": {"type": "str", "required": True},
            "before": {"type": "str"},
            "after": {"type": "str"},
            "chdir": {"type": "path"},
            "stdin": {"type": "str", "no_log": True},
            "stdin_add_newline": {"type": "bool", "default": True},
            "ok_rcs": {"type": "list", "elements": "int", "default": [0]},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["argv"]:
        module.fail_json(msg="argv is empty: expected a command")
    result = {"changed": True, "cmd": p["argv"], "rc": 0, "stdout": "", "stderr": "", "diff": _diff(p)}
    if module.check_mode:
        result["msg"] = f"would run ({p['why']})"
        module.exit_json(**result)
    rc, out, err = module.run_command(p["argv"], cwd=p["chdir"], data=p["stdin"],
                                      binary_data=not p["stdin_add_newline"])
    result.update(rc=rc, stdout=out, stderr=err, stdout_lines=out.splitlines(),
                  stderr_lines=err.splitlines())
    if rc not in p["ok_rcs"]:
        module.fail_json(msg=f"{p['argv'][0]} exited with {rc}: {(err or out).strip()[-2000:]}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
