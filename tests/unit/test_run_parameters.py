"""Run parameters are extra vars: plain `ansible-playbook -e mlflow_backup_name=NAME` works like
`mlops-provision mlflow backup|restore`, and the playbooks refuse a bad name before the role runs.
Each case is a real ansible-playbook run on this machine (a local connection) that reads only:
the backup script and directory are pointed at paths that do not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_provision import paths

NOWHERE = {"mlflow_backup_script": "/nonexistent/mlflow-backup", "mlflow_restore_script": "/nonexistent/mlflow-restore",
           "mlflow_backup_dir": "/nonexistent/backups"}


def playbook(tmp_path: Path, book: str, extra: dict) -> str:
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    mlflow:\n      hosts:\n        here:\n          ansible_connection: local\n"
        f"          ansible_python_interpreter: {sys.executable}\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(paths.project_root() / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(paths.playbook(book)),
                           "-e", json.dumps({**NOWHERE, **extra})],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0  # nothing to back up or restore here: every case stops somewhere
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(("book", "extra", "got"), [
    ("mlflow-backup.yml", {}, "got none"),
    ("mlflow-backup.yml", {"mlflow_backup_name": "../etc"}, "got '../etc'"),
    ("mlflow-restore.yml", {"mlflow_backup_name": "nightly\n"}, "got 'nightly"),
])
def test_the_playbooks_refuse_a_bad_name_before_the_role(tmp_path, book, extra, got):
    out = playbook(tmp_path, book, extra)
    assert "expected the backup's name as the extra var mlflow_backup_name" in out and got in out, out
    assert "included: mlflow" not in out, out


def test_a_good_name_reaches_the_role_and_its_argument_spec(tmp_path):
    out = playbook(tmp_path, "mlflow-restore.yml", {"mlflow_backup_name": "nightly-1"})
    assert "Validating arguments against arg spec 'restore'" in out, out
    assert "no backup named 'nightly-1' in /nonexistent/backups" in out, out
