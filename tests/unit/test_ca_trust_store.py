"""The base role's CA tasks (roles/base/tasks/ca.yml) and its handler, in a real ansible-playbook
run (local connection) against a directory of this test: which command the handler runs after
each kind of change. `update-ca-certificates --fresh` is needed when a certificate file is
removed or replaced (a plain run keeps the removed file's links and the replaced file's old hash
link); for added files a plain run is complete and cheaper. The command itself is the node's
(proven on the sandbox's hosts, whose trusted-CA check compares the bundle with its sources);
here a script in the test's directory stands in for it and records its arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from mlops_provision import paths, runner
from mlops_provision.site import load


def _cert(path: Path, name: str) -> Path:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "/dev/null", "-subj", f"/CN={name}", "-days", "1", "-out", str(path)],
                   check=True, capture_output=True)
    return path


def test_the_trust_store_is_rebuilt_from_scratch_only_when_a_certificate_left_or_changed(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    recorder = tmp_path / "update-ca-certificates"
    recorder.write_text(f"#!/bin/sh\necho \"run $*\" >> {calls}\n")
    recorder.chmod(0o755)
    admin = tmp_path / "admin"  # the admin machine's certificate files
    admin.mkdir()
    site_ca, proxy_ca = _cert(admin / "site-ca.pem", "site"), _cert(admin / "proxy.crt", "proxy")
    host = f"      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n"
    (tmp_path / "hosts.yml").write_text(f"all:\n  hosts:\n    node1:\n{host}")
    store = tmp_path / "node" / "mlops-provision"
    store.parent.mkdir()
    inventory = load(tmp_path / "hosts.yml", strict=False)

    def converge(certs: list[Path], check: bool = False) -> str:
        """One run of the CA tasks with ``certs`` in the inventory; the handler's command line, or ''
        (in check mode: the tasks check mode reports changed, and no command may run)."""
        (tmp_path / "play.yml").write_text(yaml.safe_dump([{
            "name": "Base | CA certificates", "hosts": "all", "gather_facts": False,
            "vars": {"base_os_ca_dir": str(store), "base_os_ca_update_command": str(recorder),
                     "base_extra_ca_certificates": [str(c) for c in certs]},
            "tasks": [{"name": "Base | The role's CA tasks",
                       "ansible.builtin.import_role": {"name": str(paths.roles_dir() / "base"), "tasks_from": "ca"}}],
        }], sort_keys=False))
        calls.unlink(missing_ok=True)
        summary = runner.run_playbook(inventory, playbook=tmp_path / "play.yml", check=check)
        assert summary.exit_code == (4 if check else 0), summary
        if check:
            assert not calls.exists()
            return " | ".join(sorted(t for tasks in summary.changed_tasks["node1"].values() for t in tasks))
        return calls.read_text().strip() if calls.exists() else ""

    assert converge([site_ca, proxy_ca]) == "run", "two certificates added: a plain run"
    assert sorted(p.name for p in store.iterdir()) == ["proxy.crt", "site-ca.crt"]
    assert converge([site_ca, proxy_ca]) == "", "nothing changed: no run"
    _cert(proxy_ca, "proxy, renewed")
    assert converge([site_ca, proxy_ca], check=True) == ("Base | Install the site's extra CA certificates | "
                                                         "Base | Update the CA trust store")
    assert converge([site_ca, proxy_ca]) == "run --fresh", "a file replaced: its old hash link must go"
    assert converge([site_ca]) == "run --fresh", "a file removed: its links must go"
    assert [p.name for p in store.iterdir()] == ["site-ca.crt"]
    assert converge([site_ca, proxy_ca]) == "run", "added again: a plain run"
