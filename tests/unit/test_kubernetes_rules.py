"""The Kubernetes layer's input rules (site/rules.py): each bad input is refused before any host
is touched (InventoryInvalid: exit 2), naming the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlops_provision.errors import BadInput
from mlops_provision.site import InventoryInvalid, Problem, load
from mlops_provision.site.rules import kubernetes_upgrade_problem, kubernetes_version_of


@pytest.fixture(autouse=True)
def _no_vault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)


def site(tmp_path: Path, planes: int = 1, workers: int = 1, all_vars: str = "",
         plane_vars: str = "") -> Path:
    lines = ["---", "all:", "  vars:", "    ansible_user: admin"]
    lines += [f"    {line}" for line in all_vars.splitlines() if line]
    lines += ["  children:"]
    if planes:
        lines += ["    control_plane:", "      hosts:"]
        for i in range(1, planes + 1):
            lines += [f"        cp{i}:", f"          ansible_host: 192.0.2.1{i}",
                      f"          mlops_node_address: 198.51.100.1{i}"]
            lines += [f"          {line}" for line in plane_vars.splitlines() if line]
    if workers:
        lines += ["    cpu_workers:", "      hosts:"]
        for i in range(1, workers + 1):
            lines += [f"        cpu{i}:", f"          ansible_host: 192.0.2.3{i}",
                      f"          mlops_node_address: 198.51.100.3{i}"]
    (tmp_path / "hosts.yml").write_text("\n".join(lines) + "\n")
    return tmp_path / "hosts.yml"


def problems(inventory: Path, password: Path | None = None) -> list[Problem]:
    with pytest.raises(InventoryInvalid) as info:
        load(inventory, vault_password_file=password)
    assert isinstance(info.value, BadInput)  # exit code 2
    return info.value.problems


def only(found: list[Problem], key: str) -> Problem:
    mine = [p for p in found if p.key == key]
    assert len(mine) == 1, found
    return mine[0]


def test_a_plain_cluster_is_valid(tmp_path: Path) -> None:
    load(site(tmp_path, planes=1, workers=2))


def test_workers_without_a_control_plane(tmp_path: Path) -> None:
    load(site(tmp_path, planes=0, workers=2))  # no cluster declared: GPU/CPU nodes only
    problem = only(problems(site(tmp_path, planes=0, workers=2, all_vars='kubernetes_version: "1.33.1"')),
                   "control_plane")
    assert Path(problem.file).name == "hosts.yml"
    assert "cpu1, cpu2" in problem.expected and "no host in group control_plane" in problem.expected


def test_several_control_planes_need_an_api_endpoint(tmp_path: Path) -> None:
    problem = only(problems(site(tmp_path, planes=3)), "kubernetes_api_endpoint")
    assert Path(problem.file).name == "hosts.yml" and "3 control planes" in problem.expected
    load(site(tmp_path, planes=3, all_vars="kubernetes_api_endpoint: k8s-api.example.internal:6443"))


@pytest.mark.parametrize(("key", "value", "says"), [
    ("kubernetes_pod_cidr", "198.51.100.0/24", "cp1's mlops_node_address 198.51.100.11"),
    ("kubernetes_service_cidr", "192.0.0.0/8", "cp1's ansible_host 192.0.2.11"),
    ("kubernetes_pod_cidr", "10.244.0.1/16", "host bits set"),
    ("kubernetes_service_cidr", "10.244.128.0/20", "overlaps kubernetes_pod_cidr 10.244.0.0/16"),
])
def test_pod_and_service_networks_apart_from_the_nodes(tmp_path: Path, key: str, value: str,
                                                        says: str) -> None:
    problem = only(problems(site(tmp_path, all_vars=f"{key}: {value}")), key)
    assert Path(problem.file).name == "hosts.yml" and problem.line is not None
    assert says in problem.expected


@pytest.mark.parametrize(("current", "target", "says"), [
    ("1.31.4", "1.33.1", "skip of minor versions"),
    ("1.33.2", "1.33.1", "downgrade"),
    ("1.32.9", "2.0.0", "skip of minor versions"),
])
def test_version_skew_the_upgrade_rules_forbid(tmp_path: Path, current: str, target: str,
                                               says: str) -> None:
    inv = site(tmp_path, all_vars=f'kubernetes_version: "{target}"\n'
                                  f'kubernetes_current_version: "{current}"')
    problem = only(problems(inv), "kubernetes_version")
    assert says in problem.expected and current in problem.expected


def test_one_minor_up_and_patches_are_upgrades(tmp_path: Path) -> None:
    for current in ("1.32.9", "1.33.0", "1.33.1"):
        load(site(tmp_path, all_vars=f'kubernetes_version: "1.33.1"\nkubernetes_current_version: "{current}"'))
    assert kubernetes_upgrade_problem((1, 32, 9), (1, 33, 0)) == ""
    assert kubernetes_version_of("v1.33.1") == (1, 33, 1) and kubernetes_version_of("1.33") is None


def test_version_must_be_pinned_to_a_patch(tmp_path: Path) -> None:
    problem = only(problems(site(tmp_path, all_vars='kubernetes_version: "1.33"')), "kubernetes_version")
    assert "MAJOR.MINOR.PATCH" in problem.expected


def test_hardening_keeps_what_kubernetes_needs(tmp_path: Path) -> None:
    inv = site(tmp_path, all_vars="os_hardening_modules_load: [overlay]\n"
                                  "os_hardening_sysctl: {net.ipv4.ip_forward: 0}")
    found = problems(inv)
    assert "br_netfilter" in only(found, "os_hardening_modules_load").expected
    assert "net.ipv4.ip_forward=0" in only(found, "os_hardening_sysctl").expected


def test_no_rule_without_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("---\nall:\n  hosts:\n    m1:\n      ansible_host: 10.244.0.5\n")
    load(tmp_path / "hosts.yml")


def _vault(value: str, password: Path) -> str:
    out = subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "encrypt_string",
                          "--vault-password-file", str(password),
                          "--name", "kubernetes_control_plane_encryption_key", value],
                         check=True, capture_output=True, text=True).stdout
    return out.replace("\n", "\n  ")


def test_encryption_key_plain_or_malformed(tmp_path: Path) -> None:
    plain = only(problems(site(tmp_path, plane_vars="kubernetes_control_plane_encryption_key: abc")),
                 "kubernetes_control_plane_encryption_key")
    assert "plain text" in plain.expected
    password = tmp_path / ".pw"  # the site's own: the example's is published, and refused
    password.write_text("k8s-rules-test-password\n")
    short = tmp_path / "short"
    short.mkdir()
    inv = site(short, plane_vars=_vault("c2hvcnQ=", password))
    assert "32 bytes" in only(problems(inv, password), "kubernetes_control_plane_encryption_key").expected
    good = tmp_path / "good"
    good.mkdir()
    load(site(good, plane_vars=_vault("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", password)),
         vault_password_file=password)


# --------------------------------------------------------------------------- one source per rule
ROLE = Path(__file__).parents[2] / "roles" / "kubernetes_node"


def test_the_upgrade_rule_is_one_file_for_validate_and_the_role() -> None:
    """The role's filter plugin is a link to the module validate uses, not a copy."""
    from mlops_provision.site import kubeadm

    plugin = ROLE / "filter_plugins" / "mlops_kubeadm.py"
    assert plugin.is_symlink() and plugin.resolve() == Path(kubeadm.__file__).resolve()


