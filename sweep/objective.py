"""One trial: suggest hyperparameters, train a LightningModule, score it by its best validation epoch."""

from __future__ import annotations

import math
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import torch
from optuna.trial import FrozenTrial
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.utilities.exceptions import SIGTERMException

from datamodules import PreparedData
from datamodules.token_preparation import SENTENCE
from record import (
    Timings,
    TrialResult,
    TrialWriter,
    beats,
    enters_top,
    leads_configuration,
    maximizes,
    read_trial,
    top_bar,
)
from sweep.artifacts import checkpoint_name
from sweep.best_weights import BestWeights, tie_loss
from sweep.callbacks import EvaluationSchedule, PruningCallback, StopCheck, TimingCallback
from sweep.checkpoints import checkpoint_store
from sweep.confusions import confused_examples
from sweep.errors import DiskError, StorageLost
from sweep.memory import keep_freed_memory
from sweep.space import Hyperparameters, suggest
from sweep.spec import SpaceSpec
from sweep.tasks import Batching, Head, build_datamodule, build_module, validation_groups
from sweep.taskspec import DEFAULT_TASK, MINIMIZED, applicable
from sweep.worker import GracefulStop, StopRequested, worker_id

TrialCallbackFactory = Callable[[int, int, int, str], pl.Callback]


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a study shares; plain values taken from the spec by the runner."""

    encoder: str
    space: SpaceSpec
    metric: str
    seed: int
    class_weights: list[float] | None
    accelerator: str
    precision: str
    eval_batch_size: int
    group_by_length: bool = True
    first_epoch_evals: int = 0
    checkpoint_root: Path | None = None  # None: keep no weights
    tokenizer_dir: Path | None = None
    keep_checkpoints: int = 3
    task: str = DEFAULT_TASK
    threshold: str = "global"  # task multi-label: model.threshold
    artifacts: dict[str, str] | None = None  # the artifact store checkpoints go to; None: folders under checkpoint_root
    keep_freed_memory: bool = True  # trainer.keep_freed_memory: malloc keeps freed buffers (sweep.memory)
    gradient_clip_val: float | None = None  # trainer.gradient_clip_val: the gradients' L2 norm is clipped to it
    accumulate_grad_batches: int = 1  # trainer.accumulate_grad_batches: batches summed per optimizer step
    lr_schedule: str = "linear"  # trainer.lr_schedule: the learning rate after the warm-up
    early_stopping_patience: int | None = None  # trainer.early_stopping_patience: evaluations without improvement
    positive_label: str | None = None  # objective.positive_label: the class whose F1 is f1_binary
    pooling: str = "cls"  # model.pooling as the study resolved it (record.StudyRecord.pooling)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX), where bf16 autocast speeds training up;
    emulated elsewhere, it slows it down. torch exposes the check only under a private name: False if it is gone."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """`auto` means bf16 mixed precision where the hardware computes in bf16 natively (a GPU that supports it; on the
    CPU, AVX-512 BF16 or AMX), full precision elsewhere."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if accelerator in ("auto", "cpu") and cpu_has_bf16():
        return "bf16-mixed"
    return "32-true"


