"""Site loading and validation (mlops_provision.site): no host is contacted."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from mlops_provision import paths
from mlops_provision.sandbox.core import InventoryDumper as VaultDumper
from mlops_provision.sandbox.core import VaultText
from mlops_provision.site import (
    BAD_VAULT_PASSWORD,
    NO_VAULT_PASSWORD,
    SITE_VARS,
    InventoryInvalid,
    Problem,
    Site,
    load,
)

EXAMPLE = paths.project_root() / "inventories" / "example"
EXAMPLE_VAULT = EXAMPLE / ".vault-password"

# A minimal valid site; the cases below break it one way at a time.
HOSTS = """\
---
all:
  vars:
    ansible_user: admin
  children:
    gpu_workers:
      hosts:
        gpu1:
          ansible_host: 192.0.2.21
          mlops_node_address: 198.51.100.21
        gpu2:
          ansible_host: 192.0.2.22
          mlops_node_address: 198.51.100.22
"""

# A role with options exercising required values, the naming conventions, choices and
# sub-options; used through load(..., roles_dir=...).
DEMO_SPECS = """\
---
argument_specs:
  main:
    options:
      demo_token:
        type: str
        required: true
      demo_listen_port:
        type: int
      demo_pod_cidr:
        type: str
      demo_allowed_cidrs:
        type: list
        elements: str
      demo_extra_ports:
        type: list
        elements: int
      demo_mode:
        type: str
        choices: [fast, safe]
      demo_settings:
        type: dict
        options:
          size:
            type: int
      demo_enabled:
        type: bool
      demo_pin_token:
        type: int
"""
DEMO_HOSTS = HOSTS.replace("    ansible_user: admin\n",
                           "    ansible_user: admin\n    demo_token: abc123\n")


def vault_text(plaintext: str, password: bytes = b"pw") -> str:
    return VaultLib([("default", VaultSecret(password))]).encrypt(plaintext).decode()


def inline_vault(plaintext: str, password: bytes = b"pw", indent: int = 6) -> str:
    """A `!vault |` block scalar whose body is indented by ``indent`` spaces."""
    body = textwrap.indent(vault_text(plaintext, password), " " * indent)
    return "!vault |\n" + body


# The secrets group mlflow requires, vault-encrypted with b"pw", as inventory variables.
MLFLOW_SECRETS = {"mlflow_admin_password": VaultText(vault_text("Tr0ub4dor-and-3")),
                  "mlflow_db_password": VaultText(vault_text("db-s3cret"))}


def write_site(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def demo_roles(tmp_path: Path) -> Path:
    roles = tmp_path / "roles"
    write_site(roles, {"demo/meta/argument_specs.yml": DEMO_SPECS})
    return roles


@pytest.fixture(autouse=True)
def _no_vault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)


def problems_of(site: Path, **kwargs) -> list[Problem]:
    with pytest.raises(InventoryInvalid) as info:
        load(site, **kwargs)
    assert info.value.problems
    return info.value.problems


def find(problems: list[Problem], file: str, key: str, text: str) -> Problem:
    for p in problems:
        if Path(p.file).name == file and p.key == key and text in p.expected:
            return p
    raise AssertionError(f"no problem in {file} for {key!r} with {text!r}; got:\n"
                         + "\n".join(map(str, problems)))


def add_host_var(text: str, line: str, host: str = "gpu1") -> str:
    """HOSTS with ``line`` (a `key: value` line) added to the host's variables."""
    anchor = f"        {host}:\n"
    return text.replace(anchor, f"{anchor}          {line}\n")


def add_all_var(text: str, line: str) -> str:
    return text.replace("  vars:\n", f"  vars:\n    {line}\n", 1)


# --------------------------------------------------------------------------- bad inputs

TANG = "---\ndisk_encryption_tang_servers:\n  - url: {}\n"

