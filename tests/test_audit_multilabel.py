"""`sweep audit` for task multi-label: cleanlab's multi-label ranking on constructed probabilities, the iteratively
stratified folds and the one-vs-rest probe on constructed features, the command end to end on the tiny BERT (both
methods, stored with the study and shown by the report), and the refusal of a label too rare for the folds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import read_csv_rows, tiny_study_spec
from test_multilabel import FILLER, LABEL_WORDS, label_set_rows, write_jsonl

from record import read_audit
from reports import build_report
from sweep.audit_multilabel import (
    MULTI_LABEL,
    iterative_folds,
    label_fold_problems,
    multilabel_issues,
    one_vs_rest_probabilities,
)
from sweep.cli import main
from sweep.label_issues import AUDIT_TASKS, ConfusedLabels

NAMES = ["account", "billing", "product", "shipping"]


def truth_sets(n: int) -> np.ndarray:
    """Row i carries label i % 4, and also the next label when i % 3 == 0 (about 1.3 labels per row)."""
    truth = np.zeros((n, 4), dtype=int)
    for i in range(n):
        truth[i, i % 4] = 1
        if i % 3 == 0:
            truth[i, (i + 1) % 4] = 1
    return truth


def plant(truth: np.ndarray) -> np.ndarray:
    """The given sets: row 4 has an extra label (product), row 9 lacks one (product), rows 50 and 101 have one label
    swapped for another (product -> shipping, billing -> account)."""
    given = truth.copy()
    given[4, 2] = 1
    given[9, 2] = 0
    given[50] = [0, 0, 0, 1]
    given[101] = [1, 0, 0, 0]
    return given


PLANTED = [4, 9, 50, 101]


# -- the ranking on data the test controls ----------------------------------------------------------------------


def test_planted_label_set_errors_in_constructed_probabilities_rank_first() -> None:
    rng = np.random.default_rng(0)
    truth = truth_sets(120)
    # A good model: each label's probability high where it applies, low where not; two honest but unsure rows; sure
    # of the true sets of the planted rows.
    probs = np.where(truth == 1, rng.uniform(0.8, 0.97, truth.shape), rng.uniform(0.02, 0.12, truth.shape))
    probs[10, 2], probs[60, 0] = 0.55, 0.6
    probs[PLANTED] = np.where(truth[PLANTED] == 1, 0.97, 0.01)
    given = plant(truth)
    found = multilabel_issues(given, probs, NAMES)
    assert sorted(i.index for i in found.issues) == PLANTED  # flagged: the planted rows, not the unsure ones
    assert [i.quality for i in found.issues] == sorted(i.quality for i in found.issues)
    shown = {i.index: (i.given, i.suggested) for i in found.issues}
    assert shown == {
        4: ("account, product", "account"),  # the extra label dropped
        9: ("billing", "billing, product"),  # the missing label added
        50: ("shipping", "product"),
        101: ("account", "billing"),
    }
    assert all(i.suggested_probability == pytest.approx(0.99 if i.index == 4 else 0.97) for i in found.issues)
    # Per label: the flagged rows whose annotation of it is in doubt (product: extra on 4, missing on 9 and 50).
    assert {c.label: (c.examples, c.flagged) for c in found.classes} == {
        "account": (41, 1), "billing": (39, 1), "product": (39, 3), "shipping": (41, 1),
    }  # fmt: skip
    noise = {c.label: c.estimated_noise for c in found.classes}
    assert noise["billing"] == 0.0 and noise["shipping"] == pytest.approx(1 / 41)  # row 50's shipping of 41
    assert {(p.given, p.suggested): p.count for p in found.pairs} == {
        ("product", "(none)"): 1, ("(none)", "product"): 1, ("shipping", "product"): 1, ("account", "billing"): 1,
    }  # fmt: skip
    assert isinstance(found.pairs[0], ConfusedLabels)
    # The measure of fit: micro-F1 of the predicted sets (here the true ones) against the given sets.
    tp = int((given & truth).sum())
    assert found.fit_name == "micro-F1" and found.examples == 120
    assert found.accuracy == pytest.approx(2 * tp / (given.sum() + truth.sum()))
    assert found.fit_threshold is not None and 0.15 <= found.fit_threshold <= 0.75  # any cut between the two bands


def test_the_fit_is_taken_at_the_best_threshold_not_at_a_fixed_one_half() -> None:
    """A probe's out-of-fold probabilities of rare labels seldom reach 0.5: a user's audit read micro-F1 0.146 at 0.5
    and warned of a weak fit, though its ranking was sound."""
    from record.audit import AuditRecord, audit_from_attrs, fit_text, weak_fit, write_audit
    from sweep.audit_multilabel import best_fit

    rng = np.random.default_rng(1)
    truth = truth_sets(120)
    probs = np.where(truth == 1, rng.uniform(0.25, 0.4, truth.shape), rng.uniform(0.0, 0.15, truth.shape))
    threshold, fit = best_fit(truth, probs)
    assert threshold == 0.25 and fit == 1.0  # 0.2 fits as well: ties go toward 0.5
    found = multilabel_issues(truth, probs, NAMES)
    assert (found.fit_threshold, found.accuracy) == (0.25, 1.0)
    record = AuditRecord(method="embeddings", folds=5, created="", data_fingerprint="", examples=120, flagged=0,
                         accuracy=found.accuracy, fit_name=found.fit_name, fit_threshold=found.fit_threshold,
                         class_name="label")  # fmt: skip
    assert fit_text(record) == "micro-F1 1.000 at threshold 0.25, the best for these predictions"
    assert weak_fit(record) is None
    attrs: dict[str, Any] = {}
    write_audit(attrs.__setitem__, record)
    assert audit_from_attrs(attrs) == record  # stored and read back


def test_iterative_folds_spread_every_label_over_every_fold() -> None:
    rng = np.random.default_rng(3)
    labels = np.zeros((200, 6), dtype=int)
    for k, rows in enumerate([100, 40, 20, 10, 7, 5]):  # label k on `rows` random rows; every row on one or more
        labels[rng.choice(200, size=rows, replace=False), k] = 1
    labels[labels.sum(axis=1) == 0, 0] = 1
    splits = iterative_folds(labels, 5, seed=0)
    held = np.concatenate([h for _, h in splits])
    assert sorted(held.tolist()) == list(range(200))  # every row held out exactly once
    for train, part in splits:
        assert set(train.tolist()).isdisjoint(part.tolist()) and len(train) + len(part) == 200
        assert 35 <= len(part) <= 45
        assert labels[part].sum(axis=0).min() >= 1 and labels[train].sum(axis=0).min() >= 1
    # The rarest label (5 rows) has one row in each fold (a shuffled 5-fold split does that 4% of the time).
    assert [int(labels[p, 5].sum()) for _, p in splits] == [1] * 5
    again = iterative_folds(labels, 5, seed=0)
    assert all((a[1] == b[1]).all() for a, b in zip(splits, again, strict=True))


def test_the_probe_out_of_fold_finds_planted_errors_in_separable_features() -> None:
    rng = np.random.default_rng(1)
    truth = truth_sets(160)
    centers = rng.normal(size=(4, 16)) * 3
    features = truth @ centers + rng.normal(size=(160, 16))
    given = plant(truth)
    # Row 9's missing label is left out here: on L2-normalised features a row of two labels sits between their
    # centres, and the regularised probe gives each of them 0.6-0.8, below the 0.85 or so that confident learning
    # asks of a label (the mean probability of its given rows). A missing label is the audit's hard case.
    given[9] = truth[9]
    planted = [4, 50, 101]
    folds_seen: list[int] = []
    probs = one_vs_rest_probabilities(features, given, folds=5, seed=0, on_fold=folds_seen.append)
    assert folds_seen == [0, 1, 2, 3, 4] and probs.shape == (160, 4)
    # Out of fold: a planted row's own (wrong) label set never trained the model that scored it.
    assert ((probs[planted] >= 0.5) == truth[planted]).all()
    found = multilabel_issues(given, probs, NAMES)
    assert sorted(i.index for i in found.issues[: len(planted)]) == planted
    for issue in found.issues[:3]:  # each suggestion changes at least one label, and only toward the truth
        suggested = np.isin(NAMES, issue.suggested.split(", ")).astype(int)
        changed = suggested != given[issue.index]
        assert changed.any() and (suggested[changed] == truth[issue.index][changed]).all()
    assert found.accuracy > 0.95


def test_a_label_on_all_or_none_of_a_folds_training_rows_is_predicted_at_that_constant() -> None:
    rng = np.random.default_rng(2)
    labels = np.zeros((12, 3), dtype=int)
    labels[:, 0] = 1  # on every row
    labels[5, 1] = 1  # on one row: the fold holding it out has none to learn from
    labels[::2, 2] = 1
    splits = [(np.setdiff1d(np.arange(12), held), held) for held in (np.arange(0, 6), np.arange(6, 12))]
    probs = one_vs_rest_probabilities(rng.normal(size=(12, 8)), labels, folds=2, seed=0, splits=splits)
    assert (probs[:, 0] == 1.0).all()  # its training-fold frequency
    assert (probs[:6, 1] == 0.0).all()  # rows 0-5 were scored by the fold that trained without row 5
    assert ((probs[:, 2] > 0) & (probs[:, 2] < 1)).all()  # an ordinary label: a fitted regression


def test_a_label_too_rare_or_too_common_for_the_folds_is_named_with_its_count() -> None:
    labels = np.zeros((10, 4), dtype=int)
    labels[:, 0] = 1
    labels[:8, 1] = 1  # missing from only 2 rows
    labels[:3, 2] = 1
    labels[4:5, 3] = 1
    assert label_fold_problems(labels, NAMES, 5) == [
        ("data.train", "label 'account' is on every one of the 10 examples: a label to audit needs at least --folds "
                       "5 examples without it; add examples without it"),
        ("data.train", "label 'shipping' is on 1 example, fewer than --folds 5: lower --folds or add examples"),
        ("data.train", "label 'billing' is on 8 of 10 examples, so only 2 examples lack it, fewer than --folds 5: "
                       "lower --folds or add examples without it"),
        ("data.train", "label 'product' is on 3 examples, fewer than --folds 5: lower --folds or add examples"),
    ]  # fmt: skip
    assert label_fold_problems(labels[:, 2:3], ["product"], 3) == []
    # more labels than MAX_FOLD_LINES: one line (`--folds 100` printed one per label)
    wide = np.hstack([labels, labels[:, 2:3]])
    assert label_fold_problems(wide, [*NAMES, "refund"], 5) == [
        ("--folds", "5 of 5 labels are on, or missing from, fewer training examples than --folds 5 (each needs that "
                    "many rows with it and without it; fewest: 'account' 0, 'shipping' 1, 'billing' 2, 'product' 3, "
                    "and 1 more): use --folds 2 or add examples (a label on, or missing from, fewer than 2 "
                    "examples needs more at any --folds)"),
    ]  # fmt: skip
    assert label_fold_problems(labels, NAMES, 1) == [("--folds", "must be at least 2, got 1")]
    assert AUDIT_TASKS["multi-label"] is MULTI_LABEL and MULTI_LABEL.label_kind == "multi-hot"


# -- the command end to end on the tiny BERT ----------------------------------------------------------------------


def keyword_rows(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """`n` distinct texts of one or two labels, each label showing in three of its four words (plus a filler word),
    so that even the tiny BERT's frozen embeddings tell the labels apart."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    while len(out) < n:
        labels = sorted(rng.sample(sorted(LABEL_WORDS), rng.choice([1, 1, 2])))
        words = [word for label in labels for word in rng.sample(LABEL_WORDS[label], 3)] + rng.sample(FILLER, 1)
        rng.shuffle(words)
        out.setdefault(" ".join(words), labels)
    return list(out.items())


