"""The flags an Ansible user types, meaning what they mean to Ansible: inventories (``-i``,
repeatable, or ``ANSIBLE_INVENTORY``), vault secrets (``--vault-password-file``, ``--vault-id``
with labels, prompts and client scripts, ``--ask-vault-pass``), and for a playbook run
``-e/--extra-vars``, ``-t/--tags``, ``--skip-tags``, ``-C/--check``, ``--diff``, ``-v``,
``--list-hosts``, ``--list-tasks``.

Vault secrets are read by Ansible's own ``CLI.setup_vault_secrets``; every process this tool
starts (ansible-playbook, the checks' ansible-inventory) gets them as the vault identity list
(``ANSIBLE_VAULT_IDENTITY_LIST``) of files or client scripts. A password typed at a prompt lives
in a private temporary file (0600, in a 0700 directory) for the command's lifetime only."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from mlops_provision.runner import EXIT_BAD_INPUT
from mlops_provision.site.vault import VAULT_IDS_ENV


def inventory_sources(given: tuple[Path, ...]) -> list[Path]:
    """``-i`` as given, else ``ANSIBLE_INVENTORY`` (comma-separated), else the ``inventory`` of
    the admin's ansible.cfg: as ansible-playbook reads them."""
    if given:
        return list(given)
    env = os.environ.get("ANSIBLE_INVENTORY", "")
    if env.strip():
        return [Path(os.path.expanduser(p.strip())) for p in env.split(",") if p.strip()]
    from mlops_provision import paths
    from mlops_provision.ansible_config import admin_config

    return admin_config(paths.project_root() / "ansible.cfg").inventory


@dataclass
class SiteArgs:
    """Where the site is and how to open its vault."""

    sources: list[Path]
    vault_password_file: Path | None = None  # the single password file (or None)
    vault_ids: list[str] = field(default_factory=list)  # label@source, Ansible's form

    @property
    def path(self) -> Path:
        """The first source: the site's name in messages and where its records go."""
        return self.sources[0]


def _prompted(label: str) -> str:
    """A vault password typed at a prompt, kept in a private file while this command runs."""
    password = click.prompt(f"Vault password ({label})" if label != "default" else "Vault password",
                            hide_input=True, err=True)
    directory = Path(tempfile.mkdtemp(prefix="mlops-vault-"))  # 0700
    atexit.register(shutil.rmtree, directory, True)
    file = directory / "password"  # one file per directory: any label is safe
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return str(file)


def vault_identities(password_files: tuple[Path, ...], vault_ids: tuple[str, ...],
                     ask: bool) -> list[str]:
    """The vault identities as ``label@/absolute/path`` (Ansible's ``--vault-id``): password
    files are the ``default`` label, a ``@prompt`` source and ``--ask-vault-pass`` are asked
    for now; relative paths (a client script too) are made absolute."""
    ids: list[str] = [f"default@{Path(p).resolve()}" for p in password_files]
    for given in vault_ids:
        label, sep, source = given.partition("@")
        if not sep:
            label, source = "default", given
        label = label or "default"  # Ansible's default label
        if source == "prompt":
            ids.append(f"{label}@{_prompted(label)}")
        else:
            path = Path(os.path.expanduser(source))
            if not path.exists():
                raise click.BadParameter(f"{source}: no such file: expected label@FILE, "
                                         "label@SCRIPT or label@prompt", param_hint="--vault-id")
            ids.append(f"{label}@{path.resolve()}")
    if ask:
        ids.append(f"default@{_prompted('default')}")
    return ids