# (id, files, problem file, problem key, expected text); each uses the real roles dir.
BAD = [
    ("yaml-syntax", {"hosts.yml": HOSTS + "    cpu_workers: [\n"},
     "hosts.yml", "(syntax)", "invalid YAML at line"),
    ("top-level-not-a-mapping", {"hosts.yml": "---\n- gpu1\n- gpu2\n"},
     "hosts.yml", "(top level)", "expected a mapping with the single key 'all'"),
    ("empty-inventory", {"hosts.yml": "---\n"},
     "hosts.yml", "all", "the inventory is empty"),
    ("top-level-key", {"hosts.yml": HOSTS + "gpu_worker:\n  hosts:\n    gpu3:\n"},
     "hosts.yml", "gpu_worker", "unexpected top-level key 'gpu_worker': expected 'all' or one of"),
    ("unknown-group-key", {"hosts.yml": HOSTS.replace("      hosts:\n", "      host:\n")},
     "hosts.yml", "host", "expected one of hosts, vars, children (did you mean 'hosts'?)"),
    ("unknown-group", {"hosts.yml": HOSTS.replace("gpu_workers:", "gpu_worker:")},
     "hosts.yml", "gpu_worker",
     "unknown group 'gpu_worker': expected one of control_plane, cpu_workers, gpu_workers, "
     "mlflow, monitoring (did you mean 'gpu_workers'?)"),
    ("unknown-group-vars-file",
     {"hosts.yml": HOSTS, "group_vars/gpu_worker.yml": "---\nbase_apt_proxy: ''\n"},
     "gpu_worker.yml", "gpu_worker", "(did you mean 'gpu_workers'?)"),
    ("unknown-host-vars-file",
     {"hosts.yml": HOSTS, "host_vars/gpu3.yml": "---\nansible_port: 2222\n"},
     "gpu3.yml", "gpu3", "no host 'gpu3' in the inventory"),
    ("host-not-a-mapping",
     {"hosts.yml": HOSTS.replace("        gpu2:\n", "        gpu3: 192.0.2.23\n        gpu2:\n")},
     "hosts.yml", "gpu3", "expected a mapping of the host's variables (or nothing), got str"),
    ("hosts-is-a-list",
     {"hosts.yml": "---\nall:\n  children:\n    gpu_workers:\n      hosts: [gpu1, gpu2]\n"},
     "hosts.yml", "hosts", "expected a mapping of host names"),
    ("vars-is-a-list", {"hosts.yml": HOSTS.replace("    ansible_user: admin\n",
                                                   "    - ansible_user=admin\n")},
     "hosts.yml", "vars", "expected a mapping of variable names to values, got list"),
    ("group-vars-file-not-a-mapping",
     {"hosts.yml": HOSTS, "group_vars/all.yml": "---\n- base_apt_proxy\n"},
     "all.yml", "(top level)", "expected a mapping of variable names to values"),
    ("group-vars-syntax",
     {"hosts.yml": HOSTS, "group_vars/all.yml": "---\nbase_apt_proxy: 'oops\n"},
     "all.yml", "(syntax)", "invalid YAML"),
    ("shadowed-vars-file",
     {"hosts.yml": HOSTS, "group_vars/all.yml": "---\nbase_apt_proxy: ''\n",
      "group_vars/all/main.yml": "---\nbase_pip_proxy: ''\n"},
     "all.yml", "all", "ignored by Ansible because"),
    ("bad-address", {"hosts.yml": HOSTS.replace("192.0.2.22", "gpu_2.example!")},
     "hosts.yml", "ansible_host", "expected an IP address or DNS hostname, got str"),
    ("bad-ip-like-address", {"hosts.yml": HOSTS.replace("192.0.2.22", "192.0.2.300")},
     "hosts.yml", "ansible_host", "expected an IP address or DNS hostname"),
    ("duplicate-address", {"hosts.yml": HOSTS.replace("192.0.2.22", "192.0.2.21")},
     "hosts.yml", "ansible_host", "address 192.0.2.21 port 22 is also used by host 'gpu1'"),
    ("duplicate-node-address", {"hosts.yml": HOSTS.replace("198.51.100.22", "198.51.100.21")},
     "hosts.yml", "mlops_node_address", "also used by host 'gpu1'"),
    ("bad-node-address", {"hosts.yml": HOSTS.replace("198.51.100.22", "gpu2.cluster")},
     "hosts.yml", "mlops_node_address", "expected an IP address, got str 'gpu2.cluster'"),
    ("connection-choices", {"hosts.yml": add_all_var(HOSTS, "ansible_connection: sshh")},
     "hosts.yml", "ansible_connection",
     "expected one of ssh, local, paramiko, smart, podman, docker, containers.podman.podman, "
     "community.docker.docker, got str 'sshh' (did you mean 'ssh'?)"),
    ("port-out-of-range", {"hosts.yml": add_host_var(HOSTS, "ansible_port: 70000")},
     "hosts.yml", "ansible_port", "expected a port number (int 1-65535), got int 70000"),
    ("admin-cidr-host-bits",
     {"hosts.yml": HOSTS, "group_vars/all.yml": "---\nmlops_admin_cidrs: [192.0.2.1/24]\n"},
     "all.yml", "mlops_admin_cidrs[0]", "(host bits set)"),
    ("unknown-variable",
     {"hosts.yml": HOSTS, "group_vars/all.yml": "---\nbase_extra_ca_certificate: []\n"},
     "all.yml", "base_extra_ca_certificate",
     "unknown variable 'base_extra_ca_certificate' (did you mean "
     "'base_extra_ca_certificates'?)"),
    ("unknown-host-variable",
     {"hosts.yml": HOSTS, "host_vars/gpu1.yml": "---\nmlops_node_adress: 198.51.100.9\n"},
     "gpu1.yml", "mlops_node_adress", "(did you mean 'mlops_node_address'?)"),
    ("invalid-variable-name", {"hosts.yml": add_all_var(HOSTS, "base-apt-proxy: ''")},
     "hosts.yml", "base-apt-proxy", "invalid variable name"),
    ("repeated-key", {"hosts.yml": add_host_var(HOSTS, "ansible_host: 192.0.2.29")},
     "hosts.yml", "ansible_host", "repeated key (first at line"),
    ("group-cycle",
     {"hosts.yml": HOSTS + "    control_plane:\n      children:\n        mlflow:\n"
                           "          children:\n            control_plane:\n"},
     "hosts.yml", "control_plane", "groups nest in a cycle"),
    ("all-as-child", {"hosts.yml": HOSTS + "    all:\n"},
     "hosts.yml", "all", "'all' cannot be a child group"),
    ("vault-without-password",
     {"hosts.yml": add_all_var(HOSTS, "ansible_become_password: " + inline_vault("s3cret"))},
     "hosts.yml", "ansible_become_password", NO_VAULT_PASSWORD),
    ("vault-file-without-password",
     {"hosts.yml": HOSTS, "group_vars/all/vault.yml": vault_text("vault_x: s3cret\n")},
     "vault.yml", "(whole file)", NO_VAULT_PASSWORD),
    ("no-host-in-the-directory", {"site/README": ""},
     "README", "hosts", "no host in"),
    ("tang-url-scheme",
     {"hosts.yml": HOSTS, "group_vars/all.yml": TANG.format("tang.example.internal:7500")},
     "all.yml", "disk_encryption_tang_servers[0].url",
     "expected an http:// or https:// URL such as http://192.0.2.5:7500, got str "
     "'tang.example.internal:7500' (scheme is not http or https)"),
    ("tang-url-port",
     {"hosts.yml": HOSTS, "group_vars/all.yml": TANG.format("http://192.0.2.5:99999")},
     "all.yml", "disk_encryption_tang_servers[0].url", "(bad port)"),
    ("tang-url-host",
     {"hosts.yml": HOSTS, "group_vars/all.yml": TANG.format("https://tang_1/")},
     "all.yml", "disk_encryption_tang_servers[0].url", "(no valid host)"),
    ("tang-threshold-too-high",
     {"hosts.yml": HOSTS,
      "group_vars/all.yml": TANG.format("http://192.0.2.5") + "disk_encryption_tang_threshold: 2\n"},
     "all.yml", "disk_encryption_tang_threshold",
     "expected 1 to 1 (the number of disk_encryption_tang_servers), got 2"),
    ("tang-without-escrow",
     {"hosts.yml": HOSTS,
      "group_vars/all.yml": TANG.format("http://192.0.2.5") + "disk_encryption_escrow: false\n"},
     "all.yml", "disk_encryption_escrow", "expected true while disk_encryption_tang_servers is set"),
]


