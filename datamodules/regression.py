"""Data for task: regression: a numeric label per text (or pair). Load, check the labels are numbers, clean (texts
seen with several scores get their mean), split (seeded, stratified on score quantiles), report, tokenize (cached).

Reuses the classification path's loading, text cleaning, overlap removal, fingerprint, tokenizer and cache; only
the label handling differs. Returns the same `PreparedData`, with one label name (the label column's) and float
`labels`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import datasets
import numpy as np
from transformers import AutoTokenizer

from datamodules.cleaning import _clean_text
from datamodules.encoding import data_fingerprint, load_cached, save_cache, tokenize_split, tokenizer_identity
from datamodules.errors import DataError
from datamodules.loading import DEFAULT_TEXT_SEPARATOR, RawTable
from datamodules.preparation import PreparedData, load_sources, tokenizer_limit
from datamodules.report import cleaning_summary, overlap_warnings, pair_column_warnings, truncation_warnings
from datamodules.splitting import remove_overlap
from datamodules.texts import Text, display_text

Log = Callable[[str], None]
NEEDS_NUMBERS = "task: regression needs a numeric label column"
MAX_BAD_ROWS_SHOWN = 5
MAX_AVERAGED_EXAMPLES = 20
HISTOGRAM_BINS = 20
MAX_QUANTILE_BINS = 10


# -- labels ---------------------------------------------------------------------------------------------------


def parse_score(value: object) -> float | None:
    """A label as a finite float, or None when it is not one (text, empty, NaN, infinite, a boolean)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        score = float(str(value).strip())
    except ValueError:
        return None
    return score if math.isfinite(score) else None


def numeric_labels(table: RawTable, field: str) -> list[float]:
    """The table's labels as floats; DataError (one line for the file) naming the first bad rows and their values.

    Rows are counted from 1, the first data row (a header line is not a row).
    """
    scores: list[float] = []
    bad: list[tuple[int, object]] = []
    for row, value in enumerate(table.labels, start=1):
        score = parse_score(value)
        if score is None:
            bad.append((row, value))
        else:
            scores.append(score)
    if not bad:
        return scores
    name = Path(table.source).name
    row, value = bad[0]
    what = "is missing or empty" if value is None else f"{value!r} is not a number"
    if isinstance(value, str) and parse_score(value) is None and _is_float(value):
        what = f"{value!r} is not a finite number"
    more = ""
    if len(bad) > 1:
        rows = ", ".join(str(r) for r, _ in bad[1 : 1 + MAX_BAD_ROWS_SHOWN])
        rest = len(bad) - 1 - MAX_BAD_ROWS_SHOWN
        more = (f"; {len(bad) - 1} more row{'s' if len(bad) > 2 else ''} without a usable score ({rows}"
                f"{', ...' if rest > 0 else ''})")
    raise DataError([(field, f"{name} row {row}: label {what} ({NEEDS_NUMBERS}){more}")])


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


# -- cleaning -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanScores:
    """Cleaned rows (first-seen order) with one score per text, and what the cleaning did."""

    texts: list[Text]
    scores: list[float]
    report: dict[str, Any]


def range_problems(
    field: str, source: str, scores: Sequence[float], label_range: tuple[float, float] | None
) -> list[tuple[str, str]]:
    """One line for a file whose scores leave `label_range` (inclusive): the first rows, their values (rows counted
    from 1, the first data row, as for a score that is not a number)."""
    if label_range is None:
        return []
    low, high = label_range
    outside = [(row, s) for row, s in enumerate(scores, start=1) if not low <= s <= high]
    if not outside:
        return []
    shown = ", ".join(f"row {row}: {s:g}" for row, s in outside[:MAX_BAD_ROWS_SHOWN])
    more = f", and {len(outside) - MAX_BAD_ROWS_SHOWN} more" if len(outside) > MAX_BAD_ROWS_SHOWN else ""
    return [(field, f"{Path(source).name}: {len(outside)} score{'s' if len(outside) != 1 else ''} outside "
                    f"data.label_range [{low:g}, {high:g}] ({shown}{more}): fix the rows, or widen the range")]


