"""Classification metrics as plain, JSON-serialisable numbers (a pure function over label ids)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

AVERAGES = ("macro", "micro", "weighted")


def _as_label_ids(values: Sequence[int] | np.ndarray, name: str, num_labels: int) -> np.ndarray:
    """Return `values` as a 1-D int array, rejecting ids outside `0 .. num_labels - 1`."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer label ids, got dtype {array.dtype}")
    array = array.astype(np.int64)
    bad = array[(array < 0) | (array >= num_labels)]
    if bad.size:
        raise ValueError(f"{name} must lie in 0..{num_labels - 1} (one per label name), got {int(bad[0])}")
    return array


def classification_metrics(
    preds: Sequence[int] | np.ndarray,
    targets: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
    positive: int | None = None,
) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 (macro, micro, weighted), per-class scores and the confusion matrix; with
    `positive` (a label id) also `precision_binary`, `recall_binary` and `f1_binary`: that class's own scores, as
    scikit-learn's average="binary" with pos_label gives them.

    Every label id in `range(len(label_names))` counts, whether or not it occurs in `preds` or
    `targets`; an undefined ratio (a class never predicted, or never present) scores 0.
    Confusion-matrix rows are true label ids, columns predicted ids.
    """
    num_labels = len(label_names)
    if num_labels == 0:
        raise ValueError("label_names must not be empty")
    if len(set(label_names)) != num_labels:
        raise ValueError(f"label_names must be unique, got {list(label_names)}")
    y_pred = _as_label_ids(preds, "preds", num_labels)
    y_true = _as_label_ids(targets, "targets", num_labels)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"preds and targets must have the same length, got {len(y_pred)} and {len(y_true)}")
    if y_true.size == 0:
        raise ValueError("classification_metrics needs at least one prediction, got none")

    # One per-class pass, averaged here as scikit-learn averages it (macro: the plain mean, weighted: by support, the
    # same numpy calls, so the same floats); micro keeps scikit-learn's own call. Every evaluation of every trial runs
    # this: four calls fewer is about 6 ms an evaluation.
    labels = list(range(num_labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    result: dict[str, Any] = {"accuracy": float(np.average(y_true == y_pred))}  # accuracy_score's own reduction
    for average in AVERAGES:
        if average == "micro":
            values = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="micro", zero_division=0)
        else:
            weights = support if average == "weighted" else None
            values = tuple(np.average(v, weights=weights) for v in (precision, recall, f1)) + (None,)
        result[f"precision_{average}"] = float(values[0])
        result[f"recall_{average}"] = float(values[1])
        result[f"f1_{average}"] = float(values[2])

    if positive is not None:
        if not 0 <= positive < num_labels:
            raise ValueError(f"positive must be a label id in [0, {num_labels}), got {positive}")
        result["precision_binary"] = float(precision[positive])
        result["recall_binary"] = float(recall[positive])
        result["f1_binary"] = float(f1[positive])
    result["per_class"] = {
        str(name): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }
    result["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return result
