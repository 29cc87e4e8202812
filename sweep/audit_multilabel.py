"""The annotation audit of task multi-label: each training row's label set, judged label by label.

- Given labels: each row's multi-hot vector over `label_names` (cleanlab takes them as lists of label ids).
- Folds: iterative stratification (Sechidis et al., 2011): the rarest label's rows are dealt out first, each to the
  fold that still wants most of that label, so every label with at least K rows has rows in every fold and in
  every fold's training part. Plain shuffled K-fold can hold out all rows of a rare label at once; the probe of that
  fold then never saw the label, and every one of its held-out rows would look mislabelled.
- A label on fewer rows than --folds (or missing from fewer rows than --folds) is refused, naming the label and its
  count, as a class is for text classification: predicting such a label's training-fold frequency instead would
  score each of its rows as unlikely to carry it, and flag them all.
- Probe: a logistic regression per label (one-vs-rest) on the L2-normalised frozen embeddings, per fold; a label
  that a fold's training part has on every row or on none is predicted at that constant (its frequency there).
- Fine-tuned predictions: the sigmoid of the multi-label head's logits, one independent probability per label.
- Ranking: `cleanlab.multilabel_classification.filter.find_label_issues` (confident learning one label at a time,
  an example flagged when any of its labels looks wrong), ranked and scored by
  `cleanlab.multilabel_classification.rank.get_label_quality_scores`; the per-label view
  (`find_multilabel_issues_per_class`) says which labels of a flagged row are in doubt, and
  each label's estimated noise as `cleanlab.multilabel_classification.dataset.rank_classes_by_multilabel_quality`
  counts it (its per-class filter, run here with n_jobs=1).
- Suggested label set: the given set with the labels cleanlab doubts flipped (a doubted given label dropped, a
  doubted missing one added; the most probable label when that leaves none), so it changes only what cleanlab
  doubts. (The predicted set, every label at probability >= 0.5, changed 2.3 labels per flagged row on
  NLU++ where cleanlab doubted 1.1, and equalled the given set on a few flagged rows: see benchmarks/AUDIT.md.)
  Measure of fit: the micro-F1 of the predicted sets against the given ones.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.label_issues import (
    AUDIT_TASKS,
    DEFAULT_C,
    MAX_FOLD_LINES,
    MAX_PAIRS,
    AuditTask,
    ClassCount,
    ConfusedLabels,
    LabelIssue,
    LabelIssues,
    Splits,
    few_named,
    normalised,
)

if TYPE_CHECKING:
    from datamodules import PreparedData

FILTER_BY = "confident_learning"  # cleanlab's rule per label: more precise than "both" on NLU++ (AUDIT.md)
THRESHOLD = 0.5  # a label is in the predicted set at this probability or above
NONE = "(none)"  # an empty side of a label change: "(none) → refund" is a missing label, "billing → (none)" an extra


def multi_hot_labels(data: PreparedData) -> np.ndarray:
    """The given label sets of the training rows as a 0/1 matrix (rows: examples, columns: `label_names`)."""
    return np.asarray(data.train["labels"], dtype=float).round().astype(int).reshape(len(data.train), -1)


def _examples(n: int) -> str:
    return f"{n} example" if n == 1 else f"{n} examples"


def label_fold_problems(labels: np.ndarray, label_names: Sequence[str], folds: int) -> list[tuple[str, str]]:
    """Why K folds cannot judge every label out of fold (empty when they can): each label needs at least K rows
    with it and K rows without it, so that every fold's training part has both."""
    if folds < 2:
        return [("--folds", f"must be at least 2, got {folds}")]
    labels = np.asarray(labels)
    with_label = labels.sum(axis=0).astype(int)
    without = len(labels) - with_label
    problems = []
    for k in sorted(range(len(label_names)), key=lambda k: (min(with_label[k], without[k]), label_names[k])):
        if with_label[k] < folds:
            problems.append(("data.train", f"label {label_names[k]!r} is on {_examples(with_label[k])}, fewer than "
                                           f"--folds {folds}: lower --folds or add examples"))  # fmt: skip
        elif without[k] == 0:
            problems.append(("data.train", f"label {label_names[k]!r} is on every one of the {len(labels)} examples: "
                                           f"a label to audit needs at least --folds {folds} examples without it; add "
                                           "examples without it"))  # fmt: skip
        elif without[k] < folds:
            problems.append(("data.train", f"label {label_names[k]!r} is on {with_label[k]} of {len(labels)} "
                                           f"examples, so only {_examples(without[k])} lack it, fewer than --folds "
                                           f"{folds}: lower --folds or add examples without it"))  # fmt: skip
    if len(problems) > MAX_FOLD_LINES:  # one line, not one per label (`--folds 100` printed a line for each)
        short = [label_names[k] for k in sorted(range(len(label_names)), key=lambda k: (min(with_label[k], without[k]),
                                                                                          label_names[k]))
                 if min(with_label[k], without[k]) < folds]  # fmt: skip
        fewest = {name: int(min(with_label[k], without[k])) for k, name in enumerate(label_names)}
        lowest = min((n for n in fewest.values() if n >= 2), default=None)
        fix = f"use --folds {lowest} or add examples" if lowest is not None and lowest < folds else "add examples"
        if lowest is not None and lowest < folds and any(fewest[name] < 2 for name in short):
            fix += " (a label on, or missing from, fewer than 2 examples needs more at any --folds)"
        return [("--folds" if len(short) == len(label_names) else "data.train",
                 f"{len(short)} of {len(label_names)} labels are on, or missing from, fewer training examples than "
                 f"--folds {folds} (each needs that many rows with it and without it; fewest: "
                 f"{few_named(short, fewest)}): {fix}")]  # fmt: skip
    return problems


