"""The `mlops-provision` command line. Exit codes: see docs/cli.md (0 ok, 1 failed, 2 bad input,
3 unreachable, 4 drift found / changes pending)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
from rich.table import Table

from mlops_provision import __version__
from mlops_provision.errors import exit_for
from mlops_provision.progress import fit_title, output_console
from mlops_provision.runner import EXIT_BAD_INPUT, EXIT_FAILED
from mlops_provision.site import InventoryInvalid, hosts_matching, load

# On a terminal, its width; in a pipe or a CI log, whole lines (no wrapping at 80 columns).
err = output_console(stderr=True)

inventory_option = click.option(
    "-i", "--inventory", "inventory_path", required=True,
    type=click.Path(exists=True, path_type=Path),
    help="YAML inventory file (or a directory holding hosts.yml).")
vault_option = click.option(
    "--vault-password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="ANSIBLE_VAULT_PASSWORD_FILE",
    help="File holding the ansible-vault password (or ANSIBLE_VAULT_PASSWORD_FILE).")
output_option = click.option("--output", type=click.Choice(["human", "json"]), default="human",
                             show_default=True, help="Result format on stdout.")
limit_option = click.option("--limit", "-l", default=None,
                            help="Hosts or groups to act on (Ansible --limit syntax).")


def _vault_file(path: Path, vault_password_file: Path | None) -> Path | None:
    """The vault password file to use: the one given, else a sandbox inventory's own."""
    if vault_password_file is not None:
        return vault_password_file
    from mlops_provision.sandbox.site_inventory import sandbox_vault_password

    return sandbox_vault_password(path)


def _load_or_exit(path: Path, vault_password_file: Path | None, limit: str | None = None):
    try:
        inventory = load(path, vault_password_file=vault_password_file)
    except InventoryInvalid as exc:
        err.print(f"[bold red]inventory {path} is invalid: {len(exc.problems)} problem(s)[/]")
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False)
        sys.exit(EXIT_BAD_INPUT)
    if limit and not hosts_matching(inventory, limit):
        err.print(f"[bold red]--limit {limit!r} matches no host of {path}[/] "
                  f"(hosts: {', '.join(inventory.hosts)}; groups: {', '.join(sorted(inventory.groups))})")
        sys.exit(EXIT_BAD_INPUT)
    return inventory


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
@inventory_option
@vault_option
def validate(inventory_path: Path, vault_password_file: Path | None) -> None:
    """Check an inventory's structure and variables; contacts no host. Exit 2 if invalid."""
    vault_password_file = _vault_file(inventory_path, vault_password_file)
    inventory = _load_or_exit(inventory_path, vault_password_file)
    click.echo(f"{inventory.path}: valid ({len(inventory.hosts)} host(s): {', '.join(inventory.hosts)})")


@main.command()
@inventory_option
@vault_option
@limit_option
@click.option("--tags", "-t", default=None, help="Layers to run, e.g. base (comma-separated).")
@click.option("--check", is_flag=True, help="Dry run: report what would change, change nothing.")
@output_option
def up(inventory_path: Path, vault_password_file: Path | None, limit: str | None, tags: str | None,
       check: bool, output: str) -> None:
    """Converge the inventory's hosts to the platform (playbooks/site.yml)."""
    from mlops_provision import reports
    from mlops_provision.progress import Progress
    from mlops_provision.runner import run_playbook

    vault_password_file = _vault_file(inventory_path, vault_password_file)
    inventory = _load_or_exit(inventory_path, vault_password_file, limit)
    with Progress(enabled=True) as progress:
        summary = run_playbook(inventory, verb="check" if check else "up", limit=limit, tags=tags,
                               check=check, vault_password_file=vault_password_file,
                               on_change=progress.update)
    if output == "json":
        click.echo(reports.run_json(summary))
    else:
        reports.print_run(summary)
    sys.exit(summary.exit_code)


@main.command()
@inventory_option
@vault_option
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
def verify(inventory_path: Path, vault_password_file: Path | None, limit: str | None,
           junit: Path | None, select: str | None, compliance: bool, lynis_min_index: int,
           scap_profile: str, show_skipped: bool, output: str) -> None:
    """Prove the hosts' state with the Testinfra checks. Exit 0 all pass, 1 otherwise."""
    from mlops_provision import reports
    from mlops_provision.verify import run_checks

    vault_password_file = _vault_file(inventory_path, vault_password_file)
    inventory = _load_or_exit(inventory_path, vault_password_file, limit)
    err.print(f"verifying {len(hosts_matching(inventory, limit))} host(s)…")
    report = run_checks(inventory, limit=limit, vault_password_file=vault_password_file,
                        select=select, compliance=compliance, lynis_min_index=lynis_min_index,
                        scap_profile=scap_profile)
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
@inventory_option
@vault_option
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
def drift(inventory_path: Path, vault_password_file: Path | None, limit: str | None, junit: Path | None,
          prometheus: Path | None, history: bool, install_timer: bool, every: str, uninstall_timer: bool,
          unit_dir: Path | None, output: str) -> None:
    """Find drift: check mode with diffs plus the verify checks, one report per host.
    Exit 0 clean, 4 drift found, 1 error, 2 bad input, 3 unreachable (docs/drift.md)."""
    from mlops_provision.drift import command

    if history:
        sys.exit(command.print_history(inventory_path, output))
    vault_password_file = _vault_file(inventory_path, vault_password_file)
    site = _load_or_exit(inventory_path, vault_password_file, limit)  # bad input: exit 2, no host touched
    if install_timer or uninstall_timer:
        sys.exit(command.schedule(inventory_path, vault_password_file, limit, every, install_timer, unit_dir))
    sys.exit(command.run(site, vault_password_file, limit, output, junit, prometheus))


