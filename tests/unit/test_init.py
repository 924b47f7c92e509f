"""`mlops-provision init SITE`: a new site an admin can commit, with fresh vault-encrypted secrets
that Ansible's own ansible-vault opens, the site's own rules accept, and CI files that pass the
GitHub and GitLab schemas."""

from __future__ import annotations

import base64
import configparser
import fnmatch
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlops_provision.cli import main
from mlops_provision.site import load
from mlops_provision.site.init import INIT_EMAIL, INIT_NAME, VAULT_SECRETS
from mlops_provision.site.roles import platform_groups
from mlops_provision.site.rules import GROUP_SECRETS, STRONG_PASSWORDS, password_weakness

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
VAULT_FILES = [f"group_vars/{group}/vault.yml" for group in VAULT_SECRETS]


@pytest.fixture(autouse=True)
def clean_env(tmp_path_factory, monkeypatch):
    """No git identity and no vault password from the machine running the tests; no site
    ansible.cfg but the one init writes."""
    home = tmp_path_factory.mktemp("home")
    (home / "gitconfig").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("ANSIBLE_CONFIG", "ANSIBLE_VAULT_PASSWORD_FILE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    return home


def init(*args: str | Path):
    return CliRunner().invoke(main, ["init", *map(str, args)])


def git(site: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=site, capture_output=True, text=True, check=True).stdout


def vault_view(site: Path, rel: str, *password: str, cwd: Path | None = None) -> dict:
    """``ansible-vault view`` of one file, as an admin runs it; its YAML."""
    run = subprocess.run([str(BIN / "ansible-vault"), "view", *password, rel], cwd=cwd or site,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


def add_host(site: Path, groups: tuple[str, ...] = ("control_plane", "mlflow")) -> None:
    """node1 in ``groups`` of the site's hosts.yml (its variables under the first)."""
    inv = site / "hosts.yml"
    data = yaml.safe_load(inv.read_text())
    for n, group in enumerate(groups):
        data["all"]["children"][group]["hosts"] = {"node1": {"ansible_host": "127.0.0.1"} if n == 0 else None}
    inv.write_text(yaml.safe_dump(data, sort_keys=False))


def test_init_makes_a_site_with_a_first_commit(tmp_path: Path):
    site = tmp_path / "acme"
    res = init(site)
    assert res.exit_code == 0, res.output
    # the files, the password 0600 and strong
    for rel in ("hosts.yml", "ansible.cfg", ".gitignore", ".gitlab-ci.yml", ".github/workflows/mlops-provision.yml",
                "group_vars/all.yml", *VAULT_FILES):
        assert (site / rel).is_file(), rel
    password = site / ".vault-password"
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}\n", password.read_text())
    # the next steps
    out = res.output.lower()
    assert f"cd {site}" in out and "add your hosts to hosts.yml, then run validate" in out
    for step in ("known_hosts", "mlops-provision facts", "mlops-provision validate",
                 "mlops-provision up --check"):
        assert step in res.output, step
    # ansible.cfg: the inventory and the password file, nothing else
    cfg = configparser.ConfigParser()
    cfg.read(site / "ansible.cfg")
    assert dict(cfg["defaults"]) == {"inventory": "hosts.yml", "vault_password_file": ".vault-password"}
    # .gitignore: the password, the run records, the sandbox, editor junk; the escrow kept
    ignored = ".vault-password", ".mlops-provision/runs/x/summary.json", ".mlops-provision/sandbox/vault-password", \
        ".mlops-provision/kubernetes/admin.conf", "hosts.yml.swp", "hosts.yml~"
    out = subprocess.run(["git", "check-ignore", "--no-index", *ignored, ".mlops-provision/escrow/n1/data.key.vault"],
                         cwd=site, capture_output=True, text=True).stdout.split()
    assert out == list(ignored)
    # one commit, by init's own identity (none is configured), without the password
    assert git(site, "log", "--format=%an <%ae>").splitlines() == [f"{INIT_NAME} <{INIT_EMAIL}>"]
    tracked = git(site, "ls-files").split()
    assert ".vault-password" not in tracked
    assert {"hosts.yml", ".gitignore", "ansible.cfg", *VAULT_FILES} <= set(tracked)
    assert git(site, "status", "--porcelain") == ""
    # init's own identity was for that commit only
    assert subprocess.run(["git", "config", "user.name"], cwd=site, capture_output=True).returncode != 0


def test_hosts_yml_lists_every_platform_group_with_an_example(tmp_path: Path):
    site = tmp_path / "acme"
    assert init(site, "--no-git").exit_code == 0
    assert not (site / ".git").exists()
    text = (site / "hosts.yml").read_text()
    data = yaml.safe_load(text)
    assert list(data["all"]["children"]) == list(platform_groups())
    for group in platform_groups():
        block = text.split(f"\n    {group}:\n", 1)[1]
        assert re.match(r"      hosts:\n        # [a-z0-9-]+:", block), group
    assert "FILL IN" in text


def test_the_secrets_open_with_ansible_vault_are_strong_and_fresh(tmp_path: Path):
    plaintexts = []
    for name in ("one", "two"):
        site = tmp_path / name
        assert init(site, "--no-git").exit_code == 0
        values = {}
        for rel in VAULT_FILES:
            raw = (site / rel).read_text()
            assert raw.startswith("$ANSIBLE_VAULT;1.1;AES256\n"), rel
            values |= vault_view(site, rel, "--vault-password-file", str(site / ".vault-password"))
        for value in values.values():
            assert value not in "".join((site / rel).read_text() for rel in VAULT_FILES)
        plaintexts.append(values | {"password": (site / ".vault-password").read_text()})
    one, two = plaintexts
    assert set(one) == {name for made in VAULT_SECRETS.values() for name in made} | {"password"}
    assert all(one[k] != two[k] for k in one), "two inits made the same secret"
    for values in plaintexts:
        for var in STRONG_PASSWORDS:
            assert password_weakness(values[f"vault_{var}"], "admin") == ""
        assert len(base64.b64decode(values["vault_kubernetes_control_plane_encryption_key"], validate=True)) == 32


def test_a_site_with_a_host_is_valid(tmp_path: Path):
    site = tmp_path / "acme"
    assert init(site).exit_code == 0
    vault = site / ".vault-password"
    # no host yet: the one thing validate may say is that there is no host (init's own files,
    # secrets included, raise no problem)
    res = CliRunner().invoke(main, ["validate", "-i", str(site / "hosts.yml"), "--vault-password-file", str(vault)])
    if res.exit_code:
        assert res.exit_code == 2 and "1 problem(s)" in res.output and "no host" in res.output, res.output
    else:
        assert "0 host(s)" in res.output
    # node1 in the groups with secrets: the platform's rules on them pass
    assert set(GROUP_SECRETS) <= set(VAULT_SECRETS)
    add_host(site, ("control_plane", "mlflow"))
    loaded = load(site / "hosts.yml", vault_password_file=vault)
    assert loaded.hosts == ["node1"]
    assert set(loaded.host_groups("node1")) == {"control_plane", "mlflow"}
    assert loaded.roles("node1")
    res = CliRunner().invoke(main, ["validate", "-i", str(site / "hosts.yml"), "--vault-password-file", str(vault)])
    assert res.exit_code == 0, res.output
    # the secrets are vault-encrypted where the rules look: a wrong password is refused
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    res = CliRunner().invoke(main, ["validate", "-i", str(site / "hosts.yml"), "--vault-password-file", str(wrong)])
    assert res.exit_code == 2


def test_the_commented_examples_make_a_valid_site(tmp_path: Path):
    site = tmp_path / "acme"
    assert init(site, "--no-git").exit_code == 0
    inv = site / "hosts.yml"
    inv.write_text(re.sub(r"(?m)^( {8})# ", r"\1", inv.read_text()))
    loaded = load(inv, vault_password_file=site / ".vault-password")
    assert len(loaded.hosts) >= 3
    assert set(loaded.groups) >= set(platform_groups())


def test_vault_client_relative_path(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = Path("bin/vault-pass.sh")
    client.parent.mkdir()
    client.write_text('#!/bin/sh\necho ran >> "$(dirname "$0")/ran.log"\necho s3cret-from-the-keyring-Zq81x\n')
    client.chmod(0o755)
    site = Path("sites/acme")
    res = init(site, "--vault-client", client, "--no-git")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "bin/ran.log").read_text() == "ran\n"  # init ran it
    assert not (site / ".vault-password").exists()
    cfg = configparser.ConfigParser()
    cfg.read(site / "ansible.cfg")
    assert cfg["defaults"]["vault_password_file"] == "../../bin/vault-pass.sh"
    # Ansible in the site finds the client through ansible.cfg alone, and decrypts
    values = vault_view(site, VAULT_FILES[0])
    assert values and all(isinstance(v, str) for v in values.values())
    add_host(tmp_path / site)
    assert load(tmp_path / site / "hosts.yml", vault_password_file=tmp_path / client).hosts == ["node1"]


def test_author_from_git_config(tmp_path: Path, clean_env):
    (clean_env / "gitconfig").write_text("[user]\n\tname = Ada Admin\n\temail = ada@example.org\n")
    site = tmp_path / "acme"
    assert init(site).exit_code == 0
    assert git(site, "log", "--format=%an <%ae>").splitlines() == ["Ada Admin <ada@example.org>"]


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path):
    site = tmp_path / "acme"
    site.mkdir()
    (site / "notes.txt").write_text("mine\n")
    res = init(site)
    assert res.exit_code == 2
    assert "not empty" in res.output
    assert sorted(p.name for p in site.iterdir()) == ["notes.txt"]
    # a vault client that is not executable, or fails: nothing is made
    script = tmp_path / "client.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    new = tmp_path / "new"
    res = init(new, "--vault-client", script)
    assert res.exit_code == 2 and "not executable" in res.output
    script.chmod(0o755)
    res = init(new, "--vault-client", script)
    assert res.exit_code == 2 and "failed" in res.output
    assert not new.exists()
    # an empty directory is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert init(empty, "--no-git").exit_code == 0