def clean_scored(texts: Sequence[object], scores: Sequence[float]) -> CleanScores:
    """Normalise texts, drop rows whose text (or a pair side) is missing or empty, and keep one row per text.

    Exact repeats (same text, same score) count as `duplicates`; a text seen with different scores is kept once
    with the mean of its rows' scores (`averaged_rows`: the rows merged into it beyond the first, exact repeats
    aside; `averaged_texts_total`: how many texts). So `rows_in` = `rows_out` + `missing_text` + `empty_text` +
    `duplicates` + `averaged_rows`. The report keeps the classification report's keys (`missing_label`,
    `conflicting_rows` stay 0: a missing label is refused before cleaning, and nothing is dropped for a conflict).
    """
    if len(texts) != len(scores):
        raise ValueError(f"texts and scores differ in length: {len(texts)} != {len(scores)}")
    report: dict[str, Any] = {"rows_in": len(texts), "normalized": 0, "missing_text": 0, "empty_text": 0,
                              "missing_label": 0}  # fmt: skip
    by_text: defaultdict[Text, list[float]] = defaultdict(list)
    for raw, score in zip(texts, scores, strict=True):
        text, changed = _clean_text(raw)
        if text is None:
            report["missing_text"] += 1
            continue
        if not all(text if isinstance(text, tuple) else (text,)):
            report["empty_text"] += 1
            continue
        report["normalized"] += changed  # a row kept (into its text's mean) whose text normalising changed
        by_text[text].append(score)
    kept, means, averaged = [], [], []
    duplicates = merged = 0
    for text, values in by_text.items():
        distinct = sorted(set(values))
        duplicates += len(values) - len(distinct)
        if len(distinct) > 1:
            merged += len(distinct) - 1
            averaged.append({"text": display_text(text), "scores": values})
        kept.append(text)
        means.append(float(np.mean(values)))
    report.update(conflicting_rows=0, duplicates=duplicates, averaged_rows=merged, rows_out=len(kept),
                  conflicting_texts=[], conflicting_texts_total=0, averaged_texts=averaged[:MAX_AVERAGED_EXAMPLES],
                  averaged_texts_total=len(averaged))  # fmt: skip
    return CleanScores(kept, means, report)


# -- split ----------------------------------------------------------------------------------------------------


def quantile_bins(scores: Sequence[float], n_val: int) -> list[int] | None:
    """Each score's quantile bin (as many bins as the split allows, up to 10, each with 2+ rows), or None when no
    stratification is possible (too few rows or too few distinct scores)."""
    values = np.asarray(scores, dtype=float)
    n_bins = min(MAX_QUANTILE_BINS, n_val, len(values) - n_val, len(values) // 2)
    while n_bins >= 2:
        edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1))[1:-1])
        bins = np.searchsorted(edges, values, side="right")
        counts = np.bincount(bins)
        if len(counts) >= 2 and counts.min() >= 2:
            return [int(b) for b in bins]
        n_bins -= 1
    return None


def split_scored(
    texts: Sequence[Text], scores: Sequence[float], *, val_fraction: float, seed: int
) -> tuple[list[Text], list[float], list[Text], list[float], bool]:
    """Seeded split into (train_texts, train_scores, val_texts, val_scores, stratified), input order kept.

    Stratified on quantile bins of the score where there are enough rows, so both splits span the score range.
    """
    n = len(texts)
    n_val = math.ceil(val_fraction * n)
    if n_val < 2 or n - n_val < 2:
        raise DataError([("data.val_fraction", f"val_fraction={val_fraction} splits {n} rows into {n - n_val} "
                                               f"training and {n_val} validation rows; a regression needs at least "
                                               "2 in each: add rows, change data.val_fraction or give "
                                               "data.validation")])  # fmt: skip
    from sklearn.model_selection import train_test_split  # imported here: it takes seconds to load

    bins = quantile_bins(scores, n_val)
    train_idx, val_idx = train_test_split(list(range(n)), test_size=n_val, stratify=bins, random_state=seed,
                                          shuffle=True)  # fmt: skip
    train_idx, val_idx = sorted(train_idx), sorted(val_idx)
    return ([texts[i] for i in train_idx], [scores[i] for i in train_idx], [texts[i] for i in val_idx],
            [scores[i] for i in val_idx], bins is not None)  # fmt: skip


def spread_problems(field: str, source: str, scores: Sequence[float]) -> list[tuple[str, str]]:
    """A split whose scores are all the same: nothing to learn, and correlations are undefined."""
    if len(set(scores)) > 1:
        return []
    return [(field, f"every label in {Path(source).name} is {scores[0]:g} after cleaning: a regression needs "
                    "scores that vary (Pearson and Spearman are undefined for a constant target)")]  # fmt: skip


# -- report ---------------------------------------------------------------------------------------------------


def label_summary(scores: Sequence[float], edges: Sequence[float]) -> dict[str, Any]:
    """Count, min, max, mean, (population) std and a histogram over `edges` of one split's scores."""
    values = np.asarray(scores, dtype=float)
    counts, _ = np.histogram(values, bins=np.asarray(edges))
    return {"count": int(values.size), "min": float(values.min()), "max": float(values.max()),
            "mean": round(float(values.mean()), 6), "std": round(float(values.std()), 6),
            "histogram": [int(c) for c in counts]}  # fmt: skip


