"""The site model and Ansible agree (issue 13): host patterns as ``--limit`` reads them, each
host's variables as ``ansible-inventory --list`` shows them, the roles each host runs as
``ansible-playbook --list-hosts`` places it in plays, and which option values a role's
argument specs accept, run for real with ``ansible-playbook`` (subprocesses of .venv/bin; no
host is contacted: every host is ``ansible_connection: local``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlops_provision import paths
from mlops_provision.site import InventoryInvalid, hosts_matching, load
from mlops_provision.site.roles import plays

BIN = Path(sys.executable).parent

HOSTS = """\
---
all:
  hosts:
    admin1:
      ansible_connection: local
  vars:
    ansible_connection: local
    kubernetes_api_endpoint: k8s-api.example.internal
    base_manage_hostname: 'yes'
    base_apt_cache_valid_time: '3600'
  children:
    gpu_workers:
      vars:
        base_manage_hostname: no
        base_ntp_servers: [ntp1.example.com, ntp2.example.com]
      hosts:
        gpu1:
        gpu2:
          base_apt_cache_valid_time: 60
        gpu10:
          base_manage_etc_hosts: "true"
        cp2:  # a control plane with a GPU
    cpu_workers:
      hosts:
        cpu1:
          base_packages: curl,jq
        cpu2:
      children:  # a group of groups: every GPU worker is a CPU worker too
        gpu_workers:
    control_plane:
      hosts:
        cp1:
        cp2:
    mlflow:
      hosts:
        cp1:
        mlf1:
      vars:
        mlflow_admin_password: "{{ vault_admin }}"
        mlflow_db_password: "{{ vault_db }}"
"""

PATTERNS = [
    "all", "gpu_workers", "gpu1", "gpu_workers:cpu_workers", "gpu_workers,cpu_workers",
    "control_plane:&mlflow", "mlflow:&control_plane", "all:!gpu_workers",
    "control_plane:!mlflow", "gpu*", "*1", "~gpu[0-9]$", "~(cp|mlf)\\d", "gpu_workers:!gpu2",
    "all:&gpu_workers:!gpu10", "cpu_workers:control_plane:&mlflow", "ungrouped", "nosuchhost",
    "cpu_workers:!gpu_workers", "cpu_workers:&gpu_workers", "cpu_workers:gpu_workers:!control_plane",
]


def _vault(site: Path) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    lib = VaultLib([("default", VaultSecret(b"pw"))])
    text = "vault_admin: Tr0ub4dor-and-3\nvault_db: db-s3cret\n"
    (site / "group_vars" / "mlflow").mkdir(parents=True)
    (site / "group_vars" / "mlflow" / "vault.yml").write_bytes(lib.encrypt(text))
    (site / ".pw").write_text("pw\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agree")
    (root / "hosts.yml").write_text(HOSTS)
    (root / "group_vars").mkdir()
    (root / "group_vars" / "cpu_workers.yml").write_text("---\nbase_apt_upgrade: 'false'\n")
    (root / "host_vars").mkdir()
    (root / "host_vars" / "gpu1.yml").write_text("---\nbase_manage_hostname: 'True'\n")
    _vault(root)
    (root / "play.yml").write_text("---\n- name: Agree\n  hosts: all\n  gather_facts: false\n"
                                   "  tasks: []\n")
    return root


def _env(site: Path) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(site / ".pw"),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}


def _list_hosts(site: Path, limit: str) -> list[str]:
    """The hosts ``ansible-playbook --limit`` acts on."""
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(site / "hosts.yml"),
                          str(site / "play.yml"), "--list-hosts", "--limit", limit],
                         capture_output=True, text=True, env=_env(site), check=False)
    if run.returncode != 0:
        assert "no hosts to target" in run.stderr or "no hosts matched" in run.stderr, run.stderr
        return []
    block = run.stdout.split("hosts (", 1)[1].splitlines()[1:]
    return sorted(line.strip() for line in block if line.strip())


def test_limit_patterns_agree_with_ansible_playbook(site: Path) -> None:
    model = load(site / "hosts.yml", vault_password_file=site / ".pw")
    with ThreadPoolExecutor(max_workers=4) as pool:
        theirs = dict(zip(PATTERNS, pool.map(lambda p: _list_hosts(site, p), PATTERNS), strict=True))
    ours = {p: hosts_matching(model, p) for p in PATTERNS}
    assert ours == theirs
    assert ours["control_plane:&mlflow"] == ["cp1"]  # an intersection, not a union


def test_host_variables_agree_with_ansible_inventory(site: Path) -> None:
    model = load(site / "hosts.yml", vault_password_file=site / ".pw")
    run = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(site / "hosts.yml"), "--list"],
                         capture_output=True, text=True, env=_env(site), check=True)
    listed = json.loads(run.stdout)
    theirs_hostvars = listed["_meta"]["hostvars"]
    assert sorted(theirs_hostvars) == model.hosts
    for host in model.hosts:
        ours = {k: v for k, v in model.hostvars(host).items() if not k.startswith("vault_")}
        theirs = {k: v for k, v in theirs_hostvars[host].items() if not k.startswith("vault_")}
        assert ours == theirs, host
    groups = {g: sorted(body.get("hosts", [])) for g, body in listed.items() if g != "_meta"}
    for group, members in groups.items():
        if members:  # ansible-inventory lists a host under its own groups, not their parents
            assert set(members) <= set(model.groups[group]), group
    assert model.host_groups("cp1") == ["control_plane", "mlflow"]
    assert model.hostvars("gpu1")["base_manage_hostname"] == "True"  # host_vars win
    assert model.hostvars("gpu2")["base_apt_cache_valid_time"] == 60


def test_roles_of_each_host_agree_with_ansible_playbook_list_hosts(site: Path) -> None:
    """Each host runs the roles of the plays ``ansible-playbook --list-hosts`` puts it in (one
    call over every playbook): a control plane that is also a GPU worker (cp2) is no worker."""
    model = load(site / "hosts.yml", vault_password_file=site / ".pw")
    books = sorted(str(b) for b in paths.playbook().parent.glob("*.yml"))
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(site / "hosts.yml"), *books,
                          "--list-hosts"], capture_output=True, text=True, check=True,
                         env={**_env(site), "ANSIBLE_CONFIG": str(paths.project_root() / "ansible.cfg")})
    listed = re.findall(r"^  play #\d+ \(.*\): (.*)\tTAGS: .*\n    pattern: .*\n    hosts \(\d+\):\n"
                        r"((?:      \S+\n)*)", run.stdout, re.M)
    roles = {p.name: p.roles for p in plays(paths.playbook().parent)}
    assert {name for name, _ in listed} == set(roles), run.stdout
    theirs = {h: set() for h in model.hosts}
    for name, hosts in listed:
        for host in hosts.split():
            theirs[host] |= set(roles[name])
    assert {h: set(model.roles(h)) for h in model.hosts} == theirs
    assert "kubernetes_worker" not in model.roles("cp2") and "cuda" in model.roles("cp2")


# --------------------------------------------------------------------------- option values

SPECS = """\
---
argument_specs:
  main:
    options:
      demo_flag: {type: bool}
      demo_count: {type: int}
      demo_names: {type: list, elements: str}
      demo_label: {type: str}
      demo_mode: {type: str, choices: [fast, safe]}
