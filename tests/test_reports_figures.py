"""reports: the data behind each figure and table, built from in-memory studies (no training)."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from record import StudyRecord, Timings, best_trial, read_trial, write_study
from record import trial_attrs as record_attrs
from reports import Section, build_report, expected_max_performance
from reports.blocks import FigureBlock, ListBlock, NoteBlock, TableBlock
from reports.classes import classes_by_f1, per_class_table
from reports.data import MAX_CONFLICTS, data_blocks
from reports.figures import (
    BEST_COLOUR,
    collect_confusion,
    collect_expected_performance,
    collect_history,
    collect_learning_curves,
    plot_confusion,
    plot_history,
    plot_learning_curves,
)
from reports.importance import EVALUATORS, collect_importances, importance_problem, plot_importances
from reports.sections import summary_blocks
from reports.trials import compute_time, pruning_savings, state_counts

optuna.logging.set_verbosity(optuna.logging.WARNING)

T0 = datetime(2025, 3, 1, 9, 0, 0)
LABELS = ["billing", "returns", "shipping"]
FIXED = {"weight_decay": 0.01, "warmup_ratio": 0.1, "dropout": 0.1}
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
    "batch_size": CategoricalDistribution([16, 32]),
    "epochs": IntDistribution(2, 4),
}
BEST_MATRIX = [[5, 1, 0], [0, 6, 1], [2, 0, 7]]
# (state, learning_rate, batch_size, planned epochs, per-epoch values, seconds)
RICH_TRIALS: list[tuple[TrialState, float, int, int, list[float], float]] = [
    (TrialState.COMPLETE, 1e-4, 16, 3, [0.6, 0.7, 0.75], 30.0),
    (TrialState.COMPLETE, 3e-5, 32, 3, [0.5, 0.6, 0.65], 30.0),
    (TrialState.PRUNED, 1e-5, 16, 4, [0.3], 10.0),
    (TrialState.COMPLETE, 2e-4, 32, 2, [0.8, 0.85], 20.0),
    (TrialState.PRUNED, 5e-5, 32, 4, [0.4, 0.45], 16.0),
    (TrialState.FAIL, 4e-4, 16, 3, [], 5.0),
    (TrialState.COMPLETE, 7e-5, 16, 3, [0.55, 0.7, 0.72], 24.0),
]


def data_report(conflicts: int = 1) -> dict[str, Any]:
    """A data report shaped like datamodules' (see DESIGN.md / create_or_resume)."""
    cleaning = {
        "rows_in": 120,
        "normalized": 2,
        "missing_text": 1,
        "empty_text": 0,
        "missing_label": 2,
        "duplicates": 4,
        "conflicting_rows": 2 * conflicts,
        "conflicting_texts": [
            {"text": f"refund for order {i}", "labels": {"billing": 1, "returns": 1}} for i in range(conflicts)
        ],
        "conflicting_texts_total": conflicts,
        "rows_out": 113 - 2 * conflicts,
    }
    return {
        "train": "data/train.csv",
        "validation": None,
        "split": "stratified from train, val_fraction=0.2, seed=0",
        "cleaning": {"train": cleaning, "validation": None},
        "overlap": {"train_val_overlap": 2, "overlap_examples": ["where is my parcel", "cancel my order"]},
        "class_distribution": {
            "train": {"billing": 30, "returns": 31, "shipping": 29},
            "validation": {"billing": 8, "returns": 7, "shipping": 8},
        },
        "truncated": {"train": 3, "validation": 1},
        "max_length": 64,
        "num_train": 90,
        "num_validation": 23,
        "warnings": ["train: dropped 4 exact duplicate rows", "3 training texts were truncated to 64 tokens"],
    }


def trial_attrs(
    state: TrialState, lr: float, bs: int, epochs: int, curve: list[float], seconds: float, matrix: list[list[int]]
) -> dict[str, Any]:
    """A trial's record as sweep.objective writes it."""
    hyperparameters = {"learning_rate": lr, "batch_size": bs, "epochs": epochs, **FIXED}
    if state == TrialState.FAIL:
        return record_attrs(hyperparameters=hyperparameters, error="RuntimeError: CUDA out of memory")
    best = max(range(len(curve)), key=lambda i: (curve[i], -i))
    history = [{"epoch": i, "val_f1_macro": v, "val_loss": 1 - v, "train_loss": 1.2 - v} for i, v in enumerate(curve)]
    per_class = {
        name: {"precision": 0.7 + 0.05 * i, "recall": 0.6 + 0.1 * i, "f1": 0.65 + 0.07 * i, "support": sum(matrix[i])}
        for i, name in enumerate(LABELS)
    }
    timings = Timings(data=0.1, model_load=0.5, train=seconds * 0.8, validation=seconds * 0.1, total=seconds)
    return record_attrs(
        hyperparameters=hyperparameters, best_epoch=best + 1, epochs_run=len(curve), history=history,
        metrics={"val_f1_macro": curve[best], "val_accuracy": curve[best] + 0.01, "val_loss": 1 - curve[best]},
        per_class=per_class, confusion_matrix=matrix, timings=timings,
        **({"pruned_at_epoch": len(curve)} if state == TrialState.PRUNED else {}),
    )  # fmt: skip


