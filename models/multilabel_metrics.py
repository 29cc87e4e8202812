"""Multi-label metrics and the decision threshold tuned on validation (pure functions, plain numbers out).

A label is predicted when its sigmoid score is `>= threshold`. The threshold is chosen on the same validation set the
metrics are reported on, so those metrics are optimistic by the tuning; `f1_micro_at_0.5` is reported beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

# Candidate thresholds: 0.05, 0.10, ..., 0.95.
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
DEFAULT_THRESHOLD = 0.5
THRESHOLD_MODES = ("global", "per-label")
AVERAGES = ("micro", "macro")


def _arrays(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """`scores` (rows x labels, in [0, 1]) and `targets` (0/1, same shape) as arrays; ValueError on a mismatch."""
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores and targets must be matrices of one shape, got {s.shape} and {t.shape}")
    if s.shape[0] == 0:
        raise ValueError("multi-label metrics need at least one row, got none")
    return s, (t > 0.5).astype(np.int64)


def predict(scores: Any, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """0/1 predictions: score >= threshold (one value, or one per label)."""
    s = np.asarray(scores, dtype=np.float64)
    return (s >= np.asarray(thresholds, dtype=np.float64)).astype(np.int64)


def measured_labels(targets: np.ndarray) -> list[int]:
    """The label columns with at least one positive row: macro-F1 averages over these (an absent label's F1 is
    undefined, and counting it as 0 or 1 would say more about the split than about the model)."""
    return [int(i) for i in np.flatnonzero(targets.sum(axis=0) > 0)]


def f1(predictions: np.ndarray, targets: np.ndarray, average: str) -> float:
    """Micro-F1 over every label, or macro-F1 over the measured labels (see `measured_labels`)."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
    labels = measured_labels(targets) if average == "macro" else None
    if labels == []:
        return 0.0
    return float(f1_score(targets, predictions, average=average, labels=labels, zero_division=0))


def _closest_to_default(candidates: Sequence[float], values: Sequence[float]) -> float:
    """The candidate with the highest value; ties go to the one closest to 0.5 (then the lower one)."""
    best = max(values)
    tied = [c for c, v in zip(candidates, values, strict=True) if np.isclose(v, best, rtol=0, atol=1e-12)]
    return min(tied, key=lambda c: (abs(c - DEFAULT_THRESHOLD), c))


def best_threshold(
    scores: Any, targets: Any, *, average: str = "micro", grid: Sequence[float] = THRESHOLD_GRID
) -> float:
    """The one threshold of `grid` that maximises `average` F1 (ties: closest to 0.5)."""
    s, t = _arrays(scores, targets)
    return _closest_to_default(grid, [f1(predict(s, c), t, average) for c in grid])


