"""The GPU layer's cross-field rules (mlops_provision.gpu.rules) on plain host variables."""

from __future__ import annotations

import pytest
import yaml

from mlops_provision.gpu import rules
from tests.conftest import ROOT, example_copy, mp

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
    found = rules.problems({"containerd_cdi": True, "ansible_distribution_release": "bookworm"}, ALL)
    assert keys(found) == ["containerd_cdi"] and "containerd 1.6 (Debian 12 (bookworm))" in found[0][1]
    assert keys(rules.problems({"containerd_cdi": True, "containerd_version": "1.6"}, ALL)) == ["containerd_cdi"]
    assert rules.problems({"containerd_cdi": True, "containerd_version": "1.7"}, ALL) == []
    # the release's own series: Debian 13's 1.7 delivers CDI; a release the inventory does not
    # name may be Debian 13 (the role stops a Debian 12 node before any change)
    assert rules.problems({"containerd_cdi": True, "ansible_distribution_major_version": "13"}, ALL) == []
    assert rules.problems({"containerd_cdi": True}, ALL) == []


@pytest.mark.parametrize(("release", "version", "bad"), [
    ({"ansible_distribution_release": "bookworm"}, "1.7", True),
    ({"ansible_distribution_major_version": 13}, "1.6", True),
    ({"ansible_distribution_release": "trixie"}, "1.7", False),
    ({}, "1.6", False), ({}, "1.7", False), ({}, "2.0", True)])
def test_containerd_version_is_what_the_release_carries(release, version, bad):
    found = rules.problems({**release, "containerd_version": version}, ALL)
    assert keys(found) == (["containerd_version"] if bad else []), found
    if bad:
        assert "carries" in found[0][1] and f"got {version}" in found[0][1]


def test_secure_boot_on_needs_the_key_pair_in_the_vault():
    found = rules.problems({"nvidia_driver_secure_boot": "on"}, ALL)
    assert keys(found) == list(rules.MOK_KEYS)
    values = {"nvidia_driver_secure_boot": "on", **dict.fromkeys(rules.MOK_KEYS, "x")}
    plain = rules.problems(values, ALL)
    assert keys(plain) == list(rules.MOK_KEYS) and "plain text" in plain[0][1]
    assert rules.problems(values, ALL, vaulted=set(rules.MOK_KEYS)) == []
    assert rules.problems({"nvidia_driver_secure_boot": "auto"}, ALL) == []


def test_debian_source_needs_the_branch_debian_carries():
    found = rules.problems({"nvidia_driver_source": "debian", "nvidia_driver_branch": "545"}, ALL)
    assert keys(found) == ["nvidia_driver_branch"]
    assert ("branch 545 is not in Debian's archive: Debian bookworm carries branch 535 only, Debian trixie "
            "carries branch 550 only (the release assumed: bookworm and trixie, what role nvidia_driver "
            "supports") in found[0][1]
    assert 'expected nvidia_driver_branch "535" or "550" with nvidia_driver_source: debian' in found[0][1]
    assert rules.problems({"nvidia_driver_source": "debian"}, ALL) == []  # the default branch, 535
    # where the inventory names the release, that release's branch only
    found = rules.problems({"nvidia_driver_source": "debian", "nvidia_driver_branch": "550",
                            "ansible_distribution_major_version": "12"}, ALL)
    assert keys(found) == ["nvidia_driver_branch"] and "Debian bookworm carries branch 535 only" in found[0][1]
    assert rules.problems({"nvidia_driver_source": "nvidia", "nvidia_driver_branch": "550",
                           "cuda_toolkits": ["12.4"], "cuda_default": "12.4"}, ALL) == []


def test_a_known_release_is_judged_by_its_own_branch():
    assert rules.debian_branch_problem("550", "trixie") == ""
    why = rules.debian_branch_problem("535", "trixie")
    assert "Debian trixie carries branch 550 only" in why and "assumed" not in why


def test_the_debian_branches_are_the_roles_data():
    role = ROOT / "roles" / "nvidia_driver"
    table = yaml.safe_load((role / "vars" / "main.yml").read_text())["nvidia_driver_debian_branch"]
    assert rules.debian_branches() == table == {"bookworm": "535", "trixie": "550"}
    assert rules.supported_releases() == ("bookworm", "trixie")
    assert "nvidia_driver_debian_branch[ansible_facts['distribution_release']]" in (
        role / "tasks" / "source.yml").read_text(), "the role checks the node's release with the same table"


BAD_INPUT = [  # (line appended to group_vars/gpu_workers.yml of the example site, key named)
    ('nvidia_driver_source: nvidai', "nvidia_driver_source"),
    ('nvidia_driver_branch: "551"', "nvidia_driver_branch"),
    ('nvidia_driver_source: debian\nansible_distribution_release: bookworm', "nvidia_driver_branch"),
    ("nvidia_driver_secure_boot: on", "nvidia_driver_secure_boot"),
    ('cuda_default: "12.6"\ncuda_toolkits: ["12.6"]', "cuda_toolkits"),
    ("containerd_cdi: true\ncontainerd_version: \"1.6\"", "containerd_cdi"),
    ("ansible_distribution_release: bookworm\ncontainerd_version: \"1.7\"", "containerd_version"),
    ('nvidia_driver_secure_boot: "on"', "nvidia_driver_mok_key"),
]


@pytest.mark.parametrize(("line", "key"), BAD_INPUT, ids=[k for _, k in BAD_INPUT])
def test_validate_refuses_bad_gpu_input(tmp_path, line, key):
    """`validate` exits 2 naming the file and key, before any host is contacted."""
    site = tmp_path / "site"
    password = example_copy(site)  # with fresh secrets: the example's are refused as published
    gv = site / "group_vars" / "gpu_workers.yml"
    setting = tuple(x.split(":", 1)[0] + ":" for x in line.splitlines())
    kept = [x for x in gv.read_text().splitlines() if not x.startswith(setting)]
    gv.write_text("\n".join(kept) + "\n" + line + "\n")
    res = mp("validate", "-i", site / "hosts.yml", "--vault-password-file", password)
    assert res.rc == 2, res.stdout + res.stderr
    assert "published example secret" not in res.stderr
    assert key in res.stderr and ("gpu_workers.yml" in res.stderr or "hosts.yml" in res.stderr), res.stderr


@pytest.mark.parametrize(("branch", "release"), [("535", "bookworm"), ("550", "bookworm"),
                                                  ("550", "trixie"), ("535", "trixie"), ("535", "forky")])
def test_the_role_refuses_exactly_what_validate_refuses(branch, release):
    """tasks/source.yml's check on the node's real release, evaluated by Ansible's templar with
    the role's vars/main.yml, agrees with validate's rule for that release."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    role = ROOT / "roles" / "nvidia_driver"
    task = next(t for t in yaml.safe_load((role / "tasks" / "source.yml").read_text())
                if "nvidia_driver_debian_has" in t.get("vars", {}))
    variables = {"nvidia_driver_source": "debian", "nvidia_driver_branch": branch,
                 "ansible_facts": {"distribution_release": release},
                 "nvidia_driver_debian_branch": yaml.safe_load((role / "vars" / "main.yml").read_text())[
                     "nvidia_driver_debian_branch"],
                 **{k: trust_as_template(v) for k, v in task["vars"].items()}}
    templar = Templar(loader=DataLoader(), variables=variables)
    assert templar.evaluate_conditional(trust_as_template(task["when"]))
    allowed = all(templar.evaluate_conditional(trust_as_template(c))
                  for c in [task["ansible.builtin.assert"]["that"]])
    assert allowed == (rules.debian_branch_problem(branch, release) == "")