def rare_label_columns(
    labels: np.ndarray, label_names: Sequence[str], folds: int
) -> tuple[dict[str, int], np.ndarray | None]:
    """The labels on fewer rows than `folds`, then those on nearly every row (fewer than `folds` rows without them),
    each with its rows ({label: rows with it}), and the columns an audit keeps without them; None for the columns
    when none is left out, or when a problem remains (`label_fold_problems` then says it)."""
    labels = np.asarray(labels)
    with_label = labels.sum(axis=0).astype(int)
    without = len(labels) - with_label
    few = sorted(np.flatnonzero(with_label < folds).tolist(), key=lambda k: (int(with_label[k]), label_names[k]))
    common = sorted(np.flatnonzero((with_label >= folds) & (without < folds)).tolist(),
                    key=lambda k: (int(without[k]), label_names[k]))  # fmt: skip
    rare = {label_names[k]: int(with_label[k]) for k in [*few, *common]}
    kept = np.flatnonzero((with_label >= folds) & (without >= folds))
    if not rare or not len(kept) or label_fold_problems(labels[:, kept], [label_names[int(k)] for k in kept], folds):
        return rare, None
    return rare, kept


def iterative_folds(labels: np.ndarray, folds: int, seed: int) -> Splits:
    """(train, held-out) row indices per fold by iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011,
    "On the stratification of multi-label data"): every row held out exactly once, each label spread over the folds
    in proportion. Seeded: ties go to a random fold."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels).astype(bool)
    n = len(labels)
    wanted_rows = np.full(folds, n / folds)
    wanted = np.outer(np.full(folds, 1.0 / folds), labels.sum(axis=0))  # (fold, label) rows still wanted
    fold_of = np.full(n, -1)
    left = np.ones(n, dtype=bool)

    def place(row: int, want: np.ndarray) -> None:
        best = np.flatnonzero(want == want.max())
        if len(best) > 1:  # ties: the fold that wants most rows, then a random one
            best = best[wanted_rows[best] == wanted_rows[best].max()]
        fold = int(rng.choice(best))
        fold_of[row] = fold
        left[row] = False
        wanted[fold] -= labels[row]
        wanted_rows[fold] -= 1

    while (counts := labels[left].sum(axis=0)).any():
        rarest = np.flatnonzero(counts == counts[counts > 0].min())
        label = int(rng.choice(rarest))
        for row in rng.permutation(np.flatnonzero(left & labels[:, label])):
            place(int(row), wanted[:, label])
    for row in rng.permutation(np.flatnonzero(left)):  # rows without any label
        place(int(row), wanted_rows)
    return [(np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)) for k in range(folds)]


def one_vs_rest_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int,
    seed: int,
    c: float = DEFAULT_C,
    on_fold: Callable[[int], None] | None = None,
    splits: Splits | None = None,
) -> np.ndarray:
    """Out-of-fold probabilities of each label (rows: examples, columns: labels; rows need not sum to 1) of a
    logistic regression per label and fold on L2-normalised features. `splits` default to
    `iterative_folds(labels, folds, seed)`; `on_fold(k)` is called after fold k (0-based). A label that a fold's
    training part has on every row or on none is predicted at that constant (scikit-learn's one-vs-rest does so)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    x = normalised(features)
    labels = np.asarray(labels).astype(int)
    probs = np.zeros(labels.shape, dtype=np.float64)
    for k, (train, held) in enumerate(splits if splits is not None else iterative_folds(labels, folds, seed)):
        model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
            model.fit(x[train], labels[train])
        probs[held] = model.predict_proba(x[held])
        if on_fold is not None:
            on_fold(k)
    return probs


def predicted_sets(
    pred_probs: np.ndarray, threshold: float = THRESHOLD, may_be_empty: np.ndarray | None = None
) -> np.ndarray:
    """The predicted label set of each row as a 0/1 matrix: every label at `threshold` or above, and at least the
    most probable one (a multi-label row always has a label), except in rows `may_be_empty` marks (they hold a label
    the audit left out)."""
    chosen = (pred_probs >= threshold).astype(int)
    rows = np.arange(len(pred_probs)) if may_be_empty is None else np.flatnonzero(~np.asarray(may_be_empty, bool))
    if len(rows):
        chosen[rows, pred_probs[rows].argmax(axis=1)] = 1
    return chosen


def suggested_sets(
    given: np.ndarray, in_doubt: np.ndarray, pred_probs: np.ndarray, may_be_empty: np.ndarray | None = None
) -> np.ndarray:
    """Each row's given set with its doubted labels flipped (0/1 matrices); the most probable label where that
    leaves the row none, except in rows `may_be_empty` marks (they keep a label the audit left out)."""
    suggested = np.asarray(given).astype(int) ^ np.asarray(in_doubt).astype(int)
    empty = suggested.sum(axis=1) == 0
    if may_be_empty is not None:
        empty &= ~np.asarray(may_be_empty, bool)
    rows = np.flatnonzero(empty)
    suggested[rows, pred_probs[rows].argmax(axis=1)] = 1
    return suggested


def shown_set(row: np.ndarray, names: Sequence[str]) -> str:
    """A label set as a reader sees it: "billing, refund" (in label order); "(none)" when empty."""
    return ", ".join(names[k] for k in np.flatnonzero(row).tolist()) or NONE


def label_changes(
    issues: Sequence[LabelIssue], given: np.ndarray, suggested: np.ndarray, names: Sequence[str],
    limit: int = MAX_PAIRS,
) -> list[ConfusedLabels]:  # fmt: skip
    """The label changes the suggestions of the flagged examples make, most first (ties: the worst example first):
    each label dropped paired with each label added ("billing → refund"), a lone drop as "billing → (none)" and a
    lone addition as "(none) → refund"."""
    counts: Counter[tuple[str, str]] = Counter()
    for issue in issues:
        dropped = [names[k] for k in np.flatnonzero(given[issue.index] > suggested[issue.index]).tolist()] or [NONE]
        added = [names[k] for k in np.flatnonzero(suggested[issue.index] > given[issue.index]).tolist()] or [NONE]
        counts.update((d, a) for d in dropped for a in added if (d, a) != (NONE, NONE))
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return [ConfusedLabels(given=g, suggested=s, count=n) for (g, s), n in ordered[:limit]]


def micro_f1(given: np.ndarray, predicted: np.ndarray) -> float:
    """How well predicted label sets fit the given ones: F1 over every (row, label) decision (0 for no rows)."""
    from sklearn.metrics import f1_score

    return float(f1_score(given, predicted, average="micro", zero_division=0)) if len(given) else 0.0


def best_fit(
    given: np.ndarray, pred_probs: np.ndarray, may_be_empty: np.ndarray | None = None
) -> tuple[float, float]:
    """The decision threshold of the study's grid (0.05 ... 0.95; ties closest to 0.5) at which the predicted sets
    (`predicted_sets`) fit the given ones best, and that micro-F1. Out-of-fold probabilities of a linear probe rarely
    reach 0.5 on a rare label, so at a fixed 0.5 a probe that ranks well read as a weak fit (0.15 where 0.4 was
    there to be had); the study tunes its threshold on validation likewise."""
    from models.multilabel_metrics import DEFAULT_THRESHOLD, THRESHOLD_GRID

    fits = [(micro_f1(given, predicted_sets(pred_probs, c, may_be_empty)), c) for c in THRESHOLD_GRID]
    best = max(f for f, _ in fits)
    chosen = min((c for f, c in fits if np.isclose(f, best, rtol=0, atol=1e-12)),
                 key=lambda c: (abs(c - DEFAULT_THRESHOLD), c))  # fmt: skip
    return chosen, best


def multilabel_issues(
    labels: np.ndarray, pred_probs: np.ndarray, label_names: Sequence[str] | None = None, *,
    left_out: tuple[np.ndarray, Sequence[str], np.ndarray] | None = None,
) -> LabelIssues:  # fmt: skip
    """Likely label errors of a multi-label task, worst first (see the module docstring).

    `left_out` = (every label column, every label name, the audited columns): `labels` and `pred_probs` are the
    audited columns only; a row that holds a label left out may have none of them (no label is forced in), and each
    issue shows the row's sets whole, the labels left out as given on both sides.

    `labels` is the given 0/1 matrix, `pred_probs` one independent probability per (row, label). Each issue shows
    the given and the suggested set (`suggested_sets`) as "a, b"; its `suggested_probability` is how sure the
    predictions are of the least sure label it changes (p of an added label, 1 - p of a dropped one).
    Per label: `examples` rows carry it, `flagged` flagged rows have it in doubt (given but unlikely, or missing but
    likely: cleanlab's per-label view), `estimated_noise` cleanlab's estimated share of its rows that should not
    carry it.
    """
    from cleanlab.multilabel_classification.filter import find_label_issues, find_multilabel_issues_per_class
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    given = np.asarray(labels).astype(int)
    num_labels = pred_probs.shape[1]
    names = list(label_names) if label_names is not None else [str(k) for k in range(num_labels)]
    lists = [np.flatnonzero(row).tolist() for row in given]
    ranked = find_label_issues(lists, pred_probs, filter_by=FILTER_BY, return_indices_ranked_by="self_confidence",
                               n_jobs=1)  # fmt: skip
    quality = get_label_quality_scores(lists, pred_probs)
    in_doubt = np.asarray(find_multilabel_issues_per_class(lists, pred_probs, filter_by=FILTER_BY, n_jobs=1))
    full, full_names, kept = left_out if left_out is not None else (given, names, np.arange(num_labels))
    full = np.asarray(full).astype(int)
    others = (np.asarray(np.delete(full, np.asarray(kept, int), axis=1).any(axis=1), dtype=bool)
              if left_out is not None else None)  # fmt: skip
    suggested = suggested_sets(given, in_doubt, pred_probs, may_be_empty=others)

    def whole(row: np.ndarray, i: int) -> str:  # the row's set with the audited columns as `row` says
        shown = full[i].copy()
        shown[np.asarray(kept, int)] = row
        return shown_set(shown, full_names)

    toward = np.where(suggested == 1, pred_probs, 1.0 - pred_probs)  # how sure of each label's suggested side
    issues = []
    for i in ranked:
        changed = given[i] != suggested[i]
        issues.append(LabelIssue(
            index=int(i), given=whole(given[i], i), suggested=whole(suggested[i], i),
            quality=float(quality[i]),
            suggested_probability=float(toward[i, changed].min()) if changed.any() else float("nan"),
        ))  # fmt: skip
    # each label's given-but-doubted rows, as cleanlab's rank_classes_by_multilabel_quality counts its "Label Issues"
    # (its per-class filter at the default settings), here in this process: that function forks a multiprocessing
    # pool it offers no n_jobs for, and a forked worker of this threaded process could hang the audit for good
    per_class, _, _ = find_multilabel_issues_per_class(lists, pred_probs, return_indices_ranked_by="self_confidence",
                                                       n_jobs=1)  # fmt: skip
    wrongly_given = {k: int(given[np.asarray(rows, dtype=int), k].sum()) for k, rows in enumerate(per_class)}
    examples = given.sum(axis=0)
    flagged = in_doubt.sum(axis=0)
    # cleanlab's "Label Noise" column divides by all rows; its docs (and ClassCount) mean a share of the label's rows.
    classes = [
        ClassCount(label=names[k], examples=int(examples[k]), flagged=int(flagged[k]),
                   estimated_noise=float(wrongly_given.get(k, 0) / examples[k]) if examples[k] else 0.0)
        for k in range(num_labels)
    ]  # fmt: skip
    threshold, fit = best_fit(given, pred_probs, may_be_empty=others)
    return LabelIssues(
        issues=issues,
        classes=classes,
        pairs=label_changes(issues, given, suggested, names),
        examples=len(given),
        accuracy=fit,
        fit_name="micro-F1",
        fit_threshold=threshold,
        class_name="label",  # a row of the per-class table is one label of the sets
    )


# --- the task's audit path --------------------------------------------------------------------------------------


def _fold_problems(data: PreparedData, labels: np.ndarray, folds: int) -> list[tuple[str, str]]:
    return label_fold_problems(labels, data.label_names, folds)


def _probe(
    features: np.ndarray, labels: np.ndarray, data: PreparedData, splits: Splits, on_fold: Callable[[int], None]
) -> np.ndarray:
    return one_vs_rest_probabilities(features, labels, folds=len(splits), seed=0, on_fold=on_fold, splits=splits)


def _sigmoid_rows(module: Any, batches: Any) -> list[Any]:
    """Per-label probabilities of a multi-label classifier (the sigmoid of its logits), one array per example."""
    import torch

    out: list[Any] = []
    for _batch, logits in batches(module):
        out.extend(torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64))
    return out


MULTI_LABEL = AuditTask(
    labels=multi_hot_labels,
    label_kind="multi-hot",
    fold_problems=_fold_problems,
    splits=iterative_folds,
    probe=_probe,
    predict=_sigmoid_rows,
    find=lambda labels, probs, data: multilabel_issues(labels, probs, data.label_names),
)
AUDIT_TASKS["multi-label"] = MULTI_LABEL
