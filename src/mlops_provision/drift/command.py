"""The `drift` verb's body (cli.py declares its options): run, report, record, notify, schedule."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlops_provision.errors import EXIT_FAILED, EXIT_OK
from mlops_provision.progress import output_console
from mlops_provision.site import Site

err = output_console(stderr=True)

#: Site variables (group all) of the optional webhook; the token belongs in ansible-vault.
WEBHOOK_VARS = ("mlops_drift_webhook_url", "mlops_drift_webhook_token", "mlops_drift_webhook_ca_file")


def webhook_settings(site: Site, hosts: list[str]) -> dict[str, str]:
    """The webhook's URL, token and CA file as Ansible resolves them (on the first host)."""
    if not hosts:
        return {}
    hv = site.hostvars(hosts[0])
    return {k: str(hv[k]) for k in WEBHOOK_VARS if hv.get(k)}


def print_history(inventory: Path, output: str) -> int:
    from mlops_provision.drift.run import history

    runs = history(inventory)
    if output == "json":
        click.echo(json.dumps(runs, indent=2))
        return EXIT_OK
    if not runs:
        click.echo("no drift run recorded for this site")
    for r in runs:
        hosts = ", ".join(f"{h} {n}" for h, n in sorted(r["hosts"].items())) or r.get("note", "")
        click.echo(f"{r['started']}  exit {r['exit_code']}  {r['total']} item(s)  {hosts}  {r['run_dir']}")
    return EXIT_OK


def schedule(inventory: Path, vault_password_file: Path | None, limit: str | None, every: str,
             install: bool, unit_dir: Path | None) -> int:
    from mlops_provision.drift import timer

    kwargs = {"unit_dir": unit_dir} if unit_dir else {}
    if install:
        written = timer.install(inventory, every, vault_password_file, limit, **kwargs)
        click.echo(f"installed {', '.join(p.name for p in written)} (every {every}); results in "
                   f"{inventory.resolve().parent / '.mlops-provision'}/drift.json, drift.prom, drift.xml")
    else:
        removed = timer.uninstall(inventory, **kwargs)
        click.echo(f"removed {', '.join(p.name for p in removed)}" if removed else "no drift timer was installed")
    return EXIT_OK


def deliver_to_nodes(site: Site, report, vault_password_file: Path | None) -> None:
    """Each checked node gets its findings as a node-exporter textfile (playbooks/drift-report.yml),
    so that the monitoring layer alerts on drift. A node that cannot take it is named; the
    drift report itself stands (the run's exit code is the drift check's)."""
    from mlops_provision import paths
    from mlops_provision.drift.outputs import host_prometheus_texts
    from mlops_provision.runner import run_playbook

    texts = host_prometheus_texts(report, str(site.path.resolve().parent))
    if not texts:
        return
    summary = run_playbook(site, verb="drift-report", playbook=paths.playbook("drift-report.yml"),
                           limit=",".join(sorted(texts)), vault_password_file=vault_password_file,
                           extravars={"mlops_drift_textfiles": texts})
    failed = sorted(h.host for h in summary.hosts if h.status in ("failed", "unreachable"))
    if failed:
        err.print(f"drift findings not handed to node-exporter on: {', '.join(failed)}", highlight=False)


def run(site: Site, vault_password_file: Path | None, limit: str | None, output: str,
        junit: Path | None, prometheus: Path | None) -> int:
    """Run a drift check and write every output asked for; returns the exit code."""
    from mlops_provision.drift.outputs import (
        WebhookFailed,
        post_webhook,
        print_drift,
        write_junit,
        write_prometheus,
    )
    from mlops_provision.drift.run import run_drift
    from mlops_provision.progress import Progress

    hosts = site.matching(limit)
    err.print(f"drift check of {len(hosts)} host(s): check mode with diffs and the verify checks…")
    with Progress(enabled=True) as progress:
        report = run_drift(site, limit=limit, vault_password_file=vault_password_file,
                           on_change=progress.update)
    if junit:
        write_junit(report, junit)
    if prometheus:
        write_prometheus(report, str(site.path.resolve().parent), prometheus)
    deliver_to_nodes(site, report, vault_password_file)
    if output == "json":
        click.echo(report.to_json())
    else:
        print_drift(report)
    hook = webhook_settings(site, hosts)
    if hook.get("mlops_drift_webhook_url"):
        try:
            status = post_webhook(hook["mlops_drift_webhook_url"], report.to_dict(),
                                  token=hook.get("mlops_drift_webhook_token"),
                                  cafile=hook.get("mlops_drift_webhook_ca_file"))
            err.print(f"webhook: HTTP {status}", highlight=False)
        except WebhookFailed as exc:  # the report is out; the notice failed: say so, exit 1
            err.print(f"[bold red]webhook: {exc}[/]", highlight=False)
            return EXIT_FAILED
    return report.exit_code
