"""Per-class results ordered by what a user acts on: the weakest classes first, the most-confused label pairs,
then the whole confusion matrix normalised by row.

`collect`-style functions take plain data (the per-class dict and confusion matrix a trial records, label
names) and return dataclasses; `*_table` / `class_blocks` turn them into report blocks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reports.blocks import Block, FigureBlock, NoteBlock, TableBlock, score
from reports.figures import ConfusionData, plot_confusion

MAX_PAIRS = 10  # most-confused pairs listed
MAX_MATRIX_CLASSES = 100  # above this many classes the full matrix is left out: the pairs table stands in for it
MAX_EXAMPLE_CHARS = 160


@dataclass(frozen=True)
class ClassScore:
    """One class's scores at the best epoch (None where the trial did not record one)."""

    label: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int | None


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def classes_by_f1(per_class: Mapping[str, Any], label_names: Sequence[str] = ()) -> list[ClassScore]:
    """Every class of `per_class` (label -> {precision, recall, f1, support}), lowest F1 first.

    Ties keep label order (`label_names`, then any other labels as recorded); classes without an F1 come last, and
    so do classes absent from validation (support 0: their 0 says nothing about the model, and averages leave them
    out).
    """
    order = [n for n in label_names if n in per_class] + [n for n in per_class if n not in label_names]
    scores = []
    for name in order:
        row = per_class[name] if isinstance(per_class[name], Mapping) else {}
        support = _number(row.get("support"))
        scores.append(ClassScore(label=str(name), precision=_number(row.get("precision")),
                                 recall=_number(row.get("recall")), f1=_number(row.get("f1")),
                                 support=int(support) if support is not None else None))
    position = {score.label: i for i, score in enumerate(scores)}
    return sorted(scores, key=lambda s: (s.f1 is None or s.support == 0, s.f1 if s.f1 is not None else 0.0,
                                         position[s.label]))  # fmt: skip


def shown_label(score: ClassScore) -> str:
    """A class's name in a per-class table; one absent from validation says so."""
    return f"{score.label} (not in validation)" if score.support == 0 else score.label


@dataclass(frozen=True)
class ConfusedPair:
    """Validation rows of class `given` predicted as `predicted`; `share` is their part of `given`'s rows."""

    given: str
    predicted: str
    count: int
    share: float
    example: str | None = None


def shorten(text: str, limit: int = MAX_EXAMPLE_CHARS) -> str:
    """`text` cut to at most `limit` characters, the last of them an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def row_shares(matrix: Sequence[Sequence[int]]) -> list[list[float]]:
    """Each row divided by its sum (rows = true labels); an empty row stays all zero."""
    return [[c / sum(row) if sum(row) else 0.0 for c in row] for row in matrix]


def confused_pairs(
    matrix: Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    limit: int = MAX_PAIRS,
    examples: Mapping[tuple[str, str], str] | None = None,
) -> list[ConfusedPair]:
    """The off-diagonal cells with the most rows (rows = given label, columns = predicted), most first.

    Ties go to the larger share of the given class, then to label order. `examples` maps (given, predicted) to
    one validation text of that pair (a trial records them: `TrialRecord.confused_examples`), cut to
    `MAX_EXAMPLE_CHARS`.
    """
    shares = row_shares(matrix)
    cells = [(count, shares[i][j], i, j) for i, row in enumerate(matrix) for j, count in enumerate(row)
             if i != j and count > 0]
    cells.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
    pairs = []
    for count, share, i, j in cells[:limit]:
        example = (examples or {}).get((labels[i], labels[j]))
        example = shorten(example) if example is not None else None
        pairs.append(ConfusedPair(given=labels[i], predicted=labels[j], count=int(count), share=share, example=example))
    return pairs


def per_class_table(number: int, scores: Sequence[ClassScore]) -> TableBlock:
    """Precision, recall, F1 and support per class, in the order given (lowest F1 first from `classes_by_f1`)."""
    rows = [[shown_label(s), score(s.precision), score(s.recall), score(s.f1), s.support] for s in scores]
    return TableBlock(columns=["label", "precision", "recall", "F1", "support"], rows=rows,
                      caption=f"Per-class scores of trial {number} at its best epoch, lowest F1 first")


def confused_pairs_table(number: int, pairs: Sequence[ConfusedPair]) -> TableBlock:
    """given → predicted, count, share of the given class (and an example text when any pair has one)."""
    with_examples = any(p.example is not None for p in pairs)
    rows = [[f"{p.given} → {p.predicted}", p.count, f"{p.share:.1%}", *([p.example or "-"] if with_examples else [])]
            for p in pairs]
    columns = ["given → predicted", "rows", "share of given", *(["example text"] if with_examples else [])]
    return TableBlock(columns=columns, rows=rows,
                      caption=f"Most-confused label pairs of trial {number} at its best epoch, most rows first")


def class_blocks(
    number: int,
    per_class: Mapping[str, Any],
    label_names: Sequence[str],
    confusion: ConfusionData | None,
    *,
    examples: Mapping[tuple[str, str], str] | None = None,
) -> list[Block]:
    """A trial's per-class table (weakest first), its most-confused pairs, then its row-normalised matrix."""
    blocks: list[Block] = []
    scores = classes_by_f1(per_class, label_names)
    blocks.append(per_class_table(number, scores) if scores else
                  NoteBlock(f"Trial {number} recorded no per-class scores.", missing=True))
    if confusion is None:
        blocks.append(NoteBlock(f"Trial {number} recorded no confusion matrix.", missing=True))
        return blocks
    pairs = confused_pairs(confusion.matrix, confusion.labels, examples=examples)
    blocks.append(confused_pairs_table(number, pairs) if pairs else
                  NoteBlock(f"Trial {number} confused no two labels at its best epoch."))
    classes = len(confusion.labels)
    if classes > MAX_MATRIX_CLASSES:
        blocks.append(NoteBlock(f"The confusion matrix of {classes} classes is left out: above {MAX_MATRIX_CLASSES} "
                                "classes it cannot be read; the most-confused pairs above are its largest "
                                "off-diagonal cells.", missing=True))
    else:
        blocks.append(FigureBlock("confusion-matrix", plot_confusion(confusion),
                                  caption="Colour: share of each true label's rows, so a small class's errors show "
                                  "as clearly as a large one's; hover a cell for its count."))
    return blocks
