"""Study figures, each as a pure `collect_*` (study -> plain data) and a `plot_*` (plain data -> figure)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from record import maximizes, read_study, read_trial
from record.study import evaluation_epochs
from reports.expected import expected_max_performance
from reports.trials import STATE_NAMES, completed, pruned_value

HEIGHT = 440
PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"]
STATE_STYLE = {  # colour, dash
    "complete": ("#4c78a8", "solid"),
    "pruned": ("#f58518", "dash"),
    "failed": ("#9d9d9d", "dot"),
    "running": ("#54a24b", "dashdot"),
    "waiting": ("#bab0ac", "dot"),
}
BEST_COLOUR = "#d62728"
MAX_CELL_TEXT_CLASSES = 20  # above this many classes the confusion matrix prints no count in its cells


def plot_text(value: object) -> str:
    """User text made safe for plotly, which renders a subset of HTML in titles, ticks and legends."""
    return html.escape(str(value), quote=False)


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(
        title=plot_text(title),
        xaxis_title=plot_text(x),
        yaxis_title=plot_text(y),
        height=height,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"groupclick": "togglegroup"},
    )
    return fig


# --- optimization history -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryData:
    """Completed trials' values with the best value so far, and pruned trials' best value before stopping."""

    numbers: list[int]
    values: list[float]
    best_so_far: list[float]
    pruned_numbers: list[int]
    pruned_values: list[float]


def collect_history(study: optuna.Study) -> HistoryData:
    """The data behind the optimization history."""
    maximize = maximizes(study)
    numbers: list[int] = []
    values: list[float] = []
    best: list[float] = []
    for trial in completed(study):
        value = float(trial.values[0])
        numbers.append(trial.number)
        values.append(value)
        best.append(value if not best else (max(best[-1], value) if maximize else min(best[-1], value)))
    pruned_numbers, pruned_values = [], []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        reached = pruned_value(trial, maximize)
        if reached is not None:
            pruned_numbers.append(trial.number)
            pruned_values.append(reached)
    return HistoryData(numbers, values, best, pruned_numbers, pruned_values)


def plot_history(data: HistoryData, metric: str) -> go.Figure:
    """Completed trials as dots, pruned trials as crosses, the best value so far as a step line."""
    fig = go.Figure()
    fig.add_scatter(x=data.numbers, y=data.values, mode="markers", name="completed trial",
                    marker={"color": STATE_STYLE["complete"][0], "size": 8})
    if data.pruned_numbers:
        fig.add_scatter(x=data.pruned_numbers, y=data.pruned_values, mode="markers",
                        name="pruned trial (best epoch before it was stopped)",
                        marker={"color": STATE_STYLE["pruned"][0], "symbol": "x", "size": 8})
    fig.add_scatter(x=data.numbers, y=data.best_so_far, mode="lines", name="best so far",
                    line={"color": BEST_COLOUR, "shape": "hv"})
    return _layout(fig, "Optimization history", "trial", f"validation {metric}")


def plot_best_so_far(histories: Mapping[str, HistoryData], metric: str) -> go.Figure:
    """Several studies' best-so-far curves on shared axes."""
    fig = go.Figure()
    for i, (name, data) in enumerate(histories.items()):
        fig.add_scatter(x=data.numbers, y=data.best_so_far, mode="lines+markers", name=plot_text(name),
                        line={"color": PALETTE[i % len(PALETTE)], "shape": "hv"})
    return _layout(fig, "Best value so far", "trial", f"validation {metric}")


def plot_best_values(names: Sequence[str], values: Sequence[float], metric: str) -> go.Figure:
    """One bar per study: its best value."""
    fig = go.Figure(go.Bar(x=[plot_text(n) for n in names], y=list(values), text=[f"{v:.4f}" for v in values],
                           marker={"color": [PALETTE[i % len(PALETTE)] for i in range(len(names))]}))
    fig.update_xaxes(type="category")
    return _layout(fig, "Best value per study", "study", f"validation {metric}")


# --- learning curves ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """One trial's validation metric per evaluation, at epochs trained (1/3 = a third into the first epoch)."""

    number: int
    state: str
    epochs: list[float]
    values: list[float]
    best: bool = False