def add_trial(
    study: optuna.Study,
    state: TrialState,
    lr: float,
    bs: int,
    epochs: int,
    curve: list[float],
    seconds: float,
    *,
    start: datetime,
    matrix: list[list[int]] | None = None,
    with_attrs: bool = True,
) -> None:
    """One finished trial with controlled times."""
    trial = create_trial(
        state=state,
        value=max(curve) if state == TrialState.COMPLETE else None,
        params={"learning_rate": lr, "batch_size": bs, "epochs": epochs},
        distributions=DISTRIBUTIONS,
        user_attrs=trial_attrs(state, lr, bs, epochs, curve, seconds, matrix or BEST_MATRIX) if with_attrs else {},
        intermediate_values={i + 1: v for i, v in enumerate(curve)},
    )
    trial.datetime_start = start
    trial.datetime_complete = start + timedelta(seconds=seconds)
    study.add_trial(trial)


def study_attrs(study: optuna.Study, metric: str = "f1_macro", encoder: str = "minilm") -> None:
    write_study(study.set_user_attr, StudyRecord(
        metric=metric, label_names=LABELS, data_report=data_report(),
        spec={"model": {"encoder": encoder}, "search": {"sampler": "tpe", "pruner": "median"}},
    ))  # fmt: skip


def rich_study(
    name: str = "rich",
    metric: str = "f1_macro",
    encoder: str = "minilm",
    trials: list[tuple[TrialState, float, int, int, list[float], float]] | None = None,
) -> optuna.Study:
    """Complete, pruned and failed trials with every user attr; trial 3 is the best (0.85)."""
    study = optuna.create_study(study_name=name, direction="maximize")
    study_attrs(study, metric, encoder)
    start = T0
    for state, lr, bs, epochs, curve, seconds in trials or RICH_TRIALS:
        add_trial(study, state, lr, bs, epochs, curve, seconds, start=start)
        start += timedelta(seconds=seconds + 1)
    return study


@pytest.fixture(scope="module")
def rich() -> optuna.Study:
    return rich_study()


@pytest.fixture(scope="module")
def rich_sections(rich: optuna.Study) -> list[Section]:
    return build_report([rich], seed=0)


def section(sections: list[Section], title: str) -> Section:
    found = [s for s in sections if s.title == title]
    assert len(found) == 1, f"no single section titled {title!r} in {[s.title for s in sections]}"
    return found[0]


def figure(sections: list[Section], name: str) -> FigureBlock:
    found = [b for s in sections for b in s.figures if b.name == name]
    assert len(found) == 1, f"no single figure {name!r}"
    return found[0]


def table_rows(block: TableBlock) -> dict[str, Any]:
    return {str(row[0]): row[1] for row in block.rows}


# --- expected validation performance --------------------------------------------------------------------------


def test_expected_max_performance_matches_the_hand_computed_case() -> None:
    curve = expected_max_performance([0.9, 0.1, 0.5])  # order must not matter
    assert [n for n, _, _ in curve] == [1, 2, 3]
    (_, m1, s1), (_, m2, s2), (_, m3, _) = curve
    assert m1 == pytest.approx(0.5)
    assert s1 == pytest.approx(math.sqrt((0.01 + 0.25 + 0.81) / 3 - 0.25))
    assert m2 == pytest.approx(0.1 * 1 / 9 + 0.5 * 3 / 9 + 0.9 * 5 / 9)
    second_moment = 0.01 * 1 / 9 + 0.25 * 3 / 9 + 0.81 * 5 / 9
    assert s2 == pytest.approx(math.sqrt(second_moment - m2**2))
    assert m3 == pytest.approx(0.1 * 1 / 27 + 0.5 * 7 / 27 + 0.9 * 19 / 27)


@pytest.mark.parametrize("values", [[0.2, 0.2, 0.7, 0.4], [0.3, 0.9], [0.61, 0.55, 0.58, 0.7, 0.42]])
def test_expected_max_performance_equals_brute_force_enumeration(values: list[float]) -> None:
    curve = expected_max_performance(values, max_trials=3)
    for n, mean, std in curve:
        maxima = [max(draw) for draw in itertools.product(values, repeat=n)]
        exact_mean = sum(maxima) / len(maxima)
        exact_std = math.sqrt(sum((m - exact_mean) ** 2 for m in maxima) / len(maxima))
        assert mean == pytest.approx(exact_mean)
        assert std == pytest.approx(exact_std, abs=1e-9)


def test_expected_max_performance_rises_to_the_maximum() -> None:
    values = [0.42, 0.61, 0.55, 0.7, 0.58, 0.66]
    curve = expected_max_performance(values, max_trials=60)
    means = [m for _, m, _ in curve]
    assert len(curve) == 60
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(means))
    assert means[0] == pytest.approx(sum(values) / len(values))
    assert means[-1] == pytest.approx(0.7, abs=1e-3)
    assert means[-1] <= 0.7
    assert curve[-1][2] < curve[0][2]


def test_expected_max_performance_edge_cases() -> None:
    assert expected_max_performance([]) == []
    assert expected_max_performance([0.3, 0.3, 0.3]) == [
        (n, pytest.approx(0.3), pytest.approx(0.0, abs=1e-6)) for n in (1, 2, 3)
    ]
    with pytest.raises(ValueError, match="max_trials >= 1 must hold, got max_trials=0"):
        expected_max_performance([0.1], max_trials=0)
    with pytest.raises(ValueError, match="finite"):
        expected_max_performance([0.1, float("nan")])


def test_expected_curve_for_a_minimised_objective_is_the_expected_minimum() -> None:
    curve = collect_expected_performance([0.1, 0.5, 0.9], maximize=False)
    assert curve.mean[1] == pytest.approx(0.9 * 1 / 9 + 0.5 * 3 / 9 + 0.1 * 5 / 9)


