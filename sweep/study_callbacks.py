"""Optuna study callbacks, all in one place: each runs after every trial of a worker's `study.optimize`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from record import FINISHED, read_trial
from sweep.checkpoints import prune_checkpoints
from sweep.storage import queue_retry
from sweep.worker import GracefulStop

MAX_CONSECUTIVE_FAILURES = 3


class StopAfterFailures:
    """Stop the study after a run of consecutive failed trials (a broken setup, not a bad configuration)."""

    def __init__(self, limit: int = MAX_CONSECUTIVE_FAILURES):
        self.limit, self.streak, self.tripped = limit, 0, False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        stopped = read_trial(trial).stopped_by  # a stopped worker says nothing about the setup
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL and not stopped else 0
        if self.streak >= self.limit:
            self.tripped = True
            study.stop()


class KeepTopCheckpoints:
    """Delete the checkpoints (folders or artifacts) that fell out of the study-wide top k."""

    def __init__(self, keep: int, artifacts: Mapping[str, str] | None = None):
        self.keep, self.artifacts = keep, artifacts

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        prune_checkpoints(study, self.keep, self.artifacts)


class RetryStopped:
    """A trial that failed because its worker was stopped is queued once more with the same parameters (also when it
    was itself a retry: a study may be stopped and resumed any number of times)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL and read_trial(trial).stopped_by:
            queue_retry(study, trial, again=True)


class StopOnRequest:
    """Start no further trial once a stop was requested."""

    def __init__(self, stop: GracefulStop):
        self.stop = stop

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.stop.requested:
            study.stop()


class ReportTrial:
    """Hand each ended trial to the progress display (`counts`: whether it counts towards the budget)."""

    def __init__(self, show: Callable[[optuna.Study, FrozenTrial, bool], None]):
        self.show = show

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.show(study, trial, trial.state in FINISHED)


def study_callbacks(
    keep_checkpoints: int, stop: GracefulStop, show: Callable[[optuna.Study, FrozenTrial, bool], None],
    artifacts: Mapping[str, str] | None = None,
) -> tuple[list[Callable[[optuna.Study, FrozenTrial], None]], StopAfterFailures]:
    """A worker's callbacks, in order, and the failure counter the loop consults."""
    failures = StopAfterFailures()
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [
        KeepTopCheckpoints(keep_checkpoints, artifacts),
        RetryStopped(),
        ReportTrial(show),
        StopOnRequest(stop),
        failures,
    ]
    return callbacks, failures
