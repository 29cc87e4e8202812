"""The study's record: its spec, data, labels, metric, budget and checkpoint folder, under a record version.

Record versions: 1 is the layout written since the first release (studies without `record_version` are read as
1). A study written by a newer `sweep` with a version this code does not know is refused with `RecordError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

RECORD_VERSION = 1
Setter = Callable[[str, Any], None]


class RecordError(ValueError):
    """The store holds a record this code cannot read (written by a newer sweep)."""


class _HasUserAttrs(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...


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
_S_TASK = "task"
_S_STOPPED = "stopped"
_S_PRIORITY = "priority"
_S_SUBMITTED_AT = "submitted_at"
_S_FAILURE = "failure"
_S_ARTIFACT_STORE = "artifact_store"
_S_POOLING = "pooling"
# What the study keeps about its artifact store: where, never how to log in (credentials live in the environment).
ARTIFACT_STORE_KEYS = ("store", "path", "bucket", "prefix", "endpoint_url")
DEFAULT_TASK = "text-classification"  # stores written before `task` existed hold classification studies
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
    task: str = DEFAULT_TASK  # text-classification | text-pair (a pair of texts -> a label)
    version: int = RECORD_VERSION
    # Control of a study shared by many workers (`sweep stop`/`resume`, the service): changed after creation.
    stopped: str | None = None  # why no new trial may start (who stopped it, when); None: workers may run it
    priority: int = 0  # workers without a study name take the highest priority first, then the oldest submission
    submitted_at: float | None = None  # Unix time the study was created (or submitted to the service)
    failure: str | None = None  # why its workers gave up on it (three trials in a row failed); cleared on resume
    # Where trials' checkpoint artifacts go (store, path, bucket, prefix, endpoint_url); None: checkpoint folders.
    artifact_store: dict[str, str] | None = None
    # model.pooling as the study trains it (`cls` or `mean`; `auto` resolved for its encoder when it was made); None:
    # made before the setting existed, when every head was the architecture's own (`pooling_as_trained` says cls)
    pooling: str | None = None

    @property
    def pooling_as_trained(self) -> str:
        """How the study's sequence heads read the token states: `cls` for studies made before pooling was recorded."""
        return self.pooling or "cls"

    @property
    def created_by_sweep(self) -> bool:
        """Whether `sweep run` made the study (a plain Optuna study in the same store has none of this)."""
        return bool(self.spec) and self.data_fingerprint is not None

    @property
    def spec_as_it_ran(self) -> dict[str, Any]:
        """The stored spec with what it leaves out spelled out, for rebuilding the study's Spec (a worker's pruner).
        A spec is stored without `search.prune_after_epochs` when that is 0 (and was stored without it before the key
        existed, when no pruner had a warm-up): the study ran with 0, while a spec that names no value now gets 1.0
        with the median and percentile pruners. `spec` itself stays as stored: it is what a new spec is compared
        with (and written back unchanged)."""
        search = self.spec.get("search")
        if self.spec and isinstance(search, dict) and "prune_after_epochs" not in search:
            return {**self.spec, "search": {**search, "prune_after_epochs": 0.0}}
        return self.spec

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

    @property
    def positive_label(self) -> str | None:
        """objective.positive_label: the class whose F1 the metric f1_binary is."""
        objective = self.spec.get("objective")
        label = objective.get("positive_label") if isinstance(objective, dict) else None
        return label if isinstance(label, str) else None

    @property
    def metric_label(self) -> str | None:
        """The metric as views name it: `f1_binary of 'spam'` (which class's F1), else the metric itself."""
        if self.metric == "f1_binary" and self.positive_label is not None:
            return f"f1_binary of {self.positive_label!r}"
        return self.metric


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
        task=str(attrs.get(_S_TASK) or DEFAULT_TASK),
        version=version,
        stopped=_opt_str(attrs.get(_S_STOPPED)),
        priority=_int_or(attrs.get(_S_PRIORITY), 0),
        submitted_at=_opt_float(attrs.get(_S_SUBMITTED_AT)),
        failure=_opt_str(attrs.get(_S_FAILURE)),
        artifact_store=_artifact_store(attrs.get(_S_ARTIFACT_STORE)),
        pooling=_opt_str(attrs.get(_S_POOLING)),
    )