@pytest.mark.parametrize(("files", "file", "key", "text"),
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_inventory(tmp_path: Path, files: dict[str, str], file: str, key: str,
                       text: str) -> None:
    site = write_site(tmp_path / "site", files)
    find(problems_of(site), file, key, text)


# Cases needing role options that the base role does not have (roles_dir=demo_roles).
DEMO_BAD = [
    ("required-missing", DEMO_HOSTS.replace("    demo_token: abc123\n", ""),
     "demo_token", "required by role 'demo': expected str"),
    ("port-convention", add_all_var(DEMO_HOSTS, "demo_listen_port: 0"),
     "demo_listen_port", "expected a port number (int 1-65535), got int 0"),
    ("ports-convention", add_all_var(DEMO_HOSTS, "demo_extra_ports: [80, 99999]"),
     "demo_extra_ports[1]", "expected a port number (int 1-65535), got int 99999"),
    ("cidr-convention-no-prefix", add_all_var(DEMO_HOSTS, "demo_pod_cidr: 10.42.0.0"),
     "demo_pod_cidr", "expected a CIDR network such as 192.0.2.0/24, got str '10.42.0.0'"),
    ("cidr-convention-host-bits", add_all_var(DEMO_HOSTS, "demo_pod_cidr: 10.42.0.1/16"),
     "demo_pod_cidr", "(host bits set)"),
    ("cidrs-convention", add_all_var(DEMO_HOSTS, "demo_allowed_cidrs: [10.0.0.0/8, nope]"),
     "demo_allowed_cidrs[1]", "expected a CIDR network"),
    ("choices", add_all_var(DEMO_HOSTS, "demo_mode: fsat"),
     "demo_mode", "expected one of fast, safe, got str 'fsat' (did you mean 'fast'?)"),
    ("suboption-unknown", add_all_var(DEMO_HOSTS, "demo_settings: {sise: 1}"),
     "demo_settings.sise", "unknown key 'sise': expected one of size (did you mean 'size'?)"),
    ("suboption-type", add_all_var(DEMO_HOSTS, "demo_settings: {size: big}"),
     "demo_settings.size", "expected int, got str 'big'"),
    ("vault-for-int", add_all_var(DEMO_HOSTS, "demo_listen_port: " + inline_vault("port")),
     "demo_listen_port", "expected a port number (int 1-65535), got vault-encrypted str"),
    ("bool-word", add_all_var(DEMO_HOSTS, "demo_enabled: maybe"),
     "demo_enabled", "expected bool (true or false), got str 'maybe'"),
    ("int-word", add_all_var(DEMO_HOSTS, "demo_listen_port: http"),
     "demo_listen_port", "expected a port number (int 1-65535), got str 'http'"),
    ("list-element-type", add_all_var(DEMO_HOSTS, "demo_extra_ports: [80, eighty]"),
     "demo_extra_ports[1]", "expected a port number (int 1-65535), got str 'eighty'"),
    ("secret-not-shown", add_all_var(DEMO_HOSTS, "demo_pin_token: 1234-5678"),
     "demo_pin_token", "expected int, got str"),
]


@pytest.mark.parametrize(("hosts", "key", "text"),
                         [case[1:] for case in DEMO_BAD], ids=[case[0] for case in DEMO_BAD])
def test_bad_role_variables(tmp_path: Path, demo_roles: Path, hosts: str, key: str,
                            text: str) -> None:
    site = write_site(tmp_path / "site", {"hosts.yml": hosts, ".pw": "pw\n"})
    problems = problems_of(site, roles_dir=demo_roles, vault_password_file=site / ".pw")
    find(problems, "hosts.yml", key, text)


def test_wrong_vault_password(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {
        "hosts.yml": add_all_var(HOSTS, "ansible_become_password: " + inline_vault("s3cret")),
        "group_vars/gpu_workers.yml": vault_text("---\nbase_apt_proxy: ''\n"),
        "wrong": "not-pw\n",
    })
    problems = problems_of(site, vault_password_file=site / "wrong")
    find(problems, "hosts.yml", "ansible_become_password", BAD_VAULT_PASSWORD)
    find(problems, "gpu_workers.yml", "(whole file)", BAD_VAULT_PASSWORD)


def test_missing_vault_password_file(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {"hosts.yml": HOSTS})
    find(problems_of(site, vault_password_file=tmp_path / "nope"),
         "nope", "--vault-password-file", "expected a file holding the vault password")


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    hosts = HOSTS.replace("gpu_workers:", "gpu_worker:")
    hosts = hosts.replace("          ansible_host: 192.0.2.22\n", "")
    hosts = add_all_var(hosts, "ansible_become: 'maybe'")
    site = write_site(tmp_path / "site", {
        "hosts.yml": hosts,
        "group_vars/all.yml": "---\nbase_ntp_server: [ntp.example.com]\nbase_apt_cache_valid_time: soon\n",
        "host_vars/gpu1.yml": "---\nansible_port: 0\n",
    })
    problems = problems_of(site)
    find(problems, "hosts.yml", "gpu_worker", "unknown group")
    find(problems, "hosts.yml", "ansible_become", "expected bool")
    find(problems, "all.yml", "base_ntp_server", "did you mean 'base_ntp_servers'?")
    find(problems, "all.yml", "base_apt_cache_valid_time", "expected int, got str 'soon'")
    find(problems, "gpu1.yml", "ansible_port", "expected a port number")
    assert len(problems) == 5, "\n".join(map(str, problems))


def test_problem_names_file_line_host_and_key(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {"hosts.yml": add_host_var(HOSTS, "ansible_port: x")})
    (problem,) = problems_of(site)
    assert problem == Problem(str(site / "hosts.yml"), "host 'gpu1'", "ansible_port",
                              "expected a port number (int 1-65535), got str 'x'", 9)
    assert str(problem) == (f"{site / 'hosts.yml'}:9: host 'gpu1': ansible_port: "
                            "expected a port number (int 1-65535), got str 'x'")
    assert str(Problem("f.yml", "inventory", "all", "x")) == "f.yml: inventory: all: x"


def test_secret_values_stay_out_of_problems(tmp_path: Path, demo_roles: Path) -> None:
    site = write_site(tmp_path / "site", {
        "hosts.yml": add_all_var(DEMO_HOSTS, "demo_pin_token: 1234-5678"),
    })
    (problem,) = problems_of(site, roles_dir=demo_roles)
    assert problem.key == "demo_pin_token"
    assert "1234-5678" not in str(problem)


# --------------------------------------------------------------------------- valid inputs

def test_example_site_is_valid() -> None:
    inv = load(EXAMPLE, vault_password_file=EXAMPLE_VAULT)
    assert isinstance(inv, Site)
    assert inv.path == EXAMPLE / "hosts.yml"
    assert inv.site_dir == EXAMPLE
    assert inv.hosts == ["cp1", "cpu1", "gpu1", "gpu2"]
    assert inv.groups["all"] == inv.hosts
    assert inv.groups["gpu_workers"] == ["gpu1", "gpu2"]
    assert inv.groups["mlflow"] == ["cp1"]
    assert inv.host_groups("cp1") == ["control_plane", "mlflow", "monitoring"]
    cp1 = inv.hostvars("cp1")
    assert cp1["ansible_host"] == "192.0.2.11"
    assert cp1["ansible_user"] == "admin"
    assert cp1["ansible_become"] is True
    assert cp1["mlops_admin_cidrs"] == ["192.0.2.0/24"]
    assert cp1["base_extra_ca_certificates"] == []
    # the MLflow secrets come from the vault file of group mlflow, through vault_* variables
    assert cp1["mlflow_admin_password"] == "{{ vault_mlflow_admin_password }}"
    assert cp1["vault_mlflow_admin_password"] in inv.secrets()
    assert "vault_mlflow_db_password" not in inv.hostvars("gpu1")


def test_role_vars_resolve_templates_of_os_vars_files() -> None:
    """What the checks read: a role's vars/Debian.yml value with a template (PostgreSQL's config
    directory names the cluster) is resolved as include_vars resolves it, and so is a vars/main.yml
    value built on it."""
    inv = load(EXAMPLE, vault_password_file=EXAMPLE_VAULT)
    for release, version in (("12", "15"), ("13", "17")):  # the release's file after the family's
        seen = inv.role_vars("cp1", facts={"distribution": "Debian", "os_family": "Debian",
                                           "distribution_major_version": release})
        assert seen["postgresql_os_config_dir"] == f"/etc/postgresql/{version}/{seen['postgresql_cluster_name']}"
        assert seen["postgresql_conf_file"] == f"{seen['postgresql_os_config_dir']}/conf.d/60-mlops-provision.conf"
        assert seen["postgresql_os_service"] == f"postgresql@{version}-main.service"


def test_role_vars_template_defaults_that_read_other_hosts() -> None:
    """As in a playbook run, `hostvars` is there: a default built from other hosts' variables
    (monitoring_server_addresses: the monitoring servers' node addresses) is templated on every
    host, the servers' own and the others', never left as its template text."""
    inv = load(EXAMPLE, vault_password_file=EXAMPLE_VAULT)
    facts = {"distribution": "Debian", "os_family": "Debian", "distribution_major_version": "13"}
    servers = inv.role_vars("cp1", facts=facts)["monitoring_server_hosts"]
    wanted = [str(inv.hostvars(h).get("mlops_node_address") or inv.hostvars(h)["ansible_host"]) for h in servers]
    assert servers and wanted
    for host in inv.hosts:
        assert inv.role_vars(host, facts=facts)["monitoring_server_addresses"] == wanted, host


def test_example_uses_documentation_addresses() -> None:
    import ipaddress

    inv = load(EXAMPLE, vault_password_file=EXAMPLE_VAULT)
    docs = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24",
                                              "203.0.113.0/24")]
    for host in inv.hosts:
        hv = inv.hostvars(host)
        for var in ("ansible_host", "mlops_node_address"):
            assert any(ipaddress.ip_address(hv[var]) in net for net in docs), (host, var)


