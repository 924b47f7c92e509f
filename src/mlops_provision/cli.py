"""The `mlops-provision` command line. Exit codes: see docs/cli.md (0 ok, 1 failed, 2 bad input,
3 unreachable, 4 drift found / changes pending)."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import click
from rich.table import Table

from mlops_provision import __version__
from mlops_provision.ansible_args import PlaybookArgs, SiteArgs, extra_vars_secrets, playbook_options, site_options
from mlops_provision.errors import exit_for
from mlops_provision.progress import fit_title, output_console
from mlops_provision.releases import CURRENT, RELEASES
from mlops_provision.runner import EXIT_BAD_INPUT, EXIT_FAILED
from mlops_provision.site import InventoryInvalid, hosts_matching, load

# On a terminal, its width; in a pipe or a CI log, whole lines (no wrapping at 80 columns).
err = output_console(stderr=True)

output_option = click.option("--output", type=click.Choice(["human", "json"]), default="human",
                             show_default=True, help="Result format on stdout.")
limit_option = click.option("--limit", "-l", default=None,
                            help="Hosts or groups to act on (Ansible --limit syntax).")


def _load_or_exit(site: SiteArgs, limit: str | None = None, strict: bool = False):
    """The site as Ansible reads it, validated; bad input: its problems, exit 2. Warnings (a
    setting with no effect, a plain-text password...) are shown and do not stop the command,
    unless ``strict``."""
    name = ", ".join(str(p) for p in site.sources)
    try:
        inventory = load(site.sources, vault_password_file=site.vault_password_file,
                         strict_warnings=strict)
    except InventoryInvalid as exc:
        err.print(f"[bold red]inventory {name} is invalid: {len(exc.problems)} problem(s)[/]")
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False)
        _print_warnings(exc.warnings)
        sys.exit(EXIT_BAD_INPUT)
    _print_warnings(inventory.warnings)
    if limit and not hosts_matching(inventory, limit):
        err.print(f"[bold red]--limit {limit!r} matches no host of {name}[/] "
                  f"(hosts: {', '.join(inventory.hosts)}; groups: {', '.join(sorted(inventory.groups))})")
        sys.exit(EXIT_BAD_INPUT)
    return inventory


def _print_warnings(warnings: list) -> None:
    if warnings:
        err.print(f"[bold yellow]{len(warnings)} warning(s)[/] (validate --strict refuses them):")
        for warning in warnings:
            err.print(f"  {warning}", highlight=False, markup=False)


def _announce_admin_config() -> None:
    """Say which settings of the admin's ansible.cfg this run takes, and which stay ours."""
    from mlops_provision import paths
    from mlops_provision.ansible_config import admin_config

    admin = admin_config(paths.project_root() / "ansible.cfg")
    if admin.taken:
        err.print(f"settings from {admin.file}: {', '.join(admin.taken)}", highlight=False, markup=False)
    if admin.used:
        err.print(f"read from {admin.file} by mlops-provision itself: {', '.join(admin.used)}",
                  highlight=False, markup=False)
    if admin.kept_ours:
        err.print(f"not taken from {admin.file} (the toolkit's own, docs/cli.md): "
                  f"{', '.join(admin.kept_ours)}", highlight=False, markup=False)


class _Main(click.Group):
    """The command group: every error that reaches it becomes a message and its exit code
    (mlops_provision.errors), never a traceback."""

    def invoke(self, ctx: click.Context):
        import os

        from mlops_provision.sshmux import command_connections

        try:
            with command_connections():
                return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if os.environ.get("MLOPS_DEBUG") == "1":
                err.print_exception()
            code, lines = exit_for(exc)
            err.print(f"[bold red]{ctx.invoked_subcommand or 'mlops-provision'}: {lines[0]}[/]",
                      highlight=False)
            for line in lines[1:]:
                err.print(line, highlight=False, markup=False)
            ctx.exit(code)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__)
def main() -> None:
    """Provision, harden and prove an on-prem MLOps platform."""


@main.command()
@site_options
@click.option("--strict", is_flag=True, help="Refuse the site for a warning too (exit 2).")
@output_option
def validate(site: SiteArgs, strict: bool, output: str) -> None:
    """Check an inventory's structure and variables; contacts no host. Exit 2 if invalid
    (with --strict, also if a warning was found)."""
    if output == "json":
        _validate_json(site, strict)
    inventory = _load_or_exit(site, strict=strict)
    click.echo(f"{', '.join(str(p) for p in inventory.sources)}: valid ({len(inventory.hosts)} "
               f"host(s): {', '.join(inventory.hosts)})")


