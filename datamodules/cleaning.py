"""Text and label normalisation, and the cleaning pass that drops unusable rows (pure functions)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from datamodules.splitting import sorted_labels
from datamodules.texts import Text, display_text

MAX_CONFLICT_EXAMPLES = 100
_WHITESPACE = re.compile(r"\s+")


def is_missing(value: object) -> bool:
    """True for None, float NaN (incl. numpy) and pandas' NA."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in {"NAType", "NaTType"}


def normalize_text(text: str) -> str:
    """Unicode NFKC, then collapse every whitespace run (tabs, newlines, no-break spaces) to one space."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def normalize_label(value: object) -> str | None:
    """A label as a stripped string; None when missing or empty. Integral floats lose their ".0"."""
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    label = str(value).strip()
    return label or None


@dataclass(frozen=True)
class CleanResult:
    """Cleaned rows (order preserved) and what the cleaning did to them."""

    texts: list[Text]
    labels: list[str]
    report: dict[str, Any]


def _clean_text(raw_text: object) -> tuple[Text | None, bool]:
    """(normalised text or pair, whether normalising changed it); None for a missing text or pair side."""
    parts = raw_text if isinstance(raw_text, tuple) else (raw_text,)
    if any(is_missing(p) for p in parts):
        return None, False
    raws = [p if isinstance(p, str) else str(p) for p in parts]
    cleaned = [normalize_text(r) for r in raws]
    changed = cleaned != raws
    return (cleaned[0] if len(cleaned) == 1 else (cleaned[0], cleaned[1])), changed


DROPPED_ROWS_KEPT = 5  # rows named per reason in a data warning


def clean_examples(texts: Sequence[object], labels: Sequence[object]) -> CleanResult:
    """Normalise texts and labels and drop unusable rows, counting every step in `report`.

    A text may be a pair `(text, text_pair)`: a pair with either side missing counts as a missing text, with
    either side empty as an empty text, and the pair is the text for conflicts and duplicates.
    Rows are dropped, in this order, for a missing text, a text empty after normalisation, a missing label,
    a text that appears with more than one label (all its rows go: we cannot tell which label is right),
    and a duplicate of an earlier (text, label) row (after normalising: `a  b` repeats `a b`). So `rows_in`
    equals `rows_out` plus the sum
    of `missing_text`, `empty_text`, `missing_label`, `conflicting_rows` and `duplicates`. `normalized` counts the
    rows kept whose text normalising changed.
    """
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels differ in length: {len(texts)} != {len(labels)}")
    report: dict[str, Any] = {
        "rows_in": len(texts),
        "normalized": 0,
        "missing_text": 0,
        "empty_text": 0,
        "missing_label": 0,
    }
    rows: list[tuple[Text, str]] = []
    changed_rows: list[bool] = []
    # the first few rows dropped for each reason, counted from 1 (the first data row), so a warning can name them
    dropped: dict[str, list[int]] = {"missing_text": [], "empty_text": [], "missing_label": []}

    def drop(reason: str, row: int) -> None:
        report[reason] += 1
        if len(dropped[reason]) < DROPPED_ROWS_KEPT:
            dropped[reason].append(row)

    for number, (raw_text, raw_label) in enumerate(zip(texts, labels, strict=True), start=1):
        text, changed = _clean_text(raw_text)
        if text is None:
            drop("missing_text", number)
            continue
        label = normalize_label(raw_label)
        if not all(text if isinstance(text, tuple) else (text,)):
            drop("empty_text", number)
        elif label is None:
            drop("missing_label", number)
        else:
            rows.append((text, label))
            changed_rows.append(changed)

    conflicts = find_conflicts(rows)
    kept = [row for row in rows if row[0] not in conflicts]
    first_changed: dict[tuple[Text, str], bool] = {}  # each kept row (its first occurrence): normalising changed it
    for row, changed in zip(rows, changed_rows, strict=True):
        if row[0] not in conflicts:
            first_changed.setdefault(row, changed)
    unique = list(first_changed)
    report["normalized"] = sum(first_changed.values())  # rows kept whose text normalising changed
    report["conflicting_rows"] = len(rows) - len(kept)
    report["duplicates"] = len(kept) - len(unique)
    report["rows_out"] = len(unique)
    report["dropped_rows"] = {reason: numbers for reason, numbers in dropped.items() if numbers}
    report["conflicting_texts"] = conflict_examples(conflicts)
    report["conflicting_texts_total"] = len(conflicts)
    report["label_variants"] = label_variants(Counter(lab for _, lab in unique))
    return CleanResult(texts=[t for t, _ in unique], labels=[lab for _, lab in unique], report=report)


def find_conflicts(rows: Sequence[tuple[Text, str]]) -> dict[Text, Counter[str]]:
    """Texts (or pairs) that appear with more than one label, with how many rows gave each label."""
    by_text: defaultdict[Text, Counter[str]] = defaultdict(Counter)
    for text, label in rows:
        by_text[text][label] += 1
    return {text: counts for text, counts in by_text.items() if len(counts) > 1}


def conflict_examples(conflicts: dict[Text, Counter[str]]) -> list[dict[str, Any]]:
    """Up to MAX_CONFLICT_EXAMPLES conflicts as JSON-ready dicts, most rows first, then by text (pairs shown joined)."""
    ordered = sorted(conflicts.items(), key=lambda item: (-sum(item[1].values()), display_text(item[0])))
    return [
        {"text": display_text(text), "labels": {label: counts[label] for label in sorted_labels(counts)}}
        for text, counts in ordered[:MAX_CONFLICT_EXAMPLES]
    ]


def label_key(label: str) -> str:
    """What a label most likely means, for spotting one class written two ways: Unicode NFKC (full-width letters),
    invisible format characters dropped (a zero-width space), case folded, and a number read as a number (`1`,
    `1.0`). Labels are not rewritten with it: `US` and `us` may be two classes; the report says, the user decides."""
    folded = "".join(ch for ch in unicodedata.normalize("NFKC", label) if unicodedata.category(ch) != "Cf")
    folded = folded.casefold().strip()
    try:
        number = float(folded)
    except ValueError:
        return folded
    return repr(number) if math.isfinite(number) else folded


def label_variants(counts: Counter[str]) -> list[dict[str, int]]:
    """Groups of distinct labels with one `label_key`: each {label: rows}, most rows first; groups by their largest."""
    groups: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for label in sorted_labels(counts):
        groups[label_key(label)][label] = counts[label]
    found = [dict(sorted(g.items(), key=lambda item: -item[1])) for g in groups.values() if len(g) > 1]
    return sorted(found, key=lambda g: -max(g.values()))


def written_alike(label: str, others: Sequence[str]) -> str | None:
    """The first of `others` that is `label` written another way (`label_key`), or None."""
    key = label_key(label)
    return next((other for other in others if other != label and label_key(other) == key), None)
