"""Regression metrics as plain numbers (pure functions over predicted and true scores)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error

MAX_SCATTER_POINTS = 2000
SCATTER_DECIMALS = 4


def _scores(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _correlation(value: float) -> float:
    """A correlation as a plain float; 0.0 where it is undefined (a constant input: scipy gives NaN)."""
    return float(value) if math.isfinite(value) else 0.0


def regression_metrics(preds: Sequence[float] | np.ndarray, targets: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Pearson r, Spearman rho, RMSE, MAE and MSE of `preds` against `targets`.

    A correlation is undefined when either side is constant (a model that predicts one value for everything):
    it is recorded as 0.0, no better than a constant guess, so a trial never stores NaN. Errors are NaN only when
    a prediction is (a diverged model).
    """
    y_pred, y_true = _scores(preds, "preds"), _scores(targets, "targets")
    if y_pred.shape != y_true.shape:
        raise ValueError(f"preds and targets must have the same length, got {len(y_pred)} and {len(y_true)}")
    if y_true.size < 2:
        raise ValueError(f"regression_metrics needs at least 2 predictions, got {y_true.size}")
    finite = bool(np.isfinite(y_pred).all())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        pearson = stats.pearsonr(y_pred, y_true).statistic if finite else math.nan
        spearman = stats.spearmanr(y_pred, y_true).statistic if finite else math.nan
    mse = float(mean_squared_error(y_true, y_pred)) if finite else math.nan
    return {
        "pearson": _correlation(float(pearson)),
        "spearman": _correlation(float(spearman)),
        "rmse": math.sqrt(mse),
        "mae": float(mean_absolute_error(y_true, y_pred)) if finite else math.nan,
        "mse": mse,
    }


def scatter_points(
    targets: Sequence[float] | np.ndarray,
    preds: Sequence[float] | np.ndarray,
    *,
    limit: int = MAX_SCATTER_POINTS,
    seed: int = 0,
) -> list[list[float]]:
    """`[[true, predicted], ...]` rounded to 4 decimals, for a predicted-vs-true plot: every row, or a seeded sample
    of `limit` rows (in row order) when there are more."""
    y_true, y_pred = _scores(targets, "targets"), _scores(preds, "preds")
    index = np.arange(y_true.size)
    if y_true.size > limit:
        index = np.sort(np.random.default_rng(seed).choice(y_true.size, size=limit, replace=False))
    return [[round(float(y_true[i]), SCATTER_DECIMALS), round(float(y_pred[i]), SCATTER_DECIMALS)] for i in index]