def test_sandbox_style_inventory_is_valid(tmp_path: Path) -> None:
    """All hosts on 127.0.0.1, told apart by port, vault-encrypted MLflow secrets, as `sandbox up`
    writes them."""
    nodes = {"cp1": 2201, "gpu1": 2202, "cpu1": 2203}
    inventory = {"all": {
        "hosts": {n: {"ansible_host": "127.0.0.1", "ansible_port": port,
                      "mlops_node_address": f"10.88.0.{i + 10}"}
                  for i, (n, port) in enumerate(nodes.items())},
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": "/tmp/key",
                 "ansible_ssh_common_args": "-o StrictHostKeyChecking=no",
                 "base_extra_ca_certificates": ["/etc/ssl/a.pem"]},
        "children": {"control_plane": {"hosts": {"cp1": None}},
                     "mlflow": {"hosts": {"cp1": None}, "vars": MLFLOW_SECRETS},
                     "gpu_workers": {"hosts": {"gpu1": None}},
                     "cpu_workers": {"hosts": {"cpu1": None}}},
    }}
    path = tmp_path / "inventory.yml"
    path.write_text("# header comment\n" + yaml.dump(inventory, Dumper=VaultDumper, sort_keys=False))
    (tmp_path / ".pw").write_text("pw\n")
    inv = load(path, vault_password_file=tmp_path / ".pw")
    assert inv.path == path
    assert inv.hostvars("gpu1")["ansible_port"] == 2202
    assert inv.groups["ungrouped"] == []