"""
TASKS = "---\n- name: Demo | Nothing\n  ansible.builtin.meta: noop\n"

VALUES = [
    ("demo_flag", "yes"), ("demo_flag", "'yes'"), ("demo_flag", "no"), ("demo_flag", "'true'"),
    ("demo_flag", "true"), ("demo_flag", "'True'"), ("demo_flag", "1"), ("demo_flag", "'on'"),
    ("demo_flag", "'maybe'"), ("demo_flag", "2"), ("demo_flag", "[true]"),
    ("demo_count", "'42'"), ("demo_count", "42"), ("demo_count", "'4x'"), ("demo_count", "4.0"),
    ("demo_count", "4.5"), ("demo_count", "true"), ("demo_count", "[1]"),
    ("demo_names", "[a, b]"), ("demo_names", "a,b"), ("demo_names", "[a, 5]"),
    ("demo_names", "5"), ("demo_names", "{a: 1}"),
    ("demo_label", "12.4"), ("demo_label", "[1]"), ("demo_label", "''"), ("demo_label", "on"),
    ("demo_mode", "fast"), ("demo_mode", "fsat"), ("demo_mode", "'FAST'"),
]
#: What validate refuses although the role's argument spec accepts it: a string option that YAML
#: read as a number or a boolean. The validator turns 12.4 into "12.4" and on into "True", but
#: the role's tasks see the number or the boolean (12.10 is 12.1), so validate asks for quotes.
STRICTER = {"demo_label: 12.4", "demo_label: on"}


def test_option_values_accepted_exactly_when_the_role_accepts_them(tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    (roles / "demo" / "meta").mkdir(parents=True)
    (roles / "demo" / "tasks").mkdir()
    (roles / "demo" / "meta" / "argument_specs.yml").write_text(SPECS)
    (roles / "demo" / "tasks" / "main.yml").write_text(TASKS)
    names = [f"h{i}" for i in range(len(VALUES))]
    hosts = "---\nall:\n  vars:\n    ansible_connection: local\n  children:\n    cpu_workers:\n" \
            "      hosts:\n" + "".join(f"        {h}:\n          {k}: {v}\n"
                                      for h, (k, v) in zip(names, VALUES, strict=True))
    (tmp_path / "hosts.yml").write_text(hosts)
    (tmp_path / "play.yml").write_text("---\n- name: Demo\n  hosts: all\n  gather_facts: false\n"
                                       "  roles: [demo]\n")
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                          str(tmp_path / "play.yml")], capture_output=True, text=True,
                         env={**os.environ, "ANSIBLE_ROLES_PATH": str(roles), "ANSIBLE_NOCOLOR": "1",
                              "ANSIBLE_FORKS": "8"}, check=False)
    recap = dict(re.findall(r"^(h\d+)\s+: .*failed=(\d+)", run.stdout, re.M))
    assert sorted(recap) == sorted(names), run.stdout + run.stderr
    role_rejects = {h for h, failed in recap.items() if failed != "0"}
    try:
        load(tmp_path / "hosts.yml", roles_dir=roles)
        we_reject: set[str] = set()
    except InventoryInvalid as exc:
        we_reject = {p.where.split("'")[1] for p in exc.problems}
    verdicts = {f"{k}: {v}": (h in role_rejects, h in we_reject)
                for h, (k, v) in zip(names, VALUES, strict=True)}
    assert {v: r for v, r in verdicts.items() if r[0] != r[1]} == dict.fromkeys(STRICTER, (False, True)), \
        "(role rejects, we reject)"
    assert not verdicts["demo_flag: yes"][1] and not verdicts["demo_flag: 'yes'"][1]
    assert verdicts["demo_flag: 'maybe'"] == (True, True)
