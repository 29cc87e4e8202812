"""The one error type for problems with the user's data."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with the user's data.

    `problems` is a list of (field, message) pairs; each message names the file / column / value and says
    what would be right. `str(err)` joins them as "field: message" lines.
    """

    def __init__(self, problems: list[tuple[str, str]]):
        if not problems:
            raise ValueError("DataError needs at least one (field, message) problem")
        self.problems: list[tuple[str, str]] = list(problems)
        super().__init__("\n".join(f"{field}: {message}" for field, message in self.problems))

    def __reduce__(self) -> tuple[type[DataError], tuple[list[tuple[str, str]]]]:
        """Pickle with the problems list (the default would pass the joined string to __init__)."""
        return (type(self), (self.problems,))
