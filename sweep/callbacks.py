"""Lightning callbacks the objective hands to each trial's Trainer: pruning, timing, progress.

No Optuna trial here: the pruning callback talks to two plain functions, so it can be tested with any pruner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

from models.classifier import epochs_trained as head_epochs_trained
from record.study import evaluation_points


class EvaluationSchedule(pl.Callback):
    """Validate at the end of every epoch and, in the first epoch only, `first_epoch_evals` more times.

    The extra evaluations sit at even fractions of the first epoch (1/3 and 2/3 for 2), so a pruner can stop a
    hopeless trial long before its first epoch ends. Optuna steps count in units of 1/(first_epoch_evals + 1)
    epoch: with 2 extra evaluations the steps are 1, 2, 3 (end of epoch 1), 6 (end of epoch 2), 9, ...
    Lightning decides whether to validate after a batch from `trainer.val_check_batch`; this callback sets it
    batch by batch, so evaluations happen exactly at the planned batches.
    """

    def __init__(self, first_epoch_evals: int = 0):
        if first_epoch_evals < 0:
            raise ValueError(f"first_epoch_evals must be >= 0, got {first_epoch_evals}")
        self.steps_per_epoch = first_epoch_evals + 1
        self.step = 0  # the Optuna step of the evaluation that runs next (or ran last)
        self._points: dict[int, int] = {}
        self._batches = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = trainer.num_training_batches
        self._batches = int(n) if math.isfinite(n) else 0
        self._points = {}
        if trainer.current_epoch == 0 and self._batches:
            self._points = evaluation_points(self._batches, self.steps_per_epoch, trainer.accumulate_grad_batches)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._batches:
            return
        done = batch_idx + 1
        if done in self._points:
            self.step = self._points[done]
            trainer.val_check_batch = done
        elif done >= self._batches:
            self.step = (trainer.current_epoch + 1) * self.steps_per_epoch
            trainer.val_check_batch = done
        else:
            # Not an evaluation point: a modulus larger than the batch count never divides `done`.
            self.step = trainer.current_epoch * self.steps_per_epoch + math.floor(
                done / self._batches * self.steps_per_epoch
            )
            trainer.val_check_batch = self._batches + 1


class StopCheck(pl.Callback):
    """Calls `check` (`GracefulStop.check`) at every training and validation batch boundary: a stop requested from
    another thread (the study stopped in the store) ends the trial here, in the training thread, as a signal would."""

    def __init__(self, check: Callable[[], None]):
        self.check = check

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.check()

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.check()


class PruningCallback(pl.Callback):
    """After each evaluation: report `monitor` to Optuna; stop the trial if the pruner says so.

    The step is the schedule's step (epoch number, 1-based, when there is no schedule). An evaluation whose step
    was already reported (e.g. a run stopped right after one) is not reported twice.
    """

    def __init__(
        self,
        monitor: str,
        report: Callable[[float, int], None],
        should_prune: Callable[[], bool],
        schedule: EvaluationSchedule | None = None,
    ):
        self.monitor = monitor
        self.report = report
        self.should_prune = should_prune
        self.schedule = schedule
        self.pruned_at: int | None = None  # the Optuna step
        self.pruned_at_epochs: float | None = None  # epochs trained when it stopped
        self._last_step = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise RuntimeError(
                f"pruning monitor {self.monitor!r} was not logged (logged: {list(trainer.callback_metrics)})"
            )
        step = self.schedule.step if self.schedule is not None else trainer.current_epoch + 1
        if step <= self._last_step:
            return
        self._last_step = step
        self.report(float(value), step)
        # The last evaluation completes the trial: pruning it then would throw its finished result away (Optuna's
        # pruners answer at any step, the last included), so the pruner is asked only before it.
        if step < self.final_step(trainer) and self.should_prune():
            self.pruned_at = step
            self.pruned_at_epochs = epochs_trained(trainer)
            trainer.should_stop = True


    def final_step(self, trainer: pl.Trainer) -> int:
        """The step of the trial's last evaluation (the end of its last epoch)."""
        per_epoch = self.schedule.steps_per_epoch if self.schedule is not None else 1
        return int(trainer.max_epochs or 1) * per_epoch


def epochs_trained(trainer: pl.Trainer) -> float:
    """Training done so far, in epochs (1/3 after a third of the first epoch); exact at epoch ends."""
    trained = head_epochs_trained(trainer)
    return float(trainer.current_epoch) if trained is None else trained


class TimingCallback(pl.Callback):
    """Where a trial's time goes, measured from Lightning's hooks with `time.perf_counter` (no profiler):

    - `train_steps`: forward, backward and optimizer step of every training batch (`on_train_batch_start` to
      `on_train_batch_end`). Fetching the batch and copying it to the device happen before the start hook; the other
      callbacks' batch-end hooks, the LR-scheduler step and the evaluations happen after the end hook: overhead.
    - `validation_forward`: each validation batch's `validation_step` (the forward pass, its loss and the argmax kept
      for the metrics), batch start to batch end. The metric computation over the whole validation set
      (`on_validation_epoch_end`), the best-weights copy and the Optuna report come after: overhead.
    - `train` (the training loop: every epoch, start to end, without the evaluations run inside it, so fetching
      batches and per-batch hooks included) and `validation` (the evaluation loop: `on_validation_start` until every
      callback's `on_validation_end` has run, so metrics, the best-weights copy and the Optuna report included).

    The timer goes first in the Trainer's callbacks, so its batch clocks stop before the other callbacks' hooks run,
    and `self.closer` goes last, so the evaluation clock stops after theirs (`train_trial` places both).
    On CUDA, kernels run asynchronously: the batch-end hooks synchronise the device (there only, and only on CUDA),
    so a step's GPU work is not billed to whatever waits for it next (the next fetch or the metric computation).
    """

    def __init__(self) -> None:
        self.seconds = {"train": 0.0, "validation": 0.0, "train_steps": 0.0, "validation_forward": 0.0}
        self.validation_ends: list[float] = []  # wall-clock (time.time()) at the end of each validation run
        self._start: dict[str, float] = {}
        self.train_examples = 0
        self.closer = _EvaluationEnd(self)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start["train"] = time.perf_counter()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start["train_steps"] = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        _synchronize(pl_module)
        self._stop("train_steps")
        self.train_examples += int(batch["labels"].shape[0])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs the epoch's validation before this hook: `train_seconds` subtracts it.
        self._stop("train")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start["validation"] = time.perf_counter()

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._start["validation_forward"] = time.perf_counter()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        _synchronize(pl_module)
        self._stop("validation_forward")

    def _evaluation_end(self, trainer: pl.Trainer) -> None:
        self._stop("validation")
        if not trainer.sanity_checking:
            self.validation_ends.append(time.time())

    def _stop(self, phase: str) -> None:
        start = self._start.pop(phase, None)
        if start is not None:
            self.seconds[phase] += time.perf_counter() - start

    def train_seconds(self) -> float:
        """Training-loop time without the validation runs nested inside the training epochs."""
        return max(self.seconds["train"] - self.seconds["validation"], 0.0)


class _EvaluationEnd(pl.Callback):
    """The last callback of a trial's Trainer: stops the timer's evaluation clock after every other callback's
    `on_validation_end` (best-weights copy, Optuna report) has run."""

    def __init__(self, timer: TimingCallback):
        self.timer = timer

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.timer._evaluation_end(trainer)


def _synchronize(pl_module: pl.LightningModule) -> None:
    """Wait for the device's queued kernels, on CUDA only (CPU work is synchronous)."""
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)
