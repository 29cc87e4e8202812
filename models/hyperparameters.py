"""The rules every trained hyperparameter must obey, stated once (no torch here).

The model refuses arguments that break them, and the spec refuses a search space that could produce such a value,
with the same wording.
"""

from __future__ import annotations

from collections.abc import Callable

Rule = tuple[str, Callable[[float], bool]]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


HYPERPARAMETER_RULES: dict[str, Rule] = {
    "learning_rate": ("> 0", lambda v: v > 0),
    "batch_size": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "epochs": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "weight_decay": (">= 0", lambda v: v >= 0),
    # warmup_ratio 1 would warm up for the whole run and never decay: a misconfiguration, not a choice.
    "warmup_ratio": ("in [0, 1)", lambda v: 0 <= v < 1),
    "label_smoothing": ("in [0, 1)", lambda v: 0 <= v < 1),
    "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
}


def hyperparameter_problems(**values: float | None) -> list[str]:
    """`name: must be <rule>, got <value>` for each given value (None: not given) that breaks its rule."""
    problems = []
    for name, value in values.items():
        rule, ok = HYPERPARAMETER_RULES[name]
        if value is not None and not ok(value):
            problems.append(f"{name}: must be {rule}, got {value!r}")
    return problems