UPGRADES = [("1.33.1", "1.33.1"), ("1.33.0", "1.33.1"), ("1.32.9", "1.33.1"), ("1.31.4", "1.33.1"),
            ("1.33.2", "1.33.1"), ("1.34.0", "1.33.1"), ("1.32.9", "2.0.0"), ("1.33.1", "2.33.1")]


@pytest.mark.parametrize(("installed", "pinned"), UPGRADES)
def test_the_role_refuses_exactly_what_validate_refuses(installed: str, pinned: str) -> None:
    """tasks/version.yml's check, evaluated by Ansible's templar with the role's filter plugins
    and vars/main.yml, refuses an installed -> pinned move exactly when validate's rule does, with
    validate's words."""
    import yaml
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import filter_loader
    from ansible.template import Templar, trust_as_template

    from mlops_provision.site.resolve import _init_plugins

    _init_plugins()  # Ansible's plugin loader, once per process (as the site model does)
    filter_loader.add_directory(str(ROLE / "filter_plugins"))
    task = next(t for t in yaml.safe_load((ROLE / "tasks" / "version.yml").read_text())
                if "ansible.builtin.assert" in t)
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    variables = {"inventory_hostname": "node1", "kubernetes_node_installed": installed, "kubernetes_version": pinned,
                 "kubernetes_node_max_minor_skew": role_vars["kubernetes_node_max_minor_skew"],
                 **{k: trust_as_template(v) for k, v in task["vars"].items()}}
    templar = Templar(loader=DataLoader(), variables=variables)
    assert templar.evaluate_conditional(trust_as_template(task["when"]))
    allowed = all(templar.evaluate_conditional(trust_as_template(c)) for c in task["ansible.builtin.assert"]["that"])
    why = kubernetes_upgrade_problem(kubernetes_version_of(installed), kubernetes_version_of(pinned))
    assert allowed == (why == "")
    if why:
        message = str(templar.template(trust_as_template(task["ansible.builtin.assert"]["fail_msg"])))
        assert why in message and installed in message and pinned in message