def label_distribution(splits: dict[str, Sequence[float]]) -> dict[str, Any]:
    """Each split's label summary, histograms on shared edges (so they compare bar for bar)."""
    low = min(min(s) for s in splits.values())
    high = max(max(s) for s in splits.values())
    if high == low:
        high = low + 1.0
    edges = [round(float(e), 6) for e in np.linspace(low, high, HISTOGRAM_BINS + 1)]
    return {"edges": edges, **{name: label_summary(scores, edges) for name, scores in splits.items()}}


def cleaning_lines(split: str, report: dict[str, Any]) -> list[str]:
    """One warning line per kind of row cleaning dropped or merged."""
    lines = []
    for key, one, many in (("missing_text", "with a missing text", "with a missing text"),
                           ("empty_text", "whose text is empty", "whose text is empty"),
                           ("duplicates", "that repeats an earlier row (same text, same score)",
                            "that repeat an earlier row (same text, same score)")):  # fmt: skip
        if report[key]:
            lines.append(f"{split}: dropped {report[key]} {'row' if report[key] == 1 else 'rows'} "
                         f"{one if report[key] == 1 else many}")  # fmt: skip
    if (texts := report["averaged_texts_total"]):
        merged = report["averaged_rows"]
        lines.append(f"{split}: {texts} {'text appears' if texts == 1 else 'texts appear'} with different scores; "
                     f"{'it is' if texts == 1 else 'each is'} kept once with its mean score ({merged} more "
                     f"{'row' if merged == 1 else 'rows'} merged into {'it' if texts == 1 else 'them'})")
    return lines


# -- the entry point ----------------------------------------------------------------------------------------


def prepare_regression_data(
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
    label_range: tuple[float, float] | None = None,
    log: Log | None = None,
    check_fingerprint: Callable[[str], None] | None = None,
) -> PreparedData:
    """Load, check, clean, split and tokenize a regression dataset (arguments as `prepare_classification_data`;
    `label_range`: the [low, high] every score must lie in, `data.label_range`).

    Raises DataError, every problem of both files at once: a label that is not a finite number (file, row, value),
    a split whose scores do not vary, too few rows to split, `max_length` above the tokenizer's limit.
    """
    say: Log = log or (lambda _line: None)
    train_raw, val_raw = load_sources(train_source, validation_source, text_column=text_column,
                                      label_column=label_column, columns=columns, text_separator=text_separator,
                                      text_pair_column=text_pair_column)  # fmt: skip
    tables = [("data.train", train_raw), *([("data.validation", val_raw)] if val_raw is not None else [])]
    problems: list[tuple[str, str]] = []
    scores: dict[str, list[float]] = {}
    for field, table in tables:
        say(f"loaded {len(table.texts)} rows from {table.source}")
        try:
            scores[field] = numeric_labels(table, field)
        except DataError as err:
            problems += err.problems
        else:
            problems += range_problems(field, table.source, scores[field], label_range)
    if problems:
        raise DataError(problems)
    train_clean = clean_scored(train_raw.texts, scores["data.train"])
    val_clean = clean_scored(val_raw.texts, scores["data.validation"]) if val_raw is not None else None
    for field, source, result in (("data.train", train_source, train_clean),
                                  ("data.validation", validation_source, val_clean)):  # fmt: skip
        if result is not None and not result.texts:
            problems.append((field, f"no usable rows in {source} after cleaning ({cleaning_summary(result.report)})"))
    if problems:
        raise DataError(problems)
    if val_clean is None:
        problems += spread_problems("data.train", train_source, train_clean.scores)
        if problems:
            raise DataError(problems)
        tr_texts, tr_scores, va_texts, va_scores, stratified = split_scored(
            train_clean.texts, train_clean.scores, val_fraction=val_fraction, seed=seed
        )
        how = "stratified on score quantiles" if stratified else "random"
        split = f"{how} from train, val_fraction={val_fraction}, seed={seed}"
    else:
        tr_texts, tr_scores, va_texts, va_scores = train_clean.texts, train_clean.scores, val_clean.texts, \
            val_clean.scores  # fmt: skip
        split = "given"
    tr_texts, tr_scores, overlap = _without_overlap(tr_texts, tr_scores, va_texts)
    problems += spread_problems("data.train", train_source, tr_scores) if tr_scores else [
        ("data.train", f"no training rows are left: every one of them is also in {validation_source}")]
    problems += spread_problems("data.validation", validation_source or train_source, va_scores)
    if problems:
        raise DataError(problems)

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path)
    limit = tokenizer_limit(tokenizer)
    if limit is not None and max_length > limit:
        raise DataError([("model.max_length", f"{max_length} is above the limit of {tokenizer_name_or_path} "
                                              f"({limit} tokens, its tokenizer's model_max_length): set "
                                              f"model.max_length to {limit} or less")])  # fmt: skip
    label_names = [label_column]
    fingerprint = data_fingerprint(
        tokenizer_id=tokenizer_identity(tokenizer),
        max_length=max_length,
        label_names=label_names,
        splits=cast(Any, {"train": (tr_texts, tr_scores), "validation": (va_texts, va_scores)}),
        text_pair=text_pair_column is not None,
    )
    if check_fingerprint is not None:
        check_fingerprint(fingerprint)
    warnings = cleaning_lines("train", train_clean.report)
    if val_clean is not None:
        warnings += cleaning_lines("validation", val_clean.report)
    warnings += overlap_warnings(overlap)
    report: dict[str, Any] = {
        "task": "regression",
        "train": train_source,
        "validation": validation_source,
        "cleaning": {"train": train_clean.report, "validation": val_clean.report if val_clean else None},
        "split": split,
        "overlap": overlap,
        "label_distribution": label_distribution({"train": tr_scores, "validation": va_scores}),
        "truncated": {"train": 0, "validation": 0},
        "max_length": max_length,
        "label_names": label_names,
        "num_train": len(tr_texts),
        "num_validation": len(va_texts),
        "warnings": warnings,
        "tokenizer": tokenizer_name_or_path,
    }
    if text_pair_column is None and isinstance(text_column, str):
        report["warnings"] += pair_column_warnings(train_raw, text_column=text_column, task="regression")
    if text_pair_column is not None:
        report["text_pair"] = True
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        pad_token_id = 0
        report["warnings"].append("the tokenizer has no pad or eos token: padding with id 0")
    encoded = encode_scored(tokenizer, {"train": (tr_texts, tr_scores), "validation": (va_texts, va_scores)},
                            max_length=max_length, directory=Path(cache_dir) / fingerprint, report=report,
                            say=say)  # fmt: skip
    return PreparedData(
        train=encoded["train"],
        validation=encoded["validation"],
        label_names=label_names,
        report=report,
        fingerprint=fingerprint,
        pad_token_id=int(pad_token_id),
        validation_texts=[display_text(t) for t in va_texts],
        train_texts=list(tr_texts),
        train_rows=first_rows(train_raw.texts, tr_texts),
    )