def test_hostvars_precedence(tmp_path: Path) -> None:
    """Ansible's order: all inline < groups inline < group_vars/all < group_vars/<group>
    < host inline < host_vars; a child group's variables beat its parent's."""
    var = "base_apt_proxy"
    hosts = f"""\
---
all:
  vars:
    {var}: all-inline
    base_pip_proxy: all-inline
    base_pip_index_url: all-inline
    base_apt_mirror: all-inline
  children:
    control_plane:
      vars:
        {var}: cp-inline
        base_apt_mirror: cp-inline
        kubernetes_api_endpoint: k8s-api.example.internal
      hosts:
        cp1:
          ansible_host: 192.0.2.11
          {var}: host-inline
      children:
        mlflow:
          vars:
            base_apt_mirror: mlflow-inline
            mlflow_admin_password: {inline_vault('Tr0ub4dor-and-3', indent=14)}
            mlflow_db_password: {inline_vault('db-s3cret', indent=14)}
          hosts:
            mlf1:
              ansible_host: 192.0.2.12
    gpu_workers:
      vars:
        base_pip_proxy: gpu-inline
        base_pip_index_url: gpu-inline
      hosts:
        gpu1:
          ansible_host: 192.0.2.21
"""
    site = write_site(tmp_path, {
        "hosts.yml": hosts,
        "group_vars/all.yml": f"---\n{var}: all-file\nbase_pip_proxy: all-file\n",
        "group_vars/control_plane/a.yml": f"---\n{var}: cp-file-a\n",
        "group_vars/control_plane/b.yml": f"---\n{var}: cp-file-b\n",
        "host_vars/cp1/main.yml": f"---\n{var}: host-file\n",
        ".pw": "pw\n",
    })
    inv = load(site, vault_password_file=site / ".pw")
    assert inv.hostvars("cp1")[var] == "host-file"
    assert inv.hostvars("mlf1")[var] == "cp-file-b"  # later file in the group's directory wins
    assert inv.hostvars("gpu1")[var] == "all-file"
    # an inline group variable loses to group_vars/all, as in Ansible
    assert inv.hostvars("gpu1")["base_pip_proxy"] == "all-file"
    assert inv.hostvars("gpu1")["base_pip_index_url"] == "gpu-inline"
    assert inv.hostvars("cp1")["base_pip_index_url"] == "all-inline"
    # child (mlflow) over parent (control_plane)
    assert inv.hostvars("mlf1")["base_apt_mirror"] == "mlflow-inline"
    assert inv.hostvars("cp1")["base_apt_mirror"] == "cp-inline"
    assert inv.host_groups("mlf1") == ["control_plane", "mlflow"]
    assert inv.groups["control_plane"] == ["cp1", "mlf1"]


