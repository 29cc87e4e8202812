"""A trial's record: hyperparameters, seed, best epoch, history, metrics, per-class results, confusion matrix,
example texts of the most-confused label pairs, timings, checkpoint, worker, how it failed or was stopped, and
(for a re-evaluation run of `sweep reevaluate`) the trial whose configuration it re-trains.

Writers take a setter (`trial.set_user_attr`, or a storage call bound to a trial), so the same schema serves a
running trial and repairs done from outside it. Readers never fail on a missing attribute: a trial that failed
early has few of them, and a trial written by older code lacks the newer ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from record.study import Setter

_T_WORKER = "worker"
_T_SEED = "seed"
_T_HYPERPARAMETERS = "hyperparameters"
_T_DATA_FINGERPRINT = "data_fingerprint"
_T_STOPPED_BY = "stopped_by"
_T_ERROR = "error"
_T_LOST = "lost"  # why the heartbeat failed the trial: its worker went silent (killed, machine or connection lost)
_T_SILENT_SECONDS = "silent_seconds"  # a lost trial: seconds from a heartbeat interval after its last heartbeat
# until it was failed (its worker died within that interval: the rest is surely silence)
_T_TRACEBACK = "traceback"
_T_BEST_EPOCH = "best_epoch"
_T_BEST_EPOCHS_TRAINED = "best_epochs_trained"
_T_EPOCHS_RUN = "epochs_run"
_T_EVALUATIONS = "evaluations"
_T_METRICS = "metrics"
_T_PER_CLASS = "per_class"
_T_CONFUSION = "confusion_matrix"
_T_CONFUSED_EXAMPLES = "confused_examples"
_T_HISTORY = "history"
_T_CHECKPOINT = "checkpoint"
_T_CHECKPOINT_EPOCH = "checkpoint_epoch"
_T_CHECKPOINT_ARTIFACT = "checkpoint_artifact"  # the Optuna artifact id of the packed checkpoint (artifact stores)
_T_CHECKPOINT_SHA256 = "checkpoint_sha256"  # the packed file's SHA-256, checked when it is downloaded
_T_TIMINGS = "timings"
_T_WALL_TIMES = "validation_wall_times"
_T_PRUNED_AT = "pruned_at_epoch"
_T_SCATTER = "scatter"  # regression: the best evaluation's [[true, predicted], ...] (bounded by its writer)
_T_THRESHOLD = "threshold"  # task multi-label: the decision threshold tuned at the best evaluation
_T_LABEL_THRESHOLDS = "label_thresholds"  # task multi-label, model.threshold per-label: {label: threshold}
_T_REEVALUATES = "reevaluates"  # the trial whose configuration a re-evaluation run re-trains (with its own seed)
_T_WARM_START = "warm_start"  # where the known-good configuration a warm-start trial tries comes from
# Optuna's own system attributes that we read (never write).
_OPTUNA_RETRY_OF = "failed_trial"  # set by Optuna's retry callback on the queued copy of a failed trial
_OPTUNA_RETRY_HISTORY = "retry_history"  # set by the same callback: the numbers of the trials retried before it
_OPTUNA_FAIL_REASON = "fail_reason"  # set by Optuna when an objective raised or a heartbeat went stale


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each part of a trial, and the number of training examples seen.

    The trial's wall time (`total`: from the objective's start until its timings are written) splits into
    `train_steps` (forward, backward and optimizer step of every training batch), `validation_forward` (the forward
    pass of every validation batch) and `overhead`: everything else (fetching batches, metric computation, the
    best-weights copy, checkpoint writes, Optuna and storage calls, Lightning set-up and tear-down, loading the model
    and the data module). `data`, `model_load` and `checkpoint` are parts of the overhead measured on their own;
    `train` and `validation` are the training and evaluation loops (steps plus their loop's overhead).
    Trials recorded before the split have no `train_steps` / `validation_forward` (None), and so no overhead.
    """

    data: float = 0.0
    model_load: float = 0.0
    train: float = 0.0
    validation: float = 0.0
    checkpoint: float = 0.0
    total: float = 0.0
    train_examples: int = 0
    train_steps: float | None = None
    validation_forward: float | None = None

    @property
    def overhead(self) -> float | None:
        """Wall time that is neither a training step nor a validation forward pass (None: not measured)."""
        if self.train_steps is None or self.validation_forward is None:
            return None
        return max(self.total - self.train_steps - self.validation_forward, 0.0)

    @property
    def overhead_share(self) -> float | None:
        """The overhead as a share of the trial's wall time."""
        overhead = self.overhead
        return overhead / self.total if overhead is not None and self.total > 0 else None

    def overhead_parts(self) -> dict[str, float] | None:
        """The overhead split where it is measured: data module, model load, the training loop around its steps
        (fetching batches, per-batch hooks), the evaluation loop around its forward passes (metrics, best-weights copy,
        Optuna report), checkpoint writes, and the rest (Lightning set-up and tear-down, storage writes)."""
        if self.train_steps is None or self.validation_forward is None or self.overhead is None:
            return None
        parts = {
            "data": self.data,
            "model_load": self.model_load,
            "train_loop": max(self.train - self.train_steps, 0.0),
            "evaluation_loop": max(self.validation - self.validation_forward, 0.0),
            "checkpoint": self.checkpoint,
        }
        return {**parts, "other": max(self.overhead - sum(parts.values()), 0.0)}

    def as_dict(self) -> dict[str, float | int | None]:
        """The stored form: the measured fields, and the overhead and its share where measured (for readers of the
        store that do not go through this class, such as optuna-dashboard)."""
        stored: dict[str, float | int | None] = asdict(self)
        if self.overhead is not None:
            stored["overhead"] = round(self.overhead, 3)
            stored["overhead_share"] = None if self.overhead_share is None else round(self.overhead_share, 4)
        return stored

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
    # One validation text per most-confused label pair at the best evaluation, most rows first: {"given": label,
    # "predicted": label, "text": text}. Bounded by its writer (a few dozen short texts): it is stored per trial.
    confused_examples: list[dict[str, str]] = field(default_factory=list)
    # Regression: the best evaluation's validation rows as [true, predicted] pairs (at most 2000, a seeded sample
    # beyond that, rounded to 4 decimals by the model), for the predicted-vs-true scatter. Empty for other tasks.
    scatter: list[list[float]] = field(default_factory=list)
    # Task multi-label: the decision threshold the best evaluation's metrics use (tuned on validation), and with
    # model.threshold per-label one per label ({label: value}; labels absent from validation get `threshold`).
    threshold: float | None = None
    label_thresholds: dict[str, float] | None = None


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
    lost: str | None = None
    silent_seconds: float | None = None  # a lost trial: how long its worker was surely silent before it was failed
    traceback: str | None = None
    best_epoch: int | None = None
    best_epochs_trained: float | None = None
    epochs_run: float | None = None
    evaluations: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    confused_examples: list[dict[str, str]] = field(default_factory=list)  # empty in stores written before it
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: str | None = None
    checkpoint_epoch: int | None = None
    checkpoint_artifact: str | None = None  # set when the checkpoint went to an artifact store; None: a folder
    checkpoint_sha256: str | None = None
    timings: Timings | None = None
    validation_wall_times: list[float] = field(default_factory=list)
    pruned_at_epoch: float | None = None
    retry_of: int | None = None
    fail_reason: str | None = None
    reevaluates: int | None = None  # a re-evaluation run: the number of the trial whose configuration it re-trains
    scatter: list[list[float]] = field(default_factory=list)  # regression: [[true, predicted], ...]; empty otherwise
    threshold: float | None = None  # task multi-label: the decision threshold tuned at the best evaluation
    label_thresholds: dict[str, float] = field(default_factory=dict)  # per-label thresholds (model.threshold)
    warm_start: str | None = None  # a warm-start trial (search.warm_start): where its configuration comes from

    @property
    def configuration(self) -> int:
        """The configuration this trial measures: the trial it re-evaluates, else itself."""
        return self.number if self.reevaluates is None else self.reevaluates

    @property
    def all_hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter the trial trained with: the recorded ones with the searched params over them."""
        return {**self.hyperparameters, **self.params}

    @property
    def planned_epochs(self) -> int | None:
        epochs = self.all_hyperparameters.get("epochs")
        return int(epochs) if isinstance(epochs, int | float) and _number(epochs) else None

    @property
    def best_at(self) -> str | None:
        """Where the best evaluation was, in epochs trained: "2", or "0.68" for one inside epoch 1 (every view of the
        best epoch shows this, so the command line and the report agree); None before any evaluation."""
        trained = self.best_epochs_trained
        if trained is not None and abs(trained - round(trained)) > 1e-6:
            return f"{trained:.2f}"
        return None if self.best_epoch is None else str(self.best_epoch)

    @property
    def failure(self) -> str | None:
        """Why the trial failed: our error line, else why the heartbeat failed it, else Optuna's reason."""
        return self.error or self.lost or self.fail_reason


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _opt_number(value: Any) -> float | None:
    return value if _number(value) else None