def test_expected_performance_figure_has_a_band_around_the_mean(rich_sections: list[Section]) -> None:
    fig = figure(rich_sections, "expected-performance").figure
    upper, lower, mean = fig.data
    expected = expected_max_performance([0.75, 0.65, 0.85, 0.72])
    assert list(mean.x) == [1, 2, 3, 4]
    assert list(mean.y) == pytest.approx([m for _, m, _ in expected])
    assert list(upper.y) == pytest.approx([min(m + s, 0.85) for _, m, s in expected])  # never above the best seen
    assert list(lower.y) == pytest.approx([max(m - s, 0.65) for _, m, s in expected])
    assert lower.fill == "tonexty"


def test_the_expected_performance_band_stays_within_the_values_observed() -> None:
    """A user's 3 trials {0.9852, 0.9537, 0.9852}: the +1 std curve reached 0.9916, above any result."""
    from reports.figures import plot_expected_performance

    fig = plot_expected_performance({"s": collect_expected_performance([0.9852, 0.9537, 0.9852])}, "f1_macro")
    upper, lower, _ = fig.data
    assert max(upper.y) <= 0.9852 and min(lower.y) >= 0.9537


# --- summary --------------------------------------------------------------------------------------------------


def test_counts_compute_time_and_pruning_savings(rich: optuna.Study) -> None:
    assert state_counts(rich) == {"complete": 4, "pruned": 2, "failed": 1, "running": 0, "waiting": 0}
    spent = compute_time(rich)
    assert spent.seconds == pytest.approx(30 + 30 + 10 + 20 + 16 + 5 + 24)
    assert spent.trials == 7
    saved = pruning_savings(rich)
    # trial 2: (4 - 1) x 10 s / 1; trial 4: (4 - 2) x 16 s / 2
    assert saved.seconds == pytest.approx(30 + 16)
    assert saved.epochs == 5
    assert saved.estimated == [2, 4]
    assert saved.unknown == []


def test_summary_names_the_best_trial_its_hyperparameters_and_the_estimate(rich: optuna.Study) -> None:
    blocks = summary_blocks(rich)
    study_table, best_table = (b for b in blocks if isinstance(b, TableBlock) and b.caption != "Failed trials")
    facts = table_rows(study_table)
    assert facts["trials"] == "4 complete, 2 pruned, 1 failed"
    assert facts["total compute time"] == "2 min 15 s over 7 trials that ended (complete, pruned or failed)"
    assert facts["time saved by pruning (estimate)"] == "46.0 s (5 epochs not run)"
    assert facts["encoder"] == "minilm"
    best = table_rows(best_table)
    assert best["trial"] == 3
    assert best["validation f1_macro"] == pytest.approx(0.85)
    assert best["best epoch"] == "2 of 2 run"
    assert best["hyperparameter: learning_rate"] == pytest.approx(2e-4)
    assert best["hyperparameter: batch_size"] == 32
    assert best["hyperparameter: weight_decay"] == 0.01  # not searched, still listed
    notes = " ".join(b.text for b in blocks if isinstance(b, NoteBlock))
    assert "planned epochs − epochs run" in notes
    failed = next(b for b in blocks if isinstance(b, TableBlock) and b.caption == "Failed trials")
    assert failed.rows == [[5, "RuntimeError: CUDA out of memory"]]


# --- history and learning curves ------------------------------------------------------------------------------


def test_history_data_and_figure(rich: optuna.Study) -> None:
    data = collect_history(rich)
    assert data.numbers == [0, 1, 3, 6]
    assert data.values == pytest.approx([0.75, 0.65, 0.85, 0.72])
    assert data.best_so_far == pytest.approx([0.75, 0.75, 0.85, 0.85])
    assert data.pruned_numbers == [2, 4]
    assert data.pruned_values == pytest.approx([0.3, 0.45])
    fig = plot_history(data, "f1_macro")
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["best so far"].y) == pytest.approx([0.75, 0.75, 0.85, 0.85])
    pruned = next(t for n, t in by_name.items() if n.startswith("pruned"))
    assert list(pruned.x) == [2, 4]
    assert pruned.marker.symbol == "x"
    assert fig.layout.yaxis.title.text == "validation f1_macro"


def test_learning_curves_mark_pruned_trials(rich: optuna.Study) -> None:
    curves = collect_learning_curves(rich, best_trial(rich))
    assert [c.number for c in curves] == [0, 1, 2, 3, 4, 6]  # the failed trial reported nothing
    fig = plot_learning_curves(curves, "f1_macro")
    traces = {t.meta["trial"]: t for t in fig.data}
    assert list(traces[4].x) == [1, 2]
    assert list(traces[4].y) == pytest.approx([0.4, 0.45])
    for number in (2, 4):
        assert traces[number].line.dash == "dash"
        assert traces[number].name == "pruned"
        assert traces[number].marker.symbol[-1] == "x"
    for number in (0, 1, 6):
        assert traces[number].line.dash == "solid"
        assert traces[number].name == "complete"
        assert "x" not in traces[number].marker.symbol
    assert traces[3].line.color == BEST_COLOUR
    assert traces[3].name == "best trial (trial 3)"
    legend = sorted(t.name for t in fig.data if t.showlegend)
    assert legend == ["best trial (trial 3)", "complete", "pruned"]


