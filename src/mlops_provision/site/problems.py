"""What is wrong with a site: :class:`Problem` (file, line, host/group, key, what is expected)
and :class:`InventoryInvalid`, raised with every problem found. :class:`Problems` also keeps
warnings: the same shape, reported, but they do not make a site invalid (unless
``load(..., strict_warnings=True)``).

A problem that a host rule finds on many hosts but whose cause is one line (a group_vars or
inventory group variable) is one problem at that line, the hosts counted: "(50 hosts: gpu1,
gpu2, gpu3 and 47 more)"."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_provision.errors import BadInput

NO_VAULT_PASSWORD = ("is encrypted with ansible-vault but no vault password was given "
                     "(--vault-password-file or ANSIBLE_VAULT_PASSWORD_FILE)")
BAD_VAULT_PASSWORD = "cannot be decrypted with the given vault password"
#: How many host names a merged problem shows before "and N more".
SHOWN_HOSTS = 3


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory (or, as a warning, likely wrong)."""

    file: str
    where: str  # "host 'node1'", "group 'gpu_workers'", "inventory", ...
    key: str
    expected: str
    line: int | None = None  # 1-based line of the key in ``file``, when known

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        return f"{loc}: {self.where}: {self.key}: {self.expected}"


class InventoryInvalid(BadInput):
    """The inventory has problems; ``problems`` lists all of them, ``warnings`` what was found
    besides (reported, not a reason to refuse). Exit code 2 (bad input): each problem is a
    detail line of the error (:func:`mlops_provision.errors.exit_for`)."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None):
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the inventory",
                         details=[str(p) for p in self.problems])

    def __str__(self) -> str:
        return "\n".join(self.lines())


def without_host(text: str, host: str) -> str:
    """``text`` with the host's name left out: the same finding on each host of a group reads
    the same."""
    return text.replace(f" on host '{host}'", "").replace(f"host '{host}'", "each host")


class _Merged:
    """One problem found on several hosts at the same line: where it sits in its list."""

    __slots__ = ("hosts", "index", "text")

    def __init__(self, index: int, text: str):
        self.index, self.text, self.hosts = index, text, []


class Problems(list):
    """Problems collected while loading, without repeats; ``warnings`` beside them. A problem
    reported for a ``host`` (host rules) is merged with the same finding on other hosts at the
    same file, line and key, the hosts counted."""

    def __init__(self, *args: object):
        super().__init__(*args)
        self.warnings: list[Problem] = []
        self._seen: set[tuple[int, Problem]] = set()
        self._merged: dict[tuple, _Merged] = {}

    def add(self, file: object, where: str, key: object, expected: str,
            line: int | None = None, host: str | None = None) -> None:
        self._put(self, file, where, key, expected, line, host)

    def warn(self, file: object, where: str, key: object, expected: str,
             line: int | None = None, host: str | None = None) -> None:
        """A warning: reported, but the site stays valid."""
        self._put(self.warnings, file, where, key, expected, line, host)

    def _put(self, out: list[Problem], file: object, where: str, key: object, expected: str,
             line: int | None, host: str | None) -> None:
        if host is None:
            problem = Problem(str(file), where, str(key), expected, line)
            if (id(out), problem) not in self._seen:
                self._seen.add((id(out), problem))
                out.append(problem)
            return
        text = without_host(expected, host)
        ident = (id(out), str(file), where, str(key), line, text)
        merged = self._merged.get(ident)
        if merged is None:
            merged = self._merged[ident] = _Merged(len(out), text)
            out.append(Problem(str(file), where, str(key), expected, line))
        if host in merged.hosts:
            return
        merged.hosts.append(host)
        if len(merged.hosts) > 1:
            out[merged.index] = Problem(str(file), where, str(key),
                                        f"{text} ({hosts_counted(merged.hosts)})", line)

    def sorted(self) -> list[Problem]:
        return _sorted(self)

    def sorted_warnings(self) -> list[Problem]:
        return _sorted(self.warnings)


def hosts_counted(hosts: list[str]) -> str:
    """"3 hosts: a, b, c", "50 hosts: a, b, c and 47 more"."""
    shown = ", ".join(hosts[:SHOWN_HOSTS])
    more = f" and {len(hosts) - SHOWN_HOSTS} more" if len(hosts) > SHOWN_HOSTS else ""
    return f"{len(hosts)} hosts: {shown}{more}"


def _sorted(problems: list[Problem]) -> list[Problem]:
    order = {id(p): i for i, p in enumerate(problems)}
    return sorted(problems, key=lambda p: (p.file, p.line or 0, order[id(p)]))
