"""Every study and trial attribute `sweep` stores, named once, with typed writers and readers.

Writers take a setter (`trial.set_user_attr`, `study.set_user_attr`, or a storage call bound to a trial id), so the
same schema serves a running trial, the study lifecycle and repairs done from outside a trial. Readers take a
study or a `FrozenTrial` and never fail on a missing attribute: a trial that failed early has few of them, and a
study made by older code lacks the newer ones.

Record versions: 1 is the layout written since the first release (studies without `record_version` are read as
1). A study written by a newer `sweep` with a version this code does not know is refused with `RecordError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from optuna.trial import FrozenTrial, TrialState

RECORD_VERSION = 1
Setter = Callable[[str, Any], None]


class RecordError(ValueError):
    """The store holds a record this code cannot read (written by a newer sweep)."""


class _HasUserAttrs(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...


# --- study ------------------------------------------------------------------------------------------------------

_S_VERSION = "record_version"
_S_SPEC = "spec"
_S_SPEC_FINGERPRINT = "spec_fingerprint"
_S_DATA_FINGERPRINT = "data_fingerprint"
_S_DATA_REPORT = "data_report"
_S_LABEL_NAMES = "label_names"
_S_METRIC = "metric"
_S_STEPS_PER_EPOCH = "steps_per_epoch"
_S_CHECKPOINT_DIR = "checkpoint_dir"
_S_SPEC_DIR = "spec_dir"
BUDGET_KEY = "n_trials"  # read under the store's budget lock (sweep.storage), so it is public


@dataclass(frozen=True)
class StudyRecord:
    """What a study is: its spec, the data it runs on, its labels and metric, where its checkpoints go."""

    spec: dict[str, Any] = field(default_factory=dict)
    spec_fingerprint: str | None = None
    data_fingerprint: str | None = None
    data_report: dict[str, Any] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    metric: str | None = None
    steps_per_epoch: int = 1  # Optuna steps per epoch: evaluations inside the first epoch + 1
    checkpoint_dir: str | None = None
    spec_dir: str | None = None  # where the spec's relative data paths start, for workers
    budget: int | None = None  # finished trials to reach, across all workers
    version: int = RECORD_VERSION

    @property
    def created_by_sweep(self) -> bool:
        """Whether `sweep run` made the study (a plain Optuna study in the same store has none of this)."""
        return bool(self.spec) and self.data_fingerprint is not None

    @property
    def search_space(self) -> dict[str, Any]:
        """The spec's `search.space` as stored (plain dict)."""
        search = self.spec.get("search")
        space = search.get("space") if isinstance(search, dict) else None
        return space if isinstance(space, dict) else {}

    @property
    def encoder(self) -> str | None:
        model = self.spec.get("model")
        return model.get("encoder") if isinstance(model, dict) else None


def _version(attrs: Mapping[str, Any]) -> int:
    version = attrs.get(_S_VERSION, 1)
    if not isinstance(version, int) or version < 1:
        raise RecordError(f"the study's record_version {version!r} is not a positive integer")
    if version > RECORD_VERSION:
        raise RecordError(
            f"the study was written by a newer sweep (record version {version}; this sweep reads up to "
            f"{RECORD_VERSION}): upgrade sweep to read it (pip install -U sweep)"
        )
    return version


def study_from_attrs(attrs: Mapping[str, Any]) -> StudyRecord:
    """The record of a study from its user attributes; RecordError for a record from a newer sweep."""
    version = _version(attrs)
    budget = attrs.get(BUDGET_KEY)
    return StudyRecord(
        spec=dict(attrs.get(_S_SPEC) or {}),
        spec_fingerprint=attrs.get(_S_SPEC_FINGERPRINT),
        data_fingerprint=attrs.get(_S_DATA_FINGERPRINT),
        data_report=dict(attrs.get(_S_DATA_REPORT) or {}),
        label_names=[str(n) for n in attrs.get(_S_LABEL_NAMES) or []],
        metric=attrs.get(_S_METRIC) or None,
        steps_per_epoch=int(attrs.get(_S_STEPS_PER_EPOCH) or 1),
        checkpoint_dir=attrs.get(_S_CHECKPOINT_DIR) or None,
        spec_dir=attrs.get(_S_SPEC_DIR) or None,
        budget=budget if isinstance(budget, int) and not isinstance(budget, bool) else None,
        version=version,
    )