def test_ci_files_pass_the_github_and_gitlab_schemas(tmp_path: Path):
    site = tmp_path / "acme"
    assert init(site, "--no-git").exit_code == 0
    checker = BIN / "check-jsonschema"
    assert checker.is_file(), "check-jsonschema (a dev dependency, pyproject.toml) is not installed"
    files = {"vendor.github-workflows": site / ".github/workflows/mlops-provision.yml",
             "vendor.gitlab-ci": site / ".gitlab-ci.yml"}

    def check(schema: str, file: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(checker), "--builtin-schema", schema, str(file)], capture_output=True,
                              text=True, timeout=120)

    for schema, file in files.items():
        run = check(schema, file)
        assert run.returncode == 0, f"{file.name}: {run.stdout}{run.stderr}"
        # the check is not vacuous: a broken copy fails it
        broken = tmp_path / f"broken-{file.name}"
        broken.write_text(file.read_text().replace("script:", "scripts:").replace("runs-on:", "run-on:"))
        assert check(schema, broken).returncode != 0, schema
    github = yaml.safe_load(files["vendor.github-workflows"].read_text())
    on = github[True]  # YAML 1.1 reads the key `on` as true
    assert "push" in on and on["schedule"][0]["cron"]
    assert "validate -i hosts.yml" in str(github["jobs"]["validate"])
    assert "drift -i hosts.yml --junit drift.xml" in str(github["jobs"]["drift"])
    assert "schedule" in github["jobs"]["drift"]["if"]
    gitlab = yaml.safe_load(files["vendor.gitlab-ci"].read_text())
    assert gitlab["drift"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    assert gitlab["drift"]["artifacts"]["reports"]["junit"] == "drift.xml"
    assert "validate -i hosts.yml" in str(gitlab["validate"]["script"])
    for text in (files["vendor.github-workflows"].read_text(), files["vendor.gitlab-ci"].read_text()):
        assert "umask 077" in text and "MLOPS_VAULT_PASSWORD" in text and "ANSIBLE_VAULT_PASSWORD_FILE" in text


def test_templates_are_package_data():
    """Every template is in the package data, so that an installed wheel has it."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = setuptools["package-data"]["mlops_provision"]
    package = ROOT / "src" / "mlops_provision"
    files = [p.relative_to(package).as_posix() for p in (package / "site" / "templates").rglob("*") if p.is_file()]
    assert files
    for rel in files:
        assert any(fnmatch.fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs), rel
