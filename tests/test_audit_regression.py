"""`sweep audit` for task: regression: cleanlab's regression path on constructed predictions, the ridge probe out of
fold on constructed features, the command end to end on the tiny BERT (both methods, stored with the study, shown by
`sweep report`), and the refusal of too few examples for the folds."""

from __future__ import annotations

import csv
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import read_csv_rows, tiny_study_spec

from datamodules.regression import prepare_regression_data
from record import read_audit
from record.audit import SCORE_BIN
from reports import build_report
from sweep.audit_regression import (
    REGRESSION,
    bin_edges,
    bin_labels,
    bin_of,
    regression_issues,
    ridge_predictions,
    score_fold_problems,
    score_folds,
)
from sweep.cli import main
from sweep.label_issues import AUDIT_TASKS

# -- cleanlab's regression path on predictions the test controls ------------------------------------------------


def test_planted_wrong_scores_rank_first_in_constructed_predictions() -> None:
    from cleanlab.regression.rank import get_label_quality_scores

    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 5, size=300)
    predictions = truth + rng.normal(0, 0.25, size=300)  # a good model: close to the true score
    predictions[[10, 20]] += [0.9, -0.9]  # honest but less exact predictions: worse than most, not wrong
    errors = [7, 61, 150, 222, 280]
    given = truth.copy()
    given[errors] = np.where(truth[errors] > 2.5, truth[errors] - 2.5, truth[errors] + 2.5)  # far off, in range
    found = regression_issues(given, predictions)

    assert sorted(issue.index for issue in found.issues[: len(errors)]) == errors
    ranked = [issue.index for issue in found.issues]
    assert len(ranked) < 15 and all(ranked.index(i) >= len(errors) for i in {10, 20} & set(ranked))
    # The ranking is cleanlab's label quality score of the given scores against the predictions.
    quality = get_label_quality_scores(given, predictions)
    assert [issue.quality for issue in found.issues] == pytest.approx([quality[i.index] for i in found.issues])
    assert [i.quality for i in found.issues] == sorted(i.quality for i in found.issues)
    assert max(i.quality for i in found.issues) < 0.05 * np.median(quality)  # Datalab's rule: 0.05 x the median
    top = found.issues[0]
    assert top.given == f"{given[top.index]:.2f}" and top.suggested == f"{predictions[top.index]:.2f}"
    assert math.isnan(top.suggested_probability)  # a score has no probability
    # Per score bin: every example counted once in its given score's bin, its flagged share as the noise.
    assert found.class_name == SCORE_BIN and [c.label for c in found.classes] == bin_labels(bin_edges(given))
    assert sum(c.examples for c in found.classes) == 300 and sum(c.flagged for c in found.classes) == len(found.issues)
    for c in found.classes:
        assert c.estimated_noise == pytest.approx(c.flagged / c.examples if c.examples else 0.0)
    # Pairs: (given bin -> predicted bin) of the flagged examples; each planted error is one such move.
    edges, bins = bin_edges(given), bin_labels(bin_edges(given))
    moves = Counter((bins[g], bins[s]) for g, s in zip(bin_of(given[errors], edges), bin_of(predictions[errors], edges),
                                                       strict=True))  # fmt: skip
    pairs = {(p.given, p.suggested): p.count for p in found.pairs}
    assert all(pairs.get(move, 0) >= n for move, n in moves.items()) and all(g != s for g, s in pairs)
    assert found.fit_name == "Spearman" and 0.5 < found.accuracy < 1.0 and found.examples == 300


def test_score_bins_have_round_edges_and_a_closed_last_bin() -> None:
    assert bin_labels(bin_edges(np.array([0.0, 2.2, 5.0]))) == ["[0, 1)", "[1, 2)", "[2, 3)", "[3, 4)", "[4, 5]"]
    assert bin_labels(bin_edges(np.array([0.0, 100.0]))) == ["[0, 20)", "[20, 40)", "[40, 60)", "[60, 80)",
                                                             "[80, 100]"]  # fmt: skip
    assert bin_labels(bin_edges(np.array([0.3, 4.87]))) == ["[0, 1)", "[1, 2)", "[2, 3)", "[3, 4)", "[4, 5]"]


# -- the probe: ridge regression out of fold ----------------------------------------------------------------------