def collect_learning_curves(study: optuna.Study, best: FrozenTrial | None = None) -> list[Curve]:
    """Every trial that reported at least one evaluation, by trial number.

    Optuna steps are 1/`steps_per_epoch` of an epoch (study attr; 1 for studies without evaluations inside the
    first epoch), so the x axis is in epochs whatever the evaluation schedule.
    """
    study_record = read_study(study)
    per_epoch = study_record.steps_per_epoch
    rows = study_record.data_report.get("num_train")
    trainer = study_record.spec.get("trainer") if isinstance(study_record.spec.get("trainer"), dict) else {}
    accumulate = trainer.get("accumulate_grad_batches") if isinstance(trainer, dict) else None
    curves = []
    for trial in study.get_trials(deepcopy=False):
        if not trial.intermediate_values:
            continue
        steps = sorted(trial.intermediate_values)
        record = read_trial(trial)
        epochs = [step / per_epoch if per_epoch != 1 else step for step in steps]
        # where each evaluation really ran (0.64 of an epoch when 3 does not divide the batches), as status says:
        # the history of a finished trial; for a running, stopped or failed one, the schedule its loop followed
        trained = [r.get("epochs_trained") for r in record.history]
        batch = record.all_hyperparameters.get("batch_size")
        if len(trained) == len(steps) and all(isinstance(t, int | float) for t in trained):
            epochs = [float(t) for t in trained if isinstance(t, int | float)]
        elif per_epoch != 1 and isinstance(rows, int) and isinstance(batch, int) and rows > 0 and batch > 0:
            epochs = evaluation_epochs(steps, per_epoch, -(-rows // batch),
                                       accumulate if isinstance(accumulate, int) and accumulate > 0 else 1)
        curves.append(Curve(number=trial.number, state=STATE_NAMES[trial.state], epochs=epochs,
                            values=[float(trial.intermediate_values[s]) for s in steps],
                            best=best is not None and trial.number == best.number))
    return curves


def plot_learning_curves(curves: Sequence[Curve], metric: str) -> go.Figure:
    """One line per trial; pruned trials dashed in their own colour, ending in a cross where they were stopped."""
    fig = go.Figure()
    shown: set[str] = set()
    for curve in curves:
        group = "best trial" if curve.best else curve.state
        colour, dash = (BEST_COLOUR, "solid") if curve.best else STATE_STYLE.get(curve.state, ("#777777", "solid"))
        symbols = ["circle"] * len(curve.epochs)
        if curve.state == "pruned":
            symbols[-1] = "x"
        fig.add_scatter(
            x=curve.epochs, y=curve.values, mode="lines+markers",
            name=f"{group} (trial {curve.number})" if curve.best else group,
            legendgroup=group, showlegend=group not in shown, meta={"trial": curve.number, "state": curve.state},
            line={"color": colour, "dash": dash, "width": 3 if curve.best else 1.5},
            marker={"symbol": symbols, "size": [11 if s == "x" else 5 for s in symbols], "color": colour},
            opacity=1.0 if curve.best else 0.75,
            hovertemplate=f"trial {curve.number} ({curve.state})<br>epoch %{{x:.3g}}<br>{plot_text(metric)} "
            "%{y:.4f}<extra></extra>",
        )
        shown.add(group)
    fig.update_xaxes(dtick=1)
    return _layout(fig, "Learning curves (validation metric per evaluation)", "epoch", f"validation {metric}")


# --- expected validation performance ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedCurve:
    """Expected best value of n trials (n = 1..N) and its standard deviation."""

    n: list[int]
    mean: list[float]
    std: list[float]
    low: float | None = None  # the values observed: a best of n draws from them never leaves [low, high]
    high: float | None = None


def collect_expected_performance(values: Sequence[float], maximize: bool = True) -> ExpectedCurve:
    """Expected best of n completed trials; for a minimised objective, the expected minimum."""
    sign = 1.0 if maximize else -1.0
    rows = expected_max_performance([sign * v for v in values])
    return ExpectedCurve(n=[n for n, _, _ in rows], mean=[sign * m for _, m, _ in rows], std=[s for _, _, s in rows],
                         low=min(values, default=None), high=max(values, default=None))  # fmt: skip


def plot_expected_performance(curves: Mapping[str, ExpectedCurve], metric: str) -> go.Figure:
    """Each curve as a line with a ±1 std band."""
    fig = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        label = plot_text(name)
        # the band is clipped to the values observed: a best of n of them can be no better than the best of them
        top = curve.high if curve.high is not None else math.inf
        bottom = curve.low if curve.low is not None else -math.inf
        upper = [min(m + s, top) for m, s in zip(curve.mean, curve.std, strict=True)]
        lower = [max(m - s, bottom) for m, s in zip(curve.mean, curve.std, strict=True)]
        fig.add_scatter(x=curve.n, y=upper, mode="lines", line={"width": 0}, legendgroup=label, showlegend=False,
                        hoverinfo="skip", name=f"{label} +1 std")
        fig.add_scatter(x=curve.n, y=lower, mode="lines", line={"width": 0}, fill="tonexty",
                        fillcolor=_rgba(colour, 0.2), legendgroup=label, showlegend=False, hoverinfo="skip",
                        name=f"{label} -1 std")
        fig.add_scatter(x=curve.n, y=curve.mean, mode="lines+markers", line={"color": colour}, legendgroup=label,
                        name=f"{label} (±1 std)")
    longest = max((len(c.n) for c in curves.values()), default=1)
    fig.update_xaxes(tick0=1, dtick=max(1, math.ceil(longest / 12)))
    return _layout(fig, "Expected validation performance", "number of trials",
                   f"expected best validation {metric}")


# --- best trial ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfusionData:
    """Counts with rows = true label, columns = predicted label."""

    labels: list[str]
    matrix: list[list[int]]


def trial_labels(trial: FrozenTrial, label_names: Sequence[str], size: int) -> list[str]:
    """Label names for a k-class trial: the study's, else its per-class keys, else `0..k-1`."""
    if len(label_names) == size:
        return [str(n) for n in label_names]
    per_class = list(read_trial(trial).per_class)
    return [str(n) for n in per_class] if len(per_class) == size else [str(i) for i in range(size)]


def collect_confusion(trial: FrozenTrial, label_names: Sequence[str]) -> ConfusionData | None:
    """The trial's confusion matrix with its labels, or None when it has no square matrix."""
    matrix = read_trial(trial).confusion_matrix
    if not isinstance(matrix, list) or not matrix or any(
        not isinstance(row, list) or len(row) != len(matrix) for row in matrix
    ):
        return None
    return ConfusionData(labels=trial_labels(trial, label_names, len(matrix)),
                         matrix=[[int(c) for c in row] for row in matrix])


def plot_confusion(data: ConfusionData) -> go.Figure:
    """Heatmap coloured by each cell's share of its true label's rows (true labels top to bottom, predicted left to
    right); counts printed in the cells up to `MAX_CELL_TEXT_CLASSES` classes, and on hover always."""
    labels = [plot_text(n) for n in data.labels]
    few = len(labels) <= MAX_CELL_TEXT_CLASSES
    shares = [[c / sum(row) if sum(row) else 0.0 for c in row] for row in data.matrix]
    fig = go.Figure(go.Heatmap(
        z=shares, x=labels, y=labels, customdata=data.matrix, zmin=0.0, zmax=1.0, colorscale="Blues",
        # the counts in the cells come from `text`: a heatmap's texttemplate knows no customdata (it drew "-")
        text=[[str(c) for c in row] for row in data.matrix] if few else None,
        texttemplate="%{text}" if few else None, colorbar={"title": "share of row", "tickformat": ".0%"},
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} rows (%{z:.1%} of true %{y})<extra></extra>",
    ))
    fig.update_xaxes(type="category", side="bottom", tickangle=-45 if not few else None)
    fig.update_yaxes(type="category", autorange="reversed")
    height = min(900, 220 + 45 * len(labels)) if few else min(1600, 260 + 16 * len(labels))
    return _layout(fig, "Confusion matrix by row share (best epoch of the best trial)", "predicted label",
                   "true label", height)


# --- data ---------------------------------------------------------------------------------------------------


def plot_class_distribution(distribution: Mapping[str, Mapping[str, int]], counted: str = "rows") -> go.Figure:
    """Grouped bars: rows per class (or what `counted` names: entities per type), one colour per split."""
    fig = go.Figure()
    for i, (split, counts) in enumerate(distribution.items()):
        fig.add_bar(x=[plot_text(k) for k in counts], y=list(counts.values()), name=plot_text(split),
                    marker={"color": PALETTE[i % len(PALETTE)]}, text=list(counts.values()))
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    return _layout(fig, "Class distribution per split", "label", counted)