def _examples(raw: Any) -> list[dict[str, str]]:
    """The stored example texts, keeping only well-formed entries (strings under given, predicted and text)."""
    keys = ("given", "predicted", "text")
    entries = raw if isinstance(raw, list) else []
    return [{k: e[k] for k in keys} for e in entries
            if isinstance(e, Mapping) and all(isinstance(e.get(k), str) for k in keys)]


def _points(raw: Any) -> list[list[float]]:
    """The stored [true, predicted] pairs, keeping only pairs of two finite numbers."""
    entries = raw if isinstance(raw, list) else []
    return [[float(e[0]), float(e[1])] for e in entries
            if isinstance(e, list | tuple) and len(e) == 2 and all(_number(v) for v in e)]


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
        lost=attrs.get(_T_LOST),
        silent_seconds=_opt_number(attrs.get(_T_SILENT_SECONDS)),
        traceback=attrs.get(_T_TRACEBACK),
        best_epoch=int(best_epoch) if isinstance(best_epoch, int | float) and _number(best_epoch) else None,
        best_epochs_trained=_opt_number(attrs.get(_T_BEST_EPOCHS_TRAINED)),
        epochs_run=_opt_number(attrs.get(_T_EPOCHS_RUN)),
        evaluations=attrs.get(_T_EVALUATIONS),
        metrics=dict(attrs.get(_T_METRICS) or {}),
        per_class=dict(attrs.get(_T_PER_CLASS) or {}),
        confusion_matrix=attrs.get(_T_CONFUSION),
        confused_examples=_examples(attrs.get(_T_CONFUSED_EXAMPLES)),
        history=list(attrs.get(_T_HISTORY) or []),
        checkpoint=attrs.get(_T_CHECKPOINT) or None,
        checkpoint_epoch=attrs.get(_T_CHECKPOINT_EPOCH),
        checkpoint_artifact=_opt_text(attrs.get(_T_CHECKPOINT_ARTIFACT)),
        checkpoint_sha256=_opt_text(attrs.get(_T_CHECKPOINT_SHA256)),
        timings=Timings.from_dict(timings) if isinstance(timings, Mapping) else None,
        validation_wall_times=[float(t) for t in attrs.get(_T_WALL_TIMES) or []],
        pruned_at_epoch=_opt_number(attrs.get(_T_PRUNED_AT)),
        retry_of=retry_of(system),
        fail_reason=system.get(_OPTUNA_FAIL_REASON),
        reevaluates=_opt_int(attrs.get(_T_REEVALUATES)),
        scatter=_points(attrs.get(_T_SCATTER)),
        threshold=_opt_number(attrs.get(_T_THRESHOLD)),
        label_thresholds=_thresholds(attrs.get(_T_LABEL_THRESHOLDS)),
        warm_start=_opt_text(attrs.get(_T_WARM_START)),
    )


