"""The annotation audit of `task: regression` (a text or a pair of texts -> a score): training examples whose given
score is far from what the rest of the data predicts for them.

- Folds: shuffled, seeded K-fold, stratified on quantile bins of the score when every bin fills every fold (so each
  fold spans the score range), plain K-fold otherwise.
- Probe (`--method embeddings`): a ridge regression (`sklearn.linear_model.RidgeCV`, its penalty chosen per fold by
  efficient leave-one-out) on the L2-normalised frozen-encoder embeddings; a pair is embedded as the study encodes
  it (one `[CLS] a [SEP] b [SEP]` sequence).
- Fine-tuned predictions (`--method finetune`): the regressor's output, which is the score on the data's own scale
  (`models.regressor.SequenceRegressor` trains on raw scores: nothing to unscale).
- cleanlab: the label quality of each example is `cleanlab.regression.rank.get_label_quality_scores(labels,
  predictions)` (its default OUTRE score), and the examples flagged are those of cleanlab's rule for out-of-sample
  predictions, `Datalab(task="regression").find_issues(pred_probs=predictions)`: a quality below 0.05 x the median
  quality. Datalab computes the quality with that same function, so it is called once. (cleanlab's
  `regression.learn.CleanLearning.find_label_issues` chooses the flagged share by refitting its own model many
  times, so it cannot take a fine-tuned encoder's predictions; the Datalab rule serves both methods alike.)
- Shown: given and predicted scores as numbers; per "class" a score bin (a few equal-width bins with round edges,
  such as [0, 1) ... [4, 5]) with its examples and flagged share; pairs: given bin -> predicted bin. The fit is the
  out-of-fold Spearman correlation of predictions and given scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from record.audit import SCORE_BIN
from sweep.label_issues import (
    AUDIT_TASKS,
    AuditTask,
    ClassCount,
    LabelIssue,
    LabelIssues,
    Splits,
    confused_labels,
    normalised,
)

if TYPE_CHECKING:
    from datamodules import PreparedData

FIT_NAME = "Spearman"
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))  # RidgeCV's candidate penalties
MAX_STRATA = 10  # quantile bins of the score the folds are stratified on, at most
SCORE_BINS = 5  # about this many equal-width bins in the per-bin table
MIN_DECIMALS = 2  # scores are shown with at least 2 decimals ("4.20"), more when they span less than 1


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- labels and folds ------------------------------------------------------------------------------------------


def score_labels(data: PreparedData) -> np.ndarray:
    """The given training scores as floats (row i = `data.train[i]`)."""
    return np.asarray(data.train["labels"], dtype=np.float64)


def score_fold_problems(scores: Sequence[float], folds: int) -> list[tuple[str, str]]:
    """Why K-fold cross-validation cannot give every example an out-of-sample prediction (empty when it can): each
    fold needs an example to hold out."""
    if folds < 2:
        return [("--folds", f"must be at least 2, got {folds}")]
    if len(scores) < folds:
        return [("data.train", f"{_plural(len(scores), 'training example')}, fewer than --folds {folds}: lower "
                               "--folds or add examples")]  # fmt: skip
    return []


def score_strata(scores: np.ndarray, folds: int) -> np.ndarray | None:
    """Each score's quantile bin (as many bins as fit, up to MAX_STRATA, each with at least `folds` examples), or
    None when not even 2 such bins exist."""
    n_bins = min(MAX_STRATA, len(scores) // folds)
    while n_bins >= 2:
        edges = np.unique(np.quantile(scores, np.linspace(0, 1, n_bins + 1))[1:-1])
        strata = np.searchsorted(edges, scores, side="right")
        counts = np.bincount(strata)
        if len(counts) >= 2 and counts.min() >= folds:
            return strata
        n_bins -= 1
    return None


def score_folds(scores: np.ndarray, folds: int, seed: int) -> Splits:
    """Shuffled, seeded (train, held-out) index pairs, stratified on score quantiles when possible: every example
    is held out exactly once."""
    from sklearn.model_selection import KFold, StratifiedKFold

    rows = np.zeros(len(scores))
    strata = score_strata(np.asarray(scores, dtype=np.float64), folds)
    if strata is None:
        return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(rows))
    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(rows, strata))


# --- the probe and the fine-tuned predictions --------------------------------------------------------------------


def ridge_predictions(
    features: np.ndarray, scores: np.ndarray, splits: Splits, on_fold: Callable[[int], None] | None = None
) -> np.ndarray:
    """Out-of-fold predicted scores of a ridge regression per fold on the L2-normalised features (its penalty
    chosen among RIDGE_ALPHAS by leave-one-out on the fold's training rows); `on_fold(k)` after fold k."""
    from sklearn.linear_model import RidgeCV

    x = normalised(np.asarray(features, dtype=np.float64))
    y = np.asarray(scores, dtype=np.float64)
    predictions = np.full(len(y), np.nan)
    for k, (train, held) in enumerate(splits):
        model = RidgeCV(alphas=RIDGE_ALPHAS)
        model.fit(x[train], y[train])
        predictions[held] = model.predict(x[held])
        if on_fold is not None:
            on_fold(k)
    return predictions


def _probe(
    features: np.ndarray, scores: np.ndarray, _data: PreparedData, splits: Splits, on_fold: Callable[[int], None]
) -> np.ndarray:
    return ridge_predictions(features, scores, splits, on_fold)


def _predicted_scores(module: Any, batches: Any) -> list[float]:
    """A fine-tuned regressor's predicted scores, one per example (its output is on the scores' own scale)."""
    out: list[float] = []
    for _batch, predictions in batches(module):
        out.extend(float(p) for p in predictions.float().reshape(-1).cpu().numpy())
    return out


def _collect(items: list[Any], _data: PreparedData) -> np.ndarray:
    return np.asarray(items, dtype=np.float64)


# --- cleanlab ----------------------------------------------------------------------------------------------------


def score_decimals(scores: np.ndarray) -> int:
    """Decimals that tell the scores apart: 2 for a span of 1 or more, one more per tenfold narrower span."""
    spread = float(np.max(scores) - np.min(scores)) if len(scores) else 0.0
    if spread <= 0 or not math.isfinite(spread):
        return MIN_DECIMALS
    return max(MIN_DECIMALS, MIN_DECIMALS - math.floor(math.log10(spread)))


def bin_edges(scores: np.ndarray, bins: int = SCORE_BINS) -> np.ndarray:
    """About `bins` equal-width bins with round edges covering the scores (0-5 gives 0, 1, 2, 3, 4, 5)."""
    low, high = float(np.min(scores)), float(np.max(scores))
    if high <= low:
        return np.array([low, low + 1.0])
    raw = (high - low) / bins
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw * (1 - 1e-9))
    start = math.floor(low / step + 1e-9) * step
    count = max(1, math.ceil((high - start) / step - 1e-9))
    return np.round(start + step * np.arange(count + 1), 10)