def test_the_skew_is_the_roles_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate reads kubernetes_node_max_minor_skew from the role's vars (nothing of its own)."""
    from mlops_provision.site import rules

    (tmp_path / "kubernetes_node" / "vars").mkdir(parents=True)
    data = (ROLE / "vars" / "main.yml").read_text().replace("kubernetes_node_max_minor_skew: 1",
                                                           "kubernetes_node_max_minor_skew: 2")
    (tmp_path / "kubernetes_node" / "vars" / "main.yml").write_text(data)
    assert kubernetes_upgrade_problem((1, 31, 4), (1, 33, 1)).startswith("a skip of minor versions")
    monkeypatch.setattr(rules.paths, "roles_dir", lambda: tmp_path)
    assert kubernetes_upgrade_problem((1, 31, 4), (1, 33, 1)) == ""
    assert "go to 1.33.x first" in kubernetes_upgrade_problem((1, 31, 4), (1, 34, 0))


def test_the_kernel_needs_are_the_roles_data(tmp_path: Path) -> None:
    """validate demands the modules and parameters in the role's vars/main.yml (the ones the role
    checks on the node), and os_hardening's defaults provide them."""
    import yaml

    from mlops_provision.site.rules import kubernetes_node_vars

    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert kubernetes_node_vars(str(ROLE.parent)) == role_vars
    modules, sysctl = role_vars["kubernetes_node_modules"], role_vars["kubernetes_node_sysctl"]
    inv = site(tmp_path, all_vars="os_hardening_modules_load: [nvidia]\n"
                                  "os_hardening_sysctl: {" + ", ".join(f"{k}: 7" for k in sysctl) + "}")
    found = problems(inv)
    assert f"expected {', '.join(modules)} in it" in only(found, "os_hardening_modules_load").expected
    assert "expected " + ", ".join(f"{k}={v}" for k, v in sysctl.items()) in only(found, "os_hardening_sysctl").expected
    hardening = yaml.safe_load((ROLE.parent / "os_hardening" / "defaults" / "main.yml").read_text())
    assert set(modules) <= set(hardening["os_hardening_modules_load"])
    assert {k: str(v) for k, v in hardening["os_hardening_sysctl"].items() if k in sysctl} == sysctl


def test_the_filter_names_what_is_not_a_version() -> None:
    from mlops_provision.site.kubeadm import upgrade_problem_of

    assert upgrade_problem_of("1.33.1", "1.33.1", 1) == "" and upgrade_problem_of("1.32.0", "v1.33.1", "1") == ""
    assert "not a version" in upgrade_problem_of("1.33.1~rc.0", "1.33.1", 1)
    assert "not a pinned version" in upgrade_problem_of("1.33.1", "1.33", 1)


# --------------------------------------------------------------------------- version form and floor