def _validate_json(site: SiteArgs, strict: bool = False) -> None:
    """validate --output json: the verdict, the hosts, every problem and warning (file, line,
    key, expected) on stdout; exit 0 valid, 2 invalid."""
    try:
        inventory = load(site.sources, vault_password_file=site.vault_password_file,
                         strict_warnings=strict)
        result = {"valid": True, "sources": [str(p) for p in inventory.sources],
                  "hosts": inventory.hosts, "problems": [],
                  "warnings": [dataclasses.asdict(p) for p in inventory.warnings]}
    except InventoryInvalid as exc:
        result = {"valid": False, "sources": [str(p) for p in site.sources], "hosts": [],
                  "problems": [dataclasses.asdict(p) for p in exc.problems],
                  "warnings": [dataclasses.asdict(p) for p in exc.warnings]}
    click.echo(json.dumps(result, indent=2, default=str))
    sys.exit(0 if result["valid"] else EXIT_BAD_INPUT)


@main.command()
@site_options
@limit_option
@playbook_options
@output_option
def up(site: SiteArgs, limit: str | None, run: PlaybookArgs, output: str) -> None:
    """Converge the inventory's hosts to the platform (playbooks/site.yml). Takes
    ansible-playbook's flags: -e, -t/--tags, --skip-tags, -C/--check, -D/--diff, -v,
    --list-hosts, --list-tasks."""
    from mlops_provision import reports
    from mlops_provision.progress import Progress
    from mlops_provision.runner import run_playbook

    inventory = _load_or_exit(site, limit)
    if run.list_hosts or run.list_tasks:
        from mlops_provision.runner import list_playbook

        sys.exit(list_playbook(inventory, run, limit=limit, vault_password_file=site.vault_password_file))
    _announce_admin_config()

    def echo(text: str) -> None:  # -v: ansible-playbook's own lines
        err.print(text.rstrip("\n"), highlight=False, markup=False, soft_wrap=True)

    with Progress(enabled=not run.verbosity) as progress:
        summary = run_playbook(inventory, verb="check" if run.check else "up", limit=limit,
                               tags=run.tags, check=run.check, vault_password_file=site.vault_password_file,
                               on_change=progress.update, args=run.cmdline(), verbosity=run.verbosity,
                               echo=echo, extra_secrets=tuple(extra_vars_secrets(run.extra_vars)))
    if output == "json":
        click.echo(reports.run_json(summary))
    else:
        reports.print_run(summary)
    sys.exit(summary.exit_code)


@main.command()
@site_options
@limit_option
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results as JUnit XML to this file.")
@click.option("-k", "select", default=None, help="Only checks matching this pytest -k expression.")
@click.option("--compliance", is_flag=True,
              help="Also scan each node with Lynis and OpenSCAP (takes minutes; HTML reports go to the run record).")
@click.option("--lynis-min-index", default=85, show_default=True, type=click.IntRange(0, 100),
              help="Lynis hardening index a node must reach with --compliance.")
@click.option("--scap-profile", default="anssi_bp28_intermediary", show_default=True,
              help="SCAP Security Guide profile OpenSCAP evaluates with --compliance (e.g. anssi_bp28_minimal).")
@click.option("--show-skipped", "-v", "show_skipped", is_flag=True,
              help="List every skipped check (host, check, reason), not one line per reason.")
@output_option
def verify(site: SiteArgs, limit: str | None,
           junit: Path | None, select: str | None, compliance: bool, lynis_min_index: int,
           scap_profile: str, show_skipped: bool, output: str) -> None:
    """Prove the hosts' state with the Testinfra checks. Exit 0 all pass, 1 otherwise."""
    from mlops_provision import reports
    from mlops_provision.verify import run_checks

    vault_password_file = site.vault_password_file
    inventory = _load_or_exit(site, limit)
    err.print(f"verifying {len(hosts_matching(inventory, limit))} host(s)…")
    report = run_checks(inventory, limit=limit, vault_password_file=vault_password_file,
                        select=select, compliance=compliance, lynis_min_index=lynis_min_index,
                        scap_profile=scap_profile,
                        on_progress=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True))
    if not report.results:
        err.print("[bold red]no check ran[/]; pytest said:\n" + report.output_tail, markup=True)
    from mlops_provision.drift.run import save_verify_record

    record = save_verify_record(inventory, report)
    report.run_dir = str(record)
    if report.artifacts:
        err.print(f"reports kept in {record}")
    if junit:
        reports.verify_junit(report, junit)
    if output == "json":
        click.echo(reports.verify_json(report))
    else:
        reports.print_verify(report, show_skipped=show_skipped)  # ends with the counts and the record
    sys.exit(report.exit_code)