def test_learning_curves_place_first_epoch_evaluations_at_fractions_of_an_epoch() -> None:
    study = optuna.create_study(direction="maximize")
    write_study(study.set_user_attr, StudyRecord(steps_per_epoch=3))  # evaluations at 1/3 and 2/3 of epoch 1
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.8, params={}, distributions={},
                                 intermediate_values={1: 0.3, 2: 0.5, 3: 0.6, 6: 0.8}))  # fmt: skip
    study.add_trial(create_trial(state=TrialState.PRUNED, value=None, params={}, distributions={},
                                 user_attrs=record_attrs(pruned_at_epoch=0.33, hyperparameters={"epochs": 3}),
                                 intermediate_values={1: 0.1}))  # fmt: skip
    curves = collect_learning_curves(study, best_trial(study))
    assert curves[0].epochs == pytest.approx([1 / 3, 2 / 3, 1.0, 2.0])
    assert curves[1].epochs == pytest.approx([1 / 3])
    saved = pruning_savings(study)  # 3 - 0.33 epochs were not run
    assert saved.epochs == pytest.approx(2.67) and saved.estimated == [1]
    # Where the evaluations really ran (the stored epochs trained: 14 batches split 5 / 9 / 14) is what is drawn,
    # as status and the card say it ("0.64/2"), not the nominal third
    history = [{"epochs_trained": e, "val_f1_macro": v} for e, v in ((0.3571, 0.3), (0.6429, 0.5), (1.0, 0.6))]
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.6, params={}, distributions={},
                                 user_attrs=record_attrs(history=history),
                                 intermediate_values={1: 0.3, 2: 0.5, 3: 0.6}))  # fmt: skip
    assert collect_learning_curves(study)[2].epochs == pytest.approx([0.3571, 0.6429, 1.0])
    # a trial without a history yet (running, stopped, failed) is drawn where its loop evaluated, not at the
    # nominal thirds, so its points do not move when it completes: 250 rows at batch 16 are 16 batches, 5 / 11 / 16
    placed = optuna.create_study(direction="maximize")
    write_study(placed.set_user_attr, StudyRecord(steps_per_epoch=3, data_report={"num_train": 250}))
    placed.add_trial(create_trial(state=TrialState.FAIL, value=None, params={"batch_size": 16},
                                  distributions={"batch_size": optuna.distributions.CategoricalDistribution([16, 32])},
                                  intermediate_values={1: 0.2, 2: 0.4, 3: 0.5, 6: 0.6}))  # fmt: skip
    assert collect_learning_curves(placed)[0].epochs == pytest.approx([5 / 16, 11 / 16, 1.0, 2.0])


# --- importance -----------------------------------------------------------------------------------------------


def test_importances_are_deterministic_for_a_seed(rich: optuna.Study) -> None:
    first = collect_importances(rich, seed=3)
    again = collect_importances(rich_study(), seed=3)  # a separately built, identical study
    assert first.errors == {}
    assert set(first.importances) == set(EVALUATORS)
    assert first == again
    for values in first.importances.values():
        assert set(values) == {"learning_rate", "batch_size", "epochs"}
        assert sum(values.values()) == pytest.approx(1.0)


def test_importance_figure_shows_both_evaluators_in_the_same_order(rich: optuna.Study) -> None:
    data = collect_importances(rich, seed=0)
    fig = plot_importances(data)
    assert [t.name for t in fig.data] == list(EVALUATORS)
    for trace in fig.data:
        assert list(trace.y) == list(reversed(data.params))
        assert list(trace.x) == pytest.approx([data.importances[trace.name][p] for p in trace.y])
    assert fig.data[0].xaxis != fig.data[1].xaxis  # two subplots side by side


def test_importance_explains_what_is_missing() -> None:
    study = optuna.create_study()
    assert importance_problem(study) == "importance needs at least 2 completed trials; this study has 0"
    add_trial(study, TrialState.COMPLETE, 1e-4, 16, 3, [0.5, 0.6, 0.7], 10, start=T0)
    assert importance_problem(study) == "importance needs at least 2 completed trials; this study has 1"
    add_trial(study, TrialState.COMPLETE, 1e-4, 16, 3, [0.5, 0.6, 0.8], 10, start=T0)
    assert "searched hyperparameter that varies" in (importance_problem(study) or "")
    add_trial(study, TrialState.COMPLETE, 2e-4, 16, 3, [0.5, 0.6, 0.9], 10, start=T0)
    assert importance_problem(study) is None


# --- parameter plots ------------------------------------------------------------------------------------------


def test_parameter_figures_and_contour(rich: optuna.Study, rich_sections: list[Section]) -> None:
    params = section(rich_sections, "Hyperparameters and values")
    assert [f.name for f in params.figures] == ["parallel-coordinate", "slice", "contour"]
    contour = params.figures[2].figure
    titles = {contour.layout.xaxis.title.text, contour.layout.yaxis.title.text}
    assert titles == {"learning_rate", "batch_size"}
    # batch_size's choices are the ticks, said to be interpolated between; the log axis reads 4.5e-5, not "45μ"
    axes = {axis.title.text: axis for axis in (contour.layout.xaxis, contour.layout.yaxis)}
    drawn = sorted({t.params["batch_size"] for t in rich.trials if t.state == TrialState.COMPLETE})
    assert axes["batch_size"].tickmode == "array" and list(axes["batch_size"].tickvals) == drawn
    assert axes["learning_rate"].type == "log" and axes["learning_rate"].exponentformat == "e"
    assert any(n.text.startswith("batch_size is a choice: the completed trials trained ") and "interpolated" in n.text
               for n in params.notes)
    slice_axes = [a for a in (params.figures[1].figure.layout[k] for k in params.figures[1].figure.layout
                                                               if k.startswith("xaxis")) if a.type == "log"]
    assert slice_axes and all(a.exponentformat == "e" for a in slice_axes)
    # the worst trial's line is not white on the white page (Optuna's "Blues" ends at rgb(247, 251, 255))
    colours = {float(t.customdata[0][1]): t.line.color for t in params.figures[0].figure.data
               if t.customdata is not None}  # fmt: skip
    assert colours[0.65] == "rgb(158, 202, 225)" and colours[0.85] == "rgb(8, 48, 107)", colours
    lines = [t for t in params.figures[0].figure.data if t.customdata is not None]  # one polyline per trial
    assert len(lines) == 4
    axes = [row[0] for row in lines[0].customdata]
    assert axes[0] == "validation f1_macro"
    assert set(axes[1:]) == {"learning_rate", "batch_size", "epochs"}
    assert sorted(float(line.customdata[0][1]) for line in lines) == pytest.approx([0.65, 0.72, 0.75, 0.85])
    assert {"edf", "timeline"} <= {f.name for s in rich_sections for f in s.figures}