def site_options(command):
    """``-i`` (repeatable), ``--vault-password-file`` (repeatable), ``--vault-id``
    (repeatable), ``-J/--ask-vault-pass``: the command gets ``site: SiteArgs``."""

    @click.option("-i", "--inventory", "inventory_paths", multiple=True,
                  type=click.Path(exists=True, path_type=Path),
                  help="Inventory file (YAML or INI) or directory, as Ansible reads it; "
                       "repeatable. Default: ANSIBLE_INVENTORY, else your ansible.cfg's inventory.")
    @click.option("--vault-password-file", "vault_password_files", multiple=True,
                  type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Vault password file, or an executable that prints it; repeatable "
                       "(or ANSIBLE_VAULT_PASSWORD_FILE).")
    @click.option("--vault-id", "vault_ids", multiple=True, metavar="LABEL@SOURCE",
                  help="A vault identity: LABEL@FILE, LABEL@SCRIPT (a client script) or "
                       "LABEL@prompt; repeatable.")
    @click.option("-J", "--ask-vault-pass", "--ask-vault-password", "ask_vault_pass",
                  is_flag=True, help="Ask for the vault password.")
    @functools.wraps(command)
    def wrapper(*args: Any, inventory_paths: tuple[Path, ...], vault_password_files: tuple[Path, ...],
                vault_ids: tuple[str, ...], ask_vault_pass: bool, **kwargs: Any) -> Any:
        sources = inventory_sources(inventory_paths)
        if not sources:
            raise click.UsageError("no inventory: give -i FILE or DIR (repeatable), set "
                                   "ANSIBLE_INVENTORY, or run in a site whose ansible.cfg names it")
        if not vault_password_files and os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE"):
            vault_password_files = (Path(os.environ["ANSIBLE_VAULT_PASSWORD_FILE"]),)
        if not (vault_password_files or vault_ids or ask_vault_pass):
            from mlops_provision import paths
            from mlops_provision.ansible_config import admin_config

            admin = admin_config(paths.project_root() / "ansible.cfg")  # as ansible-playbook reads it
            if admin.vault_password_file is not None:
                vault_password_files = (admin.vault_password_file,)
            vault_ids = tuple(admin.vault_ids)
        site = SiteArgs(sources)
        saved = {name: os.environ.get(name) for name in (VAULT_IDS_ENV, "ANSIBLE_VAULT_PASSWORD_FILE")}
        if vault_ids or ask_vault_pass or len(vault_password_files) > 1:
            site.vault_ids = vault_identities(vault_password_files, vault_ids, ask_vault_pass)
            os.environ[VAULT_IDS_ENV] = ",".join(site.vault_ids)
            os.environ.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)  # the identity list has it
        elif vault_password_files:
            site.vault_password_file = Path(vault_password_files[0]).resolve()
        else:
            from mlops_provision.sandbox.site_inventory import sandbox_vault_password

            site.vault_password_file = sandbox_vault_password(sources[0])
        try:
            return command(*args, site=site, **kwargs)
        finally:  # this command's vault identities are not the next one's (one process, tests)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return command(*args, site=site, **kwargs)

    return wrapper


@dataclass
class PlaybookArgs:
    """How a playbook run is asked for, as ``ansible-playbook`` flags."""

    tags: str | None = None
    skip_tags: str | None = None
    check: bool = False
    diff: bool = False
    verbosity: int = 0
    extra_vars: list[str] = field(default_factory=list)
    list_hosts: bool = False
    list_tasks: bool = False

    def cmdline(self) -> list[str]:
        """The flags ansible-playbook gets (besides -i, --limit and the playbook)."""
        out: list[str] = []
        for value in self.extra_vars:
            out += ["--extra-vars", value]
        if self.tags:
            out += ["--tags", self.tags]
        if self.skip_tags:
            out += ["--skip-tags", self.skip_tags]
        if self.check:
            out.append("--check")
        if self.diff or self.check:  # check mode always shows what it would change
            out.append("--diff")
        return out


