"""The search space: spec parameters turned into Optuna suggestions and plain hyperparameters."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from sweep.spec import DEFAULTS, RangeParam, SpaceSpec


@dataclass(frozen=True)
class Hyperparameters:
    """Everything one trial trains with; plain values, no Optuna below this point."""

    learning_rate: float
    batch_size: int
    epochs: int
    weight_decay: float
    warmup_ratio: float
    label_smoothing: float
    dropout: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def searched(space: SpaceSpec) -> dict[str, RangeParam | list[int | float]]:
    """The parameters that are searched (ranges, or lists of more than one choice)."""
    out: dict[str, RangeParam | list[int | float]] = {}
    for name in DEFAULTS:
        value = getattr(space, name)
        if isinstance(value, RangeParam) or (isinstance(value, list) and len(value) > 1):
            out[name] = value
    return out


def fixed(space: SpaceSpec) -> dict[str, int | float]:
    """The parameters given one value: used as they are, not searched."""
    out: dict[str, int | float] = {}
    for name in DEFAULTS:
        value = getattr(space, name)
        if isinstance(value, list) and len(value) == 1:
            out[name] = value[0]
        elif not isinstance(value, RangeParam | list):
            out[name] = value
    return out


def _coerce(name: str, value: Any) -> Any:
    return int(value) if name in ("batch_size", "epochs") else float(value)


def suggest(trial: optuna.Trial, space: SpaceSpec) -> Hyperparameters:
    """Ask the trial for each searched parameter; fill the rest from fixed values."""
    values: dict[str, Any] = dict(fixed(space))
    for name, param in searched(space).items():
        if isinstance(param, list):
            values[name] = trial.suggest_categorical(name, param)
        elif param.is_int:
            values[name] = trial.suggest_int(
                name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log
            )
        else:
            values[name] = trial.suggest_float(
                name, float(param.low), float(param.high), step=param.step, log=param.log
            )
    return Hyperparameters(**{name: _coerce(name, values[name]) for name in DEFAULTS})


def grid(space: SpaceSpec) -> dict[str, list[int | float]]:
    """The finite grid of the searched parameters (for Optuna's GridSampler)."""
    out: dict[str, list[int | float]] = {}
    for name, param in searched(space).items():
        if isinstance(param, list):
            out[name] = list(param)
            continue
        step = param.step or 1
        count = int(round((param.high - param.low) / step)) + 1
        out[name] = [_coerce(name, param.low + i * step) for i in range(count)]
    return out


def grid_size(space: SpaceSpec) -> int:
    return math.prod(len(values) for values in grid(space).values())