def test_contour_needs_both_parameters_searched() -> None:
    study = optuna.create_study()
    for i, lr in enumerate((1e-4, 2e-4, 3e-4)):
        trial = create_trial(
            value=0.5 + i / 10,
            params={"learning_rate": lr},
            distributions={"learning_rate": DISTRIBUTIONS["learning_rate"]},
        )
        study.add_trial(trial)
    params = section(build_report([study]), "Hyperparameters and values")
    assert "contour" not in [f.name for f in params.figures]
    assert any("did not search batch_size" in reason for reason in params.missing)


# --- best trial -----------------------------------------------------------------------------------------------


def test_confusion_matrix_heatmap_uses_label_names(rich: optuna.Study, rich_sections: list[Section]) -> None:
    best = best_trial(rich)
    assert best is not None and best.number == 3
    data = collect_confusion(best, LABELS)
    assert data is not None
    heatmap = plot_confusion(data).data[0]
    assert [list(row) for row in heatmap.customdata] == BEST_MATRIX  # counts: printed in cells and on hover
    shares = [[5 / 6, 1 / 6, 0], [0, 6 / 7, 1 / 7], [2 / 9, 0, 7 / 9]]  # colour: the share of each true label's rows
    assert [list(row) == pytest.approx(share) for row, share in zip(heatmap.z, shares, strict=True)] == [True] * 3
    # the cells print the counts through `text`: plotly's heatmap texttemplate has no customdata (it drew "-")
    assert heatmap.texttemplate == "%{text}" and [list(row) for row in heatmap.text] == [
        [str(c) for c in row] for row in BEST_MATRIX]
    assert list(heatmap.x) == LABELS
    assert list(heatmap.y) == LABELS
    shown = figure(rich_sections, "confusion-matrix").figure
    assert [list(row) for row in shown.data[0].customdata] == BEST_MATRIX
    assert shown.layout.yaxis.autorange == "reversed"  # first true label on top
    assert shown.layout.xaxis.title.text == "predicted label"


def test_confusion_labels_fall_back_when_the_study_has_none(rich: optuna.Study) -> None:
    best = best_trial(rich)
    assert best is not None
    data = collect_confusion(best, [])
    assert data is not None and data.labels == LABELS  # from per_class keys
    trial = create_trial(value=0.5, user_attrs=record_attrs(confusion_matrix=[[1, 0], [0, 1]]))
    assert collect_confusion(trial, []) == collect_confusion(trial, ["0", "1"])
    assert collect_confusion(create_trial(value=0.5, user_attrs=record_attrs(confusion_matrix=[[1, 0]])), []) is None


def test_per_class_table(rich: optuna.Study) -> None:
    best = best_trial(rich)
    assert best is not None
    table = per_class_table(best.number, classes_by_f1(read_trial(best).per_class, LABELS))
    assert table.columns == ["label", "precision", "recall", "F1", "support"]
    assert [row[0] for row in table.rows] == LABELS
    assert table.rows[2] == ["shipping", pytest.approx(0.8), pytest.approx(0.8), pytest.approx(0.79), 9]


# --- data report ----------------------------------------------------------------------------------------------


def test_data_section_content() -> None:
    blocks = data_blocks(data_report(conflicts=MAX_CONFLICTS + 5))
    bars = next(b for b in blocks if isinstance(b, FigureBlock)).figure
    assert [t.name for t in bars.data] == ["train", "validation"]
    assert list(bars.data[0].x) == LABELS
    assert list(bars.data[0].y) == [30, 31, 29]
    assert list(bars.data[1].y) == [8, 7, 8]
    assert bars.layout.barmode == "group"
    tables = {b.caption: b for b in blocks if isinstance(b, TableBlock)}
    dropped = tables["Rows dropped while cleaning, by reason"]
    assert dropped.columns == ["", "train"]
    assert table_rows(dropped)["dropped: missing label"] == 2
    assert table_rows(dropped)["dropped: text with conflicting labels"] == 2 * (MAX_CONFLICTS + 5)
    conflicts = tables["Texts with conflicting labels (every such row was dropped)"]
    assert len(conflicts.rows) == MAX_CONFLICTS
    assert conflicts.rows[0] == ["train", "refund for order 0", "billing ×1, returns ×1"]
    truncated = tables["Rows truncated to 64 tokens"]
    assert truncated.rows == [["train", 3, 90], ["validation", 1, 23]]
    notes = [b.text for b in blocks if isinstance(b, NoteBlock)]
    assert f"train: showing {MAX_CONFLICTS} of {MAX_CONFLICTS + 5} texts with conflicting labels" in notes
    assert any("2 training rows had a text that is also in validation" in n for n in notes)
    assert any(n.startswith("Duplicate rows dropped (the same text after") and "train: 4" in n for n in notes)
    lists = {b.caption: b.items for b in blocks if isinstance(b, ListBlock)}
    assert lists["Overlapping texts (first 2)"] == ["where is my parcel", "cancel my order"]
    assert lists["Warnings"] == data_report()["warnings"]