@main.command()
@site_options
@limit_option
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JUnit XML (one testsuite per host) to this file.")
@click.option("--prometheus", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a node_exporter textfile (drifted items per host and role) here.")
@click.option("--history", is_flag=True, help="List the site's last drift runs with their counts; run nothing.")
@click.option("--install-timer", is_flag=True, help="Install a systemd timer on this machine that runs drift.")
@click.option("--every", default="1h", show_default=True, help="With --install-timer: how often (30min, 1h, 1d).")
@click.option("--uninstall-timer", is_flag=True, help="Remove this site's drift timer from this machine.")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=None, hidden=True)
@output_option
def drift(site: SiteArgs, limit: str | None, junit: Path | None,
          prometheus: Path | None, history: bool, install_timer: bool, every: str, uninstall_timer: bool,
          unit_dir: Path | None, output: str) -> None:
    """Find drift: check mode with diffs plus the verify checks, one report per host.
    Exit 0 clean, 4 drift found, 1 error, 2 bad input, 3 unreachable (docs/drift.md)."""
    from mlops_provision.drift import command

    if history:
        sys.exit(command.print_history(site.path, output))
    vault_password_file = site.vault_password_file
    given, site = site, _load_or_exit(site, limit)  # bad input: exit 2, no host touched
    if install_timer or uninstall_timer:
        if len(given.sources) > 1 or given.vault_ids:
            raise click.UsageError("the drift timer takes one inventory (-i) and a vault password "
                                   "file (--vault-password-file): it runs unattended")
        sys.exit(command.schedule(given.path, vault_password_file, limit, every, install_timer, unit_dir))
    sys.exit(command.run(site, vault_password_file, limit, output, junit, prometheus))


@main.command()
@site_options
@limit_option
@output_option
def facts(site: SiteArgs, limit: str | None, output: str) -> None:
    """Hardware, Secure Boot and GPU (NVML) facts of each node; changes nothing."""
    from mlops_provision.gpu.collect import collect, human_lines

    vault_password_file = site.vault_password_file
    inventory = _load_or_exit(site, limit)
    summary, records = collect(inventory, limit=limit, vault_password_file=vault_password_file)
    if output == "json":
        click.echo(json.dumps({"run_dir": summary.run_dir, "exit_code": summary.exit_code,
                               "nodes": {h.host: {"status": h.status, "message": h.message,
                                                  "facts": records.get(h.host)} for h in summary.hosts}},
                              indent=2, default=str))
    else:
        for h in summary.hosts:
            for line in human_lines(h.host, records.get(h.host), h.message):
                click.echo(line)
    sys.exit(summary.exit_code)


@main.command()
@site_options
@click.option("--since", default="7d", show_default=True,
              help="The window, back from now: a number and m, h, d or w (30m, 12h, 7d, 2w).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report with a chart of energy per day to this HTML file.")
