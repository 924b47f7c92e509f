"""Shared helpers: run the real CLI as a subprocess, the way an admin does."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "mlops_provision.cli"]


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def json(self):
        return json.loads(self.stdout)


def mp(*args: str | Path, timeout: int = 900, env: dict | None = None) -> Result:
    """Run `mlops-provision ARGS` and report its wall time (shown with pytest -s / -rA)."""
    return mp_start(*args, timeout=timeout, env=env).wait()


class Started:
    """`mlops-provision ARGS`, started (``mp_start``); ``wait()`` gives its Result and reports its
    wall time. Its output goes to files, so that a long run in the background never blocks on a
    full pipe."""

    def __init__(self, args: tuple, timeout: int, env: dict | None):
        import tempfile

        self.args, self.timeout = [str(a) for a in args], timeout
        # Open for as long as the command runs; closed by wait().
        self._out, self._err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._t0 = time.monotonic()
        self._proc = subprocess.Popen([*CLI, *self.args], stdout=self._out, stderr=self._err, text=True, cwd=ROOT,
                                      env={**os.environ, **(env or {})})
        self._result: Result | None = None

    def wait(self) -> Result:
        if self._result is None:
            try:
                rc = self._proc.wait(timeout=max(0.0, self.timeout - (time.monotonic() - self._t0)))
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise
            seconds = time.monotonic() - self._t0
            self._out.seek(0)
            self._err.seek(0)
            self._result = Result(rc, self._out.read(), self._err.read(), seconds)
            self._out.close()
            self._err.close()
            sys.stderr.write(f"\n[wall] mlops-provision {' '.join(self.args)}: {seconds:.1f}s rc={rc}\n")
        return self._result


def mp_start(*args: str | Path, timeout: int = 900, env: dict | None = None) -> Started:
    """Start `mlops-provision ARGS` and return at once; ``.wait()`` gives what ``mp`` returns."""
    return Started(args, timeout, env)


@pytest.fixture
def cli():
    return mp


EXAMPLE = ROOT / "inventories" / "example"


def example_copy(site: Path, password: bytes = b"a-password-of-this-test-site", fresh: bool = True) -> Path:
    """A copy of ``inventories/example`` at ``site`` whose vault files are encrypted with
    ``password`` (written beside the site, returned), holding new random secrets: validate
    refuses the example's own, which are published (``fresh=False`` keeps them)."""
    import secrets
    import shutil

    import yaml
    from ansible.parsing.vault import VaultLib, VaultSecret

    shutil.copytree(EXAMPLE, site, ignore=shutil.ignore_patterns("*vault-password"))
    example_password = next(EXAMPLE.glob("*vault-password")).read_bytes().strip()
    old = VaultLib([("default", VaultSecret(example_password))])
    new = VaultLib([("default", VaultSecret(password))])
    for file in sorted(site.rglob("*.yml")):
        if not file.read_bytes().startswith(b"$ANSIBLE_VAULT"):
            continue
        text = old.decrypt(file.read_bytes()).decode()
        if fresh:  # a key: 32 random bytes in base64; anything else: a random password
            values = yaml.safe_load(text) or {}
            text = "---\n" + "".join(
                f"{key}: {_key32() if key.endswith('_key') else secrets.token_urlsafe(18)}\n"
                for key in values)
        file.write_bytes(new.encrypt(text))
    password_file = site.parent / f"{site.name}-vault-password"
    password_file.write_bytes(password + b"\n")
    return password_file


def _key32() -> str:
    import base64
    import secrets

    return base64.b64encode(secrets.token_bytes(32)).decode()


def tls_ca_and_cert(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it, written under ``tmp_path``:
    (ca.pem, cert.pem, key.pem). With the key identifiers that strict verification (Python 3.13) wants."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    valid = {"not_valid_before": now - datetime.timedelta(minutes=5),
             "not_valid_after": now + datetime.timedelta(hours=1)}
    ca = (x509.CertificateBuilder(subject_name=ca_name, issuer_name=ca_name, public_key=ca_key.public_key(),
                                  serial_number=x509.random_serial_number(), **valid)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder(subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                                    issuer_name=ca_name, public_key=key.public_key(),
                                    serial_number=x509.random_serial_number(), **valid)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp_path / f"{name}-ca.pem", tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