def test_data_section_without_a_data_report() -> None:
    blocks = data_blocks({})
    assert len(blocks) == 1
    assert isinstance(blocks[0], NoteBlock) and blocks[0].missing


# --- degenerate studies ---------------------------------------------------------------------------------------


def all_missing(sections: list[Section]) -> str:
    return " | ".join(reason for s in sections for reason in s.missing)


def test_report_of_a_study_without_trials() -> None:
    sections = build_report([optuna.create_study(study_name="empty")])
    assert not [f for s in sections for f in s.figures]
    missing = all_missing(sections)
    assert "This study has no trials yet." in missing
    assert "importance needs at least 2 completed trials; this study has 0" in missing
    assert "no data report" in missing


def test_report_of_a_study_with_one_completed_trial() -> None:
    study = optuna.create_study()
    study_attrs(study)
    add_trial(study, TrialState.COMPLETE, 1e-4, 16, 3, [0.5, 0.6, 0.7], 10, start=T0)
    sections = build_report([study])
    assert "importance needs at least 2 completed trials; this study has 1" in all_missing(sections)
    assert section(sections, "Expected validation performance").figures
    assert figure(sections, "confusion-matrix").figure.data[0].z is not None


def test_report_of_a_study_with_only_failed_and_pruned_trials() -> None:
    trials = [(TrialState.PRUNED, 1e-4, 16, 3, [0.4], 8.0), (TrialState.FAIL, 2e-4, 32, 3, [], 2.0)]
    study = rich_study(trials=trials)
    sections = build_report([study])
    missing = all_missing(sections)
    assert "No completed trial yet, so there is no best trial (1 pruned, 1 failed, 0 running)." in missing
    assert "Per-class scores and the confusion matrix need a completed trial" in missing
    curves = figure(sections, "learning-curves").figure
    assert [t.line.dash for t in curves.data] == ["dash"]
    assert list(figure(sections, "optimization-history").figure.data[1].x) == [0]


def test_report_of_a_study_without_user_attrs() -> None:
    study = optuna.create_study(study_name="bare")  # optuna's default direction: minimise
    for i, (lr, bs) in enumerate(((1e-4, 16), (2e-4, 32), (5e-5, 16))):
        add_trial(study, TrialState.COMPLETE, lr, bs, 3, [0.5, 0.6 + i / 20], 10, start=T0, with_attrs=False)
    add_trial(study, TrialState.PRUNED, 1e-5, 32, 3, [0.2], 10, start=T0, with_attrs=False)
    sections = build_report([study])
    missing = all_missing(sections)
    assert "Trial 0 recorded no per-class scores." in missing  # the lowest value is best here
    assert "Trial 0 recorded no confusion matrix." in missing
    assert section(sections, "Hyperparameter importance").figures
    facts = table_rows(section(sections, "Summary").tables[0])
    assert facts["metric"] == "validation value (minimised)"
    assert pruning_savings(study).seconds == pytest.approx(20.0)  # epochs from params, run from intermediate values


def test_running_trials_are_counted() -> None:
    study = rich_study(trials=RICH_TRIALS[:2])
    study.add_trial(
        create_trial(
            state=TrialState.RUNNING,
            params={"learning_rate": 1e-4},
            distributions={"learning_rate": DISTRIBUTIONS["learning_rate"]},
        )
    )
    facts = table_rows(section(build_report([study]), "Summary").tables[0])
    assert facts["trials"] == "2 complete, 1 running"


# --- several studies ------------------------------------------------------------------------------------------


def test_comparison_of_two_studies() -> None:
    other_trials = [
        (TrialState.COMPLETE, 1e-4, 16, 3, [0.7, 0.9], 10.0),
        (TrialState.COMPLETE, 2e-4, 32, 3, [0.6, 0.7], 10.0),
    ]
    first, second = rich_study("alpha"), rich_study("beta", encoder="bert-base", trials=other_trials)
    sections = build_report([first, second], seed=0)
    comparison = sections[0]
    assert comparison.title == "Comparison"
    assert {s.group for s in sections[1:]} == {"alpha", "beta"}
    assert len({s.anchor for s in sections}) == len(sections)
    history = figure(sections, "compare-best-so-far").figure
    assert [t.name for t in history.data] == ["alpha", "beta"]
    assert list(history.data[1].y) == pytest.approx([0.9, 0.9])
    bars = figure(sections, "compare-best-values").figure.data[0]
    assert list(bars.x) == ["alpha", "beta"]
    assert list(bars.y) == pytest.approx([0.85, 0.9])
    expected = figure(sections, "compare-expected-performance").figure
    means = [t for t in expected.data if t.showlegend is not False]
    assert [t.name for t in means] == ["alpha (±1 std)", "beta (±1 std)"]
    assert list(means[1].y) == pytest.approx([m for _, m, _ in expected_max_performance([0.9, 0.7])])
    table = comparison.tables[0]  # one column per study
    assert table.columns == ["study", "alpha", "beta"]
    rows = {row[0]: row[1:] for row in table.rows}
    assert list(rows)[:6] == ["metric", "best value", "best of these (highest)", "trial", "best epoch", "encoder"]
    assert rows["metric"] == ["f1_macro", "f1_macro"]
    assert rows["best value"] == [pytest.approx(0.85), pytest.approx(0.9)]
    assert rows["best of these (highest)"] == ["", "yes"]
    assert rows["trial"] == [3, 0]
    assert rows["best epoch"] == ["2 of 2 run", "2 of 2 run"]  # as the best trial's own table says it
    assert rows["encoder"] == ["minilm", "bert-base"]
    assert rows["learning_rate"] == [pytest.approx(2e-4), pytest.approx(1e-4)]
    assert rows["weight_decay"] == [0.01, 0.01]
    assert {"batch_size", "epochs", "warmup_ratio", "dropout"} <= set(rows)
    assert not [name for name in rows if name.startswith("trainer.")]  # neither study set one
    assert comparison.missing == []