def best_epoch(history: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    """The validation record with the best `monitor` (highest, or lowest for a minimised metric such as RMSE); on a
    tie the one with the lower validation loss, then the earliest (as `BestWeights` chooses the weights)."""
    if not history:
        raise RuntimeError("the trial finished without a validation run")
    sign = -1.0 if monitor.removeprefix("val_") in MINIMIZED else 1.0
    return max(history, key=lambda record: (sign * record[monitor], -tie_loss(record.get("val_loss")), -record["step"]))



def _epochs(value: float | None) -> float | int | None:
    """Epochs as a plain int when whole (2, not 2.0), else rounded (0.33)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(float(value), 2)


# Parts of an evaluation's record that grow with the classes or the validation rows: kept for the best one only.
BULKY = ("per_class", "confusion_matrix", "misclassified", "scatter", "thresholds")


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    """A history record without its bulky parts (kept for the best evaluation only)."""
    return {k: v for k, v in record.items() if k not in BULKY}


def train_trial(
    hp: Hyperparameters,
    data: PreparedData,
    settings: TrialSettings,
    *,
    seed: int,
    callbacks: list[pl.Callback],
) -> tuple[Any, TimingCallback, dict[str, float]]:
    """Train one configuration; returns the module (with its history), the timing callback and setup times."""
    if settings.keep_freed_memory:
        keep_freed_memory()
    pl.seed_everything(seed, workers=True, verbose=False)
    t0 = time.perf_counter()
    batching = Batching(hp.batch_size, settings.eval_batch_size, seed, settings.group_by_length)
    datamodule = build_datamodule(settings.task, data, batching)
    t1 = time.perf_counter()
    head = Head(settings.encoder, list(data.label_names), hp, settings.class_weights,
                score_mean=_score_mean(data), metric=settings.metric, threshold=settings.threshold,
                label_priors=_label_priors(data), validation_groups=validation_groups(data),
                lr_schedule=settings.lr_schedule, positive_label=settings.positive_label,
                pooling=settings.pooling)  # fmt: skip
    module = build_module(settings.task, head)
    t2 = time.perf_counter()
    timing = TimingCallback()
    schedule = next((c for c in callbacks if isinstance(c, EvaluationSchedule)), None)
    if schedule is None:
        callbacks = [EvaluationSchedule(settings.first_epoch_evals), *callbacks]
    if settings.early_stopping_patience is not None:  # after the pruning callback: its report comes first
        callbacks = [*callbacks, EarlyStopping(
            f"val_{settings.metric}", patience=settings.early_stopping_patience,
            mode="min" if settings.metric in MINIMIZED else "max", check_on_train_epoch_end=False,
        )]  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=hp.epochs,
        accelerator=settings.accelerator,
        devices=1,
        precision=resolve_precision(settings.precision, settings.accelerator),  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        gradient_clip_val=settings.gradient_clip_val,  # None: none (norm clipping, as Trainer's max_grad_norm)
        accumulate_grad_batches=settings.accumulate_grad_batches,
        callbacks=[timing, *callbacks, timing.closer],  # the timer first, its evaluation clock's end last
    )
    trainer.fit(module, datamodule=datamodule)
    return module, timing, {"data": t1 - t0, "model_load": t2 - t1}


def _score_mean(data: PreparedData) -> float | None:
    """The training scores' mean where the data report has one (task: regression), else None."""
    mean = data.report.get("label_distribution", {}).get("train", {}).get("mean")
    return float(mean) if isinstance(mean, int | float) else None


def _label_priors(data: PreparedData) -> list[float] | None:
    """Each label's share of the training targets where a head starts from it (see `Head.label_priors`): of the rows
    for multi-hot labels (task: multi-label), of the tagged words for per-word tags (task: token-classification);
    else None."""
    if not len(data.train):
        return None
    if data.report.get("multi_label"):
        counts = data.report.get("class_distribution", {}).get("train", {})
        return [counts.get(name, 0) / len(data.train) for name in data.label_names]
    if SENTENCE in data.train.column_names:
        tags = Counter(t for row in data.train["labels"] for t in row if t >= 0)
        total = sum(tags.values())
        return [tags[i] / total for i in range(len(data.label_names))] if total else None
    return None


def trial_result(best: dict[str, Any], history: list[dict[str, Any]], data: PreparedData) -> TrialResult:
    """The record of a trial's training: its best evaluation (with the task's per-class parts) and its history."""
    label_ids = data.validation["labels"] if "misclassified" in best else None
    return TrialResult(
        best_epoch=best["epoch"] + 1,
        best_epochs_trained=_epochs(best.get("epochs_trained")),
        epochs_run=_epochs(history[-1].get("epochs_trained")) or history[-1]["epoch"] + 1,
        evaluations=len(history),
        metrics=_compact(best),
        per_class=best.get("per_class", {}),
        confusion_matrix=best.get("confusion_matrix"),
        history=[_compact(r) for r in history],
        confused_examples=confused_examples(
            best.get("misclassified"),
            texts=data.validation_texts,
            label_ids=list(label_ids) if label_ids is not None else [],
            label_names=data.label_names,
        ),
        scatter=best.get("scatter") or [],
        threshold=best.get("threshold"),
        label_thresholds=best.get("thresholds"),
    )


def stored_trial(trial: optuna.Trial) -> FrozenTrial:
    """The stored state of the trial being run. Optuna has no public way to read a running trial's system attributes
    (its retry bookkeeping, `failed_trial`, lives there): `Trial` exposes user attributes and params only."""
    return trial.study._storage.get_trial(trial._trial_id)


def _should_save(trial: optuna.Trial, settings: TrialSettings, value: float, reevaluates: int | None) -> bool:
    """Write weights only when checkpointing is on and the value enters the study-wide top k, or (a re-evaluation
    run) is its configuration's best run so far: the run `sweep export --by mean` may export."""
    if settings.checkpoint_root is None or settings.tokenizer_dir is None:
        return False
    if enters_top(trial.study, value, settings.keep_checkpoints):
        return True
    return reevaluates is not None and leads_configuration(trial.study, reevaluates, value)


def _never() -> bool:
    return False


def _keeping_rule(
    trial: optuna.Trial, settings: TrialSettings, reevaluates: int | None
) -> Callable[[float], bool] | None:
    """Which evaluations' weights `BestWeights` copies (None: every improving one): none without checkpoints; for a
    search trial, those that beat the study's top-k bar as the trial starts (the bar only rises, so a value below it
    is never written); a re-evaluation run copies every best (whether it leads its configuration is known at its end).
    """
    if settings.checkpoint_root is None or settings.tokenizer_dir is None or settings.keep_checkpoints <= 0:
        return lambda value: False
    if reevaluates is not None:
        return None
    bar, maximize = top_bar(trial.study, settings.keep_checkpoints), maximizes(trial.study)
    return lambda value: beats(value, bar, maximize=maximize)


def build_objective(
    data: PreparedData,
    settings: TrialSettings,
    *,
    trial_callbacks: Callable[[int, Hyperparameters, int], list[pl.Callback]] | None = None,
    on_trial_start: Callable[[int], None] | None = None,
    stop: GracefulStop | None = None,
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial. Its value is the best evaluation's validation metric.

    With `stop`, a SIGTERM/Ctrl-C during training ends the trial as FAIL with the reason (`stopped_by`); the
    runner queues it for one retry with the same parameters and seed.
    """
    monitor = f"val_{settings.metric}"
    stop = stop or GracefulStop()

    def objective(trial: optuna.Trial) -> float:
        started = time.perf_counter()
        if on_trial_start:
            on_trial_start(trial.number)
        record = TrialWriter(trial.set_user_attr)
        hp = suggest(trial, settings.space)
        # A retry (of a trial whose worker died or was stopped) repeats the original run: same parameters, same seed.
        # A re-evaluation run (`sweep reevaluate`, its retries too) trains with the seed it was queued with.
        stored = read_trial(stored_trial(trial))
        reevaluates = stored.reevaluates
        if reevaluates is not None and stored.seed is not None:
            seed = int(stored.seed)
        else:
            seed = settings.seed + (trial.number if stored.retry_of is None else stored.retry_of)
        record.start(
            worker=worker_id(), seed=seed, hyperparameters=applicable(hp.as_dict(), settings.task),
            data_fingerprint=data.fingerprint,
            inherited=trial.user_attrs,
        )  # fmt: skip
        schedule = EvaluationSchedule(settings.first_epoch_evals)
        pruning = PruningCallback(
            monitor,
            report=stop.shielded(trial.report),
            # A re-evaluation run re-measures a fixed configuration: it is never pruned.
            should_prune=stop.shielded(trial.should_prune if reevaluates is None else _never),
            schedule=schedule,
        )
        weights = BestWeights(
            monitor, minimize=settings.metric in MINIMIZED, worth_keeping=_keeping_rule(trial, settings, reevaluates)
        )
        steps = hp.epochs * math.ceil(len(data.train) / hp.batch_size)
        extra = trial_callbacks(trial.number, hp, steps) if trial_callbacks else []
        try:
            with stop.training():
                module, timing, setup = train_trial(
                    hp, data, settings, seed=seed, callbacks=[schedule, pruning, weights, StopCheck(stop.check), *extra]
                )
        except (StopRequested, SIGTERMException) as exc:
            # Lightning chains its own SIGTERM handler before ours and, when ours could not raise at that moment,
            # ends the fit with its SIGTERMException (a SystemExit, which Optuna's loop would let through without
            # queueing the retry): the same stop, recorded the same way.
            if stop.requested is None:
                stop.requested = "stop" if isinstance(exc, StopRequested) else "SIGTERM"
                stop.signalled = not isinstance(exc, StopRequested)
            took = time.perf_counter() - started
            stop.trials_stopped += 1
            record.stopped(
                stop.requested,
                f"stopped by {stop.requested} after {took:.1f} s on {worker_id()}; queued for a retry with the same "
                "parameters",
            )
            if isinstance(exc, StopRequested):
                raise
            raise StopRequested(f"stopped by {stop.requested}") from None
        except StorageLost:
            raise  # nothing more can be recorded; the heartbeat fails the trial and another worker retries it
        except DiskError:
            raise  # a disk that refuses writes stops the run (worker.run_trials records the reason)
        except Exception as exc:
            record.failed(f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8)[-4000:])
            raise
        history = module.history
        best = best_epoch(history, monitor)
        record.result(trial_result(best, history, data))
        value = float(best[monitor])
        saving = time.perf_counter()
        kept = pruning.pruned_at is None and _should_save(trial, settings, value, reevaluates)
        if kept and weights.state is not None:
            name = checkpoint_name(trial.number)
            assert settings.checkpoint_root is not None and settings.tokenizer_dir is not None
            try:
                store = checkpoint_store(settings.checkpoint_root, settings.artifacts)
                artifact = store.save(module.model, weights.state, settings.tokenizer_dir, name, owner=trial)
            except DiskError as exc:  # a full or read-only disk: the trial fails with the reason, the run stops
                record.failed(f"{type(exc).__name__}: {exc}")
                raise
            record.checkpoint(name, weights.epoch, artifact)
        record.timings(
            Timings(
                data=round(setup["data"], 3),
                model_load=round(setup["model_load"], 3),
                train=round(timing.train_seconds(), 3),
                validation=round(timing.seconds["validation"], 3),
                checkpoint=round(time.perf_counter() - saving, 3),
                total=round(time.perf_counter() - started, 3),
                train_examples=timing.train_examples,
                train_steps=round(timing.seconds["train_steps"], 3),
                validation_forward=round(timing.seconds["validation_forward"], 3),
            ),
            timing.validation_ends,
        )
        if stop.requested is not None:  # the stop came after training: this trial is recorded as it finished
            stop.trials_finished += 1
        if pruning.pruned_at is not None:
            record.pruned(_epochs(pruning.pruned_at_epochs))
            raise optuna.TrialPruned(f"pruned after {_epochs(pruning.pruned_at_epochs)} epochs")
        return value

    return objective
