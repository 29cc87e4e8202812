"""The best evaluation's weights of a trial, kept in memory while it trains (`BestWeights`): the weights a checkpoint
(`sweep.checkpoints`) writes when the trial ends. Apart from `sweep.checkpoints` so that reading checkpoints (status,
export, the service) needs no torch or Lightning."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from sweep.callbacks import epochs_trained


def tie_loss(value: Any) -> float:
    """The validation loss that breaks a tie of the objective's metric (+inf where there is none)."""
    try:
        loss = float(value)
    except (TypeError, ValueError):
        return math.inf
    return loss if math.isfinite(loss) else math.inf


class BestWeights(pl.Callback):
    """After each evaluation, copy the weights to CPU memory if `monitor` improved (lower is better with `minimize`;
    on a tie, a lower validation loss wins, else the earlier evaluation: a user's trial scored accuracy 0.62 at every
    evaluation while its loss fell, and kept the weights of the first, a third into epoch 1) and `worth_keeping(value)`
    says the weights could be written: a trial whose best cannot enter the study's kept checkpoints copies nothing
    (for a large encoder on a GPU, a device-to-host copy of the whole model at each of its improving evaluations).
    `state` is the best evaluation's weights, or None where they were not worth keeping. `worth_keeping` must say yes
    to a value once it said yes to a lower one (a rising bar)."""

    def __init__(
        self, monitor: str, *, minimize: bool = False, worth_keeping: Callable[[float], bool] | None = None
    ) -> None:
        self.monitor, self.sign = monitor, -1.0 if minimize else 1.0
        self.worth_keeping = worth_keeping
        self.best: float | None = None
        self.best_loss = math.inf  # the validation loss at the best evaluation (breaks ties of `monitor`)
        self.epoch: int | None = None  # 1-based epoch in which the best evaluation ran
        self.epochs_trained: float | None = None  # training done at that evaluation, in epochs
        self.copies = 0  # evaluations whose weights were copied
        self._buffer: dict[str, torch.Tensor] | None = None
        self._kept = False  # whether _buffer holds the best evaluation's weights

    @property
    def state(self) -> dict[str, torch.Tensor] | None:
        return self._buffer if self._kept else None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # this evaluation's record as the module kept it (the values `best_epoch` ranks, in full precision: Lightning
        # keeps logged floats as float32 tensors, so a tie there need not be one in the record); else what was logged
        history = getattr(pl_module, "history", None)
        record = history[-1] if isinstance(history, list) and history else None
        if not (isinstance(record, dict) and record.get("step") == trainer.global_step and self.monitor in record):
            record = trainer.callback_metrics
        logged = record.get(self.monitor)
        if logged is None:
            return
        value = float(logged)
        loss = tie_loss(record.get("val_loss"))
        better = self.best is None or self.sign * value > self.sign * self.best
        if better or (value == self.best and loss < self.best_loss):
            model: Any = pl_module.model
            self.best, self.best_loss, self.epoch = value, loss, trainer.current_epoch + 1
            self.epochs_trained = epochs_trained(trainer)
            self._kept = self.worth_keeping is None or self.worth_keeping(value)
            if self._kept:
                self._buffer = _copy_into(self._buffer, model.state_dict())
                self.copies += 1


def _copy_into(kept: dict[str, torch.Tensor] | None, current: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CPU copy of `current`, written into the buffers of the previous copy `kept` when they fit (same names,
    shapes and dtypes): an evaluation that improves then costs a memory copy, not fresh allocations of the whole model
    (about 4x faster for a 22M-parameter encoder on this project's CPU)."""
    if kept is None or kept.keys() != current.keys() or any(
        kept[k].shape != v.shape or kept[k].dtype != v.dtype for k, v in current.items()
    ):
        return {k: v.detach().to("cpu", copy=True) for k, v in current.items()}
    with torch.no_grad():
        for key, value in current.items():
            kept[key].copy_(value.detach())
    return kept