def test_the_comparison_shows_the_trainer_settings_a_study_set_beside_the_others_defaults() -> None:
    """Two studies run per learning-rate schedule (the schedule is not searched) are told apart in the table."""
    first, second = rich_study("linear"), rich_study("cosine")
    write_study(second.set_user_attr, StudyRecord(
        metric="f1_macro", label_names=LABELS, data_report=data_report(),
        spec={"model": {"encoder": "minilm"}, "trainer": {"lr_schedule": "cosine", "accumulate_grad_batches": 2}},
    ))  # fmt: skip
    rows = {row[0]: row[1:] for row in build_report([first, second], seed=0)[0].tables[0].rows}
    assert rows["trainer.lr_schedule"] == ["linear", "cosine"]
    assert rows["trainer.accumulate_grad_batches"] == [1, 2]
    assert "trainer.gradient_clip_val" not in rows
    facts = table_rows(section(build_report([second], seed=0), "Summary").tables[0])
    assert facts["trainer.lr_schedule"] == "cosine" and facts["trainer.accumulate_grad_batches"] == 2
    assert not [k for k in table_rows(section(build_report([first], seed=0), "Summary").tables[0])
                if k.startswith("trainer.")]  # fmt: skip


def test_comparison_says_when_metrics_differ_or_a_study_has_no_result() -> None:
    sections = build_report([rich_study("a"), rich_study("b", metric="accuracy"), optuna.create_study(study_name="c")])
    missing = sections[0].missing
    assert any("different metrics (f1_macro, accuracy)" in m for m in missing)
    assert any("No completed trial (left out of the figures): c" in m for m in missing)
    assert not [b for b in sections[0].blocks if isinstance(b, FigureBlock)]  # no shared axis for two metrics
    assert [t.name for t in figure(build_report([rich_study("a"), rich_study("b")]), "compare-best-so-far")
            .figure.data] == ["a", "b"]  # fmt: skip
    table = sections[0].tables[0]
    assert not [row for row in table.rows if row[0].startswith("best of these")]  # other metrics: no leader
    assert table.columns == ["study", "a", "b", "c"]
    assert table.rows[0] == ["metric", "f1_macro", "accuracy", "value"]
    assert table.rows[1][3] is None


def test_the_overlap_note_counts_one_row_in_the_singular_and_names_labels_that_differ_across_the_splits() -> None:
    from reports.data import overlap_blocks

    one = overlap_blocks({"overlap": {"train_val_overlap": 1, "overlap_examples": ["a"], "overlap_relabelled": 1}})
    assert isinstance(one[0], NoteBlock) and one[0].text == (
        "Train/validation overlap: 1 training row had a text that is also in validation and was dropped from train. "
        "It had another label in validation (validation's label is the one scored: check which is right).")
    many = overlap_blocks({"overlap": {"train_val_overlap": 3, "overlap_examples": []}})
    assert isinstance(many[0], NoteBlock) and many[0].text.endswith("in validation and were dropped from train.")


def test_an_importance_ranking_from_few_trials_says_it_is_a_hint_and_when_the_methods_disagree() -> None:
    from reports.importance import ImportanceData, importance_caveats

    data = ImportanceData(params=["batch_size", "learning_rate"],
                          importances={"fANOVA": {"batch_size": 0.6, "learning_rate": 0.4},
                                       "PED-ANOVA": {"batch_size": 0.1, "learning_rate": 0.9}})  # fmt: skip
    few, disagree = importance_caveats(3, data)
    assert few.startswith("From 3 completed trials for 2 parameters: a rough hint, not a ranking") and "about 20" in few
    assert disagree == ("The two methods disagree on the most important parameter (fANOVA: batch_size, PED-ANOVA: "
                        "learning_rate): neither ranking is settled.")
    agree = ImportanceData(params=["learning_rate"], importances={"fANOVA": {"learning_rate": 1.0},
                                                                  "PED-ANOVA": {"learning_rate": 1.0}})  # fmt: skip
    assert importance_caveats(40, agree) == []


def test_a_regression_data_section_speaks_of_scores_not_of_conflicting_labels() -> None:
    """A reviewer's STS-B report said 'task: text-pair', a conflicts row and 'No text appeared with conflicting
    labels' for a task that merges a pair's scores into their mean and checks no conflict."""
    from reports.blocks import TableBlock
    from reports.data import data_blocks

    cleaning = {"rows_in": 10, "missing_text": 0, "empty_text": 0, "missing_label": 0, "conflicting_rows": 0,
                "duplicates": 1, "averaged_rows": 2, "rows_out": 7, "normalized": 0}  # fmt: skip
    report = {"task": "regression", "text_pair": True, "cleaning": {"train": cleaning},
              "label_distribution": {"train": {"count": 7, "min": 0.0, "max": 5.0, "mean": 2.5, "std": 1.0}}}
    blocks = data_blocks(report)
    notes = [b.text for b in blocks if isinstance(b, NoteBlock)]
    assert any("(task: regression)" in n and "merged into their mean" in n for n in notes)
    assert not any("conflicting labels" in n for n in notes)
    dropped = next(b for b in blocks if isinstance(b, TableBlock) and b.caption.startswith("Rows dropped"))
    assert not any("conflicting" in str(row[0]) for row in dropped.rows)
    # a score's words, and no 'missing label' row (a missing score is refused, never dropped)
    labels = [str(row[0]) for row in dropped.rows]
    assert "dropped: duplicate (same text after normalising, same score)" in labels
    assert not any("missing label" in label for label in labels)
    assert any(n.startswith("Duplicate rows dropped (the same text after normalising spaces and Unicode, and score;")
               for n in notes)


