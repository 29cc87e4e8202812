"""User-facing errors: each names the field, file or value and says what would be right (exit code 2)."""

from __future__ import annotations


class SweepError(Exception):
    """A problem with the user's input; the CLI prints each problem on one line and exits with code 2.

    `problems` holds `(where, message)` pairs: `where` is a spec field (`search.space.learning_rate.low`),
    a file, or a CLI option; `message` names the rule and the value.
    """

    def __init__(self, problems: list[tuple[str, str]] | str, *, source: str | None = None):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [f"{prefix}{where}: {msg}" if where else f"{prefix}{msg}" for where, msg in self.problems]

    def render(self) -> str:
        return "\n".join(self.lines())


class StorageLost(SweepError):
    """The database stopped answering during a run and did not come back within the retry window (exit code 3)."""

    exit_code = 3