def test_vault_values_decrypt(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {
        "hosts.yml": add_all_var(HOSTS, "ansible_become_password: " + inline_vault("s3cret")),
        "group_vars/gpu_workers/vault.yml": vault_text("---\nvault_mirror_token: t0ken\n"),
        "group_vars/gpu_workers/main.yml": "---\nbase_pip_index_url: "
                                           "\"https://x:{{ vault_mirror_token }}@pypi.example\"\n",
        ".pw": "pw\n",
    })
    inv = load(site, vault_password_file=site / ".pw")
    hv = inv.hostvars("gpu2")
    assert hv["ansible_become_password"] == "s3cret"
    assert isinstance(hv["ansible_become_password"], str)
    assert hv["vault_mirror_token"] == "t0ken"
    assert {"s3cret", "t0ken"} <= inv.secrets()
    assert not any("{{" in s for s in inv.secrets())


def test_vault_password_file_from_environment(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    site = write_site(tmp_path / "site", {
        "hosts.yml": add_all_var(HOSTS, "ansible_password: " + inline_vault("s3cret")),
        ".pw": "pw\n",
    })
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(site / ".pw"))
    assert load(site).hostvars("gpu1")["ansible_password"] == "s3cret"


def test_vault_password_script(tmp_path: Path) -> None:
    """An executable password file is run and its output is the password, as in Ansible."""
    site = write_site(tmp_path / "site", {
        "hosts.yml": add_all_var(HOSTS, "ansible_password: " + inline_vault("s3cret")),
        "pw.sh": "#!/bin/sh\necho pw\n",
    })
    (site / "pw.sh").chmod(0o755)
    inv = load(site, vault_password_file=site / "pw.sh")
    assert inv.hostvars("gpu1")["ansible_password"] == "s3cret"


def test_yaml_anchors_merge_keys_and_unsafe(tmp_path: Path) -> None:
    hosts = """\
---
all:
  vars:
    base_ntp_servers: &ntp [ntp1.example.com]
    base_ntp_pools: *ntp
    ansible_ssh_common_args: !unsafe "-o ProxyCommand={{ no template }}"
  children:
    gpu_workers:
      hosts:
        gpu1: &gpu
          ansible_user: admin
          ansible_host: 192.0.2.21
        gpu2:
          <<: *gpu
          ansible_host: 192.0.2.22
"""
    inv = load(write_site(tmp_path, {"hosts.yml": hosts}))
    assert inv.hostvars("gpu2")["ansible_user"] == "admin"
    assert inv.hostvars("gpu2")["ansible_host"] == "192.0.2.22"
    assert inv.hostvars("gpu1")["base_ntp_pools"] == ["ntp1.example.com"]


def test_secrets_include_password_and_token_variables(tmp_path: Path) -> None:
    hosts = add_all_var(HOSTS, "ansible_become_pass: plain-sudo")
    hosts = add_all_var(hosts, "vault_registry_token: tok-123")
    hosts = add_all_var(hosts, "ansible_ssh_pass: '{{ vault_ssh }}'")
    site = write_site(tmp_path / "site", {"hosts.yml": hosts})
    secrets = load(site).secrets()
    assert {"plain-sudo", "tok-123"} <= secrets
    assert "{{ vault_ssh }}" not in secrets
    assert "admin" not in secrets


def test_templates_and_free_prefixes_are_accepted(tmp_path: Path, demo_roles: Path) -> None:
    hosts = add_all_var(DEMO_HOSTS, "demo_listen_port: '{{ 8000 + 80 }}'")
    hosts = add_all_var(hosts, "demo_enabled: \"{{ inventory_hostname == 'gpu1' }}\"")
    hosts = add_all_var(hosts, "demo_extra_ports: ['{{ demo_listen_port }}', 9090]")
    hosts = add_all_var(hosts, "demo_pod_cidr: 10.42.0.0/16")
    hosts = add_all_var(hosts, "vault_anything: [1, 2]")
    hosts = add_all_var(hosts, "ansible_ssh_extra_args: -v")
    site = write_site(tmp_path / "site", {"hosts.yml": hosts})
    inv = load(site, roles_dir=demo_roles)
    assert inv.hostvars("gpu1")["demo_extra_ports"][1] == 9090


