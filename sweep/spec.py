"""Study specs: YAML parsed once, at the edge, into frozen pydantic models; every problem reported at once."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from models.hyperparameters import HYPERPARAMETER_LIMITS
from sweep.dataspec import (
    DataSpec,
    data_problems,
    data_suffixes,
    path_problems,
    stored_data_section,
    unused_key_problems,
)
from sweep.dataspec import resolve_data_path as resolve_data_path  # imported from here by the runner
from sweep.errors import SweepError
from sweep.taskspec import DEFAULT_TASK, TASKS, default_metric, task_problems

SAMPLERS = ("tpe", "random", "grid", "gp", "qmc")
PRUNERS = ("median", "hyperband", "successive_halving", "percentile", "none")
# Spec keys that may change between runs of one study: the budget, and where results are kept or sent.
NOT_FINGERPRINTED = (
    "storage", "checkpoint_dir", "heartbeat", "resources", "search.n_trials", "search.keep_checkpoints", "artifacts",
    "search.warm_start",  # acts once, when the study is created; the trial it queues records its configuration
    "trainer.keep_freed_memory",  # how fast a worker's process allocates, not what its trials learn
)
NAME_RULE = (
    "may contain only letters, digits, '_', '.' and '-', starting with a letter or digit "
    "(it names the study in the store and its checkpoint folder)"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

Number = int | float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RangeParam(_Strict):
    """A searched numeric range: int when `low` and `high` are both integers, float otherwise."""

    low: Number
    high: Number
    log: StrictBool = False
    step: Number | None = None

    @model_validator(mode="after")
    def _check(self) -> RangeParam:
        problems = []
        if self.low > self.high:
            problems.append(f"low <= high must hold, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            problems.append(f"log: true needs low > 0, got low={self.low}")
        if self.step is not None and self.step <= 0:
            problems.append(f"step > 0 must hold, got step={self.step}")
        if self.step is not None and self.log:
            problems.append("step and log: true cannot be combined (Optuna's rule)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def is_int(self) -> bool:
        return (
            isinstance(self.low, int)
            and isinstance(self.high, int)
            and (self.step is None or isinstance(self.step, int))
        )


def _param_kind(value: Any) -> str:
    if isinstance(value, dict | RangeParam):
        return "range"
    if isinstance(value, list):
        return "choices"
    return "fixed"


Scalar = int | float
ParamSpec = Annotated[
    Annotated[RangeParam, Tag("range")]
    | Annotated[list[Scalar], Tag("choices"), Field(min_length=1)]
    | Annotated[Scalar, Tag("fixed")],
    Discriminator(_param_kind),
]

# The hyperparameters a trial takes, with the value used when the spec leaves them out, and their rule.
DEFAULTS: dict[str, int | float] = {
    "learning_rate": 5e-5,
    "batch_size": 32,
    "epochs": 3,
    "weight_decay": 0.01,
    "warmup_ratio": 0.06,
    "label_smoothing": 0.0,
    "dropout": 0.1,
}
_RULES = {name: (limit.describe(), limit.accepts) for name, limit in HYPERPARAMETER_LIMITS.items()}


class SpaceSpec(_Strict):
    """Search space: a range `{low, high, log, step}`, a list of choices, or a single fixed value."""

    learning_rate: ParamSpec = DEFAULTS["learning_rate"]
    batch_size: ParamSpec = DEFAULTS["batch_size"]
    epochs: ParamSpec = DEFAULTS["epochs"]
    weight_decay: ParamSpec = DEFAULTS["weight_decay"]
    warmup_ratio: ParamSpec = DEFAULTS["warmup_ratio"]
    label_smoothing: ParamSpec = DEFAULTS["label_smoothing"]
    dropout: ParamSpec = DEFAULTS["dropout"]

    @field_validator(*DEFAULTS, mode="after")
    @classmethod
    def _check_values(cls, value: Any, info: Any) -> Any:
        rule, ok = _RULES[info.field_name]
        if isinstance(value, RangeParam):
            candidates = [value.low, value.high]
            if info.field_name in ("batch_size", "epochs") and not value.is_int:
                raise ValueError(f"must be {rule}, got low={value.low}, high={value.high}")
        elif isinstance(value, list):
            candidates = list(value)
        else:
            candidates = [value]
        bad = [v for v in candidates if not ok(v)]
        if bad:
            raise ValueError(f"must be {rule}, got {bad[0]!r}")
        return value


class ModelSpec(_Strict):
    encoder: str = "minilm"
    max_length: int = Field(128, ge=8, le=4096)
    class_weights: Literal["none", "balanced"] = "none"
    # task: multi-label: one decision threshold for all labels, or one per label (both tuned on validation).
    threshold: Literal["global", "per-label"] = "global"
    # How a head making one prediction per text reads the encoder's token states: `mean` over them (what a
    # sentence-transformers encoder such as the default minilm was trained for), `cls` (the architecture's own head,
    # on the first token), `auto`: the encoder's own sentence-transformers pooling where it has one (mean), else cls.
    # A study records what `auto` became (sweep.pooling); token-classification tags each token and reads none.
    pooling: Literal["auto", "cls", "mean"] = "auto"

    @model_serializer(mode="wrap")
    def _leave_out_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `threshold` and `pooling` came after studies were stored: their defaults are left out, so the spec and
        # fingerprint of those studies stay.
        body: dict[str, Any] = handler(self)
        if body.get("threshold") == "global":
            del body["threshold"]
        if body.get("pooling") == "auto":
            del body["pooling"]
        return body


class ObjectiveSpec(_Strict):
    # One of the task's metrics (sweep.taskspec.TASK_METRICS); unset, the task's default (f1_macro for
    # classification). Checked against the task in `task_problems`, where the task is known.
    metric: str = "f1_macro"
    # metric: f1_binary: the class whose F1 it is (a label of the data)
    positive_label: str | None = None

    @field_validator("positive_label", mode="before")
    @classmethod
    def _label_as_read(cls, value: Any) -> Any:
        # labels are read from the files as text, as data cleaning gives them: `positive_label: 1` (or 1.0, YAML's
        # numbers) means the label "1"; YAML reads yes/no/true/false unquoted as booleans, which no label is
        from datamodules.cleaning import normalize_label

        if isinstance(value, bool):
            raise ValueError(f"YAML read {value} as a boolean: quote the label, e.g. positive_label: \"yes\"")
        if not isinstance(value, int | float | str):
            return value
        label = normalize_label(value)
        if label is None:  # "", " ", .nan: no class at all
            raise ValueError(f"{value!r} names no class: give the label of the class whose F1 f1_binary is")
        return label

    @model_serializer(mode="wrap")
    def _leave_out_unset_positive_label(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # came after studies were stored: unset, it is left out, so their spec and fingerprint stay
        body: dict[str, Any] = handler(self)
        if body.get("positive_label") is None:
            body.pop("positive_label", None)
        return body


class TrainerSpec(_Strict):
    accelerator: str = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "auto"] = "32-true"
    eval_batch_size: int = Field(64, ge=1)
    group_by_length: StrictBool = True
    num_threads: int | None = Field(None, ge=1)
    # Freed training buffers stay in the worker's process for the next step instead of going back to the kernel
    # (glibc malloc's thresholds, sweep.memory): 1.22-1.30x CPU training throughput measured; process-wide once on.
    keep_freed_memory: StrictBool = True
    # Clip the gradients' global L2 norm to this value before each optimizer step (transformers.Trainer's
    # max_grad_norm, 1.0 by default there); None: no clipping, as every study before the key trained.
    gradient_clip_val: float | None = Field(None, gt=0, strict=True)  # strict: `true` is no norm
    # Sum the gradients of this many batches before each optimizer step (transformers.Trainer's
    # gradient_accumulation_steps): an effective batch of batch_size x this where batch_size does not fit in memory.
    accumulate_grad_batches: StrictInt = Field(1, ge=1)
    # The learning rate after the warm-up (transformers.Trainer's lr_scheduler_type): falls linearly to 0, follows half
    # a cosine to 0, or stays at its peak. The warm-up is the space's warmup_ratio in each case.
    lr_schedule: Literal["linear", "cosine", "constant"] = "linear"
    # End a trial once this many evaluations in a row (those inside epoch 1 included) have not improved the objective's
    # metric (transformers' EarlyStoppingCallback's early_stopping_patience): the trial completes with the epochs it
    # ran, its best evaluation kept. None: every trial runs its epochs (pruning still ends hopeless ones).
    early_stopping_patience: StrictInt | None = Field(None, ge=1)

    def learning_settings_line(self, space_batch_size: Any = None) -> str | None:
        """`trainer: ...` for the settings that change what a trial learns beyond the space, where set; else None
        (what `sweep run` and `sweep status` print). `space_batch_size`: the space's batch_size as given or stored (a
        number, a list, a range); where it is one value, the effective batch is given as a number."""
        one = space_batch_size[0] if isinstance(space_batch_size, list) and len(space_batch_size) == 1 else (
            space_batch_size)  # fmt: skip
        batch_size = one if isinstance(one, int) and not isinstance(one, bool) else None
        said = []
        if self.accumulate_grad_batches > 1:
            n = self.accumulate_grad_batches
            effective = f"{batch_size} x {n} = {batch_size * n}" if batch_size else f"batch_size x {n}"
            said.append(f"{n} batches summed per optimizer step (effective batch {effective})")
        if self.lr_schedule != "linear":
            said.append(f"{self.lr_schedule} learning rate after the warm-up")
        if self.gradient_clip_val is not None:
            said.append(f"gradients clipped to an L2 norm of {self.gradient_clip_val:g}")
        if self.early_stopping_patience is not None:
            n = self.early_stopping_patience
            said.append(f"a trial ends after {n} evaluation{'s' if n != 1 else ''} without improvement")
        return f"trainer: {'; '.join(said)}" if said else None

    @model_serializer(mode="wrap")
    def _leave_out_later_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # keys that came after studies were stored: at their default they are left out, so those studies' spec and
        # fingerprint stay
        body: dict[str, Any] = handler(self)
        for key in LATER_TRAINER_KEYS:
            if key in body and body[key] == type(self).model_fields[key].default:
                del body[key]
        return body


LATER_TRAINER_KEYS = ("gradient_clip_val", "accumulate_grad_batches", "lr_schedule", "early_stopping_patience")
# Dotted keys a stored spec leaves out at their default (see the serializers): missing there means the default.
OMITTED_AT_DEFAULT = frozenset({"task", "model.threshold", *(f"trainer.{key}" for key in LATER_TRAINER_KEYS)})


# search.prune_after_epochs when a spec names none, for the pruners it applies to. 1.0: the median rule acts from the
# end of epoch 1 on. Measured in benchmarks/ (TREC-6, MiniLM, 8 trials, three seeds): with the mean-pooling head
# (sweep's default for sentence-transformers encoders) slow learning rates learn late, and with 0.5 configurations
# that would have finished in the top 3 were stopped two thirds into epoch 1 in 2 of 3 seeds (pooling_fair/); the F1
# at the end of epoch 1 ranks configurations far better (Spearman +0.86 to +0.95 against +0.48 to +0.83 two thirds
# in). Replayed on every stored run, waiting for the end of epoch 1 leaves at most one seed in three with such a prune;
# the fair run with it (end_of_epoch/) had none in 3 of 3 seeds. Earlier defaults: 0 (before the key), 0.5;
# lifecycle.PAST_DEFAULTS continues studies made with them.
PRUNE_AFTER_DEFAULT = 1.0
WARMUP_PRUNERS = ("median", "percentile")


# The most trials one study's budget may hold: a typo (an extra digit or ten) would otherwise keep every worker busy
# for good. A hyperparameter search of fine-tuning runs stays far below it.
MAX_TRIALS = 10_000


def trials_problem(n_trials: int) -> str | None:
    """What is wrong with a budget of `n_trials` search trials (a spec's, `--n-trials`, the service's `n_trials`)."""
    if n_trials < 1:
        return f"must be >= 1, got {n_trials}"
    if n_trials > MAX_TRIALS:
        return f"must be at most {MAX_TRIALS:,} (a budget no search of fine-tuning runs reaches), got {n_trials:,}"
    return None


class SearchSpec(_Strict):
    n_trials: int = Field(20, ge=1)  # at most MAX_TRIALS in new input (`parse_spec`); a stored spec may hold more
    sampler: Literal["tpe", "random", "grid", "gp", "qmc"] = "tpe"
    pruner: Literal["median", "hyperband", "successive_halving", "percentile", "none"] = "median"
    seed: int = 0
    # Extra validation runs inside the first epoch (at 1/3 and 2/3 for 2), so pruning can act before it ends (with
    # prune_after_epochs below 1). 0 by default: the default warm-up waits for the end of epoch 1, and evaluations
    # that cannot prune only cost time (2 was the default before; lifecycle.PAST_DEFAULTS).
    first_epoch_evals: int = Field(0, ge=0, le=9)
    # The median and percentile pruners stop no trial before it has trained this many epochs (0: from its first
    # evaluation on): F1 a third into epoch 1 barely predicts a configuration's final rank. A spec that names no value
    # gets PRUNE_AFTER_DEFAULT with those two pruners and 0 with the others (their own first rung decides).
    prune_after_epochs: float = Field(PRUNE_AFTER_DEFAULT, ge=0.0)
    keep_checkpoints: int = Field(3, ge=0)
    # The first trial tries a known-good configuration for the encoder's family (sweep.warm_start), then the sampler.
    warm_start: StrictBool = False
    space: SpaceSpec = SpaceSpec()

    @model_validator(mode="before")
    @classmethod
    def _warmup_default_by_pruner(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prune_after_epochs" not in data and data.get("pruner", "median") not in (
            WARMUP_PRUNERS
        ):
            return {**data, "prune_after_epochs": 0.0}
        return data

    @model_validator(mode="after")
    def _warmup_needs_a_median_rule(self) -> SearchSpec:
        if self.prune_after_epochs > 0 and self.pruner not in WARMUP_PRUNERS:
            raise ValueError(
                f"prune_after_epochs applies to the median and percentile pruners, not {self.pruner!r} (hyperband and "
                "successive_halving start at their first rung): remove it or choose pruner: median"
            )
        return self

    @model_validator(mode="after")
    def _grid_needs_finite(self) -> SearchSpec:
        if self.sampler == "grid":
            bad = [
                name
                for name in DEFAULTS
                if isinstance(p := getattr(self.space, name), RangeParam) and not p.is_int and p.step is None
            ]
            if bad:
                raise ValueError(
                    f"sampler 'grid' needs a finite space: give a list of choices or a step for {', '.join(bad)}"
                )
        return self


class HeartbeatSpec(_Strict):
    """Workers' liveness: a trial silent for `grace_period` seconds (a killed worker) is failed and retried once."""

    interval: int = Field(60, ge=1)
    grace_period: int = Field(300, ge=2)

    @model_validator(mode="after")
    def _grace_exceeds_interval(self) -> HeartbeatSpec:
        if self.grace_period <= self.interval:
            raise ValueError(
                f"grace_period must exceed interval (a few heartbeats), got grace_period={self.grace_period}, "
                f"interval={self.interval}"
            )
        return self