def test_version_with_a_leading_v_is_refused(tmp_path: Path) -> None:
    problem = only(problems(site(tmp_path, workers=3, all_vars='kubernetes_version: "v1.33.1"')),
                   "kubernetes_version")
    assert (Path(problem.file).name, problem.line, problem.where) == ("hosts.yml", 5, "group 'all'")
    assert "'v1.33.1' starts with v: expected MAJOR.MINOR.PATCH without it (1.33.1)" in problem.expected
    assert problem.expected.endswith("(4 hosts: cp1, cpu1, cpu2 and 1 more)"), problem


def test_version_older_than_the_kubeadm_configuration_is_refused(tmp_path: Path) -> None:
    problem = only(problems(site(tmp_path, all_vars='kubernetes_version: "1.28.5"')), "kubernetes_version")
    assert "1.28.5 is older than 1.31.0" in problem.expected and "expected 1.31.0 or newer" in problem.expected
    assert "kubernetes_node_min_version" in problem.expected
    load(site(tmp_path, all_vars='kubernetes_version: "1.31.0"'))


def test_the_minimum_is_the_roles_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate reads kubernetes_node_min_version from the role's vars, which names the kubeadm
    API the control plane's template writes."""
    import yaml

    from mlops_provision.site import rules

    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert rules.kubernetes_min_version() == kubernetes_version_of(role_vars["kubernetes_node_min_version"])
    template = (ROLE.parent / "kubernetes_control_plane" / "templates" / "kubeadm.yaml.j2").read_text()
    assert "apiVersion: kubeadm.k8s.io/v1beta4" in template  # read by kubeadm 1.31 and newer
    (tmp_path / "kubernetes_node" / "vars").mkdir(parents=True)
    (tmp_path / "kubernetes_node" / "vars" / "main.yml").write_text(
        (ROLE / "vars" / "main.yml").read_text().replace('kubernetes_node_min_version: "1.31.0"',
                                                         'kubernetes_node_min_version: "1.34.0"'))
    monkeypatch.setattr(rules.paths, "roles_dir", lambda: tmp_path)
    assert rules.kubernetes_min_version() == (1, 34, 0)


# --------------------------------------------------------------------------- address families

def v6(inventory: Path) -> Path:
    """The site's node addresses as IPv6 documentation addresses."""
    text = inventory.read_text().replace("192.0.2.", "2001:db8::").replace("198.51.100.", "2001:db8:1::")
    inventory.write_text(text)
    return inventory


def test_ipv6_nodes_with_the_default_ipv4_networks(tmp_path: Path) -> None:
    problem = only(problems(v6(site(tmp_path, workers=2))), "mlops_node_address")
    assert (problem.where, problem.line) == ("host 'cp1'", 10)
    assert "the nodes' addresses are IPv6 (cp1's mlops_node_address 2001:db8:1::11" in problem.expected
    assert "kubernetes_pod_cidr 10.244.0.0/16 and kubernetes_service_cidr 10.96.0.0/12" in problem.expected
    assert "kubeadm cannot mix IPv4 and IPv6" in problem.expected


def test_ipv4_network_set_for_ipv6_nodes(tmp_path: Path) -> None:
    found = problems(v6(site(tmp_path, workers=2, all_vars="kubernetes_pod_cidr: 10.244.0.0/16")))
    problem = only(found, "kubernetes_pod_cidr")
    assert (problem.line, problem.where) == (5, "group 'all'")
    assert problem.expected.startswith("10.244.0.0/16 is IPv4, but the nodes' addresses are IPv6 ")
    assert "cpu2's mlops_node_address 2001:db8:1::32" in problem.expected
    default = only(found, "mlops_node_address")  # the service network: the role's default
    assert "but kubernetes_service_cidr 10.96.0.0/12 is role mlops' default, IPv4" in default.expected


def test_pod_and_service_networks_of_two_families(tmp_path: Path) -> None:
    problem = only(problems(site(tmp_path, all_vars="kubernetes_pod_cidr: fd00:10:244::/56")),
                   "kubernetes_service_cidr")
    assert "10.96.0.0/12 is IPv4 and kubernetes_pod_cidr fd00:10:244::/56 is IPv6" in problem.expected


def test_an_ipv6_cluster_is_valid(tmp_path: Path) -> None:
    load(v6(site(tmp_path, workers=2, all_vars="kubernetes_pod_cidr: fd00:10:244::/56\n"
                                               "kubernetes_service_cidr: fd00:96::/112")))
