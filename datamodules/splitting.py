"""Label ordering, the stratified train/validation split, label coverage and leakage checks (pure)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from datamodules.errors import DataError
from datamodules.texts import Text, display_text

MAX_OVERLAP_EXAMPLES = 20
T = TypeVar("T")


def _number(label: str) -> float | None:
    """The label's value if it looks like a finite number, else None."""
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def sorted_labels(labels: Iterable[str]) -> list[str]:
    """Distinct labels, sorted; numeric-looking ones numerically ("2" < "10") and before the others."""

    def key(label: str) -> tuple[int, float, str]:
        value = _number(label)
        return (1, 0.0, label) if value is None else (0, value, label)

    return sorted(set(labels), key=key)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def split_problems(labels: Sequence[str], val_fraction: float) -> list[tuple[str, str]]:
    """Why a stratified split of these labels with this fraction is impossible (empty when it is fine)."""
    if not 0.0 < val_fraction < 1.0:
        return [("data.val_fraction", f"must be between 0 and 1 (exclusive), got {val_fraction}")]
    if not labels:
        return [("data.train", "no rows to split")]
    counts = Counter(labels)
    problems = []
    for label in sorted_labels(counts):
        if counts[label] < 2:
            problems.append(
                (
                    "data.train",
                    f"class {label!r} has only {_plural(counts[label], 'row')}; a "
                    "stratified split needs at least 2 per class (one for training, one for "
                    "validation): add rows for it, remove it, or give data.validation",
                )
            )
    n, k = len(labels), len(counts)
    n_val = math.ceil(val_fraction * n)
    if n_val < k:
        need = math.ceil(k / n * 100) / 100
        rows = _plural(n_val, "validation row")
        problems.append(
            (
                "data.val_fraction",
                f"val_fraction={val_fraction} gives {rows} for {k} classes (need one per class): use at least {need}",
            )
        )
    if n - n_val < k:
        most = math.floor((n - k) / n * 100) / 100
        rows = _plural(n - n_val, "training row")
        problems.append(
            (
                "data.val_fraction",
                f"val_fraction={val_fraction} leaves {rows} for {k} classes (need one per class): use at most {most}",
            )
        )
    return problems


def stratified_split(
    texts: Sequence[T], labels: Sequence[str], *, val_fraction: float, seed: int
) -> tuple[list[T], list[str], list[T], list[str]]:
    """Seeded stratified split into (train_texts, train_labels, val_texts, val_labels), input order kept.

    Every class lands in both splits: where sklearn's rounding leaves a class out of one side, one of its
    rows (chosen with `seed`) moves across.
    """
    problems = split_problems(labels, val_fraction)
    if problems:
        raise DataError(problems)
    from sklearn.model_selection import train_test_split  # imported here: it takes seconds to load

    indices = list(range(len(labels)))
    train_idx, val_idx = train_test_split(
        indices, test_size=val_fraction, stratify=list(labels), random_state=seed, shuffle=True
    )
    train_idx, val_idx = _ensure_both_sides(list(train_idx), list(val_idx), labels, random.Random(seed))
    train_idx.sort()
    val_idx.sort()
    return (
        [texts[i] for i in train_idx],
        [labels[i] for i in train_idx],
        [texts[i] for i in val_idx],
        [labels[i] for i in val_idx],
    )


def _ensure_both_sides(
    train_idx: list[int], val_idx: list[int], labels: Sequence[str], rng: random.Random
) -> tuple[list[int], list[int]]:
    """Move one row of each class missing from a side over from the other side."""
    for source, target in ((train_idx, val_idx), (val_idx, train_idx)):
        present = {labels[i] for i in target}
        for label in sorted_labels({labels[i] for i in source} - present):
            candidates = sorted(i for i in source if labels[i] == label)
            chosen = rng.choice(candidates)
            source.remove(chosen)
            target.append(chosen)
    return train_idx, val_idx


# More distinct labels than this, most of them on one training row, and more than half as many as the rows: the
# label column holds ids or texts. Label problems listed one per line at most (then a count).
ID_LIKE_LABELS = 20
MAX_LABEL_PROBLEMS = 10


