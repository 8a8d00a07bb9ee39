"""`ConfigError`: what is wrong with a configuration, naming the file, the field and the line.

One error may carry several problems (a file with three bad fields is reported in one go);
`field`, `problem` and `line` are those of the first, `problems` holds them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong: where (a dotted field such as `mcpServers.time.timeout`) and what."""

    field: str | None
    problem: str
    line: int | None = None
    column: int | None = None

    def describe(self) -> str:
        where = f"{self.field}: " if self.field else ""
        at = f", at line {self.line}" if self.line is not None else ""
        if at and self.column is not None:
            at += f", column {self.column}"
        return f"{where}{self.problem}{at}"


class ConfigError(Exception):
    """The configuration cannot be used; `str()` gives one line per problem, each naming the file.

    `path` is the file at fault (the configuration file, or the session key file), or None for
    a configuration built in code.
    """

    def __init__(
        self,
        path: str | Path | None,
        field: str | None = None,
        problem: str = "invalid configuration",
        *,
        line: int | None = None,
        column: int | None = None,
        problems: Iterable[ConfigProblem] = (),
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.problems = tuple(problems) or (ConfigProblem(field, problem, line, column),)
        first = self.problems[0]
        self.field, self.problem, self.line = first.field, first.problem, first.line
        super().__init__(self.path, self.problems)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its problems, so it survives the trip out of a worker process.
        return partial(ConfigError, problems=self.problems), (self.path,)

    def __str__(self) -> str:
        name = str(self.path) if self.path is not None else "configuration"
        return "\n".join(f"{name}: {problem.describe()}" for problem in self.problems)
