"""Each command's private SSH control directory (mlops_provision.sshmux)."""

from __future__ import annotations

import os

from mlops_provision.sshmux import ENV, command_connections


def test_a_command_gets_its_own_control_dir_removed_at_its_end(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with command_connections() as control_dir:
        assert os.environ[ENV] == str(control_dir) and control_dir.is_dir()
        (control_dir / "not-a-socket").write_text("")  # `ssh -O exit` fails on it: still cleaned up
    assert ENV not in os.environ and not control_dir.exists()


def test_a_control_dir_the_admin_set_is_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path))
    with command_connections() as control_dir:
        assert control_dir is None and os.environ[ENV] == str(tmp_path)
    assert os.environ[ENV] == str(tmp_path) and tmp_path.is_dir()
