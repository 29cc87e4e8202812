"""The annotation audit's computation (no torch): out-of-fold probabilities from fixed features, and the examples
whose labels most likely need a second look, ranked by confident learning (the `cleanlab` library).

Each task plugs in its own audit path as an `AuditTask` in `AUDIT_TASKS`: the given labels in the form cleanlab
takes them, its folds, its probe on frozen embeddings, its fine-tuned predictions and its cleanlab call (multi-label
and token classification have theirs in `cleanlab.multilabel_classification` and `cleanlab.token_classification`,
regression in `cleanlab.regression`). A task without one is refused by `audit_task_problem` in one line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from datamodules import PreparedData

MAX_PAIRS = 10  # most-confused (given -> suggested) pairs summarised
DEFAULT_C = 1.0  # inverse regularisation of the per-fold logistic regression (see benchmarks/AUDIT.md)


@dataclass(frozen=True)
class LabelIssue:
    """One training example flagged as a likely label error: `index` is its position in the audited labels."""

    index: int
    given: str  # the given label as a reader sees it (a class name; a multi-label set, a value, a token's tag)
    suggested: str  # what the out-of-sample prediction says instead
    quality: float  # cleanlab's label quality score (self-confidence: the probability of the given label); low = bad
    suggested_probability: float  # how sure the prediction is of `suggested` (NaN where it has no probability)
    position: int | None = None  # token classification: the word of the example whose tag is suspect


@dataclass(frozen=True)
class ClassCount:
    """One class: its examples, how many of them are flagged, and cleanlab's estimate of its label noise."""

    label: str
    examples: int
    flagged: int
    estimated_noise: float  # cleanlab.dataset.rank_classes_by_label_quality's "Label Noise" (share of the class)


@dataclass(frozen=True)
class ConfusedLabels:
    """Flagged examples given label `given` whose out-of-sample prediction is `suggested`."""

    given: str
    suggested: str
    count: int


@dataclass(frozen=True)
class LabelIssues:
    """The flagged examples (worst first), every class's counts, and the label pairs that explain them."""

    issues: list[LabelIssue]
    classes: list[ClassCount]
    pairs: list[ConfusedLabels]
    examples: int
    accuracy: float  # how well the out-of-fold predictions the ranking rests on fit the given labels (`fit_name`)
    fit_name: str = "accuracy"
    # multi-label: the threshold `accuracy` (micro-F1) is taken at, the best of the grid for these predictions
    fit_threshold: float | None = None
    class_name: str = "class"  # what a row of `classes` is (task: regression: a score bin)
    unit: str = "example"  # what `examples` counts and an issue is: an example; a word (token classification)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


MAX_FOLD_LINES = 4  # more classes or labels than this too small for the folds are said in one line


def few_named(names: Sequence[str], counts: Mapping[str, int], shown: int = 4) -> str:
    """'ABBR' 8, 'ENTY' 12, ... : the first `shown` of `names` with their counts."""
    listed = ", ".join(f"{name!r} {counts[name]}" for name in names[:shown])
    return listed + (f", and {len(names) - shown} more" if len(names) > shown else "")


def fold_problems(labels: Sequence[str], folds: int) -> list[tuple[str, str]]:
    """Why K-fold cross-validation cannot give every example an out-of-sample prediction (empty when it can).

    Stratified folds need every class in every fold: at least `folds` examples of each class.
    """
    if folds < 2:
        return [("--folds", f"must be at least 2, got {folds}")]
    counts = Counter(labels)
    short = sorted((name for name in counts if counts[name] < folds), key=lambda name: (counts[name], name))
    lowest = min((counts[name] for name in counts if counts[name] >= 2), default=None)  # the --folds that would do
    fix = f"--folds {lowest} or add examples" if lowest is not None and lowest < folds else "add examples"
    if len(short) > MAX_FOLD_LINES:  # one line, not one per class (`--folds 100` printed a line for each)
        use = f"use {fix}" if lowest is not None and lowest < folds else fix
        if lowest is not None and lowest < folds and any(counts[name] < 2 for name in short):
            use += " (a class with 1 example needs more at any --folds)"
        return [("--folds" if len(short) == len(counts) else "data.train",
                 f"{len(short)} of {len(counts)} classes have fewer training examples than --folds {folds} "
                 f"({few_named(short, counts)}): {use}")]  # fmt: skip
    return [
        (
            "data.train",
            f"class {label!r} has {_plural(counts[label], 'training example')}, fewer than --folds {folds}: "
            + (fix if counts[label] >= 2 else "an out-of-fold check needs at least 2 of each class (one learns, one "
               "is held out): add examples"),
        )
        for label in short
    ]  # fmt: skip