def test_local_connection_needs_no_address(tmp_path: Path) -> None:
    hosts = HOSTS + "    control_plane:\n      hosts:\n        localhost:\n" \
                    "          ansible_connection: local\n"
    inv = load(write_site(tmp_path, {"hosts.yml": hosts}))
    assert "ansible_host" not in inv.hostvars("localhost")


def test_host_ranges_and_ungrouped_hosts(tmp_path: Path) -> None:
    hosts = """\
---
all:
  hosts:
    admin1:
      ansible_connection: local
  children:
    gpu_workers:
      hosts:
        gpu[1:3]:
          ansible_host: gpu.example.com
      children:
    cpu_workers:
      hosts:
        cpu1.example.com:2222:
          ansible_host: cpu1.example.com
"""
    # the three gpu hosts share one address and port: that is a duplicate
    problems = problems_of(write_site(tmp_path, {"hosts.yml": hosts}))
    assert [(p.where, p.key) for p in problems] == [("host 'gpu2'", "ansible_host"),
                                                   ("host 'gpu3'", "ansible_host")]
    local = hosts.replace("          ansible_host: gpu.example.com\n",
                          "          ansible_connection: local\n")
    inv = load(write_site(tmp_path, {"hosts.yml": local}))
    assert inv.groups["gpu_workers"] == ["gpu1", "gpu2", "gpu3"]
    assert inv.groups["ungrouped"] == ["admin1"]
    assert inv.host_groups("admin1") == ["ungrouped"]
    assert inv.hostvars("cpu1.example.com")["ansible_port"] == 2222


def test_site_vars_are_typed() -> None:
    for name, spec in SITE_VARS.items():
        assert spec["type"] in {"str", "int", "bool", "list", "dict", "path", "float", "raw"}, name


# --------------------------------------------------------------------------- group mlflow

# HOSTS plus an MLflow host whose group gives it the secrets it needs (``vars`` is replaced).
MLFLOW_HOSTS = HOSTS + """\
    mlflow:
      hosts:
        mlf1:
          ansible_host: 192.0.2.31
          mlops_node_address: 198.51.100.31
      vars:
{vars}
"""


def mlflow_site(tmp_path: Path, *lines: str, admin: str = "Tr0ub4dor-and-3", db: str | None = "db-s3cret",
                files: dict[str, str] | None = None) -> Path:
    """A site with group mlflow; ``admin``/``db`` None leave a secret out, lines add group vars."""
    body = [f"mlflow_admin_password: {inline_vault(admin, indent=10)}"] if admin is not None else []
    body += [f"mlflow_db_password: {inline_vault(db, indent=10)}"] if db is not None else []
    body += list(lines)
    text = MLFLOW_HOSTS.format(vars="\n".join("        " + b for b in body) or "        {}")
    return write_site(tmp_path, {"hosts.yml": text, ".pw": "pw\n", **(files or {})})


def mlflow_problems(site: Path) -> list[Problem]:
    return problems_of(site, vault_password_file=site / ".pw")


def test_mlflow_secrets_valid(tmp_path: Path) -> None:
    site = mlflow_site(tmp_path)
    inv = load(site, vault_password_file=site / ".pw")
    assert inv.hostvars("mlf1")["mlflow_admin_password"] == "Tr0ub4dor-and-3"
    assert "Tr0ub4dor-and-3" in inv.secrets() and "db-s3cret" in inv.secrets()


def test_mlflow_secrets_required_for_group_mlflow_only(tmp_path: Path) -> None:
    problems = mlflow_problems(mlflow_site(tmp_path, admin=None, db=None))
    for key in ("mlflow_admin_password", "mlflow_db_password"):
        p = find(problems, "hosts.yml", key, "required for hosts in group 'mlflow' (role mlflow)")
        assert p.where == "host 'mlf1'" and "ansible-vault encrypt_string" in p.expected
    assert {p.where for p in problems} == {"host 'mlf1'"}, "hosts outside group mlflow need no secrets"


def test_mlflow_plain_text_password_is_rejected_without_showing_it(tmp_path: Path) -> None:
    site = mlflow_site(tmp_path, "mlflow_admin_password: Plain-Text-Passw0rd", admin=None)
    p = find(mlflow_problems(site), "hosts.yml", "mlflow_admin_password", "is plain text")
    assert p.where == "group 'mlflow'" and p.line is not None
    assert "Plain-Text-Passw0rd" not in str(p)