def test_a_multi_label_data_overview_shows_labels_per_row() -> None:
    from reports.data import overview_rows

    rows = overview_rows({"num_train": 10, "labels_per_row": {"train": 2.394, "validation": 2.373}})
    assert ["labels per row (mean)", "train 2.394 / validation 2.373"] in rows


def test_comparison_says_when_studies_ran_other_tasks_or_other_data() -> None:
    """A user compared an NER study with a multi-label one (both "f1_micro") and the page said nothing."""
    first, second = rich_study("ner"), rich_study("intents")
    write_study(second.set_user_attr, StudyRecord(
        metric="f1_macro", label_names=LABELS, data_report=data_report(), task="multi-label",
        spec={"model": {"encoder": "minilm"}},
    ))  # fmt: skip
    missing = build_report([first, second], seed=0)[0].missing
    assert any("different tasks (text-classification, multi-label)" in m for m in missing)
    other = rich_study("other-data")
    write_study(other.set_user_attr, StudyRecord(
        metric="f1_macro", label_names=LABELS, data_report={**data_report(), "train": "other.csv"},
        spec={"model": {"encoder": "minilm"}},
    ))  # fmt: skip
    missing = build_report([rich_study("a"), other], seed=0)[0].missing
    assert any("trained and scored on different data (a: " in m and "other-data: other.csv / " in m for m in missing)
    # two encoders on the same files: what a comparison is for, no note; nor the same file from another folder (a
    # second upload to the service, another checkout)
    assert build_report([rich_study("a"), rich_study("b", encoder="bert-base")], seed=0)[0].missing == []
    moved = rich_study("moved")
    train = data_report()["train"]
    write_study(moved.set_user_attr, StudyRecord(
        metric="f1_macro", label_names=LABELS, data_report={**data_report(), "train": f"/srv/uploads/0af3/{train}"},
        spec={"model": {"encoder": "minilm"}},
    ))  # fmt: skip
    assert build_report([rich_study("a"), moved], seed=0)[0].missing == []
    fewer = rich_study("fewer")
    write_study(fewer.set_user_attr, StudyRecord(
        metric="f1_macro", label_names=LABELS, data_report={**data_report(), "num_train": 10},
        spec={"model": {"encoder": "minilm"}},
    ))  # fmt: skip
    assert any("different data" in m for m in build_report([rich_study("a"), fewer], seed=0)[0].missing)


def test_a_tagged_studys_class_chart_counts_entities_and_a_minimised_curve_is_read_falling() -> None:
    from reports.data import data_blocks
    from reports.sections import expected_blocks

    report = {**data_report(), "task": "token-classification"}
    chart = next(b for b in data_blocks(report) if isinstance(b, FigureBlock) and b.name == "class-distribution")
    assert chart.figure.layout.yaxis.title.text == "entities"
    plain = next(b for b in data_blocks(data_report()) if isinstance(b, FigureBlock) and b.name == "class-distribution")
    assert plain.figure.layout.yaxis.title.text == "rows"
    low = optuna.create_study(study_name="rmse", direction="minimize")
    study_attrs(low, metric="rmse")
    for value in (1.5, 1.4):
        low.add_trial(optuna.trial.create_trial(value=value))
    note = expected_blocks(low)[0]
    assert isinstance(note, NoteBlock) and "A curve still falling at the right" in note.text


def test_fanovas_failure_on_two_close_trials_is_said_in_words() -> None:
    """A user's live page showed "fANOVA: RuntimeError: Encountered zero total variance in all trees." for two
    trials whose learning rates differed in the fourth digit."""
    from optuna.distributions import FloatDistribution

    from reports.importance import collect_importances

    study = optuna.create_study(direction="maximize")
    for lr, value in [(1.2522495506539486e-4, 0.52), (1.2530462178086667e-4, 0.59)]:
        study.add_trial(optuna.trial.create_trial(value=value, params={"learning_rate": lr},
                                                  distributions={"learning_rate": FloatDistribution(1e-5, 1e-3,
                                                                                                    log=True)}))
    errors = collect_importances(study).errors
    assert errors == {"fANOVA": "its trees found nothing to attribute in 2 completed trials (too few, or values that "
                                "barely differ); more trials help"}


def test_a_regressions_loss_is_named_once_as_mse() -> None:
    """The report said "best-epoch loss 2.1016" where the card said "mse 2.1016" for the same number."""
    from reports.trials import headline_metrics

    scores = {"val_spearman": 0.42, "val_rmse": 1.45, "val_mse": 2.1016, "val_loss": 2.1016}
    assert list(headline_metrics(scores)) == ["val_spearman", "val_rmse", "val_mse"]
    assert list(headline_metrics({"val_accuracy": 0.9, "val_loss": 0.3})) == ["val_accuracy", "val_loss"]
    # entity precision and recall beside the F1s (NER's status showed only the F1s though both are objectives)
    ner = {"val_f1_macro": 0.13, "val_f1_micro": 0.31, "val_precision_micro": 0.57, "val_recall_micro": 0.22}
    assert list(headline_metrics(ner)) == ["val_f1_macro", "val_f1_micro", "val_precision_micro", "val_recall_micro"]
    # one label per row: they are the accuracy again, said once
    assert list(headline_metrics({**ner, "val_accuracy": 0.31})) == ["val_accuracy", "val_f1_macro", "val_f1_micro"]
