"""The flags an Ansible user types mean what they mean to Ansible: -e, --tags checked against the
playbooks' tags (agreeing with ``ansible-playbook --list-tags``), --skip-tags, --diff, -v,
--list-hosts, --list-tasks, --vault-id (labels, client scripts by relative path, prompts),
--ask-vault-pass, the admin's ansible.cfg and ANSIBLE_BECOME_PASSWORD_FILE. Runs are real
ansible-playbook runs on this machine (local connection); no other host is contacted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlops_provision import paths, runner
from mlops_provision.ansible_args import PlaybookArgs, check_playbook_args
from mlops_provision.cli import main
from mlops_provision.site import load
from mlops_provision.site.tags import SPECIAL_TAGS, playbook_tags

BIN = Path(sys.executable).parent

SITE = """\
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: {python}
  children:
    cpu_workers:
      hosts:
        here:
"""


def local_site(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "hosts.yml").write_text(SITE.format(python=sys.executable))
    return root / "hosts.yml"


def test_the_tags_we_know_are_those_ansible_playbook_lists() -> None:
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(paths.playbook("site.yml")),
                          "--list-tags"], capture_output=True, text=True, check=True, cwd=paths.project_root(),
                         env={**os.environ, "ANSIBLE_CONFIG": str(paths.project_root() / "ansible.cfg")})
    theirs = {t.strip() for block in re.findall(r"TASK TAGS: \[(.*)\]", run.stdout)
              for t in block.split(",") if t.strip()}
    ours = playbook_tags(paths.playbook().parent, paths.roles_dir())
    assert theirs and theirs <= ours, theirs - ours
    # what we know beyond site.yml's list comes from the other playbooks (backup, restore, facts)
    assert all(t in SPECIAL_TAGS or t in theirs or t.startswith("mlflow") for t in ours - theirs), ours - theirs


def test_an_unknown_tag_is_refused_before_any_host(tmp_path: Path) -> None:
    inv = local_site(tmp_path)
    run = CliRunner().invoke(main, ["up", "-i", str(inv), "--tags", "bsae"])
    assert run.exit_code == 2, run.output
    assert "--tags 'bsae': no task has this tag" in run.output and "did you mean 'base'" in run.output
    assert not (tmp_path / ".mlops-provision").exists()  # no run, no record
    assert check_playbook_args(PlaybookArgs(tags="base,gpu", skip_tags="always")) == []
    assert check_playbook_args(PlaybookArgs(skip_tags="nope"))[0].startswith("--skip-tags 'nope'")


@pytest.mark.parametrize(("value", "why"), [
    ("./vars.yml", "expected @./vars.yml"),
    ("[1, 2]", "expected key=value pairs"),
    ("@/nonexistent/vars.yml", "Ansible cannot read it"),
])
def test_bad_extra_vars_are_refused_before_any_host(value: str, why: str) -> None:
    (problem,) = check_playbook_args(PlaybookArgs(extra_vars=[value]))
    assert why in problem, problem


PLAY = """\
- name: Flags
  hosts: all
  gather_facts: false
  tasks:
    - name: Flags | Write the extra var
      ansible.builtin.copy:
        dest: "{{ out }}/word"
        content: "{{ word }}\\n"
        mode: "0644"
    - name: Flags | Skipped by --skip-tags
      ansible.builtin.copy:
        dest: "{{ out }}/skipped"
        content: "x\\n"
        mode: "0644"
      tags: [slow]
    - name: Flags | The timeout Ansible runs with
      ansible.builtin.copy:
        dest: "{{ out }}/timeout"
        content: "{{ lookup('ansible.builtin.config', 'DEFAULT_TIMEOUT') }}\\n"
        mode: "0644"
