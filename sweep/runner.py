"""Run a study: validate the spec, prepare data once, create or resume the Optuna study, optimise."""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from sqlalchemy.engine import make_url

from datamodules import DataError, PreparedData, prepare_classification_data
from sweep.checkpoints import prune_checkpoints, save_tokenizer_once
from sweep.encoders import resolve_encoder
from sweep.errors import SweepError
from sweep.objective import TrialSettings, build_objective
from sweep.progress import StudyProgress
from sweep.space import grid
from sweep.spec import RangeParam, SearchSpec, Spec, check_paths, load_spec, resolve_data_path
from sweep.storage import DEFAULT_STORAGE_URL, open_storage, storage_problems
from sweep.summary import trial_line

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
NOT_FINGERPRINTED = ("storage", "checkpoint_dir", "search.n_trials", "search.keep_checkpoints")
DEFAULT_CACHE_DIR = ".sweep_cache"
MAX_CONSECUTIVE_FAILURES = 3


def quiet_libraries() -> None:
    """Keep the screen for our own progress: no per-trial banners from Lightning, Optuna or transformers."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
    warnings.filterwarnings("ignore", ".*Experimental.*", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(search: SearchSpec) -> optuna.samplers.BaseSampler:
    seed = search.seed
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        return optuna.samplers.GridSampler(grid(search.space), seed=seed)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if search.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def max_epochs(search: SearchSpec) -> int:
    epochs = search.space.epochs
    if isinstance(epochs, RangeParam):
        return int(epochs.high)
    return int(max(epochs) if isinstance(epochs, list) else epochs)


def steps_per_epoch(search: SearchSpec) -> int:
    """Optuna steps per epoch: the end of each epoch plus the extra evaluations inside the first one."""
    return search.first_epoch_evals + 1


def make_pruner(search: SearchSpec) -> optuna.pruners.BasePruner:
    """Pruners act on evaluations; a step is 1/steps_per_epoch of an epoch (epoch ends are multiples of it)."""
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if search.pruner == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=3)
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_epochs(search) * steps_per_epoch(search), reduction_factor=3
        )
    if search.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def balanced_class_weights(labels: list[int], num_labels: int) -> list[float]:
    """`n / (k * count_c)`, as scikit-learn's 'balanced'."""
    counts = Counter(labels)
    total = len(labels)
    return [total / (num_labels * counts[i]) if counts[i] else 0.0 for i in range(num_labels)]


def prepare_data(spec: Spec, base: Path, encoder: str, console: Console) -> PreparedData:
    cache_dir = Path(spec.data.cache_dir or DEFAULT_CACHE_DIR)
    if not cache_dir.is_absolute() and spec.data.cache_dir:
        cache_dir = base / cache_dir
    try:
        return prepare_classification_data(
            train_source=resolve_data_path(spec.data.train, base),
            validation_source=resolve_data_path(spec.data.validation, base) if spec.data.validation else None,
            text_column=spec.data.text_column,
            label_column=spec.data.label_column,
            val_fraction=spec.data.val_fraction,
            seed=spec.search.seed,
            tokenizer_name_or_path=encoder,
            max_length=spec.model.max_length,
            cache_dir=cache_dir,
            log=lambda line: console.print(f"[dim]data:[/] {line}", highlight=False),
        )
    except DataError as exc:
        raise SweepError(exc.problems) from None
    except OSError as exc:  # transformers: no such hub model, no network, no tokenizer files in the folder
        reason = str(exc).strip().splitlines()[0]
        raise SweepError(
            [("model.encoder", f"cannot load a tokenizer from {spec.model.encoder!r}: {reason}")]
        ) from None


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two spec dumps."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if old != new else []


def default_checkpoint_root(spec: Spec, base: Path, url: str) -> Path:
    """`checkpoint_dir` from the spec, else `checkpoints/<study>` beside the SQLite file (or the working folder)."""
    if spec.checkpoint_dir:
        root = Path(spec.checkpoint_dir).expanduser()
        return (root if root.is_absolute() else base / root).resolve()
    parsed = make_url(url)
    parent = (
        Path(parsed.database).resolve().parent
        if parsed.get_backend_name() == "sqlite" and parsed.database
        else Path.cwd()
    )
    return parent / "checkpoints" / spec.name


