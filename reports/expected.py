"""Expected validation performance (Dodge et al. 2019, "Show Your Work")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def expected_max_performance(values: Sequence[float], max_trials: int | None = None) -> list[tuple[int, float, float]]:
    """For n = 1..max_trials: the expected best of n values drawn with replacement from `values`, and its std.

    With v sorted ascending and N = len(v), P(max = v_(i)) = (i/N)^n - ((i-1)/N)^n.
    Returns [(n, mean, std), ...]; an empty list when `values` is empty.
    """
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"max_trials >= 1 must hold, got max_trials={max_trials}")
    bad = [i for i, v in enumerate(values) if not math.isfinite(float(v))]
    if bad:
        raise ValueError(f"values must be finite numbers, got {values[bad[0]]!r} at index {bad[0]}")
    if len(values) == 0:
        return []
    v = np.sort(np.asarray(values, dtype=float))
    size = len(v)
    upper = np.arange(1, size + 1) / size
    lower = np.arange(0, size) / size
    curve = []
    for n in range(1, (max_trials or size) + 1):
        p = upper**n - lower**n
        mean = float(p @ v)
        var = float(p @ (v * v)) - mean * mean
        curve.append((n, mean, math.sqrt(max(var, 0.0))))
    return curve