def bin_labels(edges: np.ndarray) -> list[str]:
    """'[a, b)' per bin, the last one closed: '[a, b]'."""
    last = len(edges) - 2
    return [f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == last else ')'}" for i in range(len(edges) - 1)]


def bin_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bin; values beyond the edges (a prediction outside the given scores' range) count in the
    nearest bin."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def spearman(predictions: np.ndarray, scores: np.ndarray) -> float:
    """Spearman's rho of predictions and given scores; 0.0 where it is undefined (a constant side)."""
    import warnings

    from scipy import stats

    if len(scores) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = float(stats.spearmanr(predictions, scores).statistic)
    return rho if math.isfinite(rho) else 0.0


def cleanlab_flags(scores: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label quality, flagged mask) of cleanlab's regression path for out-of-sample predictions.

    `Datalab(task="regression").find_issues(pred_probs=predictions)`: each example's quality is
    `cleanlab.regression.rank.get_label_quality_scores(scores, predictions)` and an example is flagged when its
    quality is below Datalab's threshold (0.05) times the median quality.
    """
    from cleanlab import Datalab

    lab = Datalab(data={"score": scores.tolist()}, label_name="score", task="regression", verbosity=0)
    lab.find_issues(pred_probs=predictions, issue_types={"label": {}})
    found = lab.get_issues("label")
    return found["label_score"].to_numpy(dtype=np.float64), found["is_label_issue"].to_numpy(dtype=bool)


def regression_issues(scores: np.ndarray, predictions: np.ndarray) -> LabelIssues:
    """Likely wrong scores, worst (lowest label quality) first, from out-of-fold predicted scores.

    Given and suggested are the given and the predicted score as numbers; the per-bin table counts each score bin's
    examples and flagged examples (its `estimated_noise` is the flagged share: cleanlab's regression path gives no
    separate estimate); the pairs are (given bin -> predicted bin) of the flagged examples whose prediction lies in
    another bin.
    """
    scores = np.asarray(scores, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if scores.shape != predictions.shape:
        raise ValueError(f"scores and predictions differ in shape: {scores.shape} != {predictions.shape}")
    quality, flagged = cleanlab_flags(scores, predictions)
    ranked = sorted(np.flatnonzero(flagged).tolist(), key=lambda i: (quality[i], i))
    decimals = score_decimals(scores)
    issues = [
        LabelIssue(index=int(i), given=f"{scores[i]:.{decimals}f}", suggested=f"{predictions[i]:.{decimals}f}",
                   quality=float(quality[i]), suggested_probability=math.nan)
        for i in ranked
    ]  # fmt: skip
    edges = bin_edges(scores)
    names = bin_labels(edges)
    given_bin, predicted_bin = bin_of(scores, edges), bin_of(predictions, edges)
    examples = Counter(given_bin.tolist())
    flagged_in = Counter(int(given_bin[issue.index]) for issue in issues)
    classes = [
        ClassCount(label=name, examples=examples[b], flagged=flagged_in[b],
                   estimated_noise=flagged_in[b] / examples[b] if examples[b] else 0.0)
        for b, name in enumerate(names)
    ]  # fmt: skip
    moved = [dataclasses.replace(issue, given=names[given_bin[issue.index]],
                                 suggested=names[predicted_bin[issue.index]])
             for issue in issues if given_bin[issue.index] != predicted_bin[issue.index]]  # fmt: skip
    return LabelIssues(issues=issues, classes=classes, pairs=confused_labels(moved), examples=len(scores),
                       accuracy=spearman(predictions, scores), fit_name=FIT_NAME, class_name=SCORE_BIN)  # fmt: skip


REGRESSION = AuditTask(
    labels=score_labels,
    label_kind="score",
    fold_problems=lambda _data, scores, folds: score_fold_problems(scores, folds),
    splits=score_folds,
    probe=_probe,
    predict=_predicted_scores,
    collect=_collect,
    find=lambda scores, predictions, _data: regression_issues(scores, predictions),
)
AUDIT_TASKS["regression"] = REGRESSION
