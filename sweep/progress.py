"""Progress on screen: one bar for the study (trials), one for the running trial (training steps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sweep.callbacks import epochs_trained


def stderr_console() -> Console:
    """The console for a run's lines on stderr: on a terminal it wraps at the terminal's width; into a file or a pipe
    (a log, nohup, CI) every line stays one line (a console there would cut them at 80 columns)."""
    console = Console(stderr=True)
    console.soft_wrap = not console.is_terminal  # the same test as the progress bars' (FORCE_TERMINAL and all)
    return console


class TrialProgressCallback(pl.Callback):
    """Advances the trial bar each training step and shows the last validation value; where there is no bar (output
    to a file or a pipe: a log, nohup, CI), `log` gets one line per evaluation instead, so a long trial shows
    progress there too."""

    def __init__(self, progress: Progress, task: Any, number: int, epochs: int, monitor: str,
                 log: Callable[[str], None] | None = None):  # fmt: skip
        self.progress, self.task, self.number, self.epochs, self.monitor = progress, task, number, epochs, monitor
        self.last = ""
        self.say = log  # not `log`: Lightning's callback connector sets `callback.log = module.log`
        self.started = time.monotonic()

    def _describe(self, trainer: pl.Trainer) -> str:
        return f"trial {self.number} · epoch {trainer.current_epoch + 1}/{self.epochs}{self.last}"

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.progress.update(self.task, advance=1, description=self._describe(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and not trainer.sanity_checking:
            self.last = f" · {self.monitor.removeprefix('val_')} {float(value):.4f}"
            self.progress.update(self.task, description=self._describe(trainer))
            if self.say is not None:
                self.say(f"trial {self.number} · evaluated at epoch {round(epochs_trained(trainer), 2):g}/{self.epochs}"
                         f"{self.last} · {time.monotonic() - self.started:.0f}s")


class StudyProgress:
    """A study bar and a per-trial bar; finished trials are printed as lines above the bars."""

    def __init__(self, console: Console, *, total: int, done: int, name: str, label: str | None = None):
        self.console = console
        self.prefix = f"{label} · " if label else ""  # starts each line (a worker that moves between studies)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.study_task = self.progress.add_task(f"study {name}", total=total, completed=done)
        self.trial_task: Any = None

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def trial_callback(self, number: int, epochs: int, steps: int, monitor: str) -> TrialProgressCallback:
        if self.trial_task is not None:
            self.progress.remove_task(self.trial_task)
        self.trial_task = self.progress.add_task(f"trial {number}", total=steps)
        log = None if self.console.is_terminal else self._line
        return TrialProgressCallback(self.progress, self.trial_task, number, epochs, monitor, log)

    def _line(self, line: str) -> None:
        self.console.print(self.prefix + line, highlight=False, soft_wrap=True)  # one line each: a log stays greppable

    def trial_done(self, line: str, *, counts: bool) -> None:
        self.console.print(self.prefix + line, highlight=False, soft_wrap=not self.console.is_terminal)
        if counts:
            self.progress.advance(self.study_task)
