"""Where each cleaned example came from: its row in the source table (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from datamodules.cleaning import _clean_text, normalize_label
from datamodules.texts import Text


def source_rows(
    raw_texts: Sequence[object], raw_labels: Sequence[object], texts: Sequence[Text], labels: Sequence[str]
) -> list[int]:
    """For each cleaned (text, label), the 0-based index of the first raw row that cleans to it (-1 if none).

    Cleaning keeps the first of exact duplicates and drops every row of a conflicting text, so the first raw row
    with the same normalised text and label is the one the example was kept from.
    """
    first: dict[tuple[Text, str], int] = {}
    for i, (raw_text, raw_label) in enumerate(zip(raw_texts, raw_labels, strict=True)):
        text, _ = _clean_text(raw_text)
        label = normalize_label(raw_label)
        if text is not None and label is not None:
            first.setdefault((text, label), i)
    return [first.get((text, label), -1) for text, label in zip(texts, labels, strict=True)]