def first_rows(raw_texts: Sequence[object], texts: Sequence[Text]) -> list[int]:
    """For each cleaned text, the 0-based index of the first raw row that cleans to it (-1 if none): cleaning keeps
    one row per text (its rows' mean score), so that row names it in the training file."""
    first: dict[Text, int] = {}
    for i, raw in enumerate(raw_texts):
        text, _ = _clean_text(raw)
        if text is not None:
            first.setdefault(text, i)
    return [first.get(text, -1) for text in texts]


def _without_overlap(
    texts: list[Text], scores: list[float], val_texts: Sequence[Text]
) -> tuple[list[Text], list[float], dict[str, Any]]:
    """Training rows whose text (or pair) is not in validation, and the overlap report (`remove_overlap`'s)."""
    kept, rows, overlap = remove_overlap(texts, [str(i) for i in range(len(texts))], val_texts)
    return kept, [scores[int(i)] for i in rows], overlap


def encode_scored(
    tokenizer: Any,
    splits: dict[str, tuple[Sequence[Text], Sequence[float]]],
    *,
    max_length: int,
    directory: Path,
    report: dict[str, Any],
    say: Log,
) -> dict[str, datasets.Dataset]:
    """Encoded splits (float `labels`) from the cache at `directory`, tokenizing and caching them on a miss.

    Adds `truncated`, `cache` and truncation warnings to `report` (in place).
    """
    kind = "pairs" if report.get("text_pair") else "texts"
    cached = load_cached(directory)
    if cached is None:
        encoded, truncated = {}, {}
        for name, (texts, scores) in splits.items():
            encoded[name], truncated[name] = tokenize_split(
                tokenizer, texts, cast(Any, [float(s) for s in scores]), max_length=max_length,
                fingerprint=f"{directory.name[:32]}-{name}",
            )  # fmt: skip
        say(f"tokenized {len(splits['train'][0])} + {len(splits['validation'][0])} {kind} (cache miss)")
        report.update(truncated=truncated, cache="miss")
        save_cache(directory, encoded, report)
        cached = load_cached(directory)  # serve the memory-mapped copy, as a cache hit would
        if cached is None:
            raise OSError(f"could not read back the data cache just written to {directory}")
    else:
        report.update(truncated={name: int(n) for name, n in cached[1]["truncated"].items()}, cache="hit")
        say(f"cache hit: {directory}")
    report["warnings"] += truncation_warnings(report["truncated"], max_length, kind=kind)
    return cached[0]
