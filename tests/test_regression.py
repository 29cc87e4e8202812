"""task: regression: numeric labels (loading, cleaning, split, report), the metrics against scipy/sklearn, the head,
a study end to end on the tiny model with its export through `pipeline`, an RMSE (minimised) study, the report."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import quickstart_subset, split_per_class

from datamodules import DataError
from datamodules.regression import clean_scored, label_distribution, prepare_regression_data, split_scored
from models.regression_metrics import regression_metrics, scatter_points
from sweep.errors import SweepError
from sweep.spec import parse_spec

REG = {"name": "scores", "task": "regression", "data": {"train": "train.csv"}}
# A score per quickstart class: a single-text regression the tiny model can learn (the class decides the score).
CLASS_SCORE = {"account": 0.5, "billing": 1.5, "product": 3.0, "returns": 4.5}


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(SweepError) as info:
        parse_spec(data)
    return dict(info.value.problems)


def write_rows(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def scored_rows(seed: int, n_per_class: int = 30) -> list[tuple[str, float]]:
    """Quickstart tickets of 4 classes, each scored by its class plus a little seeded noise."""
    rng = random.Random(seed)
    return [(text, round(CLASS_SCORE[label] + rng.uniform(-0.3, 0.3), 3))
            for text, label in quickstart_subset(n_per_class, seed=seed)]  # fmt: skip


def pair_rows(seed: int) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]]]:
    """Train (90) / validation (30) pairs of two quickstart tickets of one class, scored by that class plus a little
    seeded noise: a pair regression the tiny model learns in a few epochs."""
    train, val = split_per_class(quickstart_subset(40, seed=seed, n_classes=3), 10)
    rng = random.Random(seed)

    def pairs(rows: list[tuple[str, str]]) -> list[tuple[str, str, float]]:
        return [(text, rng.choice([t for t, lab in rows if lab == label]),
                 round(CLASS_SCORE[label] + rng.uniform(-0.3, 0.3), 3)) for text, label in rows]  # fmt: skip

    return pairs(train), pairs(val)


# -- spec ---------------------------------------------------------------------------------------------------


def test_regression_spec_defaults_to_spearman_and_takes_a_pair_column() -> None:
    spec = parse_spec(REG)
    assert spec.task == "regression" and spec.objective.metric == "spearman"
    pair = parse_spec({**REG, "data": {"train": "t.csv", "text_pair_column": "b"}, "objective": {"metric": "rmse"}})
    assert pair.data.text_pair_column == "b" and pair.objective.metric == "rmse"
    assert problems_of({**REG, "objective": {"metric": "f1_macro"}}) == {
        "objective.metric": "'f1_macro' is not a metric of task: regression (choose one of spearman, pearson, rmse)"
    }
    assert problems_of({**REG, "objective": {"metric": "Pearson"}})["objective.metric"].endswith(
        "; did you mean 'pearson'?")
    assert problems_of({**REG, "objective": {"metric": "spearmann"}})["objective.metric"].endswith(
        "; did you mean 'spearman'?")


def test_class_weights_and_label_smoothing_are_refused_for_regression() -> None:
    problems = problems_of({**REG, "model": {"class_weights": "balanced"},
                            "search": {"space": {"label_smoothing": {"low": 0.0, "high": 0.2}}}})  # fmt: skip
    assert problems == {
        "model.class_weights": "'balanced' weights classes, and task: regression has none (its label is a number): "
        "remove it",
        "search.space.label_smoothing": "smooths class labels, and task: regression has none (its loss is mean "
        "squared error): remove it",
    }
    parse_spec({**REG, "model": {"class_weights": "none"}, "search": {"space": {"label_smoothing": 0}}})  # allowed


# -- labels, cleaning, split --------------------------------------------------------------------------------


def test_labels_must_be_finite_numbers_named_by_file_and_row(tmp_path: Path, tiny_bert: Path) -> None:
    rows = [("the cat sat", "1.5"), ("on the mat", "high"), ("good movie", "nan"), ("bad film", ""),
            ("fine service", "inf"), ("great order", "2")]  # fmt: skip
    train = write_rows(tmp_path / "train.csv", ["text", "label"], rows)
    val = write_rows(tmp_path / "val.jsonl", ["text", "label"], [])
    val.write_text('{"text": "a", "label": 1.0}\n{"text": "b", "label": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        prepare_regression_data(train_source=str(train), validation_source=str(val), text_column="text",
                                label_column="label", val_fraction=0.2, seed=0, tokenizer_name_or_path=str(tiny_bert),
                                max_length=32, cache_dir=tmp_path / "cache")  # fmt: skip
    assert info.value.problems == [
        ("data.train", "train.csv row 2: label 'high' is not a number (task: regression needs a numeric label "
                       "column); 3 more rows without a usable score (3, 4, 5)"),
        ("data.validation", "val.jsonl row 2: label 'x' is not a number (task: regression needs a numeric label "
                            "column)"),
    ]  # fmt: skip
    assert not (tmp_path / "cache").exists()


def test_cleaning_averages_a_text_seen_with_different_scores_and_drops_repeats() -> None:
    texts = ["a  b", "a b", "a b", "c", None, " ", ("x", "y"), ("x", "y"), ("x", "z")]
    scores = [1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 0.5, 0.25]
    result = clean_scored(texts, scores)
    assert result.texts == ["a b", "c", ("x", "y"), ("x", "z")]
    assert result.scores == [pytest.approx(4 / 3), 3.0, 0.5, 0.25]
    report = result.report
    assert (report["missing_text"], report["empty_text"], report["duplicates"], report["averaged_rows"]) == (1, 1, 2, 1)
    assert report["rows_in"] == report["rows_out"] + 1 + 1 + 2 + 1
    assert report["averaged_texts_total"] == 1 and report["averaged_texts"] == [{"text": "a b",
                                                                                  "scores": [1.0, 1.0, 2.0]}]


def test_split_is_seeded_and_stratified_on_score_quantiles() -> None:
    texts = [f"t{i}" for i in range(200)]
    scores = [float(i % 50) / 10 for i in range(200)]
    first = split_scored(texts, scores, val_fraction=0.2, seed=3)
    assert first == split_scored(texts, scores, val_fraction=0.2, seed=3)
    tr_texts, tr_scores, va_texts, va_scores, stratified = first
    assert stratified and len(va_texts) == 40 and not set(tr_texts) & set(va_texts)
    # every score decile is in validation in its share (4 of 40 per bin)
    deciles = np.quantile(scores, np.linspace(0, 1, 11))[1:-1]
    assert np.bincount(np.searchsorted(deciles, va_scores, side="right")).tolist() == [4] * 10
    with pytest.raises(DataError, match="a regression needs at least 2 in each"):
        split_scored(texts[:3], scores[:3], val_fraction=0.2, seed=0)


def test_label_distribution_shares_histogram_edges() -> None:
    dist = label_distribution({"train": [0.0, 1.0, 5.0, 5.0], "validation": [2.0, 3.0]})
    assert len(dist["edges"]) == 21 and dist["edges"][0] == 0.0 and dist["edges"][-1] == 5.0
    assert dist["train"]["count"] == 4 and sum(dist["train"]["histogram"]) == 4
    assert dist["validation"] == {"count": 2, "min": 2.0, "max": 3.0, "mean": 2.5, "std": 0.5,
                                  "histogram": dist["validation"]["histogram"]}  # fmt: skip
    assert sum(dist["validation"]["histogram"]) == 2


def test_prepared_scores_are_float_labels_with_a_report(tmp_path: Path, tiny_bert: Path) -> None:
    rows = scored_rows(seed=1)
    train = write_rows(tmp_path / "train.csv", ["text", "score"], [*rows, rows[0], (rows[1][0], 4.0)])
    common = dict(train_source=str(train), validation_source=None, text_column="text", label_column="score",
                  val_fraction=0.25, seed=0, tokenizer_name_or_path=str(tiny_bert), max_length=32,
                  cache_dir=tmp_path / "cache")  # fmt: skip
    data = prepare_regression_data(**common)  # type: ignore[arg-type]
    assert data.label_names == ["score"]
    assert len(data.train) + len(data.validation) == len(rows)
    assert all(isinstance(v, float) for v in data.train["labels"])
    report = data.report
    assert report["split"].startswith("stratified on score quantiles from train")
    assert report["cleaning"]["train"]["duplicates"] == 1 and report["cleaning"]["train"]["averaged_rows"] == 1
    assert ("train: 1 text appears with different scores; it is kept once with its mean score (1 more row merged "
            "into it)") in report["warnings"]
    dist = report["label_distribution"]
    assert dist["train"]["count"] == len(data.train) and dist["validation"]["count"] == len(data.validation)
    assert "class_distribution" not in report
    low, high = min(s for _, s in rows), max(s for _, s in rows)
    again = prepare_regression_data(**common, label_range=(low, high))  # type: ignore[arg-type]  # bounds included
    assert again.report["cache"] == "hit" and again.fingerprint == data.fingerprint
    assert list(again.validation["labels"]) == pytest.approx(list(data.validation["labels"]))


def test_constant_scores_are_refused(tmp_path: Path, tiny_bert: Path) -> None:
    train = write_rows(tmp_path / "train.csv", ["text", "label"], [(t, 2.0) for t, _ in scored_rows(seed=0)])
    with pytest.raises(DataError) as info:
        prepare_regression_data(train_source=str(train), validation_source=None, text_column="text",
                                label_column="label", val_fraction=0.2, seed=0, tokenizer_name_or_path=str(tiny_bert),
                                max_length=32, cache_dir=tmp_path / "cache")  # fmt: skip
    assert info.value.problems == [("data.train", "every label in train.csv is 2 after cleaning: a regression needs "
                                                  "scores that vary (Pearson and Spearman are undefined for a "
                                                  "constant target)")]  # fmt: skip


# -- metrics ------------------------------------------------------------------------------------------------


def test_regression_metrics_match_scipy_and_sklearn() -> None:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 5, 300).round(1)  # rounded: ties, which Spearman ranks by their mean
    preds = targets + rng.normal(0, 1.0, 300)
    got = regression_metrics(preds, targets)
    assert got["pearson"] == pytest.approx(pearsonr(preds, targets).statistic, abs=1e-12)
    assert got["spearman"] == pytest.approx(spearmanr(preds, targets).statistic, abs=1e-12)
    assert got["mse"] == pytest.approx(mean_squared_error(targets, preds), abs=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt(mean_squared_error(targets, preds)), abs=1e-12)
    assert got["mae"] == pytest.approx(mean_absolute_error(targets, preds), abs=1e-12)
    # independent of scipy: Pearson from its definition
    assert got["pearson"] == pytest.approx(np.corrcoef(preds, targets)[0, 1], abs=1e-12)
    assert 0.7 < got["pearson"] < 0.9 and all(isinstance(v, float) for v in got.values())


def test_constant_predictions_score_zero_correlation_not_nan() -> None:
    got = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 4.0])
    assert got["pearson"] == 0.0 and got["spearman"] == 0.0
    assert got["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    with pytest.raises(ValueError, match="same length"):
        regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 2"):
        regression_metrics([1.0], [1.0])


def test_scatter_points_are_bounded_seeded_and_rounded() -> None:
    assert scatter_points([1.0, 2.123456], [0.5, 2.0]) == [[1.0, 0.5], [2.1235, 2.0]]
    targets = np.arange(5000) / 1000
    sample = scatter_points(targets, targets * 2, limit=2000, seed=0)
    assert len(sample) == 2000 and sample == scatter_points(targets, targets * 2, limit=2000, seed=0)
    assert [p[0] for p in sample] == sorted(p[0] for p in sample)  # row order kept
    assert all(p[1] == pytest.approx(2 * p[0], abs=2e-4) for p in sample)


# -- a study end to end, its export and report --------------------------------------------------------------


def run_regression_study(root: Path, encoder: Path, *, name: str, metric: str, pairs: bool, n_trials: int,
                         epochs: int) -> Path:  # fmt: skip
    """Write the data and spec of a tiny regression study under `root` and run it; returns `root`."""
    from sweep.runner import run_study

    if pairs:
        train, val = pair_rows(seed=2)
        write_rows(root / "train.csv", ["sentence1", "sentence2", "score"], train)
        write_rows(root / "val.csv", ["sentence1", "sentence2", "score"], val)
    else:
        train_rows, val_rows = scored_rows(seed=2)[:96], scored_rows(seed=2)[96:]
        write_rows(root / "train.csv", ["sentence1", "score"], train_rows)
        write_rows(root / "val.csv", ["sentence1", "score"], val_rows)
    spec = {
        "name": name,
        "task": "regression",
        "storage": f"sqlite:///{root / 'sweeps.db'}",
        "data": {"train": "train.csv", "validation": "val.csv", "text_column": "sentence1", "label_column": "score",
                 "cache_dir": str(root / "cache"), **({"text_pair_column": "sentence2"} if pairs else {})},
        "model": {"encoder": str(encoder), "max_length": 64},
        "objective": {"metric": metric},
        "search": {"n_trials": n_trials, "sampler": "random", "pruner": "none", "seed": 0, "first_epoch_evals": 0,
                   "space": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "batch_size": 8,
                             "epochs": epochs, "warmup_ratio": 0.0}},
    }  # fmt: skip
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert not run_study(root / "spec.yaml").resumed
    return root


@pytest.fixture(scope="module")
def pair_study(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    return run_regression_study(tmp_path_factory.mktemp("reg-pairs"), tiny_bert, name="reg-pairs", metric="spearman",
                                pairs=True, n_trials=2, epochs=6)  # fmt: skip


@pytest.fixture(scope="module")
def rmse_study(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    return run_regression_study(tmp_path_factory.mktemp("reg-rmse"), tiny_bert, name="reg-rmse", metric="rmse",
                                pairs=False, n_trials=3, epochs=3)  # fmt: skip


def load(root: Path, name: str):  # type: ignore[no-untyped-def]
    from sweep.storage import load_study

    return load_study(name, f"sqlite:///{root / 'sweeps.db'}")


def val_rows(root: Path) -> list[dict[str, str]]:
    with (root / "val.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_a_pair_regression_study_records_scores_and_a_scatter(pair_study: Path) -> None:
    from optuna.trial import TrialState

    from record import read_study, read_trial

    study = load(pair_study, "reg-pairs")
    record = read_study(study)
    assert record.task == "regression" and record.metric == "spearman" and record.label_names == ["score"]
    assert record.data_report["text_pair"] is True and "label_distribution" in record.data_report
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for trial in trials:
        rec = read_trial(trial)
        assert set(rec.metrics) >= {"val_pearson", "val_spearman", "val_rmse", "val_mae", "val_mse", "val_loss"}
        assert trial.value == rec.metrics["val_spearman"]
        assert len(rec.scatter) == len(val_rows(pair_study)) and rec.per_class == {}
        assert all("scatter" not in h for h in rec.history)  # bulky: kept for the best evaluation only
        assert "label_smoothing" not in rec.hyperparameters and "learning_rate" in rec.hyperparameters
    assert max(t.value for t in trials) > 0.5  # the tiny model learned which pairs are alike
    from rich.console import Console

    from sweep.summary import best_summary

    console = Console(width=200, record=True)
    console.print(best_summary(study))
    shown = console.export_text()
    assert "metrics: spearman=" in shown and "pearson=" in shown and "rmse=" in shown
    assert "label_smoothing" not in shown


def test_the_export_reproduces_the_stored_metrics_through_pipeline(pair_study: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    from models.regression_metrics import regression_metrics
    from record import read_trial
    from sweep.export import export_trial

    study = load(pair_study, "reg-pairs")
    out, trial = export_trial(study, tmp_path / "model")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    rows = val_rows(pair_study)
    score = pipeline("text-classification", model=str(out), device=-1)  # problem_type regression: raw scores
    inputs = [{"text": r["sentence1"], "text_pair": r["sentence2"]} for r in rows]
    predicted = [p["score"] for p in score(inputs, truncation=True, max_length=64)]
    got = regression_metrics(predicted, [float(r["score"]) for r in rows])
    stored = read_trial(trial).metrics
    for name in ("spearman", "pearson", "rmse"):
        assert got[name] == pytest.approx(stored[f"val_{name}"], abs=1e-4), name
    assert got["spearman"] == pytest.approx(trial.value, abs=1e-4)
    meta = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert meta["task"] == "regression" and "scatter" not in meta
    assert not {"per_class", "confusion_matrix", "class_weights"} & set(meta)  # no classes to speak of
    assert meta["label_names"] == ["score"] and meta["max_length"] == 64
    card = (out / "README.md").read_text(encoding="utf-8")
    assert 'pipeline("text-classification", model="path/to/this/folder", function_to_apply="none")' in card
    assert "| class |" not in card and "spearman: **" in card
    assert "tags: [sweep, text-classification, regression]" in card  # it said text-classification only
    from sweep.export import model_card

    scaled = model_card({**meta, "spec": {**meta["spec"], "data": {**meta["spec"]["data"], "label_range": [0, 5]}}})
    assert "The training scores lie on the scale [0, 5] (the spec's data.label_range)." in scaled


def test_an_rmse_study_minimises_everywhere(rmse_study: Path, tmp_path: Path) -> None:
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from record import best_trial, read_trial
    from reports.trials import top_trials
    from sweep.export import export_trial

    study = load(rmse_study, "reg-rmse")
    assert study.direction == StudyDirection.MINIMIZE
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    values = {t.number: t.value for t in trials}
    assert len(set(values.values())) == 3  # three different configurations, three different errors
    lowest = min(values, key=values.__getitem__)
    assert best_trial(study).number == lowest
    assert [t.number for t in top_trials(study, 3)] == sorted(values, key=values.__getitem__)
    for trial in trials:  # each trial's value is its lowest RMSE over its epochs
        rec = read_trial(trial)
        assert trial.value == min(h["val_rmse"] for h in rec.history) == rec.metrics["val_rmse"]
    _, exported = export_trial(study, tmp_path / "model")
    assert exported.number == lowest


def test_the_report_shows_a_scatter_and_the_label_distribution(pair_study: Path, rmse_study: Path) -> None:
    from reports.blocks import FigureBlock, TableBlock
    from reports.sections import study_sections

    for root, name in ((pair_study, "reg-pairs"), (rmse_study, "reg-rmse")):
        sections = {s.title: s for s in study_sections(load(root, name), seed=0, group=None, prefix="")}
        assert "Best trial: per class" not in sections
        best = sections["Best trial: predicted vs true"]
        figures = [b for b in best.blocks if isinstance(b, FigureBlock)]
        assert [f.name for f in figures] == ["predicted-vs-true"]
        assert len(figures[0].figure.data[0].x) == len(val_rows(root))
        data = {b.name: b for b in sections["Data"].blocks if isinstance(b, FigureBlock)}
        assert "label-distribution" in data and "class-distribution" not in data
        summary = sections["Summary"].blocks[0]
        assert isinstance(summary, TableBlock)
        direction = "minimised" if name == "reg-rmse" else "maximised"
        assert summary.rows[0] == ["metric", f"validation {name.removeprefix('reg-').replace('pairs', 'spearman')} "
                                             f"({direction})"]


# -- bad input: one line, exit 2, nothing written -------------------------------------------------------------


def _bad_label(env: Any) -> list[str]:
    rows = [(t, s) for t, s in scored_rows(seed=0)]
    rows[6] = (rows[6][0], "high")
    return ["run", env.spec(task="regression", **{"data.train": str(write_rows(env.tmp / "scores.csv",
                                                                                ["text", "label"], rows)),
                                                  "data.validation": None})]  # fmt: skip


def _missing_pair_column(env: Any) -> list[str]:
    train = write_rows(env.tmp / "scores.csv", ["text", "label"], scored_rows(seed=0))
    return ["run", env.spec(task="regression", **{"data.train": str(train), "data.validation": None,
                                                  "data.text_pair_column": "sentence2"})]  # fmt: skip


def _outside_the_range(env: Any) -> list[str]:
    rows = [(t, s) for t, s in scored_rows(seed=0)]
    rows[3], rows[9] = (rows[3][0], 7.5), (rows[9][0], -1)
    return ["run", env.spec(task="regression", **{"data.train": str(write_rows(env.tmp / "scores.csv",
                                                                                ["text", "label"], rows)),
                                                  "data.validation": None, "data.label_range": [0, 5]})]  # fmt: skip


def _constant_validation(env: Any) -> list[str]:
    rows = scored_rows(seed=0)
    train = write_rows(env.tmp / "scores.csv", ["text", "label"], rows[:80])
    val = write_rows(env.tmp / "flat.csv", ["text", "label"], [(t, 3) for t, _ in rows[80:]])
    return ["run", env.spec(task="regression", **{"data.train": str(train), "data.validation": str(val)})]


BAD_INPUT = [
    ("non-numeric regression label", _bad_label,
     ["data.train: scores.csv row 7: label 'high' is not a number (task: regression needs a numeric label column)"]),
    ("regression pair column missing", _missing_pair_column,
     ["data.text_pair_column: no such column 'sentence2' in scores.csv (columns: text, label)"]),
    ("scores outside data.label_range", _outside_the_range,
     ["data.train: scores.csv: 2 scores outside data.label_range [0, 5] (row 4: 7.5, row 10: -1): fix the rows, or "
      "widen the range"]),
    ("data.label_range for classification", lambda e: ["run", e.spec(**{"data.label_range": [0, 5]})],
     ["data.label_range: applies only to task: regression (this spec's task is text-classification)"]),
    ("data.label_range upside down", lambda e: ["run", e.spec(task="regression", **{"data.label_range": [5, 0]})],
     ["data.label_range: must be [low, high] with low < high, got [5, 0]"]),
    ("data.label_range without an upper bound", lambda e: ["run", e.spec(
        task="regression", **{"data.label_range": [0, float("inf")]})],
     ["data.label_range: must be two finite numbers [low, high], got [0, inf]"]),
    ("regression scores that do not vary", _constant_validation,
     ["data.validation: every label in flat.csv is 3 after cleaning: a regression needs scores that vary"]),
    ("class weights for a regression", lambda e: ["run", e.spec(
        task="regression", **{"model.class_weights": "balanced"})],
     ["model.class_weights: 'balanced' weights classes, and task: regression has none"]),
    ("label smoothing for a regression", lambda e: ["run", e.spec(
        task="regression", **{"search.space.label_smoothing": [0.0, 0.1]})],
     ["search.space.label_smoothing: smooths class labels, and task: regression has none"]),
    ("a classification metric for a regression", lambda e: ["run", e.spec(
        task="regression", **{"objective.metric": "accuracy"})],
     ["objective.metric: 'accuracy' is not a metric of task: regression (choose one of spearman, pearson, rmse)"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "prepare", "fragments"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_regression_input_is_refused_with_one_line_and_nothing_written(
    case: str, prepare: Any, fragments: list[str], tmp_path: Path, tiny_bert: Path,
    labelled_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from test_bad_input import Env, snapshot, study_rows

    from sweep.cli import main

    env = Env(tmp_path, tiny_bert, *labelled_csvs)
    args = prepare(env)
    rows, files = study_rows(env), snapshot(tmp_path)
    capsys.readouterr()
    assert main(args) == 2, case
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"{case}: {lines}"
    for fragment in fragments:
        assert fragment in lines[0], f"{case}: {fragment!r} not in {lines[0]!r}"
    assert snapshot(tmp_path) == files and study_rows(env) == rows, f"{case}: something was written"


def test_the_regression_head_starts_at_the_training_mean_and_saves_as_a_regression(tiny_bert: Path) -> None:
    import torch

    from models.regressor import SequenceRegressor, output_layer

    module = SequenceRegressor(encoder_name_or_path=str(tiny_bert), label_names=["score"], learning_rate=1e-3,
                               score_mean=2.7)  # fmt: skip
    assert float(output_layer(module.model).bias.detach()) == pytest.approx(2.7)
    assert module.model.config.problem_type == "regression" and module.model.config.num_labels == 1
    module.eval()
    with torch.no_grad():
        preds = module({"input_ids": torch.tensor([[2, 30, 31, 3], [2, 40, 3, 0]]),
                        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])})  # fmt: skip
    assert preds.shape == (2,) and preds.dtype == torch.float32
    assert preds.tolist() == pytest.approx([2.7, 2.7], abs=0.2)  # a fresh head: near the mean, not near 0
    with pytest.raises(ValueError, match="one score name is needed"):
        SequenceRegressor(encoder_name_or_path=str(tiny_bert), label_names=["a", "b"], learning_rate=1e-3)
