"""The few places where Optuna has no public API for what a worker must do; each one commented and tested.

- Setting an attribute on another process's trial (a trial left RUNNING by a dead worker gets its reason):
  `Study.tell` finishes a trial by number, but no public call sets a user attribute on a trial other than the one
  being run.
- Re-reading one trial as stored, without reading every trial of the study.
- Holding the study's budget lock (`SweepStorage`'s PostgreSQL advisory lock) while queueing re-evaluation runs, so
  two `sweep reevaluate` at once cannot queue the same runs twice: a Study exposes neither its storage backend
  (Optuna wraps it in a cache) nor its id.

The one other such place is `sweep.objective.stored_trial` (the Optuna trial object stays in that module).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial


def set_trial_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Set a user attribute on any trial of the study (one this process is not running included)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def reread(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """A trial as the store holds it now."""
    return study._storage.get_trial(trial._trial_id)


@contextlib.contextmanager
def budget_lock(study: optuna.Study) -> Iterator[None]:
    """The lock under which the store counts a study's budget (PostgreSQL; SQLite has one writer: no lock)."""
    backend = getattr(study._storage, "_backend", study._storage)
    lock = getattr(backend, "_budget_lock", None)
    if lock is None:  # not a SweepStorage (an in-memory study in a test): nobody else writes it
        yield
        return
    with lock(study._study_id):
        yield
