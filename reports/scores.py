"""Report parts for task: regression: the best trial's predicted-vs-true scatter (instead of per-class scores and a
confusion matrix) and the label distribution per split (instead of the class distribution).

Each figure is a pure `collect_*` (record -> plain data) and a `plot_*` (plain data -> figure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from optuna.trial import FrozenTrial

from record import read_trial
from reports.blocks import Block, FigureBlock, NoteBlock, TableBlock
from reports.figures import BEST_COLOUR, PALETTE, _layout, plot_text

SPLITS = ("train", "validation")
SCATTER_METRICS = ("val_spearman", "val_pearson", "val_rmse", "val_mae")


@dataclass(frozen=True)
class ScatterData:
    """A trial's validation rows at its best evaluation: true and predicted scores, and its headline metrics."""

    number: int
    true: list[float]
    predicted: list[float]
    metrics: dict[str, float]


def collect_scatter(trial: FrozenTrial) -> ScatterData | None:
    """The trial's stored [true, predicted] points, or None when it has none (another task, an old store)."""
    record = read_trial(trial)
    if not record.scatter:
        return None
    metrics = {k: float(v) for k in SCATTER_METRICS if isinstance(v := record.metrics.get(k), int | float)}
    return ScatterData(trial.number, [p[0] for p in record.scatter], [p[1] for p in record.scatter], metrics)


def plot_scatter(data: ScatterData, label: str = "score") -> go.Figure:
    """Predicted against true scores, one dot per validation row, with the y = x line of perfect predictions."""
    low = min(min(data.true), min(data.predicted))
    high = max(max(data.true), max(data.predicted))
    fig = go.Figure()
    fig.add_scatter(x=data.true, y=data.predicted, mode="markers", name="validation row",
                    marker={"color": PALETTE[0], "size": 5, "opacity": 0.6},
                    hovertemplate="true %{x:.3f}<br>predicted %{y:.3f}<extra></extra>")  # fmt: skip
    fig.add_scatter(x=[low, high], y=[low, high], mode="lines", name="predicted = true",
                    line={"color": BEST_COLOUR, "dash": "dash"})  # fmt: skip
    shown = ", ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in data.metrics.items())
    title = f"Predicted vs true {label} (best epoch of trial {data.number})" + (f": {shown}" if shown else "")
    fig = _layout(fig, title, f"true {label}", f"predicted {label}", height=520)
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def scatter_blocks(trial: FrozenTrial, label: str) -> list[Block]:
    """The best trial's scatter, or a note saying why there is none."""
    data = collect_scatter(trial)
    if data is None:
        return [NoteBlock(f"Trial {trial.number} recorded no predicted scores.", missing=True)]
    return [FigureBlock("predicted-vs-true", plot_scatter(data, label),
                        caption=f"{len(data.true)} validation rows (a seeded sample of 2000 when there are more). "
                                "Dots above the dashed line are over-predicted, below it under-predicted.")]


# --- the label distribution -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelDistribution:
    """Per split: the label's summary statistics and histogram counts over shared bin edges."""

    edges: list[float]
    stats: dict[str, dict[str, float]]
    histograms: dict[str, list[int]]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def collect_label_distribution(report: Mapping[str, Any]) -> LabelDistribution | None:
    """The data report's `label_distribution` (written for regression), or None when it has none."""
    raw = _dict(report.get("label_distribution"))
    edges = [float(e) for e in raw.get("edges") or [] if isinstance(e, int | float)]
    stats, histograms = {}, {}
    for split in SPLITS:
        part = _dict(raw.get(split))
        if not part:
            continue
        stats[split] = {k: float(part[k]) for k in ("count", "min", "max", "mean", "std")
                        if isinstance(part.get(k), int | float)}  # fmt: skip
        counts = part.get("histogram")
        if isinstance(counts, list) and len(counts) == len(edges) - 1:
            histograms[split] = [int(c) for c in counts]
    return LabelDistribution(edges, stats, histograms) if stats else None


def plot_label_distribution(data: LabelDistribution, label: str = "score") -> go.Figure:
    """Overlaid histograms of the label, one colour per split, on the same bins."""
    fig = go.Figure()
    centres = [(a + b) / 2 for a, b in zip(data.edges, data.edges[1:], strict=False)]
    width = (data.edges[1] - data.edges[0]) if len(data.edges) > 1 else 1.0
    for i, (split, counts) in enumerate(data.histograms.items()):
        fig.add_bar(x=centres, y=counts, width=width, name=plot_text(split), opacity=0.6,
                    marker={"color": PALETTE[i % len(PALETTE)]})  # fmt: skip
    fig.update_layout(barmode="overlay")
    return _layout(fig, f"Distribution of {label} per split", label, "rows")


def label_distribution_blocks(report: Mapping[str, Any]) -> list[Block]:
    """A table of count / min / max / mean / std per split and the histograms."""
    data = collect_label_distribution(report)
    if data is None:
        return [NoteBlock("No label distribution recorded.", missing=True)]
    label = str((report.get("label_names") or ["score"])[0])
    keys = ("count", "min", "max", "mean", "std")
    rows = [[key, *(data.stats[s].get(key) for s in data.stats)] for key in keys]
    blocks: list[Block] = [TableBlock(columns=["", *data.stats], rows=rows, caption=f"Label ({label}) per split")]
    if data.histograms:
        blocks.append(FigureBlock("label-distribution", plot_label_distribution(data, label)))
    return blocks