def test_ridge_probe_out_of_fold_finds_planted_wrong_scores_in_separable_features() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 5, size=200)
    direction, offset = rng.normal(size=16), rng.normal(size=16) * 3
    features = offset + np.outer(truth, direction) + rng.normal(0, 0.05, size=(200, 16))  # the score is linear in them
    errors = [3, 77, 120, 199]
    given = truth.copy()
    given[errors] = np.where(truth[errors] > 2.5, truth[errors] - 2.5, truth[errors] + 2.5)
    splits = score_folds(given, 5, seed=0)
    held = np.concatenate([h for _, h in splits])
    assert len(splits) == 5 and sorted(held.tolist()) == list(range(200))  # every example held out once
    for train, fold in splits:  # stratified on score quantiles: each fold spans the score range
        assert set(train.tolist()).isdisjoint(fold.tolist())
        assert given[fold].min() < 0.5 and given[fold].max() > 4.5
    seen: list[int] = []
    predictions = ridge_predictions(features, given, splits, on_fold=seen.append)
    assert seen == [0, 1, 2, 3, 4] and predictions.shape == (200,) and np.isfinite(predictions).all()
    # Out of fold: a planted row's own (wrong) score never trained the model that predicted it.
    assert np.abs(predictions[errors] - truth[errors]).max() < 0.6
    found = regression_issues(given, predictions)
    assert sorted(i.index for i in found.issues[: len(errors)]) == errors
    assert found.accuracy > 0.9


def test_too_few_examples_for_the_folds_names_the_count() -> None:
    assert score_fold_problems([0.5, 1.0, 2.0, 3.0], 5) == [
        ("data.train", "4 training examples, fewer than --folds 5: lower --folds or add examples")
    ]
    assert score_fold_problems([0.5, 1.0], 1) == [("--folds", "must be at least 2, got 1")]
    assert score_fold_problems([0.5, 1.0, 2.0], 3) == []
    assert AUDIT_TASKS["regression"] is REGRESSION and REGRESSION.label_kind == "score"


# -- the command end to end on the tiny BERT ----------------------------------------------------------------------

# A score per topic: its words decide it, so even the tiny BERT's frozen (random) embeddings predict it.
TOPICS = {
    0.5: ["password", "login", "username", "email", "profile"],
    2.5: ["invoice", "charge", "payment", "card", "bill"],
    4.5: ["parcel", "courier", "delivery", "tracking", "package"],
}
FILLER = ["the", "my", "is", "please", "help", "with", "a"]


