"""The GPU layer's cross-field rules (mlops_provision.gpu.rules) on plain host variables."""

from __future__ import annotations

import shutil

import pytest

from mlops_provision.gpu import rules
from tests.conftest import ROOT, mp

EXAMPLE = ROOT / "inventories" / "example"

ALL = {"nvidia_driver", "cuda", "containerd"}


def keys(found):
    return [k for k, _ in found]


def test_defaults_are_consistent():
    assert rules.problems({}, ALL) == []


def test_compat_table_comes_from_the_cuda_role():
    table = rules.compat_table()
    assert table["535"] == "12.2"
    assert all(rules._version(v) for v in table.values())


def test_cuda_newer_than_the_branch_runs_is_refused():
    found = rules.problems({"nvidia_driver_branch": "535", "cuda_toolkits": ["12.2", "12.4"],
                            "cuda_default": "12.2"}, ALL)
    assert keys(found) == ["cuda_toolkits"]
    assert "12.4" in found[0][1] and "535" in found[0][1]


def test_newer_branch_runs_it():
    assert rules.problems({"nvidia_driver_branch": "550", "cuda_toolkits": ["12.2", "12.4"],
                           "cuda_default": "12.4"}, ALL) == []


def test_default_must_be_one_of_the_toolkits_and_versions_well_formed():
    found = rules.problems({"cuda_toolkits": ["12", "12.1"], "cuda_default": "12.0"}, ALL)
    assert keys(found) == ["cuda_toolkits", "cuda_default"]


def test_debian_source_has_one_toolkit():
    found = rules.problems({"cuda_source": "debian", "cuda_toolkits": ["11.8", "11.7"],
                            "cuda_default": "11.8"}, ALL)
    assert keys(found) == ["cuda_toolkits"]


def test_cuda_rules_only_for_hosts_running_cuda():
    assert rules.problems({"cuda_toolkits": ["12.9"]}, {"containerd"}) == []


def test_cdi_with_containerd_16_is_refused():
    found = rules.problems({"containerd_cdi": True}, ALL)
    assert keys(found) == ["containerd_cdi"]
    assert rules.problems({"containerd_cdi": True, "containerd_version": "1.7"}, ALL) == []


def test_secure_boot_on_needs_the_key_pair_in_the_vault():
    found = rules.problems({"nvidia_driver_secure_boot": "on"}, ALL)
    assert keys(found) == list(rules.MOK_KEYS)
    values = {"nvidia_driver_secure_boot": "on", **dict.fromkeys(rules.MOK_KEYS, "x")}
    plain = rules.problems(values, ALL)
    assert keys(plain) == list(rules.MOK_KEYS) and "plain text" in plain[0][1]
    assert rules.problems(values, ALL, vaulted=set(rules.MOK_KEYS)) == []
    assert rules.problems({"nvidia_driver_secure_boot": "auto"}, ALL) == []


BAD_INPUT = [  # (line appended to group_vars/gpu_workers.yml of the example site, key named)
    ('nvidia_driver_source: nvidai', "nvidia_driver_source"),
    ('nvidia_driver_branch: "551"', "nvidia_driver_branch"),
    ('cuda_default: "12.6"\ncuda_toolkits: ["12.6"]', "cuda_toolkits"),
    ("containerd_cdi: true", "containerd_cdi"),
    ('nvidia_driver_secure_boot: "on"', "nvidia_driver_mok_key"),
]


@pytest.mark.parametrize(("line", "key"), BAD_INPUT, ids=[k for _, k in BAD_INPUT])
def test_validate_refuses_bad_gpu_input(tmp_path, line, key):
    """`validate` exits 2 naming the file and key, before any host is contacted."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE, site)
    gv = site / "group_vars" / "gpu_workers.yml"
    setting = tuple(x.split(":", 1)[0] + ":" for x in line.splitlines())
    kept = [x for x in gv.read_text().splitlines() if not x.startswith(setting)]
    gv.write_text("\n".join(kept) + "\n" + line + "\n")
    res = mp("validate", "-i", site / "hosts.yml", "--vault-password-file", site / ".vault-password")
    assert res.rc == 2, res.stdout + res.stderr
    assert key in res.stderr and ("gpu_workers.yml" in res.stderr or "hosts.yml" in res.stderr), res.stderr
