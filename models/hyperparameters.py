"""The values every trained hyperparameter may take, stated once (no torch here).

The model refuses arguments outside them, the spec refuses a search space that could produce such a value (with the
same wording), and the report's advice never suggests widening a range beyond them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """The values a hyperparameter may take: `low`/`high` (None: unbounded), each included or not."""

    low: float | None = None
    low_included: bool = True
    high: float | None = None
    high_included: bool = True
    integer: bool = False

    def allows(self, value: float) -> bool:
        """Whether `value` lies within the bounds (the type is `accepts`'s business)."""
        above = self.low is None or (value >= self.low if self.low_included else value > self.low)
        below = self.high is None or (value <= self.high if self.high_included else value < self.high)
        return above and below

    def accepts(self, value: float) -> bool:
        """Whether a hyperparameter may take `value`: within the bounds, and an int where one is needed."""
        if self.integer and not (isinstance(value, int) and not isinstance(value, bool)):
            return False
        return self.allows(value)

    def describe(self) -> str:
        """`> 0`, `an integer >= 1`, `in [0, 1)`."""
        if self.low is not None and self.high is not None:
            opening, closing = "[" if self.low_included else "(", "]" if self.high_included else ")"
            text = f"in {opening}{self.low:g}, {self.high:g}{closing}"
        elif self.low is not None:
            text = f"{'>=' if self.low_included else '>'} {self.low:g}"
        elif self.high is not None:
            text = f"{'<=' if self.high_included else '<'} {self.high:g}"
        else:
            text = "any number"
        return f"an integer {text}" if self.integer else text


# The upper bounds catch typos no fine-tuning run means (a service user's epochs: 100000 held its one worker for days,
# a learning rate of 1e9 "completed" at chance and was told to go higher): a learning rate above 1, a batch of more
# than 65536 examples, more than 1000 epochs.
HYPERPARAMETER_LIMITS: dict[str, Limit] = {
    "learning_rate": Limit(low=0.0, low_included=False, high=1.0),
    "batch_size": Limit(low=1, high=65536, integer=True),
    "epochs": Limit(low=1, high=1000, integer=True),
    "weight_decay": Limit(low=0.0),
    # warmup_ratio 1 would warm up for the whole run and never decay: a misconfiguration, not a choice.
    "warmup_ratio": Limit(low=0.0, high=1.0, high_included=False),
    "label_smoothing": Limit(low=0.0, high=1.0, high_included=False),
    "dropout": Limit(low=0.0, high=1.0, high_included=False),
}


def hyperparameter_problems(**values: float | None) -> list[str]:
    """`name: must be <rule>, got <value>` for each given value (None: not given) outside its limits."""
    problems = []
    for name, value in values.items():
        limit = HYPERPARAMETER_LIMITS[name]
        if value is not None and not limit.accepts(value):
            problems.append(f"{name}: must be {limit.describe()}, got {value!r}")
    return problems
