"""The data report stored with a study (`data_report` user attr) as figures, tables and notes.

Every key is optional: older studies, or studies made by other tools, may hold any part of it or none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports.blocks import Block, FigureBlock, ListBlock, NoteBlock, TableBlock
from reports.entities import TOKEN_TASK, tagged_data_blocks
from reports.figures import plot_class_distribution
from reports.scores import label_distribution_blocks

SPLITS = ("train", "validation")
PAIR_NOTE = (
    "Each row is a text pair (task: text-pair): a duplicate, a conflict and an overlap are the same pair (both "
    "texts), a row is dropped when either text is missing or empty, texts below show as 'text ||| text_pair', and "
    "truncation is longest_first (tokens come off the longer text first)."
)
PAIR_SCORE_NOTE = (
    "Each row is a text pair with a score (task: regression): a duplicate and an overlap are the same pair (both "
    "texts), the same pair with other scores is merged into their mean, a row is dropped when either text is "
    "missing or empty, texts below show as 'text ||| text_pair', and truncation is longest_first (tokens come off "
    "the longer text first)."
)
CONFLICTS_NOT_CHECKED = ("regression", TOKEN_TASK)  # merged into a mean; tags are per word, not one per text
DROP_REASONS = {
    "missing_text": "missing text",
    "empty_text": "empty text after normalising",
    "missing_label": "missing label",
    "conflicting_rows": "text with conflicting labels",
    "duplicates": "duplicate (same text after normalising, same label)",
    "averaged_rows": "same text, other score (merged into its mean)",  # task: regression
}
MAX_CONFLICTS = 20
MAX_OVERLAP_EXAMPLES = 10


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def overview_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    """Where the data came from and how it was split, as (item, value) rows."""
    items = [("train source", "train"), ("validation source", "validation"), ("split", "split"),
             ("training rows", "num_train"), ("validation rows", "num_validation"),
             ("max length (tokens)", "max_length"), ("tokenizer", "tokenizer")]
    rows = [[label, report[key]] for label, key in items if report.get(key) is not None]
    if "validation" in report and report.get("validation") is None:
        rows.insert(1, ["validation source", "none (split from train)"])
    per_row = _dict(report.get("labels_per_row"))  # task: multi-label
    if per_row:
        rows.append(["labels per row (mean)", " / ".join(f"{split} {per_row[split]:g}" for split in SPLITS
                                                         if isinstance(per_row.get(split), int | float))])
    return rows


def collect_class_distribution(report: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Rows per class for each split that has counts."""
    dist = _dict(report.get("class_distribution"))
    return {split: {str(k): int(v) for k, v in _dict(dist.get(split)).items()} for split in dist
            if _dict(dist.get(split))}


def collect_dropped_rows(report: Mapping[str, Any]) -> dict[str, dict[str, int | None]]:
    """Per split with a cleaning report: rows in, rows dropped per reason, rows out, texts normalised (kept)."""
    cleaning = _dict(report.get("cleaning"))
    out: dict[str, dict[str, int | None]] = {}
    for split in SPLITS:
        rep = _dict(cleaning.get(split))
        if rep:
            keys = ("rows_in", *DROP_REASONS, "rows_out", "normalized")
            out[split] = {k: _int(rep.get(k)) for k in keys}
    return out


def dropped_rows_table(dropped: Mapping[str, Mapping[str, int | None]]) -> TableBlock:
    """Reasons as rows, splits as columns."""
    splits = list(dropped)
    labels = {"rows_in": "rows read", **{k: f"dropped: {v}" for k, v in DROP_REASONS.items()},
              "rows_out": "rows kept", "normalized": "texts normalised (kept)"}
    scores = _scores(dropped)  # task: regression
    if scores:  # a score is what a label is here; a row missing one is refused before cleaning, never dropped
        labels["duplicates"] = "dropped: duplicate (same text after normalising, same score)"
    rows = [[label, *(dropped[s].get(key) for s in splits)] for key, label in labels.items()
            if (key != "averaged_rows" or scores) and (key != "conflicting_rows" or not scores)
            and (key != "missing_label" or not scores or any(dropped[s].get(key) for s in splits))]
    return TableBlock(columns=["", *splits], rows=rows, caption="Rows dropped while cleaning, by reason")


def _label_counts(labels: Any) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in _dict(labels).items())


def conflict_blocks(report: Mapping[str, Any]) -> list[Block]:
    """Texts that appeared with different labels (all their rows were dropped), capped per split."""
    cleaning = _dict(report.get("cleaning"))
    rows, notes = [], []
    for split in SPLITS:
        rep = _dict(cleaning.get(split))
        examples = [e for e in rep.get("conflicting_texts") or [] if isinstance(e, dict)]
        total = _int(rep.get("conflicting_texts_total"))
        total = total if total is not None else len(examples)
        shown = examples[:MAX_CONFLICTS]
        rows += [[split, e.get("text", ""), _label_counts(e.get("labels"))] for e in shown]
        if total > len(shown):
            notes.append(NoteBlock(f"{split}: showing {len(shown)} of {total} texts with conflicting labels"))
    if not rows:
        return [NoteBlock("No text appeared with conflicting labels.")] if cleaning else []
    return [TableBlock(columns=["split", "text", "labels (rows)"], rows=rows,
                       caption="Texts with conflicting labels (every such row was dropped)"), *notes]