def check_label_coverage(train_labels: Sequence[str], val_labels: Sequence[str]) -> None:
    """Raise DataError unless train has 2+ classes and train and validation hold the same classes."""
    train_counts, val_counts = Counter(train_labels), Counter(val_labels)
    problems: list[tuple[str, str]] = []
    once = sum(1 for n in train_counts.values() if n == 1)
    # ids or texts also differ between the files: few-shot data (a row per class) has validation's classes in train
    unseen = len(set(val_counts) - set(train_counts))
    apart = val_counts == train_counts or unseen > len(val_counts) // 2
    if len(train_counts) > max(ID_LIKE_LABELS, len(train_labels) // 2) and once > len(train_counts) // 2 and apart:
        # an id or a text column named as the labels: one line, not a line per "class" (a user got 201)
        shown = ", ".join(repr(label) for label in list(train_counts)[:3])
        said = (f"{len(train_counts)} different labels in {len(train_labels)} training rows, {once} of them on one "
                f"row only (e.g. {shown}): that is an id or a text, not classes; name the column that holds the "
                "classes")  # fmt: skip
        if val_counts == train_counts:  # no validation file: a split needs two rows of each class
            said += " (few-shot data with one row per class needs a data.validation file instead of a split)"
        raise DataError([("data.label_column", said)])
    if len(train_counts) < 2:
        found = ", ".join(repr(label) for label in sorted_labels(train_counts)) or "none"
        problems.append(
            (
                "data.train",
                f"training data has {_plural(len(train_counts), 'class')} ({found}); "
                "classification needs at least 2: check data.label_column",
            )
        )
    from datamodules.cleaning import written_alike  # cleaning imports this module

    if not val_counts:
        problems.append(("data.validation", "validation data has no usable rows"))
    else:
        for label in sorted_labels(set(train_counts) - set(val_counts)):
            # a variant of a label validation has ('Positive' beside 'positive'): said, not only "add rows"
            alike = written_alike(label, sorted_labels(set(train_counts) & set(val_counts)))
            fix = (f"is it {alike!r} written another way? (relabel those training rows {alike!r})" if alike else
                   "add validation rows for it or use a stratified split by removing data.validation")  # fmt: skip
            has = f"class {label!r} has 0 rows in validation (train has {train_counts[label]})"
            problems.append(("data.validation", f"{has}: {fix}"))

    only_train = sorted_labels(set(train_counts) - set(val_counts))
    for label in sorted_labels(set(val_counts) - set(train_counts)):
        rows = _plural(val_counts[label], "row")
        alike = written_alike(label, only_train) or written_alike(label, sorted_labels(train_counts))
        problems.append(
            (
                "data.validation",
                f"class {label!r} has {rows} in validation but none in training, "
                "so no model can predict it: add training rows for it or remove it from validation"
                + (f" (training has {alike!r}: the same label written another way?)" if alike else ""),
            )
        )
    if len(problems) > MAX_LABEL_PROBLEMS:
        rest = len(problems) - MAX_LABEL_PROBLEMS
        problems = problems[:MAX_LABEL_PROBLEMS] + [
            ("data.validation", f"... and {_plural(rest, 'more label')} like these")]  # fmt: skip
    if problems:
        raise DataError(problems)


def remove_overlap(
    train_texts: Sequence[Text],
    train_labels: Sequence[str],
    val_texts: Iterable[Text],
    val_labels: Sequence[str] | None = None,
) -> tuple[list[Text], list[str], dict[str, Any]]:
    """Drop training rows whose text (or pair) is also in validation (leakage), reporting how many and which; with
    `val_labels`, also how many of them validation labels differently (`overlap_relabelled`: a conflict across the
    splits, which cleaning each file alone cannot see)."""
    val_list = list(val_texts)
    val_label = dict(zip(val_list, val_labels, strict=True)) if val_labels is not None else {}
    val_set = set(val_list)
    kept = [(t, lab) for t, lab in zip(train_texts, train_labels, strict=True) if t not in val_set]
    dropped = list(dict.fromkeys(t for t in train_texts if t in val_set))
    report: dict[str, Any] = {
        "train_val_overlap": len(train_texts) - len(kept),
        "overlap_examples": [display_text(t) for t in dropped[:MAX_OVERLAP_EXAMPLES]],
    }
    if val_labels is not None:
        report["overlap_relabelled"] = sum(
            1 for t, lab in zip(train_texts, train_labels, strict=True) if t in val_label and val_label[t] != lab
        )
    return [t for t, _ in kept], [lab for _, lab in kept], report


def all_in_validation(kept: int, dropped: int) -> None:
    """Raise DataError when every training row repeats a validation text: the two files hold the same data (the
    coverage problems that would follow, "0 classes" and the like, would point elsewhere)."""
    if dropped and not kept:
        raise DataError([("data.validation", f"every training text is also in the validation data ({dropped} "
                          f"training {'row' if dropped == 1 else 'rows'}): are both the same file? Give "
                          "validation rows that training lacks, or leave data.validation out to split them off "
                          "(data.val_fraction)")])  # fmt: skip


def with_overlap_note(problems: list[tuple[str, str]], dropped: int) -> list[tuple[str, str]]:
    """Coverage problems found after `dropped` training rows that repeat a validation text were removed: the last
    line says so (a note, not a problem of its own: the rows dropped need not be the ones the problems name)."""
    if not problems or not dropped:
        return problems
    field, message = problems[-1]
    rows = "row whose text is also in validation was" if dropped == 1 else "rows whose text is also in validation were"
    return [*problems[:-1], (field, f"{message} (note: {dropped} training {rows} dropped first)")]