def scored_rows(n_per_topic: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, score) rows: several words of one topic each, scored by the topic plus a little noise; shuffled."""
    rng = random.Random(seed)
    rows = []
    for score, words in TOPICS.items():
        for i in range(n_per_topic):
            text = " ".join(rng.sample(words, 4) + rng.sample(FILLER, 2)) + f" {i}"
            rows.append((text, f"{score + rng.uniform(-0.3, 0.3):.2f}"))
    rng.shuffle(rows)
    return rows


def plant(rows: list[tuple[str, str]], count: int) -> tuple[list[tuple[str, str]], list[int]]:
    """Rows with the scores of `count` low- or high-scored rows (spread over the file) moved to the far end of the
    range (0.5 becomes about 4.5, and back), and those rows."""
    far = [i for i, (_, score) in enumerate(rows) if abs(float(score) - 2.5) > 1]
    indices = far[:: len(far) // count][:count]
    out = list(rows)
    for i in indices:
        text, score = out[i]
        out[i] = (text, f"{5.0 - float(score):.2f}")
    return out, indices


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "label"), *rows])


def write_spec(tmp_path: Path, tiny_bert: Path, rows: list[tuple[str, str]]) -> Path:
    write_rows(tmp_path / "train.csv", rows)
    write_rows(tmp_path / "val.csv", scored_rows(4, seed=9))
    return tiny_study_spec(tmp_path, tiny_bert, "audit-scores", {"train": "train.csv", "validation": "val.csv"},
                           task="regression")  # fmt: skip


def test_regression_audit_end_to_end_flags_planted_scores_stores_and_reports_them(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows, errors = plant(scored_rows(25), 3)
    spec = write_spec(tmp_path, tiny_bert, rows)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert main(["run", str(spec), "--storage", url]) == 0
    capsys.readouterr()
    out = tmp_path / "audit.csv"
    assert main(["audit", str(spec), "--out", str(out), "--storage", url]) == 0
    printed = capsys.readouterr()
    assert "scores (min / mean / max)" in printed.err and "class label" not in printed.err  # no classes
    assert "Per score bin" in printed.out and "estimated noise" not in printed.out  # noise = flagged share here
    assert "Score bin pairs" in printed.out
    assert "out-of-fold Spearman" in printed.out and "stored with study audit-scores" in printed.out

    flagged = read_csv_rows(out)
    assert list(flagged[0]) == ["rank", "row", "text", "text_pair", "given_label", "suggested_label",
                                "label_quality", "suggested_probability"]  # fmt: skip
    assert sorted(int(r["row"]) for r in flagged[: len(errors)]) == errors  # the planted scores lead
    for r in flagged:  # `row` is the training file's data row; given is its score, suggested the predicted one
        text, score = rows[int(r["row"])]
        assert r["text"] == text and float(r["given_label"]) == pytest.approx(float(score))
        assert r["suggested_probability"] == ""  # a predicted score has no probability
    for r in flagged[: len(errors)]:  # a planted score is far from the predicted one, which is near the topic's
        assert abs(float(r["suggested_label"]) - float(r["given_label"])) > 1.5
    quality = [float(r["label_quality"]) for r in flagged]
    assert quality == sorted(quality)

    from sweep.storage import load_study

    study = load_study("audit-scores", url)
    record = read_audit(study)
    assert record is not None and record.method == "embeddings" and record.fit_name == "Spearman"
    assert record.class_name == SCORE_BIN and record.examples == 75 and record.flagged == len(flagged)
    assert sum(c.examples for c in record.classes) == 75 and [c.label for c in record.classes][0] == "[0, 1)"
    sections = {s.title: s for s in build_report([study])}
    section = sections["Annotation audit"]
    assert section.tables[0].columns == ["score bin", "examples", "flagged", "flagged share"]
    assert section.tables[0].caption == "Suspects per score bin, most first"
    assert section.tables[-1].rows[0][3] == flagged[0]["given_label"]
    report = tmp_path / "report.html"
    assert main(["report", "audit-scores", "--storage", url, "--out", str(report)]) == 0
    html = report.read_text(encoding="utf-8")
    assert "Annotation audit" in html and "ridge regression per fold" in html and rows[errors[0]][0] in html

    # finetune: each fold trains the regressor with the study's best hyperparameters; its audit replaces the first.
    assert main(["audit", str(spec), "--method", "finetune", "--folds", "2", "--storage", url]) == 0
    assert "fine-tuning each fold with the best trial of study audit-scores (trial 0)" in capsys.readouterr().err
    replaced = read_audit(load_study("audit-scores", url))
    assert replaced is not None and replaced.method == "finetune" and replaced.folds == 2
    assert replaced.examples == 75 and replaced.class_name == SCORE_BIN and replaced.fit_name == "Spearman"
    assert all(not math.isnan(float(s.suggested)) for s in replaced.suspects)


def test_pair_regression_audit_keeps_both_texts_and_names_the_first_row_of_a_merged_text(
    tmp_path: Path, tiny_bert: Path
) -> None:
    rows, (planted,) = plant(scored_rows(10, seed=3), 1)
    pairs = [(f"question {i}", text, score) for i, (text, score) in enumerate(rows)]
    merged = 1 if planted != 1 else 2
    pairs.append((*pairs[merged][:2], "0.10"))  # the same pair again with another score: kept once, with its mean
    for name, written in (("train.csv", pairs), ("val.csv", [("q", t, s) for t, s in scored_rows(3, seed=8)])):
        with (tmp_path / name).open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("text", "text_b", "label"), *written])
    data = prepare_regression_data(
        train_source=str(tmp_path / "train.csv"), validation_source=str(tmp_path / "val.csv"), text_column="text",
        label_column="label", val_fraction=0.2, seed=0, tokenizer_name_or_path=str(tiny_bert), max_length=32,
        cache_dir=tmp_path / "c", text_pair_column="text_b")  # fmt: skip
    assert data.train_rows == list(range(len(rows)))  # the repeated pair (the last row) is merged into its first
    assert data.train_texts == [p[:2] for p in pairs[: len(rows)]]
    assert data.train["labels"][merged] == pytest.approx((float(pairs[merged][2]) + 0.10) / 2)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "pairs", "task": "regression",
        "data": {"train": "train.csv", "validation": "val.csv", "text_pair_column": "text_b",
                 "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(tiny_bert), "max_length": 32},
    }), encoding="utf-8")  # fmt: skip
    out = tmp_path / "audit.csv"
    assert main(["audit", str(spec), "--folds", "3", "--out", str(out), "--storage",
                 f"sqlite:///{tmp_path / 's.db'}"]) == 0  # fmt: skip
    flagged = read_csv_rows(out)
    assert int(flagged[0]["row"]) == planted  # the planted pair leads
    assert all((r["text"], r["text_pair"]) == pairs[int(r["row"])][:2] for r in flagged)


def test_too_few_examples_for_the_folds_is_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, tiny_bert, scored_rows(1))  # 3 training examples
    out = tmp_path / "audit.csv"
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["audit", str(spec), "--out", str(out), "--storage", url]) == 2
    err = capsys.readouterr().err
    line = "data.train: 3 training examples, fewer than --folds 5: lower --folds or add examples"
    assert line in err and sum("data.train" in x for x in err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "cache" / "embeddings").exists()
    assert not (tmp_path / "s.db").exists()
