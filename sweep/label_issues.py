"""The annotation audit's computation (no torch): out-of-fold probabilities from fixed features, and the examples
whose labels most likely need a second look, ranked by confident learning (the `cleanlab` library).

Each task plugs in its own cleanlab path as an entry of `ISSUE_FINDERS` (multi-label and token classification
have theirs in `cleanlab.multilabel_classification` and `cleanlab.token_classification`); a task without an entry
is refused by `audit_task_problem` in one line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_PAIRS = 10  # most-confused (given -> suggested) pairs summarised
DEFAULT_C = 1.0  # inverse regularisation of the per-fold logistic regression (see benchmarks/AUDIT.md)


@dataclass(frozen=True)
class LabelIssue:
    """One training example flagged as a likely label error: `index` is its position in the audited labels."""

    index: int
    given: int
    suggested: int
    quality: float  # cleanlab's label quality score (self-confidence: the probability of the given label); low = bad
    suggested_probability: float


@dataclass(frozen=True)
class ClassCount:
    """One class: its examples, how many of them are flagged, and cleanlab's estimate of its label noise."""

    label: int
    examples: int
    flagged: int
    estimated_noise: float  # cleanlab.dataset.rank_classes_by_label_quality's "Label Noise" (share of the class)


@dataclass(frozen=True)
class ConfusedLabels:
    """Flagged examples given label `given` whose out-of-sample prediction is `suggested`."""

    given: int
    suggested: int
    count: int


@dataclass(frozen=True)
class LabelIssues:
    """The flagged examples (worst first), every class's counts, and the label pairs that explain them."""

    issues: list[LabelIssue]
    classes: list[ClassCount]
    pairs: list[ConfusedLabels]
    examples: int
    accuracy: float  # out-of-fold accuracy of the predictions the ranking rests on


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fold_problems(labels: Sequence[str], folds: int) -> list[tuple[str, str]]:
    """Why K-fold cross-validation cannot give every example an out-of-sample prediction (empty when it can).

    Stratified folds need every class in every fold: at least `folds` examples of each class.
    """
    if folds < 2:
        return [("--folds", f"must be at least 2, got {folds}")]
    counts = Counter(labels)
    return [
        (
            "data.train",
            f"class {label!r} has {_plural(counts[label], 'example')}, fewer than --folds {folds}: lower --folds "
            "or add examples",
        )
        for label in sorted(counts, key=lambda name: (counts[name], name))
        if counts[label] < folds
    ]


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled, seeded (train, held-out) index pairs: every example is held out exactly once."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train, held) for train, held in splitter.split(np.zeros(len(labels)), labels)]


def linear_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    folds: int,
    seed: int,
    c: float = DEFAULT_C,
    on_fold: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Out-of-fold class probabilities (rows: examples, columns: classes) of a logistic regression per fold.

    Features are L2-normalised, as sentence-transformers normalises MiniLM's embeddings, so a dot product is the
    cosine similarity the encoder was trained for. `on_fold(k)` is called after fold k (0-based).
    """
    from sklearn.linear_model import LogisticRegression

    norms = np.linalg.norm(features, axis=1, keepdims=True)
    x = features / np.where(norms > 0, norms, 1.0)
    probs = np.zeros((len(labels), num_classes), dtype=np.float64)
    for k, (train, held) in enumerate(fold_indices(labels, folds, seed)):
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(x[train], labels[train])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(x[held])
        if on_fold is not None:
            on_fold(k)
    return probs


def classification_issues(labels: np.ndarray, pred_probs: np.ndarray) -> LabelIssues:
    """Likely label errors of a single-label task (text classification, text pairs), worst first.

    `cleanlab.filter.find_label_issues` flags them (confident learning with `filter_by="both"`: flagged by both
    the per-class and the noise-rate pruning rule, which raised precision at the same recall on TREC-6 with frozen
    embeddings, see benchmarks/AUDIT.md) and ranks them by self-confidence;
    `cleanlab.rank.get_label_quality_scores` gives each its score and
    `cleanlab.dataset.rank_classes_by_label_quality` each class's estimated noise. The suggested label is the
    most probable label other than the given one.
    """
    from cleanlab.dataset import rank_classes_by_label_quality
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=int)
    num_classes = pred_probs.shape[1]
    ranked = find_label_issues(labels, pred_probs, filter_by="both", return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    others = pred_probs.copy()
    others[np.arange(len(labels)), labels] = -1.0
    suggested = others.argmax(axis=1)
    issues = [
        LabelIssue(
            index=int(i), given=int(labels[i]), suggested=int(suggested[i]), quality=float(quality[i]),
            suggested_probability=float(pred_probs[i, suggested[i]]),
        )
        for i in ranked
    ]  # fmt: skip
    noise = rank_classes_by_label_quality(labels, pred_probs)
    noise_of = dict(zip(noise["Class Index"].astype(int), noise["Label Noise"].astype(float), strict=True))
    flagged = Counter(issue.given for issue in issues)
    examples = Counter(labels.tolist())
    classes = [
        ClassCount(label=c, examples=examples[c], flagged=flagged[c], estimated_noise=noise_of.get(c, 0.0))
        for c in range(num_classes)
    ]
    return LabelIssues(
        issues=issues,
        classes=classes,
        pairs=confused_labels(issues),
        examples=len(labels),
        accuracy=float((pred_probs.argmax(axis=1) == labels).mean()) if len(labels) else 0.0,
    )


def confused_labels(issues: Sequence[LabelIssue], limit: int = MAX_PAIRS) -> list[ConfusedLabels]:
    """(given, suggested) pairs of the flagged examples, most first (ties: label order)."""
    counts = Counter((issue.given, issue.suggested) for issue in issues)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [ConfusedLabels(given=g, suggested=s, count=n) for (g, s), n in ordered[:limit]]


IssueFinder = Callable[[Any, np.ndarray], LabelIssues]
# task -> its cleanlab path. Multi-label (cleanlab.multilabel_classification.filter.find_label_issues) and token
# classification (cleanlab.token_classification.filter.find_label_issues) add theirs here with their tasks.
ISSUE_FINDERS: dict[str, IssueFinder] = {
    "text-classification": classification_issues,
    "text-pair": classification_issues,
}


def audit_task_problem(task: str) -> tuple[str, str] | None:
    """Why `sweep audit` cannot audit a study of `task` (None when it can)."""
    if task in ISSUE_FINDERS:
        return None
    return ("task", f"the annotation audit has no cleanlab path for task: {task} yet "
                    f"(available: {', '.join(ISSUE_FINDERS)})")  # fmt: skip