@main.command()
@inventory_option
@vault_option
@limit_option
@output_option
def facts(inventory_path: Path, vault_password_file: Path | None, limit: str | None, output: str) -> None:
    """Hardware, Secure Boot and GPU (NVML) facts of each node; changes nothing."""
    from mlops_provision.gpu.collect import collect, human_lines

    vault_password_file = _vault_file(inventory_path, vault_password_file)
    inventory = _load_or_exit(inventory_path, vault_password_file, limit)
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


def _run_mlflow_playbook(inventory_path: Path, vault_password_file: Path | None, limit: str | None,
                         playbook: str, verb: str, backup: str, output: str) -> None:
    """Run one of the mlflow playbooks on the selected hosts of group mlflow, like `up`."""
    from mlops_provision import paths, reports
    from mlops_provision.progress import Progress
    from mlops_provision.runner import run_playbook

    if not backup_name_pattern().fullmatch(backup):
        err.print(f"[bold red]invalid backup name {backup!r}[/]: expected letters, digits, '.', '_' and "
                  "'-', starting with a letter or digit", highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    vault_password_file = _vault_file(inventory_path, vault_password_file)
    inventory = _load_or_exit(inventory_path, vault_password_file, limit)
    targets = [h for h in hosts_matching(inventory, limit) if h in inventory.groups.get("mlflow", [])]
    if not targets:
        err.print(f"[bold red]no host of group mlflow{' matches --limit ' + repr(limit) if limit else ''} "
                  f"in {inventory_path}[/]", highlight=False)
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
@inventory_option
@vault_option
@limit_option
@click.option("--name", default=None,
              help="Name of the backup (default: the UTC time, e.g. 20260101T023000Z).")
@output_option
def mlflow_backup(inventory_path: Path, vault_password_file: Path | None, limit: str | None,
                  name: str | None, output: str) -> None:
    """Back up the MLflow server now: both databases and the artifact store."""
    from datetime import UTC, datetime

    name = name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    _run_mlflow_playbook(inventory_path, vault_password_file, limit, "mlflow-backup.yml",
                         "mlflow-backup", name, output)


@mlflow_group.command("restore")
@inventory_option
@vault_option
@limit_option
@click.option("--backup", "backup", required=True,
              help="Name of the backup to restore (a directory in mlflow_backup_dir).")
@output_option
def mlflow_restore(inventory_path: Path, vault_password_file: Path | None, limit: str | None,
                   backup: str, output: str) -> None:
    """Restore a backup: stops MLflow, replaces both databases and the artifact store, starts it."""
    _run_mlflow_playbook(inventory_path, vault_password_file, limit, "mlflow-restore.yml",
                         "mlflow-restore", backup, output)


@main.group()
def sandbox() -> None:
    """A local sandbox of real test hosts (systemd containers or QEMU VMs) behind SSH."""


site_option = click.option("--site", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                           show_default=True, help="Site directory; the sandbox lives in "
                           "SITE/.mlops-provision/sandbox.")


@sandbox.command("up")
@site_option
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(min=1),
              help="Number of nodes (containers: up to 200; VMs: up to 9).")
@click.option("--kind", type=click.Choice(["container", "vm"]), default="container", show_default=True)
def sandbox_up(site: Path, nodes: int, kind: str) -> None:
    """Start N sandbox nodes and write their inventory."""
    from mlops_provision.sandbox import Sandbox

    box = Sandbox(site, log=lambda m: err.print(m, highlight=False, markup=False))
    box.up(nodes=nodes, kind=kind)  # errors: exit codes via _Main (sandbox/errors)
    _print_status(box)
    click.echo(f"inventory: {box.inventory}")


def _print_status(box) -> None:
    rows = box.status()
    table = Table(title=f"sandbox {box.dir}", title_justify="left")
    columns = ("node", "kind", "state", "ssh", "address", "groups", "published")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(row.get(c, "") for c in columns))
    output_console().print(fit_title(table))


@sandbox.command("image")
@click.option("--kind", type=click.Choice(["container", "vm"]), default="container", show_default=True)
def sandbox_image(kind: str) -> None:
    """Build the sandbox image if needed and print it (podman tag, or the VM base disk)."""
    from mlops_provision.sandbox import build_image

    log = lambda m: err.print(m, highlight=False, markup=False)  # noqa: E731
    click.echo(build_image(kind, log))  # errors: exit codes via _Main (sandbox/errors)


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