def swap_one_label(rows: list[tuple[str, list[str]]], indices: list[int]) -> list[tuple[str, list[str]]]:
    """Rows where, at `indices`, the first label is replaced by the next label (alphabetically) the row lacks."""
    names = sorted(LABEL_WORDS)
    out = list(rows)
    for i in indices:
        text, labels = out[i]
        start = names.index(labels[0])
        new = next(names[(start + j) % len(names)] for j in range(1, len(names)) if names[(start + j) % len(names)]
                   not in labels)  # fmt: skip
        out[i] = (text, sorted([new, *labels[1:]]))
    return out


def write_spec(tmp_path: Path, tiny_bert: Path, rows: list[tuple[str, list[str]]], **extra: Any) -> Path:
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "val.jsonl", label_set_rows(16, seed=9))
    data = {"train": "train.jsonl", "validation": "val.jsonl", "label_column": "labels"}
    return tiny_study_spec(tmp_path, tiny_bert, "ml-audit", data, task="multi-label",
                           search={"space": {"learning_rate": 5e-3}}, **extra)  # fmt: skip


def test_audit_end_to_end_flags_planted_label_sets_writes_csv_and_stores_the_audit(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    errors = [3, 30, 57, 101]
    rows = swap_one_label(keyword_rows(120, seed=5), errors)
    spec = write_spec(tmp_path, tiny_bert, rows)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert main(["run", str(spec), "--storage", url]) == 0
    capsys.readouterr()
    out = tmp_path / "audit.csv"
    assert main(["audit", str(spec), "--out", str(out), "--storage", url]) == 0
    printed = capsys.readouterr()
    assert "rows read" in printed.err and "out-of-fold micro-F1" in printed.out
    assert "Per label (flagged: rows whose annotation of the label is in doubt)" in printed.out
    assert "Label changes suggested" in printed.out and "dropped → added" in printed.out
    assert "stored with study ml-audit" in printed.out

    flagged = read_csv_rows(out)
    assert list(flagged[0]) == ["rank", "row", "text", "text_pair", "given_label", "suggested_label",
                                "label_quality", "suggested_probability"]  # fmt: skip
    # The planted rows lead; `row` is the training file's row, whose text and label set the CSV repeats.
    assert sorted(int(r["row"]) for r in flagged[: len(errors)]) == errors
    for r in flagged:
        text, labels = rows[int(r["row"])]
        assert (r["text"], r["given_label"], r["text_pair"]) == (text, ", ".join(sorted(labels)), "")
        assert r["suggested_label"] != r["given_label"] and 0.0 <= float(r["suggested_probability"]) <= 1.0
    before = keyword_rows(120, seed=5)
    for r in flagged[: len(errors)]:  # each suggestion changes at least one label, and only back toward the truth
        given, suggested, truth = ({lab for lab in labels.split(", ")} for labels in
                                   (r["given_label"], r["suggested_label"], ", ".join(before[int(r["row"])][1])))
        assert given != suggested and (given ^ suggested) <= (given ^ truth)
    quality = [float(r["label_quality"]) for r in flagged]
    assert quality == sorted(quality)

    from sweep.storage import load_study

    study = load_study("ml-audit", url)
    record = read_audit(study)
    assert record is not None and record.method == "embeddings" and record.fit_name == "micro-F1"
    assert record.examples == 120 and record.flagged == len(flagged) and 0.0 < record.accuracy <= 1.0
    assert sorted(c.label for c in record.classes) == sorted(LABEL_WORDS)
    assert sum(c.examples for c in record.classes) == sum(len(labels) for _, labels in rows)
    section = {s.title: s for s in build_report([study])}["Annotation audit"]
    assert "given label set is unlikely" in section.blocks[0].text  # type: ignore[attr-defined]
    captions = [t.caption for t in section.tables]
    assert captions[0].startswith("Suspects per label") and captions[1].startswith("The label changes")
    assert section.tables[0].columns[0] == "label"
    assert section.tables[2].rows[0][2] == rows[int(flagged[0]["row"])][0]

    # finetune: each fold fine-tuned with the study's best trial (sigmoid of the head), replacing the first audit.
    assert main(["audit", str(spec), "--method", "finetune", "--folds", "2", "--storage", url]) == 0
    err = capsys.readouterr().err
    assert "fine-tuning each fold with the best trial of study ml-audit (trial 0)" in err
    assert "fold 1/2 trained on" in err and "fold 2/2 trained on" in err
    replaced = read_audit(load_study("ml-audit", url))
    assert replaced is not None and replaced.method == "finetune" and replaced.folds == 2
    assert replaced.examples == 120 and replaced.fit_name == "micro-F1"


def test_a_label_too_rare_for_the_folds_is_left_out_and_the_rest_audited(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NLU++ subsets always hold a few labels on 3-4 rows: the audit refused them all. It leaves those labels out
    (their annotations unchecked) and audits the others; a problem no leaving out solves is still refused."""
    rows = label_set_rows(30, seed=5)
    rows = [(text, [*labels, "returns"]) if i < 3 else (text, labels) for i, (text, labels) in enumerate(rows)]
    spec = write_spec(tmp_path, tiny_bert, rows)
    out = tmp_path / "audit.csv"
    assert main(["audit", str(spec), "--out", str(out), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 0
    printed = capsys.readouterr()
    line = ("left out 1 label on fewer training examples than --folds 5: 'returns' (3 examples); whether a row should "
            "carry it is not checked, and no suggested set adds or drops it (--folds 3 audits them too)")
    assert line in " ".join(printed.err.split()) and line in " ".join(printed.out.split())
    flagged = read_csv_rows(out)
    assert flagged
    for r in flagged:  # its rows are audited for their other labels, and shown whole: it stays as given
        given = rows[int(r["row"])][1]
        assert r["given_label"] == ", ".join(sorted(given))
        assert ("returns" in r["suggested_label"].split(", ")) == ("returns" in given)

    # a label on nearly every row (2 rows without it: no fold could learn its absence) is left out likewise
    common = [(text, labels if i < 2 else [*labels, "ticket"]) for i, (text, labels) in enumerate(rows)]
    spec = write_spec(tmp_path, tiny_bert, common)
    assert main(["audit", str(spec), "--out", str(out), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 0
    line = ("left out 1 label on fewer training examples than --folds 5: 'returns' (3 examples); and 1 label on nearly "
            "every training example (fewer than --folds 5 without it): 'ticket' (on 28 of 30); whether a row should "
            "carry them is not checked, and no suggested set adds or drops them (--folds 2 audits them too)")
    assert line in " ".join(capsys.readouterr().err.split())
    for r in read_csv_rows(out):
        given = common[int(r["row"])][1]
        assert ("ticket" in r["suggested_label"].split(", ")) == ("ticket" in given)

    # one label on every row, the other on 3: nothing is left to audit once both are left out
    every = [(text, ["ticket", "returns"] if i < 3 else ["ticket"]) for i, (text, _) in enumerate(rows)]
    write_jsonl(tmp_path / "every.jsonl", every)
    spec = tiny_study_spec(tmp_path, tiny_bert, "ml-audit", {"train": "every.jsonl", "label_column": "labels",
                                                             "val_fraction": 0.2}, task="multi-label")  # fmt: skip
    out.unlink()
    assert main(["audit", str(spec), "--out", str(out), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if line.startswith("error:")]
    assert problems[0] == (f"error: {spec}: data.train: label 'ticket' is on every one of the 24 examples: a label "
                           "to audit needs at least --folds 5 examples without it; add examples without it")
    assert len(problems) == 2 and problems[1].startswith(f"error: {spec}: data.train: label 'returns' is on ")
    assert not out.exists() and not (tmp_path / "s.db").exists()


def test_sets_with_a_left_out_label_are_shown_whole_and_never_get_a_label_forced_in() -> None:
    """A row given {billing, returns} with 'returns' left out is {billing} to the audit: doubting billing left it
    empty, and the most probable kept label was forced in ('billing, returns -> refund, returns', a label nobody
    doubted); a name holding ', ' vanished when the shown set was split back into names."""
    from sweep.audit_multilabel import multilabel_issues, predicted_sets, suggested_sets

    rows = np.array([True, False])  # row 0 holds a label left out; row 1 does not
    doubted = suggested_sets(np.array([[1, 0], [1, 0]]), np.array([[1, 0], [1, 0]]), np.array([[0.2, 0.3]] * 2),
                             may_be_empty=rows)  # fmt: skip
    assert doubted.tolist() == [[0, 0], [0, 1]]  # row 1 (no other label) still gets one
    assert predicted_sets(np.array([[0.1, 0.2]] * 2), may_be_empty=rows).tolist() == [[0, 0], [0, 1]]
    names = ["Food, Drink", "refund", "returns"]
    full = np.array([[1, 0, 1]] * 12 + [[0, 1, 0]] * 12)
    probs = np.array([[0.02, 0.97]] * 1 + [[0.97, 0.02]] * 11 + [[0.02, 0.97]] * 12)  # row 0's Food, Drink doubted
    found = multilabel_issues(full[:, :2], probs, names[:2], left_out=(full, names, np.array([0, 1])))
    shown = {issue.index: (issue.given, issue.suggested) for issue in found.issues}
    assert shown[0] == ("Food, Drink, returns", "refund, returns")


def test_each_labels_noise_is_counted_as_cleanlabs_ranking_counts_it_without_its_process_pool() -> None:
    """cleanlab's rank_classes_by_multilabel_quality forks a pool it offers no n_jobs for (an audit hung on it): the
    same count, made in this process, gives the same estimated noise."""
    from cleanlab.multilabel_classification.dataset import rank_classes_by_multilabel_quality

    rng = np.random.default_rng(7)
    truth = truth_sets(120)
    probs = np.clip(np.where(truth == 1, rng.uniform(0.4, 0.95, truth.shape), rng.uniform(0.0, 0.5, truth.shape)),
                    0.0, 1.0)  # fmt: skip
    given = plant(truth)
    found = multilabel_issues(given, probs, NAMES)
    lists = [np.flatnonzero(row).tolist() for row in given]
    theirs = rank_classes_by_multilabel_quality(lists, probs)
    counts = dict(zip(theirs["Class Index"].astype(int), theirs["Label Issues"].astype(int), strict=True))
    for k, c in enumerate(found.classes):
        ours = round(c.estimated_noise * c.examples)
        assert counts.get(k, 0) in (ours, ours - 1), (c.label, ours, counts.get(k))  # theirs truncates n / N * N
