"""The one entry point the runner calls: load, clean, split and tokenize (cached) a classification dataset."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoTokenizer

from datamodules.cleaning import CleanResult, clean_examples
from datamodules.encoding import (
    data_fingerprint,
    load_cached,
    save_cache,
    tokenize_split,
    tokenizer_identity,
)
from datamodules.errors import DataError
from datamodules.loading import DEFAULT_TEXT_SEPARATOR, RawTable, load_table
from datamodules.report import (
    build_report,
    cleaning_summary,
    few_rows_warnings,
    pair_column_warnings,
    truncation_warnings,
)
from datamodules.rows import source_rows
from datamodules.splitting import (
    all_in_validation,
    check_label_coverage,
    remove_overlap,
    sorted_labels,
    stratified_split,
    with_overlap_note,
)
from datamodules.texts import Text, display_text

Log = Callable[[str], None]


@dataclass(frozen=True)
class PreparedData:
    """Encoded train / validation splits, their label names, the data report and the cleaned validation texts."""

    train: datasets.Dataset  # input_ids, attention_mask, (token_type_ids), labels, length
    validation: datasets.Dataset
    label_names: list[str]  # label id i <-> label_names[i]
    report: dict[str, Any]
    fingerprint: str
    pad_token_id: int
    validation_texts: list[str]  # row i of `validation` was encoded from validation_texts[i] (a pair shown joined)
    # Row i of `train` was encoded from train_texts[i] (a pair stays a tuple), read from data row train_rows[i] of
    # the training source (0-based, header not counted): the annotation audit names rows by them.
    train_texts: list[Text] = dataclasses.field(default_factory=list)
    train_rows: list[int] = dataclasses.field(default_factory=list)
    # Token classification: row i of `train` is a window of a sentence (a long sentence spans consecutive rows);
    # train_rows[i] is that sentence's 0-based index among the file's sentences, train_texts[i] its words joined,
    # train_words[i] its words and train_lines[i] each word's line in the file (1-based).
    train_words: list[list[str]] = dataclasses.field(default_factory=list)
    train_lines: list[list[int]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Splits:
    """Cleaned, split, leakage-free texts and labels, and how they were made."""

    train_texts: list[Text]
    train_labels: list[str]
    val_texts: list[Text]
    val_labels: list[str]
    split: str
    overlap: dict[str, Any]


def prepare_classification_data(
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
    columns: Sequence[str] | None = None,
    text_separator: str = DEFAULT_TEXT_SEPARATOR,
    text_pair_column: str | None = None,
    log: Log | None = None,
    check_fingerprint: Callable[[str], None] | None = None,
    check_labels: Callable[[list[str]], None] | None = None,
) -> PreparedData:
    """Load, clean, split and tokenize a text classification dataset; encoded splits are cached on disk.

    With `text_pair_column` each example is the pair (text, text_pair) (task: text-pair): cleaning, the
    overlap check, the fingerprint and the cache see the pair, and the tokenizer encodes it as a pair.

    Several text columns are joined into one text before anything else (see `load_table`): cleaning, the
    report, the fingerprint and the cache all see the joined text. `columns` names the columns of .csv/.tsv
    files without a header row. Raises DataError (every problem of both tables at once) when the data
    cannot be used, and when `max_length` is above what the tokenizer says its model accepts.
    `check_fingerprint` is called with the data fingerprint before anything is tokenized or cached: it may raise
    to stop there (a study refusing data that changed since it was created, with nothing written); `check_labels`
    likewise with the classes, before the tokenizer is loaded (a spec naming a class the data lacks).
    """
    say: Log = log or (lambda _line: None)
    train_raw, val_raw = load_sources(
        train_source,
        validation_source,
        text_column=text_column,
        label_column=label_column,
        columns=columns,
        text_separator=text_separator,
        text_pair_column=text_pair_column,
    )
    for raw in (train_raw, val_raw):
        if raw is not None:
            say(f"loaded {len(raw.texts)} rows from {raw.source}")
    train_clean = clean_examples(train_raw.texts, train_raw.labels)
    val_clean = clean_examples(val_raw.texts, val_raw.labels) if val_raw is not None else None
    looks_numeric = score_like_labels(train_clean.labels, label_column)
    if looks_numeric:
        raise DataError([looks_numeric])
    splits = split_examples(
        train_clean,
        val_clean,
        val_fraction=val_fraction,
        seed=seed,
        train_source=train_source,
        validation_source=validation_source,
    )
    label_names = sorted_labels(splits.train_labels)
    label_ids = {name: i for i, name in enumerate(label_names)}
    if check_labels is not None:
        check_labels(list(label_names))

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path)
    limit = tokenizer_limit(tokenizer)
    if limit is not None and max_length > limit:
        raise DataError(
            [
                (
                    "model.max_length",
                    f"{max_length} is above the limit of {tokenizer_name_or_path} ({limit} tokens, its tokenizer's "
                    f"model_max_length): set model.max_length to {limit} or less",
                )
            ]
        )
    fingerprint = data_fingerprint(
        tokenizer_id=tokenizer_identity(tokenizer),
        max_length=max_length,
        label_names=label_names,
        splits={
            "train": (splits.train_texts, splits.train_labels),
            "validation": (splits.val_texts, splits.val_labels),
        },
        text_pair=text_pair_column is not None,
    )
    if check_fingerprint is not None:
        check_fingerprint(fingerprint)
    report = build_report(
        splits,
        train_clean=train_clean,
        val_clean=val_clean,
        label_names=label_names,
        train_source=train_source,
        validation_source=validation_source,
        max_length=max_length,
    )
    report["tokenizer"] = tokenizer_name_or_path
    report["warnings"] += few_rows_warnings(report["class_distribution"]["train"])
    if text_pair_column is None and isinstance(text_column, str):
        report["warnings"] += pair_column_warnings(train_raw, text_column=text_column, task="text-classification")
    if text_pair_column is not None:
        report["text_pair"] = True  # rows are pairs: the report's texts are shown as "text ||| text_pair"
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        pad_token_id = 0
        report["warnings"].append("the tokenizer has no pad or eos token: padding with id 0")
    encoded = encode_cached(
        tokenizer,
        splits,
        label_ids=label_ids,
        max_length=max_length,
        directory=Path(cache_dir) / fingerprint,
        report=report,
        say=say,
    )
    return PreparedData(
        train=encoded["train"],
        validation=encoded["validation"],
        label_names=label_names,
        report=report,
        fingerprint=fingerprint,
        pad_token_id=int(pad_token_id),
        validation_texts=[display_text(t) for t in splits.val_texts],
        train_texts=list(splits.train_texts),
        train_rows=source_rows(train_raw.texts, train_raw.labels, splits.train_texts, splits.train_labels),
    )


def encode_cached(
    tokenizer: Any,
    splits: Splits,
    *,
    label_ids: dict[str, int],
    max_length: int,
    directory: Path,
    report: dict[str, Any],
    say: Log,
    encode_label: Callable[[str], Any] | None = None,
) -> dict[str, datasets.Dataset]:
    """Encoded splits from the cache at `directory`, tokenizing and caching them on a miss.

    Each row's `labels` is `label_ids[label]`, or `encode_label(label)` when given (a multi-hot vector: task
    multi-label). Adds `truncated`, `cache` and truncation warnings to `report` (in place).
    """
    encode = encode_label or label_ids.__getitem__
    kind = "pairs" if report.get("text_pair") else "texts"
    cached = load_cached(directory)
    if cached is not None:
        report.update(truncated={name: int(n) for name, n in cached[1]["truncated"].items()}, cache="hit")
        report["warnings"] += truncation_warnings(report["truncated"], max_length, kind=kind)
        say(f"cache hit: {directory}")
        return cached[0]
    encoded, truncated = {}, {}
    for name, texts, labels in (
        ("train", splits.train_texts, splits.train_labels),
        ("validation", splits.val_texts, splits.val_labels),
    ):
        encoded[name], truncated[name] = tokenize_split(
            tokenizer,
            texts,
            [encode(label) for label in labels],
            max_length=max_length,
            fingerprint=f"{directory.name[:32]}-{name}",
        )
    say(f"tokenized {len(splits.train_texts)} + {len(splits.val_texts)} {kind} (cache miss)")
    report.update(truncated=truncated, cache="miss")
    report["warnings"] += truncation_warnings(truncated, max_length, kind=kind)
    save_cache(directory, encoded, report)
    cached = load_cached(directory)  # serve the memory-mapped copy, as a cache hit would
    if cached is None:
        raise OSError(f"could not read back the data cache just written to {directory}")
    return cached[0]


def load_sources(
    train_source: str,
    validation_source: str | None,
    *,
    text_column: str | Sequence[str],
    label_column: str,
    columns: Sequence[str] | None = None,
    text_separator: str = DEFAULT_TEXT_SEPARATOR,
    text_pair_column: str | None = None,
) -> tuple[RawTable, RawTable | None]:
    """Load train and (if given) validation, raising one DataError with the problems of both."""
    problems: list[tuple[str, str]] = []
    tables: dict[str, RawTable] = {}
    for field, source, split in (
        ("data.train", train_source, "train"),
        ("data.validation", validation_source, "validation"),
    ):
        if source is None:
            continue
        try:
            tables[field] = load_table(
                source,
                text_column=text_column,
                label_column=label_column,
                field=field,
                split=split,
                columns=columns,
                text_separator=text_separator,
                text_pair_column=text_pair_column,
            )
        except DataError as err:
            problems += [p for p in err.problems if p not in problems]  # column errors may repeat
    if problems:
        raise DataError(problems)
    return tables["data.train"], tables.get("data.validation")


def score_like_labels(labels: Sequence[str], label_column: str) -> tuple[str, str] | None:
    """The one problem of a classification label column that holds scores (every value a number, some with a
    fraction, as STS-B's 0-5 similarity): each value would be a class of its own, and the split checks would list
    dozens of classes missing from one side. None for anything else (integer class ids such as 1-5 stars are
    classes)."""
    values: dict[str, float] = {}
    for label in dict.fromkeys(labels):
        try:
            values[label] = float(label)
        except ValueError:
            return None
    fractional = [label for label, value in values.items() if math.isfinite(value) and not value.is_integer()]
    if not fractional:
        return None
    shown = ", ".join(repr(label) for label in fractional[:3])
    return ("data.label_column", f"{label_column!r} holds numbers with fractions ({len(values)} distinct values, "
                                 f"e.g. {shown}), which would each be a class: to predict the score set "
                                 "`task: regression`")  # fmt: skip


def split_examples(
    train: CleanResult,
    validation: CleanResult | None,
    *,
    val_fraction: float,
    seed: int,
    train_source: str,
    validation_source: str | None,
) -> Splits:
    """Stratified split of train (no validation given), or coverage checks plus leakage removal."""
    problems = [
        (field, f"no usable rows in {source} after cleaning ({cleaning_summary(result.report)})"
                + ("; every text came with several labels: are data.text_column and data.label_column swapped?"
                   if result.report.get("conflicting_rows", 0) >= 0.9 * result.report["rows_in"] else ""))
        for field, source, result in (
            ("data.train", train_source, train),
            ("data.validation", validation_source, validation),
        )
        if result is not None and not result.texts
    ]
    if problems:
        raise DataError(problems)
    if validation is None:
        check_label_coverage(train.labels, train.labels)  # 2+ classes, before the split complains
        tr_texts, tr_labels, va_texts, va_labels = stratified_split(
            train.texts, train.labels, val_fraction=val_fraction, seed=seed
        )
        split = f"stratified from train, val_fraction={val_fraction}, seed={seed}"
    else:
        tr_texts, tr_labels = train.texts, train.labels
        va_texts, va_labels = validation.texts, validation.labels
        check_label_coverage(tr_labels, va_labels)
        split = "given"
    tr_texts, tr_labels, overlap = remove_overlap(tr_texts, tr_labels, va_texts, va_labels)
    all_in_validation(len(tr_texts), overlap["train_val_overlap"])
    if overlap["train_val_overlap"]:
        try:
            check_label_coverage(tr_labels, va_labels)
        except DataError as err:
            raise DataError(with_overlap_note(err.problems, overlap["train_val_overlap"])) from err
    return Splits(tr_texts, tr_labels, va_texts, va_labels, split, overlap)


def tokenizer_limit(tokenizer: Any) -> int | None:
    """The longest input the tokenizer says its model accepts; None where it does not say (a huge sentinel)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 1_000_000 else None
