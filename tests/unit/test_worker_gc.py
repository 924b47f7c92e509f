"""playbooks/callback_plugins/mlops_worker_gc.py: every worker ansible-playbook forks freezes the
objects it inherits (its collector leaves them alone); the parent does not; results are
unchanged. Run through a real ansible-playbook on localhost, the plugin found next to the
playbook as it is found next to site.yml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PLUGINS = ROOT / "playbooks" / "callback_plugins"

#: A lookup runs in the worker that runs its task: it reports that worker's frozen objects.
LOOKUP = '''
import gc, os
from ansible.plugins.lookup import LookupBase

class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [{"pid": os.getpid(), "frozen": gc.get_freeze_count()}]
'''

PLAYBOOK = """
- name: Workers report their frozen objects
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ask a worker
      ansible.builtin.debug:
        msg: "{{ lookup('frozen') | to_json }}"
      loop: [1, 2]
"""


def run_playbook(tmp: Path, with_plugin: bool) -> list[dict]:
    (tmp / "lookup_plugins").mkdir(parents=True)
    (tmp / "lookup_plugins" / "frozen.py").write_text(LOOKUP)
    if with_plugin:
        (tmp / "callback_plugins").symlink_to(PLUGINS)
    (tmp / "play.yml").write_text(PLAYBOOK)
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_CONFIG": str(tmp / "none.cfg"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(tmp / "play.yml")], capture_output=True, text=True, env=env, cwd=tmp, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    task = json.loads(proc.stdout)["plays"][0]["tasks"][0]
    return [json.loads(item["msg"]) for item in task["hosts"]["localhost"]["results"]]


def test_workers_freeze_what_they_inherit(tmp_path: Path) -> None:
    workers = run_playbook(tmp_path, with_plugin=True)
    assert len(workers) == 2
    assert all(w["frozen"] > 10_000 for w in workers), workers  # the parent's heap: tens of thousands


def test_without_the_plugin_nothing_is_frozen(tmp_path: Path) -> None:
    """The control: the same playbook without the plugin next to it."""
    assert [w["frozen"] for w in run_playbook(tmp_path, with_plugin=False)] == [0, 0]


def test_register_is_once_per_process_and_leaves_the_parent_unfrozen() -> None:
    code = f"""
import gc, importlib.util, os, sys
spec = importlib.util.spec_from_file_location("p", {str(PLUGINS / "mlops_worker_gc.py")!r})
p = importlib.util.module_from_spec(spec); spec.loader.exec_module(p)
print(p.register(), p.register())
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, str(gc.get_freeze_count()).encode()); os._exit(0)
os.waitpid(pid, 0)
print(int(os.read(r, 64)) > 0, gc.get_freeze_count())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "True", "0"], out