@output_option
def energy(site: SiteArgs, since: str, html_path: Path | None, output: str) -> None:
    """Energy per node and per GPU over a window (kWh, average power, share of idle), read from
    the monitoring layer's Prometheus through the monitoring page; changes nothing."""
    from mlops_provision.monitoring.energy import (
        PrometheusError,
        energy_report,
        parse_since,
        render_table,
        write_html,
    )
    from mlops_provision.monitoring.page import PageUnknown, prometheus_for

    try:
        window = parse_since(since)
    except ValueError as exc:
        err.print(f"[bold red]--since {since!r}[/]: {exc}", highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    inventory = _load_or_exit(site)
    try:
        prom = prometheus_for(inventory)
    except PageUnknown as exc:
        err.print(f"[bold red]{exc}[/]", highlight=False, markup=False)
        sys.exit(EXIT_BAD_INPUT)
    try:
        report = energy_report(prom, window, hosts=inventory.hosts)
    except PrometheusError as exc:
        err.print(f"[bold red]Prometheus at {prom.base_url}: {exc}[/]", highlight=False, markup=False)
        sys.exit(EXIT_FAILED)
    if html_path:
        write_html(report, html_path)
        err.print(f"chart: {html_path}", highlight=False)
    if output == "json":
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(render_table(report))
    sys.exit(0)


@main.group("mlflow")
def mlflow_group() -> None:
    """Operate the MLflow tracking server (group mlflow): take and restore backups."""


def backup_name_pattern() -> re.Pattern[str]:
    """The format of a backup's name, as the mlflow playbooks check it (``mlflow_backup_name_pattern``
    in playbooks/vars/mlflow_backup.yml, the one place it is written)."""
    import yaml

    from mlops_provision import paths

    data = yaml.safe_load((paths.playbook("vars") / "mlflow_backup.yml").read_text()) or {}
    return re.compile(str(data["mlflow_backup_name_pattern"]))


def _run_mlflow_playbook(site: SiteArgs, limit: str | None,
                         playbook: str, verb: str, backup: str, output: str) -> None:
    """Run one of the mlflow playbooks on the selected hosts of group mlflow, like `up`."""
    from mlops_provision import paths, reports
    from mlops_provision.progress import Progress
    from mlops_provision.runner import run_playbook

    if not backup_name_pattern().fullmatch(backup):
        err.print(f"[bold red]invalid backup name {backup!r}[/]: expected letters, digits, '.', '_' and "
                  "'-', starting with a letter or digit", highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    vault_password_file = site.vault_password_file
    inventory = _load_or_exit(site, limit)
    targets = [h for h in hosts_matching(inventory, limit) if h in inventory.groups.get("mlflow", [])]
    if not targets:
        err.print(f"[bold red]no host of group mlflow{' matches --limit ' + repr(limit) if limit else ''} "
                  f"in {', '.join(str(p) for p in site.sources)}[/]", highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    # The backup's name is a run parameter: an extra var, as `ansible-playbook -e` passes it.
    with Progress(enabled=True) as progress:
        summary = run_playbook(inventory, verb=verb, playbook=paths.playbook(playbook),
                               limit=",".join(targets), vault_password_file=vault_password_file,
                               on_change=progress.update, extravars={"mlflow_backup_name": backup})
    if output == "json":
        click.echo(reports.run_json(summary))
    else:
        reports.print_run(summary)
    if summary.exit_code == 0:
        done = "taken" if verb == "mlflow-backup" else "restored"
        err.print(f"backup {backup} {done} on {', '.join(targets)}", highlight=False, markup=False)
    sys.exit(summary.exit_code)


@mlflow_group.command("backup")
@site_options
@limit_option
@click.option("--name", default=None,
              help="Name of the backup (default: the UTC time, e.g. 20260101T023000Z).")
@output_option
def mlflow_backup(site: SiteArgs, limit: str | None,
                  name: str | None, output: str) -> None:
    """Back up the MLflow server now: both databases and the artifact store."""
    from datetime import UTC, datetime

    name = name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    _run_mlflow_playbook(site, limit, "mlflow-backup.yml",
                         "mlflow-backup", name, output)


@mlflow_group.command("restore")
@site_options
@limit_option
@click.option("--backup", "backup", required=True,
              help="Name of the backup to restore (a directory in mlflow_backup_dir).")
@output_option
def mlflow_restore(site: SiteArgs, limit: str | None,
                   backup: str, output: str) -> None:
    """Restore a backup: stops MLflow, replaces both databases and the artifact store, starts it."""
    _run_mlflow_playbook(site, limit, "mlflow-restore.yml",
                         "mlflow-restore", backup, output)


@main.command("init")
@click.argument("site", type=click.Path(file_okay=False, path_type=Path))
@click.option("--vault-client", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your own executable that prints the vault password (pass, a keyring, HashiCorp "
                   "Vault...): init runs it and writes no password file; the site's ansible.cfg names it.")
@click.option("--git/--no-git", default=True, show_default=True,
              help="git init the site and commit its files (the vault password file excepted).")
def init(site: Path, vault_client: Path | None, git: bool) -> None:
    """Make a new site in SITE (a new or empty directory): hosts.yml with every platform group,
    group_vars/ with fresh vault-encrypted secrets, a vault password, ansible.cfg, .gitignore,
    CI templates and a first git commit. Exit 2 if SITE is not empty or the vault client fails."""
    import shlex

    from mlops_provision.site.init import init_site

    result = init_site(site, vault_client=vault_client, git=git)  # errors: exit codes via _Main
    q = shlex.quote
    click.echo(f"New site {site}:")
    for rel in result.files:
        note = {".vault-password": "  (the vault password, mode 0600, kept out of git: keep a copy "
                                   "in your password manager)"}.get(rel, "")
        click.echo(f"  {rel}{note}")
    if result.vault_client is not None:
        click.echo(f"Vault password: printed by {result.vault_client} (ansible.cfg: "
                   f"vault_password_file = {result.ansible_cfg_vault})")
    if result.commit:
        click.echo(f"git: first commit {result.commit[:12]} by {result.author}")
    click.echo("\nNext steps:")
    click.echo(f"  cd {q(str(site))}   # its ansible.cfg names the inventory and the vault password, as "
               "for ansible-playbook")
    steps = [
        "Add your hosts to hosts.yml, then run validate (set ansible_user there and "
        "mlops_admin_cidrs in group_vars/all.yml too):\n     mlops-provision validate",
        "Put each node's host key in ~/.ssh/known_hosts: `ssh USER@NODE` once, comparing the "
        "fingerprint with the node's console.",
        "Read the nodes, changing nothing:\n     mlops-provision facts",
        "See what up would change (it validates first), then converge:\n"
        "     mlops-provision up --check\n     mlops-provision up",
        ("Push the site to a private repository" if result.commit else
         "Keep the site in a private repository (the .gitignore keeps the password out)")
        + "; its CI (.gitlab-ci.yml, .github/workflows/mlops-provision.yml) validates every push "
        "and runs drift on a schedule, with the vault password from the CI secret "
        "MLOPS_VAULT_PASSWORD.",
    ]
    for n, step in enumerate(steps, start=1):
        click.echo(f"  {n}. {step}")


@main.group()
def sandbox() -> None:
    """A local sandbox of real test hosts (systemd containers or QEMU VMs) behind SSH."""


release_option = click.option(
    "--release", type=click.Choice(list(RELEASES)), default=CURRENT, show_default=True,
    help="Debian release of the nodes (the roles support both; default Debian's current stable).")
site_option = click.option("--site", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                           show_default=True, help="Site directory; the sandbox lives in "
                           "SITE/.mlops-provision/sandbox.")


@sandbox.command("up")
@site_option
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(min=1),
              help="Number of nodes (containers: up to 200; VMs: up to 9).")
@click.option("--kind", type=click.Choice(["container", "vm"]), default="container", show_default=True)
@click.option("--release", type=click.Choice(list(RELEASES)), multiple=True, default=[CURRENT],
              show_default=True, help="Debian release of the nodes (the roles support both; default Debian's "
              "current stable). Repeated, a mixed sandbox: the Nth --release is node N's, the last one "
              "also the rest's (--release 12 --release 13: node1 on 12, the others on 13).")
def sandbox_up(site: Path, nodes: int, kind: str, release: tuple[str, ...]) -> None:
    """Start N sandbox nodes and write their inventory."""
    from mlops_provision.sandbox import Sandbox

    box = Sandbox(site, log=lambda m: err.print(m, highlight=False, markup=False))
    box.up(nodes=nodes, kind=kind, release=list(release))  # errors: exit codes via _Main (sandbox/errors)
    _print_status(box)
    click.echo(f"inventory: {box.inventory}")


def _print_status(box) -> None:
    rows = box.status()
    table = Table(title=f"sandbox {box.dir}", title_justify="left")
    columns = ("node", "kind", "debian", "state", "ssh", "address", "groups", "published")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(row.get(c, "") for c in columns))
    output_console().print(fit_title(table))


@sandbox.command("image")
@click.option("--kind", type=click.Choice(["container", "vm"]), default="container", show_default=True)
@release_option
def sandbox_image(kind: str, release: str) -> None:
    """Build the sandbox image if needed and print it (podman tag, or the VM base disk)."""
    from mlops_provision.sandbox import build_image

    log = lambda m: err.print(m, highlight=False, markup=False)  # noqa: E731
    click.echo(build_image(kind, log, release=release))  # errors: exit codes via _Main (sandbox/errors)


@sandbox.command("status")
@site_option
@click.option("--output", type=click.Choice(["human", "json"]), default="human")
def sandbox_status(site: Path, output: str) -> None:
    """Show the sandbox's nodes. Exit 1 if there is none or one is not running."""
    from mlops_provision.sandbox import Sandbox

    box = Sandbox(site)
    rows = box.status()
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        _print_status(box)
    else:
        click.echo("no sandbox is up")
    sys.exit(0 if rows and all(r["state"] == "running" for r in rows) else EXIT_FAILED)


@sandbox.command("down")
@site_option
def sandbox_down(site: Path) -> None:
    """Stop and remove the sandbox's nodes (the cached image stays)."""
    from mlops_provision.sandbox import Sandbox

    box = Sandbox(site)
    click.echo("sandbox removed" if box.down() else "no sandbox was up")


if __name__ == "__main__":
    main()
