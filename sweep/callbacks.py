"""Lightning callbacks the objective hands to each trial's Trainer: pruning, timing, progress.

No Optuna trial here: the pruning callback talks to two plain functions, so it can be tested with any pruner.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl


class PruningCallback(pl.Callback):
    """After each validation epoch: report `monitor` at step = epoch number (1-based); stop if told to prune."""

    def __init__(self, monitor: str, report: Callable[[float, int], None], should_prune: Callable[[], bool]):
        self.monitor = monitor
        self.report = report
        self.should_prune = should_prune
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise RuntimeError(
                f"pruning monitor {self.monitor!r} was not logged (logged: {list(trainer.callback_metrics)})"
            )
        step = trainer.current_epoch + 1
        self.report(float(value), step)
        if self.should_prune():
            self.pruned_at = step
            trainer.should_stop = True


class TimingCallback(pl.Callback):
    """Wall-clock seconds spent in training and in validation, summed over epochs."""

    def __init__(self) -> None:
        self.seconds = {"train": 0.0, "validation": 0.0}
        self.validation_ends: list[float] = []  # wall-clock (time.time()) at the end of each validation run
        self._start: dict[str, float] = {}
        self.train_examples = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start["train"] = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.train_examples += int(batch["labels"].shape[0])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs the epoch's validation before this hook: subtract it.
        self._stop("train")

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start["validation"] = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop("validation")
        if not trainer.sanity_checking:
            self.validation_ends.append(time.time())

    def _stop(self, phase: str) -> None:
        start = self._start.pop(phase, None)
        if start is not None:
            self.seconds[phase] += time.perf_counter() - start

    def train_seconds(self) -> float:
        """Training time without the validation runs nested inside the training epochs."""
        return max(self.seconds["train"] - self.seconds["validation"], 0.0)
