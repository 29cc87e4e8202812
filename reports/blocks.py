"""What a report is made of: sections holding figures, tables, notes and lists (no HTML here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go


class Score(float):
    """A metric's value in a table: shown to 4 decimals, as `sweep status`, the CLI and the model card give it (other
    numbers, hyperparameters say, get 4 significant digits)."""

    __slots__ = ()


def format_value(value: Any) -> str:
    """A `Score` to 4 decimals; other numbers to 4 significant digits (small ones in scientific notation), everything
    else via str."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, Score) and math.isfinite(value):
        return f"{value:.4f}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if (abs(value) < 1e-3 and value != 0) else f"{value:.4g}"
    return str(value)


def score(value: float | None) -> Score | None:
    """`Score(value)`, None where there is no value."""
    return None if value is None else Score(value)


@dataclass(frozen=True)
class FigureBlock:
    """A plotly figure; `name` is a short file-name-friendly id (used for PNG files)."""

    name: str
    figure: go.Figure
    caption: str = ""


@dataclass(frozen=True)
class TableBlock:
    """A table of plain values (formatted when rendered)."""

    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass(frozen=True)
class NoteBlock:
    """A sentence. `missing=True` marks something the report could not show, and why."""

    text: str
    missing: bool = False


@dataclass(frozen=True)
class ListBlock:
    """A bulleted list of sentences (warnings, examples)."""

    items: list[str]
    caption: str = ""


Block = FigureBlock | TableBlock | NoteBlock | ListBlock


@dataclass
class Section:
    """One headed part of the report. `group` is the study it belongs to (None: the whole report)."""

    title: str
    anchor: str
    group: str | None = None
    blocks: list[Block] = field(default_factory=list)

    @property
    def figures(self) -> list[FigureBlock]:
        return [b for b in self.blocks if isinstance(b, FigureBlock)]

    @property
    def tables(self) -> list[TableBlock]:
        return [b for b in self.blocks if isinstance(b, TableBlock)]

    @property
    def notes(self) -> list[NoteBlock]:
        return [b for b in self.blocks if isinstance(b, NoteBlock)]

    @property
    def missing(self) -> list[str]:
        """The reasons this section could not show something."""
        return [b.text for b in self.notes if b.missing]
