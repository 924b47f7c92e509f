"""The mlops_unmanaged module (library/) on this machine: what it calls unmanaged, and that it
removes only with remove=true, never in check mode, never a package's file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _module(args: dict, check: bool = False) -> dict:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    ansible = str(Path(sys.executable).parent / "ansible")
    cmd = [ansible, "localhost", "-c", "local", "-i", "localhost,", "-m", "mlops_unmanaged",
           "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}"]
    res = subprocess.run(cmd + (["--check"] if check else []), env=env, capture_output=True, text=True, cwd=ROOT)
    out = json.loads(res.stdout)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


@pytest.fixture
def owned(tmp_path) -> Path:
    d = tmp_path / "conf.d"
    (d / "sub").mkdir(parents=True)
    for name in ("60-ours.conf", "mlops-provision-extra.conf", "distro.conf", "zz-evil.conf", "sub/deep.conf"):
        (d / name).write_text("x\n")
    return d


def test_unmanaged_files_are_found_and_kept_without_remove(owned):
    res = _module({"path": str(owned), "ours": ["60-ours.conf"], "extra": ["distro.conf"]})
    assert res["files"] == [str(owned / "zz-evil.conf")] and not res["changed"], res
    assert (owned / "zz-evil.conf").exists()


def test_check_mode_reports_the_removal_and_removes_nothing(owned):
    res = _module({"path": str(owned), "ours": ["60-ours.conf"], "extra": ["distro.conf"], "remove": True},
                  check=True)
    assert res["changed"] and res["files"] == [str(owned / "zz-evil.conf")], res
    assert (owned / "zz-evil.conf").exists()


def test_remove_takes_only_the_unmanaged_files_recursing_when_asked(owned):
    res = _module({"path": str(owned), "ours": ["60-ours.conf"], "extra": ["distro.conf"], "remove": True,
                   "recurse": True})
    assert res["changed"] and res["files"] == [str(owned / "sub/deep.conf"), str(owned / "zz-evil.conf")], res
    left = sorted(str(p.relative_to(owned)) for p in owned.rglob("*"))
    assert left == ["60-ours.conf", "distro.conf", "mlops-provision-extra.conf", "sub"], left
    again = _module({"path": str(owned), "ours": ["60-ours.conf"], "extra": ["distro.conf"], "remove": True,
                     "recurse": True})
    assert not again["changed"] and again["files"] == []


def test_a_packages_files_are_never_unmanaged():
    """apt.conf.d on this Debian machine: every file apt and friends installed is dpkg's."""
    owned = subprocess.run(["dpkg-query", "-S", "/etc/apt/apt.conf.d"], capture_output=True, text=True)
    if owned.returncode != 0:
        pytest.fail("dpkg-query cannot be run on this machine (a Debian machine is expected)")
    res = _module({"path": "/etc/apt/apt.conf.d", "prefix": ""})
    packaged = subprocess.run("dpkg-query -S /etc/apt/apt.conf.d/* 2>/dev/null | cut -d' ' -f2", shell=True,
                              capture_output=True, text=True).stdout.split()
    assert packaged and not set(packaged) & set(res["files"]), (packaged, res["files"])


def test_a_missing_directory_holds_nothing(tmp_path):
    res = _module({"path": str(tmp_path / "absent"), "remove": True})
    assert res["files"] == [] and not res["changed"]


@pytest.fixture
def linked(tmp_path) -> Path:
    """Debian's alternatives: a link, through a second link, to a file a package owns (as the
    NVIDIA driver's /etc/modprobe.d/nvidia.conf -> /etc/alternatives/... -> /etc/nvidia/...),
    and a link to a file nobody owns."""
    d = tmp_path / "modprobe.d"
    d.mkdir()
    (tmp_path / "alternative").symlink_to("/usr/bin/dpkg")
    (d / "nvidia.conf").symlink_to(tmp_path / "alternative")
    (tmp_path / "nobodys").write_text("x\n")
    (d / "stranger.conf").symlink_to(tmp_path / "nobodys")
    return d


def test_a_link_to_a_packages_file_is_the_distributions(linked):
    res = _module({"path": str(linked), "remove": True}, check=True)
    assert res["files"] == [str(linked / "stranger.conf")], res


def test_the_checks_judge_links_as_the_module_does(linked):
    """The checks' helper (checks/unmanaged.py) and the module agree on the same directory."""
    import testinfra

    from mlops_provision.checks.unmanaged import strangers

    assert strangers(testinfra.get_host("local://"), str(linked)) == [str(linked / "stranger.conf")]