def per_label_thresholds(
    scores: Any, targets: Any, *, fallback: float, average: str = "micro", grid: Sequence[float] = THRESHOLD_GRID,
    passes: int = 2,
) -> list[float]:
    """One threshold per label, chosen for the objective `average` F1, never below what `fallback` (the tuned global
    threshold) gives: labels without a positive validation row keep `fallback`.

    Macro-F1 is a mean of the labels' own F1s, so each label takes the value that maximises its F1 (ties: closest to
    0.5). Micro-F1 pools every label's counts: a label's own best threshold can flood the pool with false positives
    (a weak label's F1 peaks at a low threshold), so, starting from `fallback` everywhere, each label in turn takes
    the grid value that raises the pooled micro-F1 most given the others (`passes` rounds; a value changes only on a
    strict gain, so the result scores at least the global threshold's micro-F1 on these rows)."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
    s, t = _arrays(scores, targets)
    values = np.asarray(grid, dtype=np.float64)
    measured: np.ndarray = np.asarray(t.any(axis=0))
    predicted = s[:, :, None] >= values[None, None, :]  # rows x labels x candidates
    positive = t.astype(bool)[:, :, None]
    tp = (predicted & positive).sum(axis=0)  # labels x candidates
    fp = (predicted & ~positive).sum(axis=0)
    fn = t.sum(axis=0)[:, None] - tp
    if average == "macro":
        with np.errstate(divide="ignore", invalid="ignore"):
            own = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        return [_closest_to_default(grid, own[j].tolist()) if measured[j] else float(fallback)
                for j in range(s.shape[1])]  # fmt: skip
    start = int(np.argmin(np.abs(values - fallback)))
    chosen = np.full(s.shape[1], start)
    labels = np.arange(s.shape[1])
    pooled = np.array([tp[labels, chosen].sum(), fp[labels, chosen].sum(), fn[labels, chosen].sum()])
    for _ in range(passes):
        changed = False
        for j in np.flatnonzero(measured):
            rest = pooled - np.array([tp[j, chosen[j]], fp[j, chosen[j]], fn[j, chosen[j]]])
            total_tp, total_fp, total_fn = rest[0] + tp[j], rest[1] + fp[j], rest[2] + fn[j]
            with np.errstate(divide="ignore", invalid="ignore"):
                f1s = np.where(2 * total_tp + total_fp + total_fn > 0,
                               2 * total_tp / (2 * total_tp + total_fp + total_fn), 0.0)  # fmt: skip
            # ties go to the global value, else to the value nearest it: the first of the tied grid values (0.10
            # where 0.10 ... 0.95 all predict nothing) moved a label away without any gain
            ties = np.flatnonzero(f1s >= f1s.max() - 1e-12)
            best = start if start in ties else int(ties[np.argmin(np.abs(values[ties] - fallback))])
            if f1s[best] > f1s[chosen[j]] + 1e-12 or (best == start and chosen[j] != start
                                                      and f1s[best] >= f1s[chosen[j]] - 1e-12):
                chosen[j], changed = best, True
                pooled = rest + np.array([tp[j, best], fp[j, best], fn[j, best]])
        if not changed:
            break
    return [float(fallback) if not measured[j] or chosen[j] == start else float(values[chosen[j]])
            for j in range(s.shape[1])]  # fmt: skip


def multilabel_metrics(
    scores: Any, targets: Any, label_names: Sequence[str], thresholds: float | Sequence[float]
) -> dict[str, Any]:
    """F1 / precision / recall (micro over all labels, macro over measured labels) at `thresholds`, micro-F1 at 0.5,
    the exact-match ratio, and per-label precision / recall / F1 / support (support: validation rows with the label).
    """
    s, t = _arrays(scores, targets)
    if s.shape[1] != len(label_names):
        raise ValueError(f"scores have {s.shape[1]} label columns for {len(label_names)} label names")
    p = predict(s, thresholds)
    result: dict[str, Any] = {}
    for average in AVERAGES:
        labels = measured_labels(t) if average == "macro" else None
        precision, recall, _, _ = precision_recall_fscore_support(
            t, p, average=average, labels=labels or None, zero_division=0
        )
        result[f"f1_{average}"] = f1(p, t, average)
        result[f"precision_{average}"] = float(precision)
        result[f"recall_{average}"] = float(recall)
    result["f1_micro_at_0.5"] = f1(predict(s, DEFAULT_THRESHOLD), t, "micro")
    result["exact_match"] = float((p == t).all(axis=1).mean())
    precision, recall, f1s, support = precision_recall_fscore_support(t, p, average=None, zero_division=0)
    result["per_class"] = {
        str(name): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1s[i]),
                    "support": int(support[i])}
        for i, name in enumerate(label_names)
    }  # fmt: skip
    return result


def tuned_metrics(
    scores: Any, targets: Any, label_names: Sequence[str], *, average: str = "micro", mode: str = "global"
) -> dict[str, Any]:
    """Choose the threshold(s) on these rows, then measure: `multilabel_metrics` plus `threshold` (the global value)
    and, in per-label mode, `thresholds` ({label: value})."""
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"mode must be one of {', '.join(THRESHOLD_MODES)}, got {mode!r}")
    threshold = best_threshold(scores, targets, average=average)
    if mode == "global":
        return {**multilabel_metrics(scores, targets, label_names, threshold), "threshold": threshold}
    chosen = per_label_thresholds(scores, targets, fallback=threshold, average=average)
    return {
        **multilabel_metrics(scores, targets, label_names, chosen),
        "threshold": threshold,
        "thresholds": {str(name): value for name, value in zip(label_names, chosen, strict=True)},
    }
