"""What is wrong with a site: :class:`Problem` (file, line, host/group, key, what is expected)
and :class:`InventoryInvalid`, raised with every problem found."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_provision.errors import BadInput

NO_VAULT_PASSWORD = ("is encrypted with ansible-vault but no vault password was given "
                     "(--vault-password-file or ANSIBLE_VAULT_PASSWORD_FILE)")
BAD_VAULT_PASSWORD = "cannot be decrypted with the given vault password"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory."""

    file: str
    where: str  # "host 'node1'", "group 'gpu_workers'", "inventory", ...
    key: str
    expected: str
    line: int | None = None  # 1-based line of the key in ``file``, when known

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        return f"{loc}: {self.where}: {self.key}: {self.expected}"


class InventoryInvalid(BadInput):
    """The inventory has problems; ``problems`` lists all of them. Exit code 2 (bad input):
    each problem is a detail line of the error (:func:`mlops_provision.errors.exit_for`)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the inventory",
                         details=[str(p) for p in self.problems])

    def __str__(self) -> str:
        return "\n".join(self.lines())


class Problems(list):
    """Problems collected while loading, without repeats (a group's value is judged per host)."""

    def add(self, file: object, where: str, key: object, expected: str,
            line: int | None = None) -> None:
        problem = Problem(str(file), where, str(key), expected, line)
        if problem not in self:
            self.append(problem)

    def sorted(self) -> list[Problem]:
        order = {id(p): i for i, p in enumerate(self)}
        return sorted(self, key=lambda p: (p.file, p.line or 0, order[id(p)]))
