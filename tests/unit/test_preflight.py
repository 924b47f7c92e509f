"""The preflight of playbooks/site.yml (issue: every rule enforced wherever the playbooks run): a
plain ``ansible-playbook -i BAD playbooks/site.yml`` fails in its first play with the lines
``mlops-provision validate`` prints for BAD, and no task runs on any inventory host. Also: how the
preflight finds the site (Molecule's inventory directory, AWX's inventory script), and what an
AWX/AAP project needs (collections/requirements.yml, execution-environment.yml).

The hosts of these sites are 127.0.0.1 at ports nothing listens on, so a play that reached them
would fail there; a callback plugin records every play, task start and result, and each test
proves from it that the only task that ran is the preflight, on localhost."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from mlops_provision import paths
from mlops_provision.runner import mitogen_strategy
from mlops_provision.site import load, preflight
from mlops_provision.site.load import SECRET_HOST
from tests.conftest import example_copy

ROOT = paths.project_root()
BIN = Path(sys.executable).parent
SITE_YML = ROOT / "playbooks" / "site.yml"
EXAMPLE = ROOT / "inventories" / "example"
EXAMPLE_VAULT = EXAMPLE / ".vault-password"
PREFLIGHT_PLAY = "Preflight"
PREFLIGHT_TASK = "Check the site as mlops-provision validate does"

RECORDER = '''\
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    """Every play, task start and task result, as JSON lines in $RECORDER_FILE."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "recorder"
    CALLBACK_NEEDS_ENABLED = True

    def _log(self, **event):
        with open(os.environ["RECORDER_FILE"], "a") as out:
            out.write(json.dumps(event, default=str) + "\\n")

    def v2_playbook_on_play_start(self, play):
        self._log(event="play", name=play.get_name())

    def v2_runner_on_start(self, host, task):
        self._log(event="start", host=host.get_name(), task=task.get_name(),
                  delegate_to=task.delegate_to)

    def _result(self, kind, result):
        delegated = result._result.get("_ansible_delegated_vars") or {}
        self._log(event=kind, host=result._host.get_name(), task=result._task.get_name(),
                  delegated=result._task.delegate_to, address=delegated.get("ansible_host"),
                  connection=delegated.get("ansible_connection"), msg=result._result.get("msg"))

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)
'''


# --------------------------------------------------------------------------- sites

def closed_ports(n: int) -> list[int]:
    """``n`` local ports nothing listens on (bound, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def local_site(root: Path) -> Path:
    """The example site (hosts.yml, group_vars/) with secrets of its own (the example's are
    published: validate refuses them), its vault password beside it (:func:`site_vault`), its
    hosts at 127.0.0.1 on closed ports."""
    root.parent.mkdir(parents=True, exist_ok=True)
    assert example_copy(root) == site_vault(root)
    text = (root / "hosts.yml").read_text()
    hosts = re.findall(r"ansible_host: 192\.0\.2\.\d+", text)
    ports = iter(closed_ports(len(hosts)))
    text = re.sub(r"ansible_host: 192\.0\.2\.\d+",
                  lambda _: f"ansible_host: 127.0.0.1\n          ansible_port: {next(ports)}", text)
    (root / "hosts.yml").write_text(text)
    return root


def site_vault(site: Path) -> Path:
    """The vault password file of a :func:`local_site`."""
    return site.parent / f"{site.name}-vault-password"


def append(rel: str, text: str):
    def edit(site: Path) -> None:
        (site / rel).write_text((site / rel).read_text() + text)
    return edit


def replace(rel: str, old: str, new: str):
    def edit(site: Path) -> None:
        text = (site / rel).read_text()
        assert old in text, (rel, old)
        (site / rel).write_text(text.replace(old, new, 1))
    return edit


def same_port(site: Path) -> None:
    """gpu2 at gpu1's address and port."""
    text = (site / "hosts.yml").read_text()
    first, second = re.findall(r"ansible_port: (\d+)", text)[1:3]
    (site / "hosts.yml").write_text(text.replace(f"ansible_port: {second}", f"ansible_port: {first}"))


def inline_vault(plaintext: str, password: bytes) -> str:
    body = VaultLib([("default", VaultSecret(password))]).encrypt(plaintext).decode()
    return "!vault |\n" + "".join(f"  {line}\n" for line in body.splitlines())


MLFLOW_VARS = "group_vars/mlflow/main.yml"
DB_PASSWORD = 'mlflow_db_password: "{{ vault_mlflow_db_password }}"\n'

# (id, edit of the local example site, extra ansible-playbook arguments, or ["mitogen"]): one
# rule each, then the ways of running that could leave the preflight out
BAD = [
    ("port-clash-mlflow-https-22", append(MLFLOW_VARS, "mlflow_https_port: 22\n"), []),
    ("wrong-type", append("group_vars/all.yml", "base_apt_cache_valid_time: soon\n"), []),
    ("unknown-variable", append("group_vars/all.yml", "base_extra_ca_certificate: []\n"), []),
    ("missing-secret", replace(MLFLOW_VARS, DB_PASSWORD, ""), []),
    ("cidr-host-bits", replace("group_vars/all.yml", "  - 192.0.2.0/24\n", "  - 192.0.2.1/24\n"), []),
    ("kubeadm-minor-skip", append("group_vars/all.yml", "kubernetes_version: 1.33.1\n"
                                                        "kubernetes_current_version: 1.31.4\n"), []),
    ("two-control-planes-no-endpoint",
     replace("hosts.yml", "    control_plane:\n      hosts:\n",
             "    control_plane:\n      hosts:\n        gpu1:\n"), []),
    ("unknown-group", replace("hosts.yml", "    cpu_workers:\n", "    cpu_worker:\n"), []),
    ("duplicate-address", same_port, []),
    ("undecryptable-vault-value",
     replace(MLFLOW_VARS, DB_PASSWORD, "mlflow_db_password: " + inline_vault("db-s3cret", b"other")), []),
    # --limit and --tags LAYER leave no play of a layer without the preflight
    ("limit-and-tags", append(MLFLOW_VARS, "mlflow_https_port: 22\n"), ["--limit", "gpu1", "--tags", "base"]),
    # the strategy `mlops-provision up` runs site.yml under (runner.mitogen_strategy)
    ("mitogen-strategy", append(MLFLOW_VARS, "mlflow_https_port: 22\n"), ["mitogen"]),
]


# --------------------------------------------------------------------------- runs

@dataclass
class Run:
    rc: int
    out: str
    events: list[dict] = field(default_factory=list)
    validate_rc: int | None = None
    validate_lines: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]


def ansible_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANSIBLE_", "MLOPS_", "MOLECULE_"))}
    (tmp / "callbacks").mkdir(parents=True, exist_ok=True)
    (tmp / "callbacks" / "recorder.py").write_text(RECORDER)
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
               ANSIBLE_CALLBACK_PLUGINS=str(tmp / "callbacks"), ANSIBLE_CALLBACKS_ENABLED="recorder",
               RECORDER_FILE=str(tmp / "events.jsonl"), COLUMNS="100000", **extra)
    return env


def playbook(tmp: Path, inventory: str, *args: str, book: Path = SITE_YML, **env: str) -> Run:
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", inventory, str(book), *args],
                          capture_output=True, text=True, timeout=300, env=ansible_env(tmp, **env))
    events_file = tmp / "events.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines()] \
        if events_file.is_file() else []
    return Run(proc.returncode, proc.stdout + proc.stderr, events)


def validate(tmp: Path, inventory: str, vault: Path | None) -> tuple[int, list[str]]:
    args = ["--vault-password-file", str(vault)] if vault else []
    proc = subprocess.run([str(BIN / "mlops-provision"), "validate", "-i", inventory, *args],
                          capture_output=True, text=True, timeout=300, env=ansible_env(tmp))
    return proc.returncode, (proc.stderr if proc.returncode else proc.stdout).splitlines()


def assert_no_host_touched(run: Run, outcome: str = "failed") -> None:
    """The preflight is the only task that started and gave a result, delegated to localhost;
    no later play started; nothing was unreachable."""
    assert [e["name"] for e in run.of("play")] == [PREFLIGHT_PLAY], run.out
    starts = run.of("start")
    assert [(e["task"], e["delegate_to"]) for e in starts] == [(PREFLIGHT_TASK, "localhost")], run.out
    results = [e for e in run.events if e["event"] in ("ok", "failed", "unreachable", "skipped")]
    assert [(e["event"], e["task"], e["delegated"], e["address"], e["connection"]) for e in results] == [
        (outcome, PREFLIGHT_TASK, "localhost", "localhost", "local")], run.out
    assert "UNREACHABLE" not in run.out and "PLAY [Base" not in run.out


def _bad_run(tmp: Path, edit, extra: list[str]) -> Run:
    site = local_site(tmp / "site")
    edit(site)
    inventory = str(site / "hosts.yml")
    env = mitogen_strategy() if extra == ["mitogen"] else {}
    args = [] if extra == ["mitogen"] else extra
    run = playbook(tmp, inventory, "--vault-password-file", str(site_vault(site)), *args, **env)
    run.validate_rc, run.validate_lines = validate(tmp, inventory, site_vault(site))
    return run


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every case of BAD, two at a time (one ansible-playbook start costs a few seconds)."""
    root = tmp_path_factory.mktemp("preflight")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case: pool.submit(_bad_run, root / case, edit, extra) for case, edit, extra in BAD}
        return {case: f.result() for case, f in futures.items()}


@pytest.mark.parametrize("case", [c[0] for c in BAD])
def test_ansible_playbook_refuses_what_validate_refuses(bad_runs: dict[str, Run], case: str) -> None:
    run = bad_runs[case]
    assert run.validate_rc == 2, run.validate_lines
    assert run.validate_lines[0].startswith("inventory ") and len(run.validate_lines) > 1
    assert run.rc != 0, run.out
    (failed,) = run.of("failed")
    assert failed["msg"].splitlines() == run.validate_lines, "the task's message is validate's"
    for line in run.validate_lines:
        assert line.strip() in run.out, line  # and the admin reads it, whatever the result format
    assert_no_host_touched(run)


def test_the_corpus_covers_distinct_rules(bad_runs: dict[str, Run]) -> None:
    keys = {re.split(r": ", line.strip())[2] for run in bad_runs.values() for line in run.validate_lines[1:]}
    assert len(keys) >= 8, keys


# --------------------------------------------------------------------------- other sources

def preflight_alone(tmp: Path, inventory: str, *args: str, **env: str) -> Run:
    """The preflight play as site.yml has it, alone (after a valid site, the layers would go on
    to the hosts)."""
    book = tmp / "preflight.yml"
    book.write_text(yaml.safe_dump(yaml.safe_load(SITE_YML.read_text())[:1], sort_keys=False))
    return playbook(tmp, inventory, *args, book=book,
                    ANSIBLE_ACTION_PLUGINS=str(ROOT / "playbooks" / "action_plugins"), **env)


def test_valid_site_passes_with_validates_line(tmp_path: Path) -> None:
    site = local_site(tmp_path / "site")
    inventory = str(site / "hosts.yml")
    run = preflight_alone(tmp_path, inventory, "--vault-password-file", str(site_vault(site)))
    assert run.rc == 0, run.out
    assert_no_host_touched(run, "ok")
    (ok,) = run.of("ok")
    rc, lines = validate(tmp_path, inventory, site_vault(site))
    assert rc == 0 and ok["msg"].splitlines() == lines


def test_undecryptable_vault_file_stops_ansible_before_any_task(tmp_path: Path) -> None:
    """A vars file that the vault password does not open: Ansible itself stops when it reads
    the variables of the preflight's host, before the task (its own message, not validate's)."""
    site = local_site(tmp_path / "site")
    (tmp_path / "wrong").write_text("not-the-password\n")
    run = playbook(tmp_path, str(site / "hosts.yml"), "--vault-password-file", str(tmp_path / "wrong"))
    assert run.rc != 0 and "Decryption failed" in run.out, run.out
    assert [e["name"] for e in run.of("play")] == [PREFLIGHT_PLAY]
    assert not [e for e in run.events if e["event"] != "play"], run.out
    rc, lines = validate(tmp_path, str(site / "hosts.yml"), tmp_path / "wrong")
    assert rc == 2 and any("vault.yml" in line and "cannot be decrypted" in line for line in lines)


def test_a_vault_password_file_in_the_inventory_directory_is_refused_unnamed(tmp_path: Path) -> None:
    """``-i DIR``: Ansible reads every file there as inventory; a vault password file next to
    hosts.yml becomes a host named after the password. The preflight refuses it as validate
    does, neither showing the password."""
    site = local_site(tmp_path / "site")
    shutil.copy(site_vault(site), site / "vault-password")
    password = site_vault(site).read_text().strip()
    run = playbook(tmp_path, str(site), "--vault-password-file", str(site / "vault-password"))
    assert run.rc != 0
    (failed,) = run.of("failed")
    assert failed["msg"].splitlines() == [
        f"inventory {site} is invalid: 1 problem(s)",
        f"  {site / 'vault-password'}: inventory: (inventory source): {SECRET_HOST}"], run.out
    assert password not in failed["msg"]  # (Ansible names the task's host itself: that one)
    assert_no_host_touched(run)
    rc, lines = validate(tmp_path, str(site), site / "vault-password")
    assert rc == 2 and lines == failed["msg"].splitlines() and password not in "\n".join(lines)
    # hidden, Ansible skips it: the site is valid
    (site / "vault-password").rename(site / ".vault-password")
    assert validate(tmp_path, str(site), site / ".vault-password")[0] == 0


def test_inventory_script_needs_the_site_named(tmp_path: Path) -> None:
    """AWX hands ansible-playbook its inventory as a script: the preflight cannot read it as a
    site; ``mlops_preflight_inventory`` names the site's inventory (relative to the project)."""
    site = local_site(tmp_path / "site")
    loaded = load(site / "hosts.yml", vault_password_file=site_vault(site))
    hosts = {group: {"hosts": members} for group, members in loaded.groups.items() if group != "all"}
    hosts["_meta"] = {"hostvars": {h: {k: loaded.hostvars(h)[k] for k in ("ansible_host", "ansible_port")}
                                   for h in loaded.hosts}}
    script = tmp_path / "awx" / "hosts"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({json.dumps(hosts)}))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    append(MLFLOW_VARS, "mlflow_https_port: 22\n")(site)

    unnamed = preflight.check([str(script)], [])
    assert not unnamed.ok and unnamed.lines[1] == f"  {script}: inventory: (script): {preflight.NAME_THE_SITE}"

    relative = os.path.relpath(site / "hosts.yml", ROOT)
    run = playbook(tmp_path, str(script), "--vault-password-file", str(site_vault(site)),
                   "-e", f"mlops_preflight_inventory={relative}")
    (failed,) = run.of("failed")
    rc, lines = validate(tmp_path, str(ROOT / relative), site_vault(site))
    assert rc == 2 and failed["msg"].splitlines() == lines
    assert_no_host_touched(run)


def test_named_site_must_hold_the_runs_hosts() -> None:
    secret = [("default", VaultSecret(EXAMPLE_VAULT.read_bytes().strip()))]
    result = preflight.check([str(EXAMPLE)], secret, hosts=["cp1", "gpu1", "rogue1"])
    assert not result.ok
    assert result.lines[1] == f"  {EXAMPLE}: inventory: (hosts): " + preflight.STRANGERS.format("rogue1")
    assert preflight.check([str(EXAMPLE)], secret, hosts=["cp1", "gpu1", "localhost"]).ok


def test_vault_secrets_come_from_ansible(monkeypatch: pytest.MonkeyPatch) -> None:
    """load() takes Ansible's (vault_id, VaultSecret) pairs; an empty list means no password,
    whatever ANSIBLE_VAULT_PASSWORD_FILE says (Ansible has read it already if it was set)."""
    from mlops_provision.site import NO_VAULT_PASSWORD, InventoryInvalid

    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(EXAMPLE_VAULT))
    secrets = [("other", VaultSecret(b"not-it")), ("prod", VaultSecret(EXAMPLE_VAULT.read_bytes().strip()))]
    site = load(EXAMPLE, vault_secrets=secrets)
    assert EXAMPLE_VAULT.read_text().strip() in site.secrets()
    with pytest.raises(InventoryInvalid) as info:
        load(EXAMPLE, vault_secrets=[])
    assert {p.key for p in info.value.problems} == {"(whole file)"}
    assert all(NO_VAULT_PASSWORD in p.expected for p in info.value.problems)


def test_host_list_source_is_not_a_site() -> None:
    result = preflight.check(["gpu1,gpu2,"], [])
    assert not result.ok and "(host list)" in result.text


# --------------------------------------------------------------------------- Molecule

def molecule_inventory(root: Path) -> Path:
    """The inventory directory Molecule writes for molecule/default (Molecule 26: the hosts file
    with its top-level groups and molecule_* variables, group_vars/ files without extension)."""
    scenario = ROOT / "molecule" / "default"
    config = yaml.safe_load(os.path.expandvars((scenario / "molecule.yml").read_text().replace(
        "${MOLECULE_SCENARIO_DIRECTORY}", str(scenario))))
    molecule_vars = {f"molecule_{name}": "{{ lookup('env', 'MOLECULE_" + name.upper() + "') }}"
                     for name in ("file", "ephemeral_directory", "scenario_directory", "instance_config")}
    molecule_vars.update(molecule_yml="{{ lookup('file', molecule_file) | from_yaml }}",
                         molecule_no_log="{{ lookup('env', 'MOLECULE_NO_LOG') or not "
                                         "molecule_yml.provisioner.log|default(False) | bool }}")
    inventory: dict = {"all": {"hosts": {}, "vars": molecule_vars}, "ungrouped": {"vars": {}}}
    for platform in config["platforms"]:
        # Molecule's default driver: ansible_connection_options() from create.yml's instance config
        node = {"ansible_host": "127.0.0.1", "ansible_port": 40022, "ansible_user": "root",
                "ansible_private_key_file": str(root / "id_ed25519"),
                "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"}
        inventory["all"]["hosts"][platform["name"]] = node
        for group in platform["groups"]:
            inventory.setdefault(group, {"hosts": {}})["hosts"][platform["name"]] = node
            inventory[group]["vars"] = molecule_vars
    root.mkdir(parents=True)
    (root / "ansible_inventory.yml").write_text(yaml.safe_dump(inventory))
    (root / "group_vars").mkdir()
    for group, values in config["provisioner"]["inventory"]["group_vars"].items():
        (root / "group_vars" / group).write_text(yaml.safe_dump(values))
    return root


def _molecule_check(tmp_path: Path) -> preflight.Result:
    inventory = molecule_inventory(tmp_path / "inventory")
    password = (ROOT / "molecule" / "default" / "files" / "vault-password").read_bytes().strip()
    return preflight.check([str(inventory)], [("default", VaultSecret(password))])


def test_molecule_inventory_passes_address_and_variable_checks(tmp_path: Path) -> None:
    """Its host's address (127.0.0.1, where create.yml publishes its SSH port) passes, its
    molecule_* variables are Molecule's own, and its secrets come through file lookups."""
    text = _molecule_check(tmp_path).text
    for key in (": ansible_host:", ": molecule_", ": mlflow_admin_password:", ": mlflow_db_password:"):
        assert key not in text, text


def test_molecule_run_checks_the_inventory_file_it_writes(tmp_path: Path) -> None:
    """``-i <ephemeral>/inventory`` and ANSIBLE_VAULT_PASSWORD_FILE, as Molecule runs converge:
    the preflight checks ansible_inventory.yml (Ansible skips group_vars/ as a source) with
    the test vault password, on localhost (no podman)."""
    expected = _molecule_check(tmp_path / "expected")
    inventory = molecule_inventory(tmp_path / "inventory")
    run = preflight_alone(tmp_path, str(inventory), ANSIBLE_VAULT_PASSWORD_FILE=str(
        ROOT / "molecule" / "default" / "files" / "vault-password"))
    outcome = "ok" if expected.ok else "failed"
    assert_no_host_touched(run, outcome)
    (result,) = run.of(outcome)
    assert result["msg"] == expected.text.replace(str(tmp_path / "expected"), str(tmp_path))


def test_molecule_inventory_passes_preflight(tmp_path: Path) -> None:
    result = _molecule_check(tmp_path)
    assert result.ok, result.text


# --------------------------------------------------------------------------- the plugin, AWX

def test_plugin_imports_the_checkouts_package_without_it_installed(tmp_path: Path) -> None:
    """As in an AWX execution environment: mlops_provision is not importable until the plugin
    adds the checkout's src/."""
    plugin = ROOT / "playbooks" / "action_plugins" / "mlops_preflight.py"
    script = f"""
import importlib.util, sys
sys.path[:] = [p for p in sys.path if not p.rstrip('/').endswith('/src')]
assert importlib.util.find_spec('mlops_provision') is None, 'still installed'
spec = importlib.util.spec_from_file_location('mlops_preflight', {str(plugin)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(module._preflight().__file__)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == ROOT / "src" / "mlops_provision" / "site" / "preflight.py"


def _collections_used() -> set[str]:
    found: set[str] = set()
    for file in [*ROOT.glob("roles/**/*.yml"), *ROOT.glob("roles/**/*.j2"), *ROOT.glob("playbooks/*.yml")]:
        found.update(re.findall(r"\b((?:community|ansible|containers|kubernetes)\.[a-z_]+)\.[a-z_0-9]+\b",
                                file.read_text()))
    return found - {"ansible.builtin", "ansible.legacy"}


def test_collections_requirements_pin_what_the_roles_use(tmp_path: Path) -> None:
    wanted = yaml.safe_load((ROOT / "collections" / "requirements.yml").read_text())["collections"]
    pins = {c["name"]: c["version"] for c in wanted}
    assert _collections_used() <= set(pins), _collections_used() - set(pins)
    listed = json.loads(subprocess.run([str(BIN / "ansible-galaxy"), "collection", "list", "--format", "json"],
                                       capture_output=True, text=True, check=True, timeout=120,
                                       env=ansible_env(tmp_path)).stdout)
    bundled = {name: info["version"] for path, found in listed.items() if "site-packages" in path
               for name, info in found.items()}
    assert {name: bundled.get(name) for name in pins} == pins, "the versions the tests run with"


def test_execution_environment_builds_a_context(tmp_path: Path) -> None:
    """``ansible-builder create`` (no image build: no registry here) accepts the definition and
    puts the pinned ansible-core and the collections in the build context."""
    proc = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml",
                           "-c", str(tmp_path / "context")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    core = re.search(r'"ansible-core>=2\.19,<2\.20"', (ROOT / "pyproject.toml").read_text())
    assert core and "ansible-core==2.19." in containerfile
    galaxy = yaml.safe_load((tmp_path / "context" / "_build" / "requirements.yml").read_text())
    assert galaxy == yaml.safe_load((ROOT / "collections" / "requirements.yml").read_text())