class ResourcesSpec(_Strict):
    """What one worker (one trial at a time) asks a cluster for: Ray places workers where these are free."""

    cpus: float = Field(1, gt=0)
    gpus: float = Field(0, ge=0)


ARTIFACT_STORES = ("filesystem", "s3", "gcs", "folder")
# Keys that would carry a secret: refused in `artifacts:` with a pointer to the environment (the libraries' own rules).
_CREDENTIAL_WORDS = ("key", "secret", "token", "password", "credential", "session")


def is_credential_key(name: str) -> bool:
    return any(word in name.lower() for word in _CREDENTIAL_WORDS)


class ArtifactsSpec(_Strict):
    """Where trials' checkpoints go as Optuna artifacts: a folder every worker reaches (the default: the study's
    checkpoint_dir), or an S3 / GCS bucket; `folder` keeps plain Hugging Face folders under checkpoint_dir instead,
    outside the artifact API. Credentials never appear here: boto3 and google-cloud-storage read them from the
    environment."""

    store: Literal["filesystem", "s3", "gcs", "folder"] = "filesystem"
    path: str | None = None  # filesystem: default the study's checkpoint_dir
    bucket: str | None = None  # s3, gcs
    prefix: str | None = None  # s3, gcs: keys start with it
    endpoint_url: str | None = None  # s3: an S3-compatible store (MinIO, ...)

    @model_validator(mode="after")
    def _check(self) -> ArtifactsSpec:
        problems = []
        if self.store == "folder":
            extra = [k for k in ("path", "bucket", "prefix", "endpoint_url") if getattr(self, k) is not None]
            if extra:
                problems.append(f"store folder takes no {', '.join(extra)} (its folders go under checkpoint_dir)")
        elif self.store == "filesystem":
            extra = [k for k in ("bucket", "prefix", "endpoint_url") if getattr(self, k) is not None]
            if extra:
                verb = "applies" if len(extra) == 1 else "apply"
                problems.append(f"{', '.join(extra)} only {verb} to store s3 or gcs (store filesystem takes path)")
        else:
            if not self.bucket:
                problems.append(f"store {self.store} needs bucket: the name of the bucket the artifacts go to")
            if self.path is not None:
                problems.append(f"path only applies to store filesystem (store {self.store} takes bucket and prefix)")
        if self.endpoint_url is not None and self.store != "folder":
            if self.store != "s3":
                problems.append("endpoint_url only applies to store s3 (an S3-compatible store such as MinIO)")
            elif "@" in self.endpoint_url.split("//", 1)[-1].split("/", 1)[0]:
                problems.append("endpoint_url must not carry credentials (user:password@): set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY in the environment")  # fmt: skip
            elif not self.endpoint_url.startswith(("http://", "https://")):
                problems.append("endpoint_url must start with http:// or https:// (e.g. http://minio:9000)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def uses_artifacts(self) -> bool:
        """Whether checkpoints go through Optuna's artifact API (every store but `folder`)."""
        return self.store != "folder"


class Spec(_Strict):
    """A whole study spec. Relative data paths are resolved against the spec file's folder."""

    name: str = Field(min_length=1, max_length=200)
    storage: str | None = None
    checkpoint_dir: str | None = None
    # What the study learns: one text -> a label, or a pair of texts -> a label (data.text_pair_column).
    task: str = DEFAULT_TASK
    data: DataSpec
    model: ModelSpec = ModelSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    search: SearchSpec = SearchSpec()
    trainer: TrainerSpec = TrainerSpec()
    heartbeat: HeartbeatSpec = HeartbeatSpec()
    resources: ResourcesSpec = ResourcesSpec()
    # Checkpoints as Optuna artifacts (any worker writes, any machine exports); store folder: plain folders.
    artifacts: ArtifactsSpec = ArtifactsSpec()

    @field_validator("name", mode="after")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} {NAME_RULE}")
        return value

    @field_validator("task", mode="after")
    @classmethod
    def _check_task(cls, value: str) -> str:
        available = ", ".join(TASKS)
        if value not in TASKS:
            meant = TASK_ALIASES.get(value.lower().replace("_", "-")) or next(
                iter(difflib.get_close_matches(value.lower(), list(TASKS), n=1, cutoff=0.7)), None
            )
            hint = f"; did you mean {meant!r}?" if meant else ""
            raise ValueError(f"unknown task {value!r} (available: {available}){hint}")
        return value

    @model_validator(mode="after")
    def _task_default_metric(self) -> Spec:
        # A spec that names no metric optimises its task's default (spearman for regression, ...).
        if "metric" not in self.objective.model_fields_set and self.objective.metric != default_metric(self.task):
            return self.model_copy(update={"objective": ObjectiveSpec(metric=default_metric(self.task))})
        return self

    @model_serializer(mode="wrap")
    def _leave_out_default_task(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `task` came after studies were stored: the default is left out, so their spec and fingerprint stay.
        body: dict[str, Any] = handler(self)
        if body.get("task") == DEFAULT_TASK:
            del body["task"]
        if body.get("artifacts", "") is None:  # came later too: specs without it are stored as before
            del body["artifacts"]
        search = body.get("search")
        if isinstance(search, dict) and search.get("prune_after_epochs") == 0:  # later too, and 0 is how they ran
            del search["prune_after_epochs"]
        return body

    def fingerprint(self) -> str:
        """Hash of everything that defines the study's trials (not the budget, nor where results are kept)."""
        exclude: dict[str, Any] = {}
        for key in NOT_FINGERPRINTED:
            section, _, name = key.partition(".")
            if name:
                exclude.setdefault(section, set()).add(name)
            else:
                exclude[section] = True
        body = self.model_dump(mode="json", exclude=exclude)
        if body["search"]["first_epoch_evals"] == 0:  # one evaluation per epoch: what studies made before the key
            del body["search"]["first_epoch_evals"]  # existed did, so they continue under `first_epoch_evals: 0`
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


_TAGS = {"range", "choices", "fixed", "int", "float"}


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` accepts, to say what would be right for an unknown key."""
    model: type[BaseModel] | None = Spec
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        members = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else annotation  # `ArtifactsSpec | None`: the model
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if part in DEFAULTS:
            model = RangeParam
    return list(model.model_fields) if model else []


# What people call the tasks elsewhere, and the name they have here.
TASK_ALIASES = {
    "ner": "token-classification", "token": "token-classification", "tagging": "token-classification",
    "sequence-labeling": "token-classification", "sequence-labelling": "token-classification",
    "multilabel": "multi-label", "multi-label-classification": "multi-label",
    "classification": "text-classification", "sentiment": "text-classification",
    "nli": "text-pair", "pair": "text-pair", "sentence-pair": "text-pair", "pair-classification": "text-pair",
    "sts": "regression", "similarity": "regression", "score": "regression",
}  # fmt: skip


# transformers.TrainingArguments names a Trainer user writes, and the key that means the same here.
TRAINER_NAMES = {
    "per_device_train_batch_size": "batch_size", "train_batch_size": "batch_size",
    "num_train_epochs": "epochs", "num_epochs": "epochs", "lr": "learning_rate",
    "warmup_steps": "warmup_ratio", "per_device_eval_batch_size": "eval_batch_size", "seed": "seed",
    "label_smoothing_factor": "label_smoothing", "hidden_dropout_prob": "dropout", "classifier_dropout": "dropout",
    "max_grad_norm": "gradient_clip_val", "gradient_accumulation_steps": "accumulate_grad_batches",
    "lr_scheduler_type": "lr_schedule", "early_stopping": "early_stopping_patience",
}  # fmt: skip


def _close_key(name: str, allowed: list[str]) -> list[str]:
    """The allowed key a misspelt one most likely meant: a Trainer argument's counterpart
    (`per_device_train_batch_size`: batch_size), close as a whole (`n_trails`: n_trials), else one whose first word it
    is close to (`lable`: label_column)."""
    if TRAINER_NAMES.get(name) in allowed:
        return [TRAINER_NAMES[name]]
    return difflib.get_close_matches(name, allowed, n=1) or [
        key for key in allowed if difflib.get_close_matches(name, key.split("_")[:1], n=1, cutoff=0.75)
    ][:1]


def _format_error(err: Any) -> tuple[str, str]:
    loc = tuple(p for p in err["loc"] if p not in _TAGS and not str(p).startswith("function-"))
    where = ".".join(str(p) for p in loc)
    kind = err["type"]
    if kind == "extra_forbidden" and loc[:1] == ("artifacts",) and is_credential_key(str(loc[-1])):
        return where, (
            "credentials never go in the spec: set them in the environment (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY or AWS_PROFILE for s3, GOOGLE_APPLICATION_CREDENTIALS for gcs)"
        )
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        close = _close_key(str(loc[-1]), allowed) if loc else []
        elsewhere = TRAINER_NAMES.get(str(loc[-1]), str(loc[-1])) if loc and not close else None
        if elsewhere in TrainerSpec.model_fields and loc[:1] != ("trainer",):  # searched by Trainer users, set here
            return where, (f"unknown key{hint}; that is trainer.{elsewhere} here, one value for the whole study (run "
                           "a study per value to compare them)")  # fmt: skip
        if elsewhere in DEFAULTS and loc[:2] != ("search", "space"):  # a hyperparameter written among the settings
            ratio = " (a fraction of the optimizer steps, not a count)" if elsewhere == "warmup_ratio" else ""
            return where, (f"unknown key{hint}; that is search.space.{elsewhere} here{ratio}, a hyperparameter: "
                           "searched or fixed in the space")  # fmt: skip
        return where, f"unknown key{hint}" + (f"; did you mean {close[0]!r}?" if close else "")
    if kind == "missing":
        return where, "required key is missing"
    if kind == "too_short" and isinstance(err.get("input"), list):
        return where, "empty list of choices: give at least one value"
    if ("fixed" in err["loc"] or "choices" in err["loc"]) and kind in (
        "int_parsing",
        "float_parsing",
        "int_type",
        "float_type",
    ):
        return where, f"must be a number, a list of choices or {{low, high, log}}, got {err.get('input')!r}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        msg = msg.replace("Input should be", "must be one of")
    value = err.get("input")
    if kind not in ("value_error", "extra_forbidden") and not isinstance(value, dict | list):
        msg = f"{msg}, got {value!r}"
    if where == "data.format":  # the format of tagged files; tables are read by their suffix
        msg += (" (the format of task: token-classification's files; a table is read by its suffix: name it .csv "
                "or .tsv)" if kind == "literal_error" else "")  # fmt: skip
    return where, msg


def parse_spec(data: Any, *, source: str = "spec", stored: bool = False) -> Spec:
    """Validate a parsed YAML mapping; raise SweepError listing every problem.

    `stored`: the spec a study stored (`StudyRecord.spec_as_it_ran`), for a worker without the spec file. It ran
    once already: keys that would do nothing are not refused again, and its dump's generic defaults are read as the
    file had them (`stored_data_section`).
    """
    if not isinstance(data, dict):
        raise SweepError(
            [("", f"must be a mapping of keys (name, data, model, ...), got {type(data).__name__}")], source=source
        )
    section = data.get("data")
    task = data.get("task", DEFAULT_TASK)
    if stored and isinstance(section, dict):
        data = {**data, "data": stored_data_section(task, section)}
    problems = task_problems(data)
    if not stored and isinstance(section, dict) and task in TASKS:
        problems += unused_key_problems(task, section)
    try:
        spec = Spec.model_validate(data)
        # the cap is for new input: a study stored with more (before the cap, or raised past it) still runs
        if not stored and spec.search.n_trials > MAX_TRIALS:
            problems.append(("search.n_trials", trials_problem(spec.search.n_trials) or ""))
    except ValidationError as exc:
        problems = [_format_error(e) for e in exc.errors()] + problems
    if problems:
        # A union of int/float reports once per member: keep the first problem of each field.
        unique = list({where: (where, msg) for where, msg in reversed(problems)}.values())[::-1]
        raise SweepError(unique, source=source) from None
    return spec


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one YAML mapping (well-formed YAML, but never what the writer meant)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last, so a second `search:`
    holding only `space:` silently dropped the first's `n_trials: 3` and the study ran 20 trials."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: flattened by the base class, and a key
                continue  # given beside it overrides the merged one on purpose
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in seen:
                raise _DuplicateKey(
                    None, None, f"the key {key!r} appears twice in one mapping ("
                    + (f"lines {seen[key]} and {line}" if seen[key] != line else "both on this line")
                    + "): the second would silently replace the first; merge them into one", key_node.start_mark)
            if isinstance(key, Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_spec_text(raw: bytes, *, source: str) -> Any:
    """The YAML (or JSON, which YAML reads too) of a spec file or a submitted spec, parsed but not yet validated; a
    key given twice in one mapping is refused (`_UniqueKeyLoader`)."""
    try:
        return yaml.load(raw.decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as exc:
        raise SweepError(
            [("", f"not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8")], source=source
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        said = problem if isinstance(exc, _DuplicateKey) else f"malformed YAML: {problem}"
        raise SweepError([(where, said)], source=source) from None


def load_spec(path: str | Path) -> tuple[Spec, Path]:
    """Read and validate a spec file; returns the spec and the folder relative data paths start from."""
    path = Path(path)
    if path.is_dir():
        specs = sorted(p.name for p in path.glob("*.y*ml"))[:3]
        hint = f", e.g. {path / specs[0]}" if specs else ""
        raise SweepError([("", f"{path.resolve()} is a folder: give a study spec file (.yaml) in it{hint}")])
    if not path.is_file():
        raise SweepError([("", f"spec file not found: {path.resolve()} (give a .yaml study spec)")])
    data = read_spec_text(path.read_bytes(), source=str(path))
    base = path.resolve().parent
    try:
        spec = parse_spec(data, source=str(path))
    except SweepError as exc:
        # Report the data's problems too (missing files, missing columns), so one run lists every problem.
        data_section = data.get("data") if isinstance(data, dict) else None
        if isinstance(data_section, dict):
            known = {where for where, _ in exc.problems}
            sources = {key: data_section.get(key) for key in ("train", "validation")}
            task = data.get("task", DEFAULT_TASK)
            # An unknown task reads no file type in particular: the task line says what is wrong, not the data's
            suffixes = data_suffixes(task, data_section.get("format")) if task in TASKS else None
            paths = [p for p in path_problems(sources, base, suffixes) if p[0] not in known]
            exc.problems += paths
            if not paths and task in TASKS and not any(where == "data" or where.startswith("data.") for where in known):
                exc.problems += data_problems(DataSpec.model_validate(data_section), base, data.get("task"))
        raise SweepError(exc.problems, source=exc.source) from None
    if spec.artifacts is not None and spec.artifacts.path and not Path(spec.artifacts.path).expanduser().is_absolute():
        # like checkpoint_dir, a relative artifacts folder starts at the spec's folder
        path = str((base / Path(spec.artifacts.path).expanduser()).resolve())
        spec = spec.model_copy(update={"artifacts": spec.artifacts.model_copy(update={"path": path})})
    return spec, base


def check_paths(spec: Spec, base: Path) -> list[tuple[str, str]]:
    """Problems with local files named by the spec (data files), without reading them."""
    suffixes = data_suffixes(spec.task, spec.data.format)
    return path_problems({"train": spec.data.train, "validation": spec.data.validation}, base, suffixes)