"""


def test_extra_vars_skip_tags_diff_and_verbosity_reach_ansible_playbook(tmp_path: Path) -> None:
    site = load(local_site(tmp_path / "site"), strict=False)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "play.yml").write_text(PLAY)
    (out / "word").write_text("old\n")
    args = PlaybookArgs(extra_vars=[f"out={out}", '{"word": "from -e"}'], skip_tags="slow", diff=True)
    lines: list[str] = []
    summary = runner.run_playbook(site, playbook=tmp_path / "play.yml", args=args.cmdline(),
                                  verbosity=1, echo=lines.append)
    assert summary.exit_code == 0, summary
    assert (out / "word").read_text() == "from -e\n"
    assert not (out / "skipped").exists()
    shown = "".join(lines)
    assert "-old" in shown and "+from -e" in shown, shown  # --diff, shown by -v


def admin_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    """An admin's ansible.cfg in the working directory, as Ansible would find it."""
    from mlops_provision import ansible_config

    admin = tmp_path / "admin"
    admin.mkdir()
    (admin / "ansible.cfg").write_text(text)
    monkeypatch.chdir(admin)
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    ansible_config._read.cache_clear()
    return admin


def test_the_admins_ansible_cfg_reaches_the_run_but_not_what_the_toolkit_keeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_provision import ansible_config

    admin_cfg(tmp_path, monkeypatch, "[defaults]\ntimeout = 42\nremote_user = deploy\nroles_path = /elsewhere\n"
                                     "[ssh_connection]\nssh_args = -o ProxyJump=bastion.example.internal\n")
    env = runner.ansible_env()
    assert env["ANSIBLE_TIMEOUT"] == "42" and env["ANSIBLE_REMOTE_USER"] == "deploy"
    assert env["ANSIBLE_SSH_ARGS"] == "-o ProxyJump=bastion.example.internal"
    assert env["ANSIBLE_ROLES_PATH"] == str(paths.roles_dir())  # ours: the playbooks need it
    taken = ansible_config.admin_config(paths.project_root() / "ansible.cfg")
    assert "defaults.roles_path" in taken.kept_ours and "ssh_connection.ssh_args" in taken.taken
    # and the run itself: ansible-playbook runs with the admin's timeout
    site = load(local_site(tmp_path / "site"), strict=False)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "play.yml").write_text(PLAY)
    summary = runner.run_playbook(site, playbook=tmp_path / "play.yml",
                                  args=["-e", f"out={out} word=x", "--skip-tags", "slow"])
    assert summary.exit_code == 0, summary
    assert (out / "timeout").read_text().strip() == "42"


def test_password_files_an_admin_sets_reach_ansible_playbook() -> None:
    env = runner.child_env({"ANSIBLE_BECOME_PASSWORD_FILE": "/home/admin/.become", "ANSIBLE_BECOME_PASS": "x",
                            "HOME": "/home/admin"}, {})
    assert env["ANSIBLE_BECOME_PASSWORD_FILE"] == "/home/admin/.become"
    assert "ANSIBLE_BECOME_PASS" not in env  # a secret itself: never passed on or recorded