def create_or_resume(
    storage: optuna.storages.RDBStorage, spec: Spec, data: PreparedData, url: str, checkpoint_root: Path
) -> tuple[optuna.Study, bool]:
    """Create the study with its spec and data report, or load it if the same spec made it before."""
    spec_dump = spec.model_dump(mode="json")
    try:
        storage.get_study_id_from_name(spec.name)
        exists = True
    except KeyError:
        exists = False
    if exists:
        study = optuna.load_study(
            study_name=spec.name, storage=storage, sampler=make_sampler(spec.search), pruner=make_pruner(spec.search)
        )
        attrs = study.user_attrs
        if attrs.get("spec_fingerprint") != spec.fingerprint():
            old = dict(attrs.get("spec", {}))
            changed = [k for k in _diff(old, spec_dump) if k not in NOT_FINGERPRINTED]
            raise SweepError(
                [
                    (
                        "name",
                        f"study {spec.name!r} already exists in {url} with a different spec "
                        f"(changed: {', '.join(changed) or 'unknown'}); give the spec a new name to start "
                        "a new study, or run the original spec to continue",
                    )
                ]
            )
        if attrs.get("data_fingerprint") != data.fingerprint:
            raise SweepError(
                [
                    (
                        "data",
                        f"study {spec.name!r} was run on different data (or tokenizer) than "
                        f"{spec.data.train} now holds; give the spec a new name to start a new study",
                    )
                ]
            )
        return study, True
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        direction="maximize",
        sampler=make_sampler(spec.search),
        pruner=make_pruner(spec.search),
    )
    study.set_user_attr("spec", spec_dump)
    study.set_user_attr("spec_fingerprint", spec.fingerprint())
    study.set_user_attr("data_fingerprint", data.fingerprint)
    study.set_user_attr("data_report", data.report)
    study.set_user_attr("label_names", list(data.label_names))
    study.set_user_attr("metric", spec.objective.metric)
    study.set_user_attr("steps_per_epoch", steps_per_epoch(spec.search))
    study.set_user_attr("checkpoint_dir", str(checkpoint_root))
    return study, False


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


@dataclass
class RunResult:
    study: optuna.Study
    storage_url: str
    resumed: bool
    seconds: float


class _StopAfterFailures:
    """Stop the study after a run of consecutive failed trials (a broken setup, not a bad configuration)."""

    def __init__(self, limit: int):
        self.limit, self.streak = limit, 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL else 0
        if self.streak >= self.limit:
            study.stop()


class _KeepTopCheckpoints:
    """After each trial, delete the checkpoints that fell out of the study-wide top k."""

    def __init__(self, keep: int):
        self.keep = keep

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        prune_checkpoints(study, self.keep)


def run_study(
    spec_path: str | Path,
    *,
    storage_url: str | None = None,
    n_trials: int | None = None,
    console: Console | None = None,
) -> RunResult:
    """Validate everything first (nothing is written on bad input), then create or resume and optimise."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    spec, base = load_spec(spec_path)
    if n_trials is not None:
        if n_trials < 1:
            raise SweepError([("--n-trials", f"must be >= 1, got {n_trials}")])
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"n_trials": n_trials})})
    url = storage_url or spec.storage or DEFAULT_STORAGE_URL
    problems = check_paths(spec, base) + storage_problems(url, field="--storage" if storage_url else "storage")
    try:
        encoder = resolve_encoder(spec.model.encoder, base)
    except SweepError as exc:
        problems += exc.problems
    if problems:
        raise SweepError(problems, source=str(spec_path))
    quiet_libraries()
    if spec.trainer.num_threads:
        torch.set_num_threads(spec.trainer.num_threads)
    data = prepare_data(spec, base, encoder, console)
    for warning in data.report.get("warnings", []):
        console.print(f"[yellow]data warning:[/] {warning}", highlight=False)
    storage = open_storage(url)
    study, resumed = create_or_resume(storage, spec, data, url, default_checkpoint_root(spec, base, url))
    done = count_finished(study)
    total = spec.search.n_trials
    console.print(
        f"{'resuming' if resumed else 'created'} study [bold]{spec.name}[/] in {url}: {done}/{total} trials finished; "
        f"{len(data.train)} train / {len(data.validation)} validation examples, {len(data.label_names)} classes",
        highlight=False,
    )
    if done >= total:
        return RunResult(study, url, resumed, time.perf_counter() - started)
    keep = spec.search.keep_checkpoints
    checkpoint_root = Path(study.user_attrs["checkpoint_dir"])
    class_weights = None
    if spec.model.class_weights == "balanced":
        class_weights = balanced_class_weights(list(data.train["labels"]), len(data.label_names))
    settings = TrialSettings(
        encoder=encoder,
        space=spec.search.space,
        metric=spec.objective.metric,
        seed=spec.search.seed,
        class_weights=class_weights,
        accelerator=spec.trainer.accelerator,
        precision=spec.trainer.precision,
        eval_batch_size=spec.trainer.eval_batch_size,
        group_by_length=spec.trainer.group_by_length,
        first_epoch_evals=spec.search.first_epoch_evals,
        checkpoint_root=checkpoint_root if keep else None,
        tokenizer_dir=save_tokenizer_once(encoder, checkpoint_root) if keep else None,
        keep_checkpoints=keep,
    )
    with StudyProgress(console, total=total, done=done, name=spec.name) as progress:
        monitor = f"val_{spec.objective.metric}"
        objective = build_objective(
            data,
            settings,
            trial_callbacks=lambda number, hp, steps: [progress.trial_callback(number, hp.epochs, steps, monitor)],
        )

        def report(study: optuna.Study, trial: FrozenTrial) -> None:
            progress.trial_done(trial_line(study, trial, spec.objective.metric), counts=trial.state in FINISHED)

        study.optimize(
            objective,
            n_trials=None,
            catch=(Exception,),
            callbacks=[
                _KeepTopCheckpoints(keep),
                report,
                optuna.study.MaxTrialsCallback(total, states=FINISHED),
                _StopAfterFailures(MAX_CONSECUTIVE_FAILURES),
            ],
        )
    return RunResult(study, url, resumed, time.perf_counter() - started)
