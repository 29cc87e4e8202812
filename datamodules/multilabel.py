"""Task multi-label: rows whose label is a set of labels (a JSON list, or a string cut by `data.label_delimiter`).

Load, check, clean, split, report and tokenize (cached) into the same `PreparedData` as classification, with each
row's `labels` a multi-hot vector over `label_names` (the sorted labels of train). A label set travels through
cleaning, the overlap check, the fingerprint and the cache as one string key (`label_key`): the JSON list of its
sorted labels, so two rows conflict when one text has two different label sets.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from datamodules.cleaning import CleanResult, clean_examples, is_missing
from datamodules.encoding import data_fingerprint, tokenizer_identity
from datamodules.errors import DataError
from datamodules.loading import DEFAULT_TEXT_SEPARATOR, RawTable, load_table
from datamodules.preparation import PreparedData, Splits, encode_cached, tokenizer_limit
from datamodules.report import build_report, cleaning_summary
from datamodules.rows import source_rows
from datamodules.splitting import all_in_validation, remove_overlap, sorted_labels, with_overlap_note
from datamodules.texts import Text, display_text

Log = Callable[[str], None]
MAX_ROWS_NAMED = 5  # rows named in one error line; the rest are counted
FEW_TRAIN_ROWS = 3  # a label with fewer training rows than this gets a warning
TASK_MARK = "multi-label"  # in the fingerprint: a label-set study never shares a cache with a classification one


def label_key(labels: Sequence[str]) -> str:
    """The one string a label set is known by in cleaning, the fingerprint and the cache: its sorted JSON list."""
    return json.dumps(sorted(set(labels)), ensure_ascii=False)


def labels_of(key: str) -> list[str]:
    """The labels of a `label_key`."""
    return list(json.loads(key))


def list_literal(text: str) -> list[object] | None:
    """The list a label cell spells as a JSON or Python list literal (`["card", "pin"]`, `['card', 'pin']`: what
    pandas' `to_csv` writes for a list column), else None. A label set never begins with "[" and ends with "]"
    otherwise: cut by a delimiter, its brackets and quotes became parts of labels (`'affirm']`)."""
    import ast

    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            found = parse(stripped)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(found, list):
            return found
    return None


def parse_label_set(value: object, delimiter: str | None) -> list[str] | None:
    """The distinct, stripped labels of one row's label value, in first-seen order; None when missing.

    A list (JSON, an array from Parquet, or a string holding a list literal) gives its items; another string is cut
    by `delimiter` (when given) or is one label. Blank items are dropped, so `[]`, `[" "]` and `""` all give an
    empty list. Integral floats lose ".0".
    """
    if is_missing(value):
        return None
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()  # numpy arrays (Parquet list columns)
    if isinstance(value, str) and (literal := list_literal(value)) is not None:
        value = literal  # '["card", "pin"]' or "['card', 'pin']": pandas' to_csv of a list column
    if isinstance(value, list | tuple):
        items: list[object] = list(value)
    elif isinstance(value, str) and delimiter:
        items = list(value.split(delimiter))
    else:
        items = [value]
    labels = []
    for item in items:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if isinstance(item, dict | list | tuple) or is_missing(item):
            raise ValueError(f"a label must be a string, got {item!r}")
        text = str(item).strip()
        if text:
            labels.append(text)
    return list(dict.fromkeys(labels))


def _rows(rows: list[int]) -> str:
    named = ", ".join(str(r) for r in rows[:MAX_ROWS_NAMED])
    more = len(rows) - MAX_ROWS_NAMED
    return f"row{'s' if len(rows) > 1 else ''} {named}" + (f" and {more} more" if more > 0 else "")


def label_keys(raw: RawTable, *, field: str, delimiter: str | None) -> list[str | None]:
    """Each row's `label_key` (None where the text is missing: cleaning counts those); DataError for rows whose
    label set is missing or empty, or holds a value that is not a label, naming the file, the rows and the value."""
    name = Path(raw.source).name
    empty: list[int] = []
    missing: list[int] = []
    bad: list[tuple[int, str]] = []
    keys: list[str | None] = []
    for row, (text, value) in enumerate(zip(raw.texts, raw.labels, strict=True), start=1):
        try:
            labels = parse_label_set(value, delimiter)
        except ValueError as err:
            bad.append((row, str(err)))
            keys.append(None)
            continue
        if labels is None and not is_missing(text):
            missing.append(row)
        elif labels is not None and not labels and not is_missing(text):
            empty.append(row)
        keys.append(label_key(labels) if labels else None)
    problems = []
    if empty:
        problems.append(
            (
                field,
                f"{name} {_rows(empty)}: empty label list; every row needs at least one label "
                "(drop those rows, or give them a label such as 'none')",
            )
        )
    if missing:
        problems.append(
            (
                field,
                f"{name} {_rows(missing)}: no label (the label column is missing or null); every "
                "row needs a list of at least one label",
            )
        )
    if bad:
        problems.append(
            (
                field,
                f"{name} row {bad[0][0]}: {bad[0][1]}" + (f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""),
            )
        )
    cells = [v for v in raw.labels if isinstance(v, str) and v.strip() and list_literal(v) is None]
    if not problems and delimiter is not None and cells and not any(delimiter in c for c in cells):
        # the delimiter given never occurs while another joiner fills the cells: every joined set would be one label
        other = joined_labels([c for c in cells], skip=delimiter)
        # only where the joined parts are labels of their own elsewhere: a split of single labels may hold names
        # such as "Hotels, Restaurants"
        singles = {c.strip() for c in cells if other is not None and other[0] not in c}
        if other is not None and any(all(part.strip() in singles for part in c.split(other[0]))
                                     for c in cells if other[0] in c):  # fmt: skip
            sep, example, share = other
            problems.append(
                (
                    "data.label_delimiter",
                    f"{name}: {delimiter!r} is in no label cell, while {share:.0%} of them look like labels joined "
                    f"by {sep!r} (e.g. {example!r}): set data.label_delimiter: {sep!r}",
                )
            )
    if not problems and delimiter is None:
        joined = joined_labels(raw.labels)
        if joined is not None:
            sep, example, share = joined
            problems.append(
                (
                    "data.label_delimiter",
                    f"{name}: {share:.0%} of the label cells look like several labels joined by {sep!r} (e.g. "
                    f"{example!r}), which would each be read as one label: set data.label_delimiter: {sep!r} (or, "
                    f"where {sep!r} is part of the label names, a character they never hold)",
                )
            )
    if problems:
        raise DataError(problems)
    return keys


# Characters a spreadsheet's multi-label cell is commonly joined with; a cell holding one of them in most rows of a
# multi-label file without data.label_delimiter is a label list read whole.
JOINERS = ("|", ";", ",", "+")
JOINED_SHARE = 0.2


def joined_labels(values: Sequence[object], skip: str | None = None) -> tuple[str, str, float] | None:
    """(joiner, an example cell, share of cells) when at least `JOINED_SHARE` of the string label cells hold the same
    joiner (other than `skip`) between non-empty parts; None otherwise (JSON lists, or single labels)."""
    # a list literal's commas are its own (`list_literal` reads it as a list)
    cells = [v for v in values if isinstance(v, str) and v.strip() and list_literal(v) is None]
    if not cells:
        return None
    for sep in JOINERS:
        if sep == skip:
            continue
        hits = [c for c in cells if sep in c and all(part.strip() for part in c.split(sep))]
        if len(hits) / len(cells) >= JOINED_SHARE:
            return sep, hits[0], len(hits) / len(cells)
    return None


def load_label_sets(
    source: str,
    *,
    field: str,
    split: str,
    text_column: str | Sequence[str],
    label_column: str,
    label_delimiter: str | None,
    columns: Sequence[str] | None,
    text_separator: str,
) -> tuple[RawTable, list[str | None]]:
    """One table with its labels read as label sets (see `label_keys`)."""
    raw = load_table(source, text_column=text_column, label_column=label_column, field=field, split=split,
                     columns=columns, text_separator=text_separator, raw_labels=True)  # fmt: skip
    return raw, label_keys(raw, field=field, delimiter=label_delimiter)


def random_split(
    texts: Sequence[Text], keys: Sequence[str], *, val_fraction: float, seed: int
) -> tuple[list[Text], list[str], list[Text], list[str], int]:
    """Seeded random split, input order kept; a validation row is moved to train for each label that would
    otherwise have no training row. Returns the splits and how many rows were moved."""
    from sklearn.model_selection import train_test_split  # imported here: it takes seconds to load

    indices = list(range(len(keys)))
    n_val = max(1, round(val_fraction * len(keys)))
    if len(keys) - n_val < 1:
        raise DataError(
            [
                (
                    "data.val_fraction",
                    f"val_fraction={val_fraction} leaves no training row of {len(keys)} rows: use a smaller value",
                )
            ]
        )
    train_idx, val_idx = (list(part) for part in train_test_split(indices, test_size=n_val, random_state=seed))
    rng = random.Random(seed)
    moved = 0
    for label in sorted_labels({lab for i in val_idx for lab in labels_of(keys[i])}):
        if any(label in labels_of(keys[i]) for i in train_idx) or len(val_idx) < 2:
            continue
        chosen = rng.choice(sorted(i for i in val_idx if label in labels_of(keys[i])))
        val_idx.remove(chosen)
        train_idx.append(chosen)
        moved += 1
    train_idx.sort()
    val_idx.sort()
    return ([texts[i] for i in train_idx], [keys[i] for i in train_idx], [texts[i] for i in val_idx],
            [keys[i] for i in val_idx], moved)  # fmt: skip


def label_counts(keys: Sequence[str]) -> Counter[str]:
    """Rows per label."""
    return Counter(label for key in keys for label in labels_of(key))


def coverage_problems(
    train_keys: Sequence[str], val_keys: Sequence[str], validation_source: str, file_keys: Sequence[str | None]
) -> list[tuple[str, str]]:
    """Labels in validation never seen in training (no model can predict them), and fewer than 2 labels in train.

    `file_keys` are the label keys of the validation file's rows as read, to name the first row holding the label.
    """
    train, val = label_counts(train_keys), label_counts(val_keys)
    problems = []
    if len(train) < 2:
        found = ", ".join(map(repr, sorted_labels(train))) or "none"
        problems.append(
            (
                "data.train",
                f"training data has {len(train)} distinct label(s) ({found}); multi-label "
                "needs at least 2: check data.label_column and data.label_delimiter",
            )
        )
    name = Path(validation_source).name
    for label in sorted_labels(set(val) - set(train)):
        rows = [i for i, key in enumerate(file_keys, start=1) if key is not None and label in labels_of(key)]
        where = f"{name} row {rows[0]}" if rows else name
        problems.append(
            (
                "data.validation",
                f"{where}: label {label!r} ({val[label]} validation row(s)) is in no "
                "training row, so no model can predict it: add training rows for it or "
                "remove it from validation",
            )
        )
    return problems


def split_label_sets(
    train: CleanResult,
    validation: CleanResult | None,
    *,
    val_fraction: float,
    seed: int,
    train_source: str,
    validation_source: str | None,
    validation_keys: Sequence[str | None] = (),
) -> tuple[Splits, list[str]]:
    """The splits (random from train, or as given) without train rows whose text is in validation, plus warnings."""
    empty = [(field, f"no usable rows in {source} after cleaning ({cleaning_summary(result.report)})")
             for field, source, result in (("data.train", train_source, train),
                                           ("data.validation", validation_source, validation))
             if result is not None and not result.texts]  # fmt: skip
    if empty:
        raise DataError(empty)
    notes: list[str] = []
    if validation is None:
        tr_texts, tr_keys, va_texts, va_keys, moved = random_split(
            train.texts, train.labels, val_fraction=val_fraction, seed=seed
        )
        split = f"random from train, val_fraction={val_fraction}, seed={seed}"
        if moved:
            notes.append(f"moved {moved} validation row(s) to train so that every validation label has training rows")
        where = train_source
    else:
        tr_texts, tr_keys, va_texts, va_keys = train.texts, train.labels, validation.texts, validation.labels
        split = "given"
        where = validation_source or train_source
    tr_texts, tr_keys, overlap = remove_overlap(tr_texts, tr_keys, va_texts)
    all_in_validation(len(tr_texts), overlap["train_val_overlap"])
    problems = coverage_problems(tr_keys, va_keys, where, validation_keys if validation is not None else ())
    problems = with_overlap_note(problems, overlap["train_val_overlap"])
    if problems:
        raise DataError(problems)
    return Splits(tr_texts, tr_keys, va_texts, va_keys, split, overlap), notes


def label_warnings(splits: Splits, label_names: Sequence[str]) -> list[str]:
    """Labels with very few training rows, and training labels absent from validation (their F1 is not measured)."""
    train, val = label_counts(splits.train_labels), label_counts(splits.val_labels)
    lines = []
    few = [f"{name} ({train[name]})" for name in label_names if train[name] < FEW_TRAIN_ROWS]
    if few:
        lines.append(f"{len(few)} {'label has' if len(few) == 1 else 'labels have'} fewer than {FEW_TRAIN_ROWS} "
                     f"training rows: {', '.join(few)}")
    absent = [name for name in label_names if not val[name]]
    if absent:
        one = len(absent) == 1
        lines.append(
            f"{len(absent)} training {'label has' if one else 'labels have'} no validation row, so no F1 of "
            f"{'its' if one else 'theirs'} is measured ({'it counts' if one else 'they count'} in micro-F1 only as "
            f"false positives): {', '.join(absent)}"
        )
    return lines


def multi_hot(key: str, index: dict[str, int]) -> list[float]:
    """The 0/1 vector of a label set over the labels of `index`."""
    vector = [0.0] * len(index)
    for label in labels_of(key):
        vector[index[label]] = 1.0
    return vector


def prepare_multilabel_data(
    *,
    train_source: str,
    validation_source: str | None,
    text_column: str | Sequence[str],
    label_column: str,
    val_fraction: float,
    seed: int,
    tokenizer_name_or_path: str,
    max_length: int,
    cache_dir: Path,
    label_delimiter: str | None = None,
    columns: Sequence[str] | None = None,
    text_separator: str = DEFAULT_TEXT_SEPARATOR,
    log: Log | None = None,
    check_fingerprint: Callable[[str], None] | None = None,
) -> PreparedData:
    """Load, check, clean, split and tokenize a multi-label dataset (see the module docstring); cached on disk.

    Raises DataError (every problem of both tables at once) for an empty or missing label set, a label only in
    validation, and whatever `load_table` and the tokenizer limit refuse. `check_fingerprint` as in
    `prepare_classification_data`.
    """
    say: Log = log or (lambda _line: None)
    problems: list[tuple[str, str]] = []
    tables: dict[str, tuple[RawTable, list[str | None]]] = {}
    for field, source, split in (("data.train", train_source, "train"),
                                 ("data.validation", validation_source, "validation")):  # fmt: skip
        if source is None:
            continue
        try:
            tables[field] = load_label_sets(source, field=field, split=split, text_column=text_column,
                                            label_column=label_column, label_delimiter=label_delimiter,
                                            columns=columns, text_separator=text_separator)  # fmt: skip
        except DataError as err:
            problems += [p for p in err.problems if p not in problems]
    if problems:
        raise DataError(problems)
    cleaned: dict[str, CleanResult] = {}
    for field, (raw, keys) in tables.items():
        say(f"loaded {len(raw.texts)} rows from {raw.source}")
        cleaned[field] = clean_examples(raw.texts, keys)
    splits, notes = split_label_sets(
        cleaned["data.train"],
        cleaned.get("data.validation"),
        val_fraction=val_fraction,
        seed=seed,
        train_source=train_source,
        validation_source=validation_source,
        validation_keys=tables["data.validation"][1] if validation_source else (),
    )
    label_names = sorted_labels(label_counts(splits.train_labels))
    index = {name: i for i, name in enumerate(label_names)}

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path)
    limit = tokenizer_limit(tokenizer)
    if limit is not None and max_length > limit:
        raise DataError([("model.max_length", f"{max_length} is above the limit of {tokenizer_name_or_path} "
                                              f"({limit} tokens, its tokenizer's model_max_length): set "
                                              f"model.max_length to {limit} or less")])  # fmt: skip
    fingerprint = data_fingerprint(
        tokenizer_id={**tokenizer_identity(tokenizer), "task": TASK_MARK},
        max_length=max_length,
        label_names=label_names,
        splits={"train": (splits.train_texts, splits.train_labels),
                "validation": (splits.val_texts, splits.val_labels)},
    )  # fmt: skip
    if check_fingerprint is not None:
        check_fingerprint(fingerprint)
    report = multilabel_report(splits, cleaned, label_names, train_source=train_source,
                               validation_source=validation_source, max_length=max_length)  # fmt: skip
    report["warnings"] = notes + report["warnings"]
    report["tokenizer"] = tokenizer_name_or_path
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        pad_token_id = 0
        report["warnings"].append("the tokenizer has no pad or eos token: padding with id 0")
    encoded = encode_cached(tokenizer, splits, label_ids=index, max_length=max_length,
                            directory=Path(cache_dir) / fingerprint, report=report, say=say,
                            encode_label=lambda key: multi_hot(key, index))  # fmt: skip
    return PreparedData(
        train=encoded["train"],
        validation=encoded["validation"],
        label_names=label_names,
        report=report,
        fingerprint=fingerprint,
        pad_token_id=int(pad_token_id),
        validation_texts=[display_text(t) for t in splits.val_texts],
        train_texts=list(splits.train_texts),
        train_rows=source_rows(tables["data.train"][0].texts, tables["data.train"][1], splits.train_texts,
                               splits.train_labels),  # fmt: skip
    )


def multilabel_report(
    splits: Splits,
    cleaned: dict[str, CleanResult],
    label_names: list[str],
    *,
    train_source: str,
    validation_source: str | None,
    max_length: int,
) -> dict[str, Any]:
    """The classification data report with rows per label (a row counts once for each of its labels), label sets
    shown as lists, the mean labels per row, and the label warnings."""
    report = build_report(splits, train_clean=cleaned["data.train"], val_clean=cleaned.get("data.validation"),
                          label_names=label_names, train_source=train_source, validation_source=validation_source,
                          max_length=max_length)  # fmt: skip
    train, val = label_counts(splits.train_labels), label_counts(splits.val_labels)
    report["class_distribution"] = {"train": {n: train[n] for n in label_names},
                                    "validation": {n: val[n] for n in label_names}}  # fmt: skip
    report["labels_per_row"] = {
        name: round(sum(len(labels_of(k)) for k in keys) / len(keys), 3)
        for name, keys in (("train", splits.train_labels), ("validation", splits.val_labels))
    }
    report["multi_label"] = True
    for split in report["cleaning"].values():
        for conflict in (split or {}).get("conflicting_texts", []):
            conflict["labels"] = {", ".join(labels_of(k)): n for k, n in conflict["labels"].items()}
    report["warnings"] += label_warnings(splits, label_names)
    return report