def test_list_hosts_and_list_tasks_run_nothing(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    inv = local_site(tmp_path)
    run = CliRunner().invoke(main, ["up", "-i", str(inv), "--list-hosts", "--tags", "base"])
    assert run.exit_code == 0, run.output
    listed = capfd.readouterr().out
    assert "play #" in listed and "here" in listed
    run = CliRunner().invoke(main, ["up", "-i", str(inv), "--list-tasks", "--tags", "base"])
    assert run.exit_code == 0, run.output
    listed = capfd.readouterr().out
    assert "Base | " in listed and "Mlflow | " not in listed
    assert not (tmp_path / ".mlops-provision").exists()


def _vault_site(root: Path, passwords: dict[str, str]) -> Path:
    """A site whose group_vars/<label>.yml files are encrypted with each label's password."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    inv = local_site(root)
    (root / "group_vars").mkdir()
    group = {"prod": "all", "dev": "cpu_workers"}
    for label, password in passwords.items():
        lib = VaultLib([(label, VaultSecret(password.encode()))])
        text = yaml.safe_dump({f"vault_{label}_token": f"{label}-t0ken"})
        (root / "group_vars" / f"{group[label]}.yml").write_bytes(lib.encrypt(text, vault_id=label))
    return inv


def test_vault_ids_with_labels_a_relative_client_script_and_a_prompt(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _vault_site(tmp_path / "site", {"prod": "prod-pw", "dev": "dev-pw"})
    client = tmp_path / "bin" / "vault-client"
    client.parent.mkdir()
    # a vault client script: Ansible calls it with --vault-id LABEL
    client.write_text("#!/bin/sh\n[ \"$2\" = prod ] && echo prod-pw\n")
    client.chmod(0o700)
    (tmp_path / "dev-pw").write_text("dev-pw\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("ANSIBLE_VAULT_IDENTITY_LIST", raising=False)
    cli = CliRunner()
    both = cli.invoke(main, ["validate", "-i", "site/hosts.yml", "--vault-id", "prod@bin/vault-client",
                             "--vault-id", "dev@dev-pw"])
    assert both.exit_code == 0, both.output
    one = cli.invoke(main, ["validate", "-i", "site/hosts.yml", "--vault-id", "prod@bin/vault-client"])
    assert one.exit_code == 2 and "cpu_workers.yml" in one.output, one.output
    asked = cli.invoke(main, ["validate", "-i", "site/hosts.yml", "--vault-id", "prod@prompt",
                              "--vault-id", "dev@prompt"], input="prod-pw\ndev-pw\n")
    assert asked.exit_code == 0, asked.output
    os.environ.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)  # the CLI sets it for its children


def test_ask_vault_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    inv = local_site(tmp_path)
    (tmp_path / "group_vars").mkdir()
    lib = VaultLib([("default", VaultSecret(b"typed-pw"))])
    (tmp_path / "group_vars" / "all.yml").write_bytes(lib.encrypt("vault_token: t0ken\n"))
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("ANSIBLE_VAULT_IDENTITY_LIST", raising=False)
    cli = CliRunner()
    good = cli.invoke(main, ["validate", "-i", str(inv), "--ask-vault-pass"], input="typed-pw\n")
    assert good.exit_code == 0, good.output
    bad = cli.invoke(main, ["validate", "-i", str(inv), "-J"], input="wrong\n")
    assert bad.exit_code == 2, bad.output
    os.environ.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)


def test_in_a_site_made_by_init_its_ansible_cfg_names_the_inventory_and_the_vault(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ansible-playbook in that directory: no -i, no vault flag."""
    from mlops_provision import ansible_config
    from mlops_provision.site.init import init_site

    site = tmp_path / "mysite"
    init_site(site, git=False)
    text = (site / "hosts.yml").read_text()
    (site / "hosts.yml").write_text(text.replace("  children:", "  hosts:\n    node1:\n      ansible_host: 192.0.2.10\n"
                                                 "  children:", 1))
    monkeypatch.chdir(site)
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_INVENTORY", "ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST"):
        monkeypatch.delenv(name, raising=False)
    ansible_config._read.cache_clear()
    run = CliRunner().invoke(main, ["validate"])
    assert run.exit_code == 0, run.output
    assert "hosts.yml: valid (1 host(s): node1)" in run.output


def test_drift_timer_takes_one_inventory_and_a_password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_provision.drift import timer

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(timer, "_systemctl", lambda *args: calls.append(args))
    inv = local_site(tmp_path / "site")
    (tmp_path / "pw").write_text("pw\n")
    units = tmp_path / "units"
    units.mkdir()
    cli = CliRunner()
    run = cli.invoke(main, ["drift", "-i", str(inv), "--vault-password-file", str(tmp_path / "pw"),
                            "--install-timer", "--every", "1h", "--unit-dir", str(units)])
    assert run.exit_code == 0, run.output
    (service,) = units.glob("*.service")
    assert f"drift -i {inv.resolve()}" in service.read_text() and calls
    other = local_site(tmp_path / "other")
    two = cli.invoke(main, ["drift", "-i", str(inv), "-i", str(other), "--install-timer", "--unit-dir", str(units)])
    assert two.exit_code == 2 and "one inventory" in two.output


def test_repeated_tags_add_up_and_a_typed_secret_in_extra_vars_is_masked(tmp_path: Path) -> None:
    from mlops_provision.ansible_args import extra_vars_secrets

    run = CliRunner().invoke(main, ["up", "-i", str(local_site(tmp_path)), "-t", "base", "-t", "nosuch"])
    assert run.exit_code == 2 and "'nosuch'" in run.output and "'base'" not in run.output.split("expected")[0]
    assert extra_vars_secrets(['{"mlflow_admin_password": "s3cret-typed", "word": "plain"}',
                               "api_token=t0ken-typed other=x"]) == {"s3cret-typed", "t0ken-typed"}
    bad = check_playbook_args(PlaybookArgs(extra_vars=['{"db_password": "leak-me"']))
    assert bad and "leak-me" not in bad[0] and "--extra-vars #1" in bad[0]


def test_the_admins_environment_wins_over_the_file_paths_resolve_and_prompts_stay_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_provision import ansible_config

    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    monkeypatch.setenv("ANSIBLE_TIMEOUT", "99")
    admin = admin_cfg(tmp_path, monkeypatch, "[defaults]\ntimeout = 42 ; a comment\nprivate_key_file = keys/id\n"
                                             "become_ask_pass = True\nask_vault_pass = True\n")
    env = runner.child_env(dict(os.environ), runner.ansible_env())
    assert env["ANSIBLE_TIMEOUT"] == "99"  # as in Ansible: the environment over the file
    assert env["ANSIBLE_PRIVATE_KEY_FILE"] == str(admin / "keys" / "id")  # next to the file, as Ansible reads it
    assert "ANSIBLE_BECOME_ASK_PASS" not in env and "ANSIBLE_ASK_VAULT_PASS" not in env  # no prompt inside the run
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"  # ansible-runner would turn it off
    ansible_config._read.cache_clear()

ROOT = Path(__file__).resolve().parents[2]


def _bool_variables() -> set[str]:
    names = set()
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in (yaml.safe_load(spec.read_text())["argument_specs"] or {}).values():
            names |= {name for name, opt in (entry.get("options") or {}).items() if opt.get("type") == "bool"}
    return names


def test_a_boolean_given_as_minus_e_name_false_is_false_in_every_role() -> None:
    """`-e os_hardening_aide=false` gives Ansible the string "false" (key=value extra vars are
    strings): a role that reads the variable bare would take it as true in an expression and, in a
    `when:`, stop mid-run (ansible-core 2.19 refuses a string as a condition). Every read of a
    variable the roles' argument specs type as bool goes through `| bool`, where "false", "no",
    "0" and false are all false."""
    names = _bool_variables()
    assert {"os_hardening_aide", "firewall_allow_ping", "containerd_cdi"} <= names
    bare = []
    sources = [p for p in (ROOT / "roles").rglob("*") if p.suffix in (".yml", ".j2")
               and p.parent.name not in ("meta", "defaults")] + sorted((ROOT / "playbooks").glob("*.yml"))
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.strip()
            if text.startswith(("#", "- name:")):
                continue
            # a variable shown in a message ({{ name }}, or a quoted word) is not a read
            code = re.sub(r"\{\{\s*\w+\s*\}\}|'[^']*'", "", text)
            bare += [f"{path.relative_to(ROOT)}:{number}: {name}" for name in names
                     if re.search(rf"\b{name}\b(?!\s*\|\s*bool)(?!\s*:)", code)
                     and not re.search(rf"\b{name}\b\s+is\b", code)]
    assert bare == [], "\n".join(bare)
