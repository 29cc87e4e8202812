"""Entity-level metrics for token classification (seqeval), and word tags stitched back from windowed rows.

Pure functions over plain lists; numbers out are plain floats and ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

IGNORE_INDEX = -100


def entity_metrics(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], entity_types: Sequence[str] = ()
) -> dict[str, Any]:
    """Entity-level precision / recall / F1 (micro over entities, and F1 macro over entity types) with seqeval's
    default (conlleval) mode, and per-type {precision, recall, f1, support}.

    An entity counts as found only when its type and its whole span match. In conlleval mode an I-X that follows O
    or another type starts an entity, as the token-classification pipeline's "simple" aggregation reads it. The macro
    average is over the types in the gold or predicted tags (seqeval's rule); `per_class` lists `entity_types` too
    (zeros for a type absent from both), in sorted order. Undefined ratios score 0.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"true and predicted sentences differ in number: {len(true_tags)} != {len(pred_tags)}")
    for i, (gold, pred) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {i}: {len(gold)} true tags but {len(pred)} predicted")
    y_true, y_pred = [list(s) for s in true_tags], [list(s) for s in pred_tags]
    result: dict[str, Any] = {
        "f1_micro": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "precision_micro": float(precision_score(y_true, y_pred, average="micro", zero_division=0)),
        "recall_micro": float(recall_score(y_true, y_pred, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    found = _types(y_true + y_pred)
    per_type = {
        kind: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for kind, p, r, f, n in zip(found, precision, recall, f1, support, strict=True)
    }
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    result["per_class"] = {kind: per_type.get(kind, dict(zero)) for kind in sorted({*found, *entity_types})}
    result["entities"] = int(sum(support))
    return result


def _types(sentences: Sequence[Sequence[str]]) -> list[str]:
    """The entity types seqeval reports on, in its (sorted) order."""
    from seqeval.metrics.sequence_labeling import get_entities

    return sorted({kind for kind, _, _ in get_entities([list(s) for s in sentences])})


def word_tags(
    rows: Sequence[int],
    labels: Sequence[Sequence[int]],
    preds: Sequence[Sequence[int]],
    label_names: Sequence[str],
    sentences: Sequence[int] | None = None,
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted word tags per sentence, from validation rows in any order.

    `labels[i]` / `preds[i]` are the token label ids and argmax predictions of row `rows[i]`; only positions whose
    label is not IGNORE_INDEX (each word's first sub-token) count, so predictions on later sub-tokens are dropped.
    `sentences[row]` is the sentence a row belongs to (a long sentence is several windows, consecutive rows in
    order); without it each row is a sentence. Sentences come back in order of their first row.
    """
    gold: dict[int, list[str]] = {}
    predicted: dict[int, list[str]] = {}
    for i in sorted(range(len(rows)), key=lambda i: rows[i]):
        sentence = sentences[rows[i]] if sentences is not None else rows[i]
        kept = [(label, pred) for label, pred in zip(labels[i], preds[i], strict=True) if label != IGNORE_INDEX]
        gold.setdefault(sentence, []).extend(label_names[label] for label, _ in kept)
        predicted.setdefault(sentence, []).extend(label_names[pred] for _, pred in kept)
    return list(gold.values()), list(predicted.values())