def _artifact_store(raw: Any) -> dict[str, str] | None:
    """The stored artifact store settings, keeping only the known keys with string values."""
    if not isinstance(raw, Mapping):
        return None
    return {k: str(raw[k]) for k in ARTIFACT_STORE_KEYS if isinstance(raw.get(k), str)} or None


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _opt_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
    set_attr(_S_TASK, record.task)
    if record.spec_dir is not None:
        set_attr(_S_SPEC_DIR, record.spec_dir)
    if record.budget is not None:
        write_budget(set_attr, record.budget)
    write_priority(set_attr, record.priority)
    if record.submitted_at is not None:
        set_attr(_S_SUBMITTED_AT, float(record.submitted_at))
    if record.artifact_store is not None:
        write_artifact_store(set_attr, record.artifact_store)
    if record.pooling is not None:
        set_attr(_S_POOLING, record.pooling)


def write_artifact_store(set_attr: Setter, settings: Mapping[str, Any]) -> None:
    """Where the study's checkpoint artifacts go: only the known location keys (no credential can pass)."""
    set_attr(_S_ARTIFACT_STORE, {k: str(settings[k]) for k in ARTIFACT_STORE_KEYS if settings.get(k) is not None})


def write_priority(set_attr: Setter, priority: int) -> None:
    set_attr(_S_PRIORITY, int(priority))


def write_stopped(set_attr: Setter, reason: str | None) -> None:
    """Stop a study (`reason` says who and when: no new trial starts, running ones end as on SIGTERM), or resume
    it (None; this also clears a recorded failure, so workers try it again)."""
    set_attr(_S_STOPPED, reason)
    if reason is None:
        set_attr(_S_FAILURE, None)


def write_failure(set_attr: Setter, reason: str) -> None:
    """Why the study's workers gave up on it (three trials in a row failed): workers skip it until it is resumed."""
    set_attr(_S_FAILURE, reason)


def write_budget(set_attr: Setter, n_trials: int) -> None:
    set_attr(BUDGET_KEY, int(n_trials))


def study_budget(attrs: Mapping[str, Any], default: int | None = None) -> int | None:
    """The study's budget from its user attributes (fresh ones: several workers may change it)."""
    value = attrs.get(BUDGET_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def study_attrs(record: StudyRecord) -> dict[str, Any]:
    """A study record as user attributes (tests and imports build studies with it)."""
    out: dict[str, Any] = {}
    write_study(out.__setitem__, record)
    return out


def evaluation_points(batches: int, steps_per_epoch: int, accumulate: int = 1) -> dict[int, int]:
    """First-epoch evaluation points: batch count -> Optuna step, at even fractions of the epoch.

    With several batches summed per optimizer step (`accumulate`), a point moves to the nearest optimizer step's
    last batch, so it scores the weights after an update, never between the batches of one (nor before the first);
    a point with no optimizer step of its own before the epoch's end is dropped.
    """
    points: dict[int, int] = {}
    for j in range(1, steps_per_epoch):
        batch = round(batches * j / steps_per_epoch / accumulate) * accumulate
        if accumulate <= batch < batches:
            points.setdefault(batch, j)
    return points


def evaluation_epochs(steps: list[int], steps_per_epoch: int, batches: int, accumulate: int = 1) -> list[float]:
    """Where the evaluations at Optuna `steps` ran, in epochs trained (0.375: the 6th of 16 batches), as a running
    trial's training loop placed them (`evaluation_points`; a trial's history says it once the trial ends);
    `batches`: training batches per epoch."""
    at = {step: batch / batches for batch, step in evaluation_points(batches, steps_per_epoch, accumulate).items()}
    return [at.get(step, step / steps_per_epoch) for step in steps]