def read_study(study: _HasUserAttrs) -> StudyRecord:
    """The record of an Optuna study (read fresh from its store)."""
    return study_from_attrs(study.user_attrs)


def write_study(set_attr: Setter, record: StudyRecord) -> None:
    """Write a new study's record (the budget is written by `write_budget`, on every run)."""
    set_attr(_S_VERSION, RECORD_VERSION)
    set_attr(_S_SPEC, record.spec)
    set_attr(_S_SPEC_FINGERPRINT, record.spec_fingerprint)
    set_attr(_S_DATA_FINGERPRINT, record.data_fingerprint)
    set_attr(_S_DATA_REPORT, record.data_report)
    set_attr(_S_LABEL_NAMES, list(record.label_names))
    set_attr(_S_METRIC, record.metric)
    set_attr(_S_STEPS_PER_EPOCH, record.steps_per_epoch)
    set_attr(_S_CHECKPOINT_DIR, record.checkpoint_dir)
    if record.spec_dir is not None:
        set_attr(_S_SPEC_DIR, record.spec_dir)
    if record.budget is not None:
        write_budget(set_attr, record.budget)


def write_budget(set_attr: Setter, n_trials: int) -> None:
    set_attr(BUDGET_KEY, int(n_trials))


def study_budget(attrs: Mapping[str, Any], default: int | None = None) -> int | None:
    """The study's budget from its user attributes (fresh ones: several workers may change it)."""
    value = attrs.get(BUDGET_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --- trial ------------------------------------------------------------------------------------------------------

_T_WORKER = "worker"
_T_SEED = "seed"
_T_HYPERPARAMETERS = "hyperparameters"
_T_DATA_FINGERPRINT = "data_fingerprint"
_T_STOPPED_BY = "stopped_by"
_T_ERROR = "error"
_T_TRACEBACK = "traceback"
_T_BEST_EPOCH = "best_epoch"
_T_BEST_EPOCHS_TRAINED = "best_epochs_trained"
_T_EPOCHS_RUN = "epochs_run"
_T_EVALUATIONS = "evaluations"
_T_METRICS = "metrics"
_T_PER_CLASS = "per_class"
_T_CONFUSION = "confusion_matrix"
_T_HISTORY = "history"
_T_CHECKPOINT = "checkpoint"
_T_CHECKPOINT_EPOCH = "checkpoint_epoch"
_T_TIMINGS = "timings"
_T_WALL_TIMES = "validation_wall_times"
_T_PRUNED_AT = "pruned_at_epoch"
# Optuna's own system attributes that we read (never write).
_OPTUNA_RETRY_OF = "failed_trial"  # set by Optuna's retry callback on the queued copy of a failed trial
_OPTUNA_FAIL_REASON = "fail_reason"  # set by Optuna when an objective raised or a heartbeat went stale


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each part of a trial, and the number of training examples seen."""

    data: float = 0.0
    model_load: float = 0.0
    train: float = 0.0
    validation: float = 0.0
    checkpoint: float = 0.0
    total: float = 0.0
    train_examples: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Timings:
        known = {k: raw[k] for k in cls.__dataclass_fields__ if isinstance(raw.get(k), int | float)}
        return cls(**known)


@dataclass(frozen=True)
class TrialResult:
    """What a trial's training left: its best evaluation and the curve that led there."""

    best_epoch: int  # 1-based epoch of the best evaluation
    best_epochs_trained: float | None  # training done at the best evaluation, in epochs (0.33 inside epoch 1)
    epochs_run: float  # epochs trained in all (fractional when pruned inside the first epoch)
    evaluations: int
    metrics: dict[str, Any]  # the best evaluation's values (val_loss, val_f1_macro, ...), without per-class parts
    per_class: dict[str, dict[str, Any]]
    confusion_matrix: list[list[int]] | None
    history: list[dict[str, Any]]  # every evaluation, without per-class parts


@dataclass(frozen=True)
class TrialRecord:
    """Everything `sweep` recorded about one trial; fields a trial never reached are None or empty."""

    number: int
    state: TrialState
    value: float | None
    params: dict[str, Any]
    worker: str | None = None
    seed: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    stopped_by: str | None = None
    error: str | None = None
    traceback: str | None = None
    best_epoch: int | None = None
    best_epochs_trained: float | None = None
    epochs_run: float | None = None
    evaluations: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: str | None = None
    checkpoint_epoch: int | None = None
    timings: Timings | None = None
    validation_wall_times: list[float] = field(default_factory=list)
    pruned_at_epoch: float | None = None
    retry_of: int | None = None
    fail_reason: str | None = None

    @property
    def all_hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter the trial trained with: the recorded ones with the searched params over them."""
        return {**self.hyperparameters, **self.params}

    @property
    def planned_epochs(self) -> int | None:
        epochs = self.all_hyperparameters.get("epochs")
        return int(epochs) if isinstance(epochs, int | float) and _number(epochs) else None

    @property
    def failure(self) -> str | None:
        """Why the trial failed: our error line, else Optuna's reason."""
        return self.error or self.fail_reason


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _opt_number(value: Any) -> float | None:
    return value if _number(value) else None


def read_trial(trial: FrozenTrial) -> TrialRecord:
    """The record of a finished or running trial."""
    attrs, system = trial.user_attrs, trial.system_attrs
    timings = attrs.get(_T_TIMINGS)
    values = trial.values
    best_epoch = attrs.get(_T_BEST_EPOCH)
    return TrialRecord(
        number=trial.number,
        state=trial.state,
        value=float(values[0]) if values is not None and len(values) == 1 else None,
        params=dict(trial.params),
        worker=attrs.get(_T_WORKER),
        seed=attrs.get(_T_SEED),
        hyperparameters=dict(attrs.get(_T_HYPERPARAMETERS) or {}),
        data_fingerprint=attrs.get(_T_DATA_FINGERPRINT),
        stopped_by=attrs.get(_T_STOPPED_BY),
        error=attrs.get(_T_ERROR),
        traceback=attrs.get(_T_TRACEBACK),
        best_epoch=int(best_epoch) if isinstance(best_epoch, int | float) and _number(best_epoch) else None,
        best_epochs_trained=_opt_number(attrs.get(_T_BEST_EPOCHS_TRAINED)),
        epochs_run=_opt_number(attrs.get(_T_EPOCHS_RUN)),
        evaluations=attrs.get(_T_EVALUATIONS),
        metrics=dict(attrs.get(_T_METRICS) or {}),
        per_class=dict(attrs.get(_T_PER_CLASS) or {}),
        confusion_matrix=attrs.get(_T_CONFUSION),
        history=list(attrs.get(_T_HISTORY) or []),
        checkpoint=attrs.get(_T_CHECKPOINT) or None,
        checkpoint_epoch=attrs.get(_T_CHECKPOINT_EPOCH),
        timings=Timings.from_dict(timings) if isinstance(timings, Mapping) else None,
        validation_wall_times=[float(t) for t in attrs.get(_T_WALL_TIMES) or []],
        pruned_at_epoch=_opt_number(attrs.get(_T_PRUNED_AT)),
        retry_of=retry_of(system),
        fail_reason=system.get(_OPTUNA_FAIL_REASON),
    )


def retry_of(system_attrs: Mapping[str, Any]) -> int | None:
    """The number of the failed trial this one retries (Optuna's retry bookkeeping), or None."""
    value = system_attrs.get(_OPTUNA_RETRY_OF)
    return int(value) if isinstance(value, int) else None


class TrialWriter:
    """Writes one trial's record through `set_attr` (a running trial's `set_user_attr`, or a storage call)."""

    def __init__(self, set_attr: Setter):
        self._set = set_attr

    def start(
        self,
        *,
        worker: str,
        seed: int,
        hyperparameters: Mapping[str, Any],
        data_fingerprint: str,
        inherited: Mapping[str, Any] | None = None,
    ) -> None:
        """A trial begins. A retry starts with its original's attributes (`inherited`): clear its outcome."""
        self._set(_T_WORKER, worker)
        for stale in (_T_STOPPED_BY, _T_ERROR):
            if (inherited or {}).get(stale) is not None:
                self._set(stale, None)
        self._set(_T_SEED, seed)
        self._set(_T_HYPERPARAMETERS, dict(hyperparameters))
        self._set(_T_DATA_FINGERPRINT, data_fingerprint)

    def stopped(self, by: str, message: str) -> None:
        """The worker was asked to stop (a signal, or a stop from the service) during this trial."""
        self._set(_T_STOPPED_BY, by)
        self._set(_T_ERROR, message)

    def failed(self, message: str, traceback: str | None = None) -> None:
        self._set(_T_ERROR, message)
        if traceback is not None:
            self._set(_T_TRACEBACK, traceback)

    def result(self, result: TrialResult) -> None:
        self._set(_T_BEST_EPOCH, result.best_epoch)
        self._set(_T_BEST_EPOCHS_TRAINED, result.best_epochs_trained)
        self._set(_T_EPOCHS_RUN, result.epochs_run)
        self._set(_T_EVALUATIONS, result.evaluations)
        self._set(_T_METRICS, result.metrics)
        self._set(_T_PER_CLASS, result.per_class)
        self._set(_T_CONFUSION, result.confusion_matrix)
        self._set(_T_HISTORY, result.history)

    def checkpoint(self, name: str, epoch: int | None) -> None:
        self._set(_T_CHECKPOINT, name)
        self._set(_T_CHECKPOINT_EPOCH, epoch)

    def timings(self, timings: Timings, validation_wall_times: list[float]) -> None:
        self._set(_T_TIMINGS, timings.as_dict())
        self._set(_T_WALL_TIMES, [round(t, 3) for t in validation_wall_times])

    def pruned(self, at_epoch: float | None) -> None:
        self._set(_T_PRUNED_AT, at_epoch)


def trial_attrs(**fields: Any) -> dict[str, Any]:
    """User attributes for a constructed trial (tests, imports): `trial_attrs(hyperparameters=..., history=...)`.

    Takes TrialRecord field names (each stored under its own name); `timings` may be a Timings or a dict.
    """
    unknown = sorted(set(fields) - set(_STORED))
    if unknown:
        raise TypeError(f"not trial record fields: {unknown} (known: {sorted(_STORED)})")
    return {key: value.as_dict() if isinstance(value, Timings) else value for key, value in fields.items()}


# Trial fields stored as user attributes, each under its own name (the _T_ constants above).
_STORED = (
    _T_WORKER, _T_SEED, _T_HYPERPARAMETERS, _T_DATA_FINGERPRINT, _T_STOPPED_BY, _T_ERROR, _T_TRACEBACK,
    _T_BEST_EPOCH, _T_BEST_EPOCHS_TRAINED, _T_EPOCHS_RUN, _T_EVALUATIONS, _T_METRICS, _T_PER_CLASS, _T_CONFUSION,
    _T_HISTORY, _T_CHECKPOINT, _T_CHECKPOINT_EPOCH, _T_TIMINGS, _T_WALL_TIMES, _T_PRUNED_AT,
)  # fmt: skip


def study_attrs(record: StudyRecord) -> dict[str, Any]:
    """A study record as user attributes (tests and imports build studies with it)."""
    out: dict[str, Any] = {}
    write_study(out.__setitem__, record)
    return out