@pytest.mark.parametrize(("password", "user", "why"), [
    ("password1234", None, "a well-known password"),
    ("PASSWORD1234", None, "a well-known password"),
    ("aaaaaaaaaaaaaaaa", None, "a well-known password"),
    ("short-pw", None, "8 characters"),
    ("mlflow-superuser", "mlflow-superuser", "the same as the user name"),
])
def test_mlflow_weak_admin_password(tmp_path: Path, password: str, user: str | None, why: str) -> None:
    lines = [f"mlflow_admin_username: {user}"] if user else []
    site = mlflow_site(tmp_path, *lines, admin=password)
    p = find(mlflow_problems(site), "hosts.yml", "mlflow_admin_password", f"is too weak ({why})")
    assert "at least 12 characters" in p.expected
    assert password not in str(p) and password.lower() not in str(p).lower()


def test_mlflow_secret_through_a_vault_file(tmp_path: Path) -> None:
    refs = ['mlflow_admin_password: "{{ vault_admin }}"', 'mlflow_db_password: "{{ vault_db }}"']
    vault = vault_text("---\nvault_admin: Tr0ub4dor-and-3\nvault_db: db-s3cret\n")
    site = mlflow_site(tmp_path, *refs, admin=None, db=None, files={"group_vars/mlflow/vault.yml": vault})
    assert load(site, vault_password_file=site / ".pw").hostvars("mlf1")["vault_db"] == "db-s3cret"


def test_mlflow_secret_through_a_plain_or_missing_variable(tmp_path: Path) -> None:
    refs = ['mlflow_admin_password: "{{ vault_admin }}"', 'mlflow_db_password: "{{ vault_db }}"']
    plain = "---\nvault_admin: Tr0ub4dor-and-3\n"
    site = mlflow_site(tmp_path, *refs, admin=None, db=None, files={"group_vars/mlflow/vault.yml": plain})
    problems = mlflow_problems(site)
    find(problems, "vault.yml", "mlflow_admin_password", "is plain text")
    find(problems, "hosts.yml", "mlflow_db_password", "refers to 'vault_db', which is not set")


def test_mlflow_weak_password_through_a_vault_file(tmp_path: Path) -> None:
    vault = vault_text("---\nvault_admin: password1234\n")
    site = mlflow_site(tmp_path, 'mlflow_admin_password: "{{ vault_admin }}"', admin=None,
                       files={"group_vars/mlflow/vault.yml": vault})
    find(mlflow_problems(site), "vault.yml", "mlflow_admin_password", "is too weak")


@pytest.mark.parametrize(("line", "key", "other"), [
    ("mlflow_port: 5432", "mlflow_port", "postgresql_port (role postgresql)"),
    ("postgresql_port: 5000", "postgresql_port", "mlflow_port (role mlflow)"),
    ("mlflow_https_port: 22", "mlflow_https_port", "mlops_ssh_port (role mlops)"),
    ("mlflow_http_port: 443", "mlflow_http_port", "mlflow_https_port (role mlflow)"),
])
def test_port_clash_between_roles_of_a_host(tmp_path: Path, line: str, key: str, other: str) -> None:
    p = find(mlflow_problems(mlflow_site(tmp_path, line)), "hosts.yml", key, other)
    assert "on host 'mlf1'" in p.expected and "its own port" in p.expected
    assert p.where == "group 'mlflow'" and p.line is not None


def test_port_clash_only_among_roles_the_host_runs(tmp_path: Path) -> None:
    # gpu1 and gpu2 run no PostgreSQL: mlflow_port 5432 set for every host clashes on mlf1 only
    site = mlflow_site(tmp_path)
    hosts = site / "hosts.yml"
    hosts.write_text(add_all_var(hosts.read_text(), "mlflow_port: 5432"))
    problems = mlflow_problems(site)
    assert [p.key for p in problems] == ["mlflow_port"]
    assert "on host 'mlf1'" in problems[0].expected


def test_same_service_ports_and_client_ports_are_no_clash(tmp_path: Path) -> None:
    site = mlflow_site(tmp_path, "mlops_ssh_port: 2222", "mlflow_db_port: 5432")
    load(site, vault_password_file=site / ".pw")
    site = mlflow_site(tmp_path / "split", "firewall_ssh_port: 2222", "os_hardening_ssh_port: 2222",
                       "mlflow_db_port: 5432")
    assert load(site, vault_password_file=site / ".pw").hostvars("mlf1")["mlflow_db_port"] == 5432


def test_mlflow_problems_all_reported_at_once(tmp_path: Path) -> None:
    site = mlflow_site(tmp_path, "mlflow_port: 5432", "mlflow_db_password: in-clear", admin="password1234", db=None)
    problems = mlflow_problems(site)
    assert {p.key for p in problems} == {"mlflow_admin_password", "mlflow_db_password", "mlflow_port"}


def test_data_dir_is_a_site_variable(tmp_path: Path) -> None:
    site = mlflow_site(tmp_path)
    hosts = site / "hosts.yml"
    hosts.write_text(add_all_var(hosts.read_text(), "mlops_data_dir: /srv/data"))
    assert load(site, vault_password_file=site / ".pw").hostvars("gpu1")["mlops_data_dir"] == "/srv/data"
    hosts.write_text(add_all_var(MLFLOW_HOSTS.format(vars="        {}"), "mlops_data_di: /srv/data"))
    find(problems_of(site, vault_password_file=site / ".pw"), "hosts.yml", "mlops_data_di",
         "(did you mean 'mlops_data_dir'?)")