def trial_seconds(trial: FrozenTrial) -> float | None:
    """A finished trial's wall time (start to completion), else the recorded `timings.total`, else None. A trial the
    heartbeat failed counts until one heartbeat interval after its worker's last heartbeat (it died within that
    interval), not through the silence until another worker noticed (the grace period: 300 s by default); so does an
    orphan a later run found RUNNING (not the hours until that run)."""
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        failed = trial.state == TrialState.FAIL
        silent = _opt_number(trial.user_attrs.get(_T_SILENT_SECONDS)) if failed else None
        return max(0.0, seconds - silent) if silent is not None and silent >= 0 else seconds
    timings = read_trial(trial).timings
    return timings.total if timings is not None else None


def _thresholds(raw: Any) -> dict[str, float]:
    """The stored per-label thresholds, keeping only numeric entries."""
    entries = raw if isinstance(raw, Mapping) else {}
    return {str(k): float(v) for k, v in entries.items() if _number(v)}


def _opt_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def reevaluation_attrs(*, of: int, seed: int) -> dict[str, Any]:
    """The user attributes a queued re-evaluation run starts with (`study.enqueue_trial(params, user_attrs=...)`):
    the trial whose configuration it re-trains and the seed it must train with. A retry of the run (Optuna's retry
    copies user attributes) keeps both."""
    return {_T_REEVALUATES: int(of), _T_SEED: int(seed)}


def warm_start_attrs(source: str) -> dict[str, Any]:
    """The user attributes a queued warm-start trial starts with (`study.enqueue_trial(params, user_attrs=...)`):
    where its known-good configuration comes from. A retry of it keeps them."""
    return {_T_WARM_START: str(source)}


