"""The data report: what loading, cleaning and splitting did, as JSON-serialisable counts and warning lines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datamodules.cleaning import CleanResult
from datamodules.hub import HUB_PREFIX

if TYPE_CHECKING:
    from datamodules.loading import RawTable
    from datamodules.preparation import Splits

MAX_VARIANT_GROUPS = 5  # groups of labels written alike, one warning line each


def cleaning_summary(report: dict[str, Any]) -> str:
    """'3 missing text, 1 duplicates' style summary of the non-zero drop counts."""
    keys = ("missing_text", "empty_text", "missing_label", "conflicting_rows", "duplicates")
    parts = [f"{report[k]} {k.replace('_', ' ')}" for k in keys if report.get(k)]
    return f"{report['rows_in']} rows in; dropped " + (", ".join(parts) or "none")


def class_distribution(labels: Sequence[str], label_names: Sequence[str]) -> dict[str, int]:
    """Rows per class, in label order (0 for absent classes)."""
    counts = Counter(labels)
    return {name: counts[name] for name in label_names}


def build_report(
    splits: Splits,
    *,
    train_clean: CleanResult,
    val_clean: CleanResult | None,
    label_names: list[str],
    train_source: str,
    validation_source: str | None,
    max_length: int,
) -> dict[str, Any]:
    """The JSON-serialisable data report (truncation counts are added after tokenizing)."""
    warnings = cleaning_warnings("train", train_clean.report)
    if val_clean is not None:
        warnings += cleaning_warnings("validation", val_clean.report)
    warnings += overlap_warnings(splits.overlap)
    return {
        "train": train_source,
        "validation": validation_source,
        "cleaning": {"train": train_clean.report, "validation": val_clean.report if val_clean else None},
        "split": splits.split,
        "overlap": splits.overlap,
        "class_distribution": {
            "train": class_distribution(splits.train_labels, label_names),
            "validation": class_distribution(splits.val_labels, label_names),
        },
        "truncated": {"train": 0, "validation": 0},
        "max_length": max_length,
        "label_names": label_names,
        "num_train": len(splits.train_texts),
        "num_validation": len(splits.val_texts),
        "warnings": warnings,
    }


FEW_TRAIN_ROWS = 3  # a class (or label) with fewer training rows than this gets a warning


def few_rows_warnings(train_counts: dict[str, int], *, kind: str = "class") -> list[str]:
    """A line naming the classes with fewer than FEW_TRAIN_ROWS training rows: a class with one example trains and
    is scored without a word (the lecture's rule: data should cover every class)."""
    few = [f"{name} ({n})" for name, n in train_counts.items() if n < FEW_TRAIN_ROWS]
    if not few:
        return []
    plural = "classes have" if kind == "class" else "labels have"
    return [f"{len(few)} {f'{kind} has' if len(few) == 1 else plural} fewer than {FEW_TRAIN_ROWS} training rows, too "
            f"few to learn {'it' if len(few) == 1 else 'them'} from: {', '.join(few)}"]


def pair_column_warnings(table: RawTable, *, text_column: str, task: str) -> list[str]:
    """A line for each unread column of `table` that holds text like the text column's (`RawTable.other_texts`):
    a pair of texts read as its first half trains without error, and nothing else would say so."""
    task_hint = "" if task == "regression" else " and task: text-pair"
    name = table.source if table.source.startswith(HUB_PREFIX) else Path(table.source).name
    return [f"{name}: column {c!r} holds "
            f"texts like data.text_column {text_column!r} and is not read: if each example is a pair of texts, set "
            f"data.text_pair_column: {c}{task_hint}" for c in table.other_texts]


def overlap_warnings(overlap: dict[str, Any], kind: str = "text") -> list[str]:
    """The line saying how many training rows (`kind`: text, sentence) repeat a validation one and were dropped, and
    how many of those validation labels differently."""
    count = overlap.get("train_val_overlap", 0)
    if not count:
        return []
    line = (f"train: 1 training {kind} also in validation was dropped" if count == 1
            else f"train: {count} training {kind}s also in validation were dropped")  # fmt: skip
    relabelled = overlap.get("overlap_relabelled", 0)
    if relabelled:
        them = f"{relabelled} of them {'has' if relabelled == 1 else 'have'}"
        line += (f" ({'it has' if count == 1 else them} another label in validation: "
                 "validation's label is the one scored; check which is right)")  # fmt: skip
    return [line]


def _rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"


def cleaning_warnings(split: str, report: dict[str, Any]) -> list[str]:
    """One line per kind of row that cleaning dropped."""
    lines = []
    named = report.get("dropped_rows") or {}  # reports from before it name no rows

    def which(reason: str) -> str:
        rows = named.get(reason) or []
        if not rows:
            return ""
        more = ", ..." if report[reason] > len(rows) else ""
        return f" ({'row' if report[reason] == 1 else 'rows'} {', '.join(map(str, rows))}{more})"  # 1: first data row

    if report["missing_text"]:
        lines.append(f"{split}: dropped {_rows(report['missing_text'])} with a missing text{which('missing_text')}")
    if report["empty_text"]:
        lines.append(f"{split}: dropped {_rows(report['empty_text'])} whose text is empty{which('empty_text')}")
    if report["missing_label"]:
        lines.append(f"{split}: dropped {_rows(report['missing_label'])} with a missing label{which('missing_label')}")
    if report["duplicates"]:
        lines.append(
            f"{split}: dropped {report['duplicates']} duplicate {'row' if report['duplicates'] == 1 else 'rows'} (the "
            "same text, after normalising spaces and Unicode, and label)"
        )
    for group in report.get("label_variants", [])[:MAX_VARIANT_GROUPS]:
        shown = " / ".join(f"{label!r} ({_rows(n)})" for label, n in group.items())
        lines.append(f"{split}: labels {shown} differ only in case, width, invisible characters or how a number is "
                     "written, and are trained as separate classes: make them one label if they are one class")
    if len(report.get("label_variants", [])) > MAX_VARIANT_GROUPS:
        lines.append(f"{split}: and {len(report['label_variants']) - MAX_VARIANT_GROUPS} more such groups of labels")
    if report["conflicting_texts_total"]:
        lines.append(
            f"{split}: {report['conflicting_texts_total']} "
            f"{'text appears' if report['conflicting_texts_total'] == 1 else 'texts appear'} with conflicting labels; "
            f"kept none of them ({_rows(report['conflicting_rows'])})"
        )
    return lines


def truncation_warnings(truncated: dict[str, int], max_length: int, *, kind: str = "texts") -> list[str]:
    """One line per split that had texts (or pairs: `kind`) cut to max_length."""
    return [
        f"1 {split} {kind.removesuffix('s')} longer than max_length={max_length} tokens was truncated" if n == 1
        else f"{n} {split} {kind} longer than max_length={max_length} tokens were truncated"
        for split, n in truncated.items()
        if n
    ]  # fmt: skip
