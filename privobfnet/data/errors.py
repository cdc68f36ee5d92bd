"""One error type for bad input: it always names the file and the rule it broke."""

from __future__ import annotations

import os


class DataError(ValueError):
    """A data file breaks a rule; ``path`` and ``rule`` say which and why."""

    def __init__(self, path: str | os.PathLike, rule: str, detail: str = ""):
        self.path = str(path)
        self.rule = rule
        self.detail = detail
        message = f"{self.path}: {rule}"
        super().__init__(f"{message}: {detail}" if detail else message)
