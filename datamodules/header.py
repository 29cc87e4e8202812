"""Tables without a header row (AG News, DBpedia, Yelp as Zhang et al. 2015 ship them): notice them, name them.

The rule, used only when the columns a spec names are not in a .csv/.tsv file's first row: that row is data,
not a header, when it reads like the rows below it. A column votes "data" when its first value is a number and
every value below it is a number too (a label column such as "3"), or when its first value is a sentence (at
least 4 words, or over 40 characters) above values that are not numbers (a text column). One vote is enough.
Column names are short and are not numbers, so a real header with a misspelt column name gets no vote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SAMPLE_ROWS = 200
SENTENCE_WORDS = 4
SENTENCE_CHARS = 40
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def is_number(value: object) -> bool:
    return isinstance(value, str) and bool(_NUMBER.match(value.strip()))


def is_sentence(value: str) -> bool:
    return len(value.split()) >= SENTENCE_WORDS or len(value.strip()) > SENTENCE_CHARS


def first_row_is_data(first: Sequence[str], columns: Sequence[Sequence[object]]) -> bool:
    """True when `first` (a file's first row) reads like the values below it (`columns`, one list per column)."""
    for head, below in zip(first, columns, strict=False):
        values = [v for v in below[:SAMPLE_ROWS] if isinstance(v, str) and v.strip()]
        if not values:
            continue
        numbers = all(is_number(v) for v in values)
        if is_number(head) and numbers:
            return True
        if is_sentence(head) and not numbers:
            return True
    return False


def suggest_columns(
    columns: Sequence[Sequence[object]], *, text_columns: Sequence[str], label_column: str
) -> list[str]:
    """Names for a headerless table's columns, for the error message: the label where the values look like labels
    (a column of numbers, else the one with the fewest distinct values), the spec's text columns in the others."""
    samples = [[v for v in col[:SAMPLE_ROWS] if isinstance(v, str) and v.strip()] for col in columns]
    numeric = [i for i, s in enumerate(samples) if s and all(is_number(v) for v in s)]
    label_at = numeric[0] if numeric else min(range(len(samples)), key=lambda i: len(set(samples[i])))
    texts = iter(text_columns)
    return [label_column if i == label_at else next(texts, f"column{i + 1}") for i in range(len(columns))]


def headerless_message(
    name: str, first: Sequence[str], columns: Sequence[Sequence[object]], *, text_columns: Sequence[str],
    label_column: str,
) -> str:  # fmt: skip
    """The one line that says the file has no header row and what to write in the spec."""
    shown = ", ".join(repr(v if len(v) <= 30 else v[:27] + "...") for v in first)
    names = suggest_columns(columns, text_columns=text_columns, label_column=label_column)
    unnamed = [n for n in names if n != label_column and n not in text_columns]
    rest = f" (rename {', '.join(unnamed)} as you like; data.text_column may list several)" if unnamed else ""
    return (
        f"{name} looks like it has no header row (its first row reads as data: {shown}): give its "
        f"{len(names)} columns with data.columns: [{', '.join(names)}]{rest}"
    )


def given_columns_problem(
    first: Sequence[str], name: str, columns: Sequence[str], widest: int | None = None
) -> str | None:
    """What is wrong with `data.columns` for a file whose first row is `first` and whose longest row has `widest`
    fields (None: as the first), or None.

    It must name as many columns as the longest row has fields (shorter rows leave their last columns empty, as in
    STS-B's file, where some rows carry two more source columns); a first row that repeats any of the names is a
    header row, refused rather than guessed (drop data.columns or the row).
    """
    wanted = {c.strip().lower() for c in columns}
    if any(v.strip().lower() in wanted for v in first):
        return (
            f"{name} has a header row ({', '.join(first)}): data.columns is only for files without one; "
            "remove data.columns and name its columns in data.text_column / data.label_column"
        )
    widest = max(widest or 0, len(first))
    if widest != len(columns):
        varying = f"at most {widest}" if widest != len(first) else f"{widest}"
        return (
            f"names {len(columns)} columns ({', '.join(columns)}) but the rows of {name} have {varying} "
            "fields: name each of them, in order"
        )
    return None