def _scores(dropped: Mapping[str, Mapping[str, int | None]]) -> bool:
    """Whether the cleaning report is a regression's (it counts rows merged into their mean score)."""
    return any(counts.get("averaged_rows") is not None for counts in dropped.values())


def duplicate_note(dropped: Mapping[str, Mapping[str, int | None]]) -> NoteBlock | None:
    """One sentence on duplicates (the same text after normalising, and label or score) per split."""
    parts = [f"{split}: {counts['duplicates']}" for split, counts in dropped.items()
             if counts.get("duplicates") is not None]
    if not parts:
        return None
    label = "score" if _scores(dropped) else "label"
    return NoteBlock(f"Duplicate rows dropped (the same text after normalising spaces and Unicode, and {label}; one "
                     "copy of each kept): " + "; ".join(parts) + ".")


def overlap_blocks(report: Mapping[str, Any]) -> list[Block]:
    """How many training rows were dropped because their text is also in validation, with examples."""
    overlap = _dict(report.get("overlap"))
    count = _int(overlap.get("train_val_overlap"))
    if count is None:
        return []
    if count == 0:
        return [NoteBlock("Train/validation overlap: no training text is also in validation.")]
    examples = [str(e) for e in overlap.get("overlap_examples") or []][:MAX_OVERLAP_EXAMPLES]
    rows = "1 training row had a text that is also in validation and was" if count == 1 else (
        f"{count} training rows had a text that is also in validation and were")
    relabelled = _int(overlap.get("overlap_relabelled")) or 0
    note = (f" {'It had' if count == 1 else f'{relabelled} of them had'} another label in validation (validation's "
            "label is the one scored: check which is right).") if relabelled else ""  # fmt: skip
    blocks: list[Block] = [NoteBlock(f"Train/validation overlap: {rows} dropped from train.{note}")]
    if examples:
        blocks.append(ListBlock(examples, caption=f"Overlapping texts (first {len(examples)})"))
    return blocks


def truncation_table(report: Mapping[str, Any]) -> TableBlock | None:
    """Rows longer than max_length (cut) per split."""
    truncated = _dict(report.get("truncated"))
    if not truncated:
        return None
    totals = {"train": report.get("num_train"), "validation": report.get("num_validation")}
    rows = [[split, _int(n), _int(totals.get(split))] for split, n in truncated.items()]
    max_length = report.get("max_length")
    caption = "Rows truncated" + (f" to {max_length} tokens" if max_length is not None else "")
    return TableBlock(columns=["split", "truncated rows", "rows"], rows=rows, caption=caption)


def data_blocks(report: Mapping[str, Any]) -> list[Block]:
    """Everything the data report holds, in reading order; a note when it holds nothing."""
    if not report:
        return [NoteBlock("This study has no data report (the `data_report` user attribute is missing).",
                          missing=True)]
    blocks: list[Block] = []
    overview = overview_rows(report)
    if overview:
        blocks.append(TableBlock(columns=["", ""], rows=overview, caption="Data"))
    if report.get("text_pair"):
        blocks.append(NoteBlock(PAIR_SCORE_NOTE if "label_distribution" in report else PAIR_NOTE))
    if report.get("task") == TOKEN_TASK:
        blocks += tagged_data_blocks(report)
    distribution = collect_class_distribution(report)
    if "label_distribution" in report:  # task: regression: a numeric label, not classes
        blocks += label_distribution_blocks(report)
    elif distribution:
        counted = "entities" if report.get("task") == TOKEN_TASK else "rows"  # NER counts entities per type
        blocks.append(FigureBlock("class-distribution", plot_class_distribution(distribution, counted)))
    else:
        blocks.append(NoteBlock("No class distribution recorded.", missing=True))
    dropped = collect_dropped_rows(report)
    if dropped:
        blocks.append(dropped_rows_table(dropped))
        if "validation" not in dropped and report.get("validation") is None and "train" in dropped:
            blocks.append(NoteBlock("The validation split was taken from the cleaned training data."))
        note = duplicate_note(dropped)
        if note:
            blocks.append(note)
    else:
        blocks.append(NoteBlock("No cleaning counts recorded.", missing=True))
    if report.get("task") not in CONFLICTS_NOT_CHECKED and "label_distribution" not in report:
        blocks += conflict_blocks(report)
    blocks += overlap_blocks(report)
    table = truncation_table(report)
    if table:
        blocks.append(table)
    warnings = [str(w) for w in report.get("warnings") or []]
    blocks.append(ListBlock(warnings, caption="Warnings") if warnings else NoteBlock("No data warnings."))
    return blocks