Splits = list[tuple[np.ndarray, np.ndarray]]  # (train, held-out) row indices per fold


def too_small_classes(labels: Sequence[str], folds: int) -> dict[str, int]:
    """The classes with fewer examples than `folds` (stratified folds cannot hold each out once), with their counts,
    fewest first: a single-label audit leaves them out when at least two classes remain (`kept_rows`)."""
    counts = Counter(labels)
    return {name: counts[name] for name in sorted(counts, key=lambda n: (counts[n], n)) if counts[name] < folds}


def kept_rows(labels: Sequence[str], left_out: Mapping[str, int]) -> np.ndarray | None:
    """The rows a single-label audit checks once `left_out` classes are set aside; None when it checks them all, or
    when fewer than two classes would remain (then nothing can be audited: `fold_problems` says why)."""
    if not left_out or len(set(labels) - set(left_out)) < 2:
        return None
    return np.flatnonzero([label not in left_out for label in labels])


def splits_of_rows(splits: Splits, rows: np.ndarray) -> Splits:
    """Folds made over a subset of rows (`rows[i]` is subset row i), as indices of all rows."""
    return [(rows[train], rows[held]) for train, held in splits]


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> Splits:
    """Stratified, shuffled, seeded (train, held-out) index pairs: every example is held out exactly once."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train, held) for train, held in splitter.split(np.zeros(len(labels)), labels)]


def mean_predictions(first: Any, second: Any) -> Any:
    """The mean of two methods' out-of-fold predictions of the same rows (arrays, or per-row lists of arrays as token
    classification has): cleanlab's advice for better predicted probabilities is an ensemble of models, and two
    models that err on different examples agree on a wrong label more rarely than either alone."""
    if isinstance(first, np.ndarray):
        return (first + np.asarray(second)) / 2.0
    return [(np.asarray(a) + np.asarray(b)) / 2.0 for a, b in zip(first, second, strict=True)]


def normalised(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as sentence-transformers normalises MiniLM's embeddings (a dot product is then the
    cosine similarity the encoder was trained for)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def linear_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    folds: int,
    seed: int,
    c: float = DEFAULT_C,
    on_fold: Callable[[int], None] | None = None,
    splits: Splits | None = None,
) -> np.ndarray:
    """Out-of-fold class probabilities (rows: examples, columns: classes) of a logistic regression per fold on
    L2-normalised features. `splits` default to `fold_indices(labels, folds, seed)`; `on_fold(k)` is called after
    fold k (0-based).
    """
    from sklearn.linear_model import LogisticRegression

    x = normalised(features)
    probs = np.zeros((len(labels), num_classes), dtype=np.float64)
    for k, (train, held) in enumerate(splits if splits is not None else fold_indices(labels, folds, seed)):
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(x[train], labels[train])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(x[held])
        if on_fold is not None:
            on_fold(k)
    return probs


def classification_issues(
    labels: np.ndarray, pred_probs: np.ndarray, label_names: Sequence[str] | None = None
) -> LabelIssues:
    """Likely label errors of a single-label task (text classification, text pairs), worst first.

    `cleanlab.filter.find_label_issues` flags them (confident learning with `filter_by="both"`: flagged by both
    the per-class and the noise-rate pruning rule, which raised precision at the same recall on TREC-6 with frozen
    embeddings, see benchmarks/AUDIT.md) and ranks them by self-confidence;
    `cleanlab.rank.get_label_quality_scores` gives each its score and
    `cleanlab.dataset.rank_classes_by_label_quality` each class's estimated noise. The suggested label is the
    most probable label other than the given one. Labels are shown by `label_names` (default: their ids).
    """
    from cleanlab.dataset import rank_classes_by_label_quality
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=int)
    num_classes = pred_probs.shape[1]
    names = list(label_names) if label_names is not None else [str(c) for c in range(num_classes)]
    ranked = find_label_issues(labels, pred_probs, filter_by="both", return_indices_ranked_by="self_confidence",
                               n_jobs=1)  # fmt: skip
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    others = pred_probs.copy()
    others[np.arange(len(labels)), labels] = -1.0
    suggested = others.argmax(axis=1)
    issues = [
        LabelIssue(
            index=int(i), given=names[labels[i]], suggested=names[suggested[i]], quality=float(quality[i]),
            suggested_probability=float(pred_probs[i, suggested[i]]),
        )
        for i in ranked
    ]  # fmt: skip
    noise = rank_classes_by_label_quality(labels, pred_probs)
    noise_of = dict(zip(noise["Class Index"].astype(int), noise["Label Noise"].astype(float), strict=True))
    flagged = Counter(int(labels[issue.index]) for issue in issues)
    examples = Counter(labels.tolist())
    classes = [
        ClassCount(label=names[c], examples=examples[c], flagged=flagged[c], estimated_noise=noise_of.get(c, 0.0))
        for c in range(num_classes)
    ]
    return LabelIssues(
        issues=issues,
        classes=classes,
        pairs=confused_labels(issues),
        examples=len(labels),
        accuracy=float((pred_probs.argmax(axis=1) == labels).mean()) if len(labels) else 0.0,
    )


def kept_classification_issues(
    labels: np.ndarray, pred_probs: np.ndarray, label_names: Sequence[str], rows: np.ndarray
) -> LabelIssues:
    """`classification_issues` of the rows the audit kept (`kept_rows`) and of their classes only: each row's
    probabilities over those classes (scaled to sum to 1: a fine-tuned fold's head has every class), its index that
    of all rows."""
    labels = np.asarray(labels, dtype=int)
    classes = sorted({int(c) for c in labels[rows]})
    new_id = {c: i for i, c in enumerate(classes)}
    sub = np.asarray(pred_probs, dtype=np.float64)[rows][:, classes]
    totals = sub.sum(axis=1, keepdims=True)
    sub = np.where(totals > 0, sub / np.where(totals > 0, totals, 1.0), 1.0 / len(classes))
    found = classification_issues(np.asarray([new_id[int(c)] for c in labels[rows]]), sub,
                                  [label_names[c] for c in classes])  # fmt: skip
    issues = [replace(issue, index=int(rows[issue.index])) for issue in found.issues]
    return replace(found, issues=issues)


def confused_labels(issues: Sequence[LabelIssue], limit: int = MAX_PAIRS) -> list[ConfusedLabels]:
    """(given, suggested) pairs of the flagged examples, most first (ties: first seen, i.e. the worst example)."""
    counts = Counter((issue.given, issue.suggested) for issue in issues)
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return [ConfusedLabels(given=g, suggested=s, count=n) for (g, s), n in ordered[:limit]]


# --- one audit path per task -----------------------------------------------------------------------------------

Embedder = Callable[..., tuple[Any, bool]]  # (data, encoder, cache_dir, on_start=, on_batch=) -> (features, cached)


def _sentence_embeddings(*args: Any, **kwargs: Any) -> tuple[Any, bool]:
    from sweep.embeddings import train_embeddings

    return train_embeddings(*args, **kwargs)


def _class_ids(data: PreparedData) -> np.ndarray:
    return np.asarray(data.train["labels"], dtype=int)


def _class_fold_problems(data: PreparedData, labels: np.ndarray, folds: int) -> list[tuple[str, str]]:
    return fold_problems([data.label_names[i] for i in labels], folds)


def _class_probe(
    features: np.ndarray, labels: np.ndarray, data: PreparedData, splits: Splits, on_fold: Callable[[int], None]
) -> np.ndarray:
    return linear_probabilities(features, labels, len(data.label_names), folds=len(splits), seed=0,
                                on_fold=on_fold, splits=splits)  # fmt: skip


def _softmax_rows(module: Any, batches: Any) -> list[Any]:
    """Class probabilities of a sequence classifier, one array per example."""
    import torch

    out: list[Any] = []
    for _batch, logits in batches(module):
        out.extend(torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64))
    return out


@dataclass(frozen=True)
class AuditTask:
    """How `sweep audit` audits one task; every callable gets the study's prepared data.

    - `labels(data)`: the given training labels in the form `find` and the probe take them (`label_kind`: how the
      collator batches them for a fine-tuned fold's predictions);
    - `fold_problems(data, labels, folds)`: why K folds cannot give every example an out-of-sample prediction;
    - `splits(labels, folds, seed)`: (train, held-out) rows per fold, every row held out once;
    - `embed(data, encoder, cache_dir, on_start=, on_batch=)`: frozen-encoder features of the training examples,
      cached, and whether the cache had them (the `embeddings` method);
    - `probe(features, labels, data, splits, on_fold)`: out-of-fold predictions of a simple model on them;
    - `predict(module, batches)`: a fine-tuned fold's predictions, one item per example (the `finetune` method);
      `batches(module)` yields (batch, model output) over the held-out rows in order;
    - `collect(items, data)`: those items, one per training row, in the form `find` takes;
    - `find(labels, predictions, data)`: cleanlab's ranking as `LabelIssues`.
    """

    labels: Callable[[PreparedData], Any] = _class_ids
    label_kind: str = "class"  # how the data module's collator batches the labels (datamodules LABEL_KINDS)
    fold_problems: Callable[[PreparedData, Any, int], list[tuple[str, str]]] = _class_fold_problems
    splits: Callable[[Any, int, int], Splits] = fold_indices
    embed: Embedder = _sentence_embeddings
    probe: Callable[[Any, Any, PreparedData, Splits, Callable[[int], None]], Any] = _class_probe
    predict: Callable[[Any, Any], list[Any]] = _softmax_rows
    collect: Callable[[list[Any], PreparedData], Any] = field(default=lambda items, _data: np.stack(items))
    find: Callable[[Any, Any, PreparedData], LabelIssues] = field(
        default=lambda labels, probs, data: classification_issues(labels, probs, data.label_names)
    )
    # single-label: a class with fewer examples than folds is left out (`too_small_classes`), the rest audited
    leaves_out_small_classes: bool = False


CLASSIFICATION = AuditTask(leaves_out_small_classes=True)
# task -> its audit path (its cleanlab call in `find`)
AUDIT_TASKS: dict[str, AuditTask] = {
    "text-classification": CLASSIFICATION,
    "text-pair": CLASSIFICATION,
}


def audit_task_problem(task: str) -> tuple[str, str] | None:
    """Why `sweep audit` cannot audit a study of `task` (None when it can)."""
    if task in AUDIT_TASKS:
        return None
    return ("task", f"the annotation audit has no cleanlab path for task: {task} yet "
                    f"(available: {', '.join(AUDIT_TASKS)})")  # fmt: skip


# A task whose audit path is a module of its own adds itself to AUDIT_TASKS when imported; imported last, as it
# builds on the names above (whichever module is imported first, all end complete).
import sweep.audit_multilabel  # noqa: E402,F401  (multi-label)
import sweep.audit_regression  # noqa: E402,F401  (regression)
import sweep.audit_tokens  # noqa: E402,F401  (token-classification)