def retry_of(system_attrs: Mapping[str, Any]) -> int | None:
    """The number of the failed trial this one retries (Optuna's retry bookkeeping), or None."""
    value = system_attrs.get(_OPTUNA_RETRY_OF)
    return int(value) if isinstance(value, int) else None


def retry_history(system_attrs: Mapping[str, Any]) -> list[int]:
    """The trials of this configuration's chain that ran before this retry (Optuna's retry bookkeeping), oldest
    first; empty for a trial that retries none."""
    value = system_attrs.get(_OPTUNA_RETRY_HISTORY)
    return [int(n) for n in value if isinstance(n, int)] if isinstance(value, list) else []


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
        for stale in (_T_STOPPED_BY, _T_ERROR, _T_LOST, _T_SILENT_SECONDS):
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

    def forget_inherited_outcome(self) -> None:
        """A retry whose worker died before `start` still carries the stop or error Optuna copied from the trial it
        retries: cleared before its death is written, so that it reads as a death, not as that stop."""
        self._set(_T_STOPPED_BY, None)
        self._set(_T_ERROR, None)

    def silence(self, seconds: float | None) -> None:
        """How long the trial's worker was surely silent before the trial was failed (see `lost`): an orphan found
        RUNNING when the store was opened again (`recover_orphans`) was silent from its last heartbeat on."""
        self._set(_T_SILENT_SECONDS, None if seconds is None else float(seconds))

    def lost(self, message: str, silent_seconds: float | None = None) -> None:
        """The heartbeat failed the trial: its worker went silent (written by the worker that noticed), surely for
        `silent_seconds` (from one heartbeat interval after its last heartbeat; None: it never sent one)."""
        self._set(_T_LOST, message)
        # None too: a retry that died before starting carries its original's silence (Optuna copies the attributes)
        self._set(_T_SILENT_SECONDS, None if silent_seconds is None else float(silent_seconds))

    def result(self, result: TrialResult) -> None:
        self._set(_T_BEST_EPOCH, result.best_epoch)
        self._set(_T_BEST_EPOCHS_TRAINED, result.best_epochs_trained)
        self._set(_T_EPOCHS_RUN, result.epochs_run)
        self._set(_T_EVALUATIONS, result.evaluations)
        self._set(_T_METRICS, result.metrics)
        self._set(_T_PER_CLASS, result.per_class)
        self._set(_T_CONFUSION, result.confusion_matrix)
        self._set(_T_CONFUSED_EXAMPLES, result.confused_examples)
        self._set(_T_HISTORY, result.history)
        if result.scatter:  # regression only: other tasks' trials keep the attributes they always had
            self._set(_T_SCATTER, result.scatter)
        if result.threshold is not None:  # only multi-label trials have one: other tasks' records stay as they were
            self._set(_T_THRESHOLD, result.threshold)
        if result.label_thresholds is not None:
            self._set(_T_LABEL_THRESHOLDS, result.label_thresholds)

    def checkpoint(self, name: str, epoch: int | None, artifact: tuple[str, str] | None = None) -> None:
        """The trial's checkpoint `name` (a folder under checkpoint_dir), and with `artifact` the (id, SHA-256) of
        the packed file in the study's artifact store."""
        self._set(_T_CHECKPOINT, name)
        self._set(_T_CHECKPOINT_EPOCH, epoch)
        if artifact is not None:
            self._set(_T_CHECKPOINT_ARTIFACT, artifact[0])
            self._set(_T_CHECKPOINT_SHA256, artifact[1])

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
    _T_WORKER, _T_SEED, _T_HYPERPARAMETERS, _T_DATA_FINGERPRINT, _T_STOPPED_BY, _T_ERROR, _T_LOST, _T_SILENT_SECONDS,
    _T_TRACEBACK,
    _T_BEST_EPOCH, _T_BEST_EPOCHS_TRAINED, _T_EPOCHS_RUN, _T_EVALUATIONS, _T_METRICS, _T_PER_CLASS, _T_CONFUSION,
    _T_CONFUSED_EXAMPLES, _T_HISTORY, _T_CHECKPOINT, _T_CHECKPOINT_EPOCH, _T_TIMINGS, _T_WALL_TIMES, _T_PRUNED_AT,
    _T_REEVALUATES, _T_SCATTER,
    _T_REEVALUATES, _T_THRESHOLD, _T_LABEL_THRESHOLDS, _T_CHECKPOINT_ARTIFACT, _T_CHECKPOINT_SHA256,
)  # fmt: skip
