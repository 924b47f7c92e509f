"""A systemd timer on the admin (management) machine that runs `drift` for a site.

``mlops-provision-drift-<name>.service`` (oneshot) runs ``drift`` with the site's inventory, a
Prometheus textfile and a JSON report next to the site's records; its run records land in the
site's ``.mlops-provision/runs/`` like any other. ``…-<name>.timer`` starts it every
``--every`` (first 2 minutes after boot), with a randomized delay so sites do not all fire at
once. Exit code 4 (drift found) is a successful run of the service (``SuccessExitStatus=4``):
the finding is in the outputs, not in a failed unit.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

from mlops_provision import paths
from mlops_provision.errors import BadInput, Failed

UNIT_DIR = Path("/etc/systemd/system")
EVERY = re.compile(r"^\d+(s|min|m|h|d|w)$")


def unit_name(inventory: Path) -> str:
    """``mlops-provision-drift-<site dir name>-<hash>``: one timer per site on a machine."""
    site = paths.site_state_dir(inventory).parent
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", site.name).strip("-")[:40] or "site"
    return f"mlops-provision-drift-{slug}-{hashlib.sha256(str(site).encode()).hexdigest()[:8]}"


def units(inventory: Path, every: str, vault_password_file: Path | None = None,
          limit: str | None = None, executable: str | None = None) -> dict[str, str]:
    """The service and timer unit files' text, by file name."""
    if not EVERY.match(every):
        raise BadInput(f"--every {every!r}: expected a number and a unit, e.g. 30min, 1h, 1d")
    every = every[:-1] + "min" if every.endswith("m") else every
    inventory = inventory.resolve()
    state = paths.site_state_dir(inventory)
    name = unit_name(inventory)
    cmd = [executable or sys.executable, "-m", "mlops_provision.cli", "drift", "-i", str(inventory),
           "--output", "json", "--prometheus", str(state / "drift.prom"), "--junit", str(state / "drift.xml")]
    if vault_password_file:
        cmd += ["--vault-password-file", str(Path(vault_password_file).resolve())]
    if limit:
        cmd += ["--limit", limit]
    service = f"""[Unit]
Description=mlops-provision drift check of {inventory}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory={state.parent}
Environment=MLOPS_PROVISION_HOME={paths.project_root()}
Environment=HOME=%h LANG=C.UTF-8
# drift closes its SSH masters as it ends (mlops_provision.sshmux): nothing outlives the run in
# the unit's cgroup.
TimeoutStopSec=120s
ExecStart=/bin/sh -c {shlex.quote(shlex.join(cmd) + ' > ' + shlex.quote(str(state / 'drift.json')))}
SuccessExitStatus=4
Nice=10
TimeoutStartSec=1h
"""
    timer = f"""[Unit]
Description=Run the mlops-provision drift check of {inventory} every {every}

[Timer]
OnBootSec=2min
OnUnitActiveSec={every}
RandomizedDelaySec=60
AccuracySec=30s
Unit={name}.service

[Install]
WantedBy=timers.target
"""
    return {f"{name}.service": service, f"{name}.timer": timer}


def _systemctl(*args: str) -> None:
    try:
        subprocess.run(["systemctl", *args], check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise Failed("systemctl not found: install the timer on a machine that runs systemd") from exc
    except subprocess.CalledProcessError as exc:
        raise Failed(f"systemctl {' '.join(args)} exited {exc.returncode}",
                     details=exc.stderr.strip().splitlines()[-5:]) from exc


def install(inventory: Path, every: str, vault_password_file: Path | None = None,
            limit: str | None = None, unit_dir: Path = UNIT_DIR) -> list[Path]:
    """Write the units, reload systemd, enable and start the timer. Returns the files written."""
    paths.site_state_dir(inventory).mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in units(inventory, every, vault_password_file, limit).items():
        path = Path(unit_dir) / fname
        path.write_text(text)
        path.chmod(0o644)
        written.append(path)
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", f"{unit_name(inventory)}.timer")
    return written


def uninstall(inventory: Path, unit_dir: Path = UNIT_DIR) -> list[Path]:
    """Stop and disable the timer, remove both units, reload systemd. Returns the files removed."""
    name = unit_name(inventory)
    removed = [p for p in (Path(unit_dir) / f"{name}.timer", Path(unit_dir) / f"{name}.service") if p.exists()]
    if removed:
        _systemctl("disable", "--now", f"{name}.timer")
    for path in removed:
        path.unlink()
    if removed:
        _systemctl("daemon-reload")
    return removed
