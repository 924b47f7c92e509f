"""The vault password of a site: read as Ansible reads it (a file, or an executable that prints
it), or taken from a running Ansible's loader (the preflight play: ``--vault-id``,
``--ask-vault-pass``, an AWX vault credential); handed to Ansible's loader as ``VaultSecret``
pairs, and used to decrypt what the line index reads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlops_provision.site.problems import BAD_VAULT_PASSWORD, NO_VAULT_PASSWORD, Problems

#: The vault identities (``label@file``, ``label@script``) every process of a run reads, as
#: Ansible reads them (``--vault-id`` given on the command line; see ansible_args).
VAULT_IDS_ENV = "ANSIBLE_VAULT_IDENTITY_LIST"


def identity_secrets(identities: str, problems: Problems) -> list:
    """The ``(vault_id, VaultSecret)`` pairs of a comma-separated vault identity list, read by
    Ansible's own ``CLI.setup_vault_secrets`` (files, client scripts called with
    ``--vault-id LABEL``)."""
    from ansible.cli import CLI
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader

    ids = [i.strip() for i in identities.split(",") if i.strip()]
    try:
        return CLI.setup_vault_secrets(DataLoader(), ids, auto_prompt=False,
                                       initialize_context=False)
    except AnsibleError as exc:
        problems.add(Path(ids[0].partition("@")[2] or "."), "vault identity", "--vault-id",
                     f"cannot be read: {exc.message}: expected a file holding the vault "
                     "password, or a script that prints it")
        return []


class Vault:
    """Decrypts vault text with the site's password; remembers every plaintext (secrets)."""

    def __init__(self, password_file: str | os.PathLike[str] | None, problems: Problems,
                 ansible_secrets: list | None = None):
        """``ansible_secrets``: Ansible's own ``(vault_id, VaultSecret)`` pairs (a loader's
        ``_vault.secrets``), used instead of ``password_file``."""
        self.password: bytes | None = None
        given = password_file is not None or bool(ansible_secrets)
        self.error = BAD_VAULT_PASSWORD if given else NO_VAULT_PASSWORD
        self.failed = False  # a vault value or file could not be decrypted
        self.secrets: set[str] = set()
        self._lib = None
        self._ansible_secrets: list = []
        self._cache: dict[str, str | None] = {}
        if ansible_secrets:
            self._take(ansible_secrets)
        elif password_file is not None:
            self._read(Path(password_file), problems)

    def _take(self, ansible_secrets: list) -> None:
        from ansible.parsing.vault import VaultLib

        self._ansible_secrets = list(ansible_secrets)
        for _, secret in self._ansible_secrets:
            password = secret.bytes
            if password:
                self.password = self.password or password
                self.secrets.add(password.decode("utf-8", "replace"))
        self._lib = VaultLib(self._ansible_secrets)

    def _read(self, pw_file: Path, problems: Problems) -> None:
        where, key = "vault password file", "--vault-password-file"
        try:
            if not pw_file.is_file():
                raise OSError(0, "no such file")
            if os.access(pw_file, os.X_OK):  # a script that prints the password, as in Ansible
                run = subprocess.run([str(pw_file.resolve())], capture_output=True, timeout=60,
                                     check=False)
                if run.returncode != 0:
                    raise OSError(0, f"the script exited with status {run.returncode}")
                password = run.stdout.strip(b"\r\n")
            else:
                password = pw_file.read_bytes().strip()
        except (OSError, subprocess.SubprocessError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            problems.add(pw_file, where, key, f"cannot be read ({reason}): expected a file "
                                              "holding the vault password")
            return
        if not password:
            problems.add(pw_file, where, key, "is empty: expected the vault password")
            return
        from ansible.parsing.vault import VaultLib, VaultSecret

        self.password = password
        self._lib = VaultLib([("default", VaultSecret(password))])
        self.secrets.add(password.decode("utf-8", "replace"))

    def ansible_secrets(self) -> list:
        """The secrets for :meth:`DataLoader.set_vault_secrets`."""
        from ansible.parsing.vault import VaultSecret

        if self._ansible_secrets:
            return list(self._ansible_secrets)
        return [("default", VaultSecret(self.password))] if self.password else []

    def decrypt(self, vaulttext: str) -> str | None:
        if vaulttext in self._cache:
            return self._cache[vaulttext]
        plaintext = None
        if self._lib is not None:
            from ansible.errors import AnsibleError

            try:
                plaintext = self._lib.decrypt(vaulttext.strip()).decode("utf-8")
            except (AnsibleError, ValueError, UnicodeDecodeError):
                plaintext = None
        self._cache[vaulttext] = plaintext
        if plaintext:
            self.secrets.add(plaintext)
        return plaintext