def playbook_options(command):
    """The run flags of ``up``: the command gets ``run: PlaybookArgs``."""

    @click.option("-e", "--extra-vars", "extra_vars", multiple=True, metavar="VARS",
                  help="Extra variables as Ansible reads them (key=value, YAML/JSON, or @FILE); "
                       "repeatable. They win over the inventory.")
    @click.option("-t", "--tags", "tags", multiple=True, help="Only tasks with these tags, e.g. base,gpu; repeatable.")
    @click.option("--skip-tags", "skip_tags", multiple=True, help="Skip tasks with these tags; repeatable.")
    @click.option("-C", "--check", is_flag=True, help="Dry run: report what would change (with diffs), change nothing.")
    @click.option("-D", "--diff", is_flag=True, help="Show the changes made to files and templates.")
    @click.option("-v", "--verbose", "verbosity", count=True,
                  help="Show each task's result as ansible-playbook does (-vv, -vvv: more).")
    @click.option("--list-hosts", is_flag=True, help="List the hosts each play would run on; run nothing.")
    @click.option("--list-tasks", is_flag=True, help="List the tasks that would run; run nothing.")
    @functools.wraps(command)
    def wrapper(*args: Any, extra_vars: tuple[str, ...], tags: tuple[str, ...], skip_tags: tuple[str, ...],
                check: bool, diff: bool, verbosity: int, list_hosts: bool, list_tasks: bool,
                **kwargs: Any) -> Any:
        run = PlaybookArgs(tags=",".join(tags) or None, skip_tags=",".join(skip_tags) or None,
                           check=check, diff=diff, verbosity=verbosity,
                           extra_vars=[absolute_file(v) for v in extra_vars],
                           list_hosts=list_hosts, list_tasks=list_tasks)
        problems = check_playbook_args(run)
        if problems:
            for line in problems:
                click.echo(line, err=True)
            sys.exit(EXIT_BAD_INPUT)
        return command(*args, run=run, **kwargs)

    return wrapper


def check_playbook_args(run: PlaybookArgs) -> list[str]:
    """What is wrong with the run flags, before any host is touched: a tag no task carries
    (Ansible would run nothing and report ok), extra vars Ansible cannot read."""
    from mlops_provision import paths
    from mlops_provision.site.tags import SPECIAL_TAGS, playbook_tags, unknown_tags
    from mlops_provision.site.values import suggest

    problems: list[str] = []
    known = playbook_tags(paths.playbook().parent, paths.roles_dir())
    for flag, value in (("--tags", run.tags), ("--skip-tags", run.skip_tags)):
        for tag in unknown_tags(value, known):
            choices = sorted(known - set(SPECIAL_TAGS))
            problems.append(f"{flag} {tag!r}: no task has this tag: expected one of "
                            f"{', '.join(choices)} (or {', '.join(SPECIAL_TAGS)})"
                            f"{suggest(tag, choices, 0.6)}")
    for n, value in enumerate(run.extra_vars, start=1):
        why = extra_vars_problem(value)
        if why:  # the value itself is not shown: it may hold a secret
            shown = value if value.startswith("@") else f"#{n}"
            problems.append(f"--extra-vars {shown}: {why}")
    return problems


def absolute_file(value: str) -> str:
    """An ``-e @FILE`` with its path made absolute: ansible-playbook runs in the toolkit's
    directory, the admin meant the file where they typed it."""
    if value.startswith("@"):
        return "@" + str(Path(os.path.expanduser(value[1:])).resolve())
    return value


def _read_extra_vars(value: str) -> object:
    """One ``-e`` value as Ansible reads it (raises what Ansible raises); a vault-encrypted
    @FILE is only opened by the run, which has the vault secrets: here, its name is checked."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.splitter import parse_kv

    loader = DataLoader()
    if value.startswith("@"):
        path = Path(value[1:])
        if path.is_file() and path.read_bytes().lstrip().startswith(b"$ANSIBLE_VAULT"):
            return {}
        return loader.load_from_file(str(path))
    if value[:1] in ("[", "{"):
        return loader.load(value)
    return parse_kv(value)


def extra_vars_problem(value: str) -> str | None:
    """Why Ansible could not read one ``-e`` value (None: it can), by Ansible's own parsers."""
    from ansible.errors import AnsibleError

    if value[:1] in ("/", "."):
        return f"expected @{value} to read a file (Ansible needs the '@')"
    try:
        data = _read_extra_vars(value)
    except (AnsibleError, ValueError) as exc:
        return f"Ansible cannot read it: {str(exc).splitlines()[0]}"
    if not isinstance(data, dict):
        return "expected key=value pairs, a YAML/JSON mapping, or @FILE holding one"
    return None


def extra_vars_secrets(values: list[str]) -> set[str]:
    """The values of ``-e`` variables named like secrets (``*_password``, ``*_token``...): the
    run's scrubber masks them in the terminal and the record, as it masks the inventory's."""
    from mlops_provision.secrets import secret_values

    found: list[dict] = []
    for value in values:
        try:
            data = _read_extra_vars(value)
        except Exception:  # refused earlier (check_playbook_args)
            continue
        if isinstance(data, dict):
            found.append(data)
    return set(secret_values(found))
