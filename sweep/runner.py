"""Run a study: validate the spec, prepare data once, create or resume the Optuna study, optimise."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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
from sweep.spec import RangeParam, SearchSpec, Spec, check_paths, load_spec, parse_spec, resolve_data_path
from sweep.storage import (
    BUDGET_ATTR,
    DEFAULT_STORAGE_URL,
    POSTGRES_HINT,
    Heartbeat,
    existing_study_attrs,
    is_sqlite,
    open_storage,
    reachability_problems,
    recover_orphans,
    safe_url,
    sqlite_writer_lock,
    storage_problems,
    study_names,
)
from sweep.summary import trial_line
from sweep.worker import (
    GracefulStop,
    LoopResult,
    RetryStopped,
    StopOnRequest,
    budget,
    launch_workers,
    run_trials,
    worker_id,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
NOT_FINGERPRINTED = (
    "storage",
    "checkpoint_dir",
    "heartbeat.interval",
    "heartbeat.grace_period",
    "search.n_trials",
    "search.keep_checkpoints",
)
DEFAULT_CACHE_DIR = ".sweep_cache"
MAX_CONSECUTIVE_FAILURES = 3
ORPHAN_REASON = "its worker stopped without finishing it (found RUNNING when the store was opened again)"


def quiet_libraries() -> None:
    """Keep the screen for our own progress: no per-trial banners from Lightning, Optuna or transformers."""
    # ERROR: our own line reports each failed trial with its error (the traceback is kept in the trial's attrs).
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
    warnings.filterwarnings("ignore", ".*Experimental.*", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(search: SearchSpec, salt: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; `salt` varies the seed per worker process (0: the spec's seed, reproducible)."""
    seed = (search.seed + salt) % 2**32
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        return optuna.samplers.GridSampler(grid(search.space), seed=seed)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if search.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    # Several workers: `constant_liar` makes TPE treat running trials as bad, so workers spread out.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=salt != 0)


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


def prepare_data(
    spec: Spec, base: Path, encoder: str, console: Console, check: Callable[[str], None] | None = None
) -> PreparedData:
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
            check_fingerprint=check,
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


def check_same_spec(attrs: dict[str, Any], spec: Spec, url: str) -> None:
    """Refuse to continue a study that another spec (other than budget and locations) created."""
    if attrs.get("spec_fingerprint") == spec.fingerprint():
        return
    old, new = dict(attrs.get("spec", {})), spec.model_dump(mode="json")
    changed = [k for k in _diff(old, new) if k not in NOT_FINGERPRINTED]
    hint = ""
    if "search.first_epoch_evals" in changed and "first_epoch_evals" not in old.get("search", {}):
        hint = " (a study from before evaluations inside the first epoch: add `first_epoch_evals: 0` under search)"
    raise SweepError(
        [
            (
                "name",
                f"study {spec.name!r} already exists in {safe_url(url)} with a different spec "
                f"(changed: {', '.join(changed) or 'unknown'}){hint}; give the spec a new name to start "
                "a new study, or run the original spec to continue",
            )
        ]
    )


def same_data_as(attrs: dict[str, Any], spec: Spec) -> Callable[[str], None]:
    """A check that data (by fingerprint) is the data the study with `attrs` was run on; refuses other data."""

    def check(fingerprint: str) -> None:
        if attrs.get("data_fingerprint") != fingerprint:
            raise SweepError(
                [
                    (
                        "data",
                        f"study {spec.name!r} was run on different data (or tokenizer) than "
                        f"{spec.data.train} now holds; give the spec a new name to start a new study",
                    )
                ]
            )

    return check


def create_or_resume(
    storage: optuna.storages.RDBStorage,
    spec: Spec,
    data: PreparedData,
    url: str,
    checkpoint_root: Path,
    base: Path | None = None,
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
        check_same_spec(attrs, spec, url)
        same_data_as(attrs, spec)(data.fingerprint)
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
    if base is not None:
        study.set_user_attr("spec_dir", str(base))  # where the spec's relative data paths start, for workers
    return study, False


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


@dataclass
class RunResult:
    study: optuna.Study
    storage_url: str
    resumed: bool
    seconds: float
    stopped_by: str | None = None  # SIGTERM / SIGINT when a signal ended the run
    worker_exit_codes: list[int] = field(default_factory=list)
    failures_in_a_row: bool = False


class _StopAfterFailures:
    """Stop the study after a run of consecutive failed trials (a broken setup, not a bad configuration)."""

    def __init__(self, limit: int):
        self.limit, self.streak, self.tripped = limit, 0, False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        stopped = trial.user_attrs.get("stopped_by")  # a stopped worker says nothing about the setup
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL and not stopped else 0
        if self.streak >= self.limit:
            self.tripped = True
            study.stop()


class _KeepTopCheckpoints:
    """After each trial, delete the checkpoints that fell out of the study-wide top k."""

    def __init__(self, keep: int):
        self.keep = keep

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        prune_checkpoints(study, self.keep)


def trial_settings(spec: Spec, data: PreparedData, encoder: str, checkpoint_root: Path) -> TrialSettings:
    """What every trial of this worker shares, from the spec and the study's checkpoint folder."""
    keep = spec.search.keep_checkpoints
    class_weights = None
    if spec.model.class_weights == "balanced":
        class_weights = balanced_class_weights(list(data.train["labels"]), len(data.label_names))
    return TrialSettings(
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


def work(study: optuna.Study, spec: Spec, data: PreparedData, settings: TrialSettings, console: Console) -> LoopResult:
    """This process's share of the study: trials until the budget is finished, a signal, or a broken setup."""
    total = budget(study, spec.search.n_trials)
    with (
        GracefulStop() as stop,
        StudyProgress(console, total=total, done=count_finished(study), name=spec.name) as progress,
    ):
        monitor = f"val_{spec.objective.metric}"
        objective = build_objective(
            data,
            settings,
            trial_callbacks=lambda number, hp, steps: [progress.trial_callback(number, hp.epochs, steps, monitor)],
            stop=stop,
        )

        def report(study: optuna.Study, trial: FrozenTrial) -> None:
            progress.trial_done(trial_line(study, trial, spec.objective.metric), counts=trial.state in FINISHED)

        failures = _StopAfterFailures(MAX_CONSECUTIVE_FAILURES)
        return run_trials(
            study,
            objective,
            [_KeepTopCheckpoints(spec.search.keep_checkpoints), RetryStopped(), report, StopOnRequest(stop), failures],
            default_budget=spec.search.n_trials,
            stop=stop,
            failures=failures,
            console=console,
        )


def heartbeat_of(spec: Spec, interval: int | None = None, grace_period: int | None = None) -> Heartbeat:
    interval = interval or spec.heartbeat.interval
    grace = grace_period or spec.heartbeat.grace_period
    if grace <= interval:
        raise SweepError(
            [
                (
                    "--grace-period",
                    f"must exceed the heartbeat interval, got grace period {grace} s, interval {interval} s",
                )
            ]
        )
    return Heartbeat(interval=interval, grace_period=grace)


def run_study(
    spec_path: str | Path,
    *,
    storage_url: str | None = None,
    n_trials: int | None = None,
    workers: int = 1,
    console: Console | None = None,
) -> RunResult:
    """Validate everything first (nothing is written on bad input), then create or resume and optimise.

    `workers`: 1 runs trials in this process; N > 1 starts N local `sweep worker` processes (PostgreSQL only);
    0 only creates (or updates) the study, for workers started elsewhere.
    """
    console = console or Console(stderr=True)
    started = time.perf_counter()
    spec, base = load_spec(spec_path)
    if n_trials is not None:
        if n_trials < 1:
            raise SweepError([("--n-trials", f"must be >= 1, got {n_trials}")])
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"n_trials": n_trials})})
    url = storage_url or spec.storage or DEFAULT_STORAGE_URL
    field_name = "--storage" if storage_url else "storage"
    problems = check_paths(spec, base) + storage_problems(url, field=field_name)
    if workers < 0:
        problems.append(("--workers", f"must be >= 0, got {workers}"))
    elif workers > 1 and not problems and is_sqlite(url):
        problems.append(("--workers", f"{workers} workers cannot share the SQLite store {url}; {POSTGRES_HINT}"))
    try:
        encoder = resolve_encoder(spec.model.encoder, base)
    except SweepError as exc:
        problems += exc.problems
    if not problems:
        problems += reachability_problems(url, field=field_name)
    if problems:
        raise SweepError(problems, source=str(spec_path))
    existing = existing_study_attrs(url, spec.name)
    if existing is not None:  # before any data is read or cached: a clash writes nothing
        check_same_spec(existing, spec, url)
    quiet_libraries()
    if spec.trainer.num_threads:
        torch.set_num_threads(spec.trainer.num_threads)
    # A resumed study refuses changed data before it is tokenized or cached: nothing is written.
    data = prepare_data(spec, base, encoder, console, check=same_data_as(existing, spec) if existing else None)
    for warning in data.report.get("warnings", []):
        console.print(f"[yellow]data warning:[/] {warning}", highlight=False)
    with sqlite_writer_lock(url):
        storage = open_storage(url, heartbeat=heartbeat_of(spec))
        study, resumed = create_or_resume(storage, spec, data, url, default_checkpoint_root(spec, base, url), base)
        total = spec.search.n_trials
        study.set_user_attr(BUDGET_ATTR, total)
        recovered = recover_orphans(study, ORPHAN_REASON) if is_sqlite(url) else []
        done = count_finished(study)
        console.print(
            f"{'resuming' if resumed else 'created'} study [bold]{spec.name}[/] in {safe_url(url)}: {done}/{total} "
            f"trials finished; {len(data.train)} train / {len(data.validation)} validation examples, "
            f"{len(data.label_names)} classes",
            highlight=False,
        )
        if recovered:
            console.print(
                f"trials {', '.join(map(str, recovered))} were left RUNNING by a stopped run: marked failed and "
                "queued for a retry with the same parameters",
                highlight=False,
            )
        if done >= total:
            return RunResult(study, url, resumed, time.perf_counter() - started)
        if workers == 0:
            console.print(
                f"study ready: start workers with `sweep worker {spec.name} --storage {safe_url(url)}` "
                f"(add --spec {spec_path} where the data sits elsewhere)",
                highlight=False,
            )
            return RunResult(study, url, resumed, time.perf_counter() - started)
        if workers > 1:
            reader = open_storage(url, read_only=True)

            def poll() -> tuple[int, int]:
                trials = reader.get_all_trials(study._study_id, deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                return sum(t.state in FINISHED for t in trials), sum(t.state == TrialState.RUNNING for t in trials)

            codes, signalled = launch_workers(
                workers, spec.name, url, Path(spec_path).resolve(),
                threads=spec.trainer.num_threads, console=console, poll=poll, total=total,
            )  # fmt: skip
            return RunResult(
                optuna.load_study(study_name=spec.name, storage=storage), url, resumed,
                time.perf_counter() - started, worker_exit_codes=[] if signalled else codes, stopped_by=signalled,
            )  # fmt: skip
        settings = trial_settings(spec, data, encoder, Path(study.user_attrs["checkpoint_dir"]))
        loop = work(study, spec, data, settings, console)
    return RunResult(
        study, url, resumed, time.perf_counter() - started,
        stopped_by=loop.stopped_by, failures_in_a_row=loop.failures_in_a_row,
    )  # fmt: skip


def join_study(
    name: str,
    url: str,
    *,
    spec_path: str | Path | None = None,
    checkpoints: Path | None = None,
    threads: int | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    console: Console | None = None,
) -> RunResult:
    """`sweep worker`: join an existing study and run its trials until the study-wide budget is finished.

    The spec comes from the study itself (recorded when it was created), or from `spec_path` (it must be the same
    spec; its folder is where relative data paths start). The worker tokenises the data itself and refuses to run
    if it differs from the study's. Tables are never created here: the study exists before workers start.
    """
    console = console or Console(stderr=True)
    started = time.perf_counter()
    problems = storage_problems(url, field="--storage", must_exist=True)
    if threads is not None and threads < 1:
        problems.append(("--threads", f"must be >= 1, got {threads}"))
    if not problems:
        problems += reachability_problems(url, field="--storage")
    if problems:
        raise SweepError(problems)
    quiet_libraries()
    study = _load_for_worker(name, url, Heartbeat())
    attrs = study.user_attrs
    if "spec" not in attrs or "data_fingerprint" not in attrs:
        raise SweepError([("study", f"study {name!r} in {safe_url(url)} was not created by `sweep run`")])
    if spec_path is not None:
        spec, base = load_spec(spec_path)
        try:
            check_same_spec(attrs, spec, url)
        except SweepError as exc:
            raise SweepError([("--spec", f"{spec_path} is not the spec of this study: {exc.problems[0][1]}")]) from None
    else:
        spec = parse_spec(attrs["spec"], source=f"study {name}")
        base = Path(attrs.get("spec_dir") or ".")
    heartbeat = heartbeat_of(spec, heartbeat_interval, grace_period)
    study = _load_for_worker(name, url, heartbeat, spec=spec)
    paths = check_paths(spec, base)
    if paths:
        hint = "" if spec_path else " (pass --spec with this machine's copy of the spec, beside its data)"
        raise SweepError([(where, msg + hint) for where, msg in paths], source=f"study {name}")
    encoder = resolve_encoder(spec.model.encoder, base)
    torch.set_num_threads(threads or spec.trainer.num_threads or torch.get_num_threads())
    def same_data(fingerprint: str) -> None:  # before anything is tokenized or cached
        if fingerprint != attrs["data_fingerprint"]:
            raise SweepError(
                [
                    (
                        "data",
                        f"the data on this machine ({spec.data.train}) differs from the data study {name!r} was "
                        "created with: give every worker the same files",
                    )
                ]  # fmt: skip
            )

    data = prepare_data(spec, base, encoder, console, check=same_data)
    with sqlite_writer_lock(url):
        recovered = recover_orphans(study, ORPHAN_REASON) if is_sqlite(url) else []
        total = budget(study, spec.search.n_trials)
        console.print(
            f"worker {worker_id()} joined study [bold]{name}[/] in {safe_url(url)}: "
            f"{count_finished(study)}/{total} trials finished"
            + (f"; trials {', '.join(map(str, recovered))} left RUNNING were queued for a retry" if recovered else ""),
            highlight=False,
        )
        root = checkpoints.resolve() if checkpoints else Path(attrs["checkpoint_dir"])
        loop = work(study, spec, data, trial_settings(spec, data, encoder, root), console)
    return RunResult(
        study, url, True, time.perf_counter() - started,
        stopped_by=loop.stopped_by, failures_in_a_row=loop.failures_in_a_row,
    )  # fmt: skip


def _load_for_worker(name: str, url: str, heartbeat: Heartbeat, spec: Spec | None = None) -> optuna.Study:
    storage = open_storage(url, must_exist=True, create_tables=False, heartbeat=heartbeat)
    try:
        names = study_names(storage)
    except Exception as exc:  # PostgreSQL without optuna's tables: nobody created a study there
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise SweepError(
            [
                (
                    "study",
                    f"no sweep studies in {safe_url(url)} ({reason}); create the study first with "
                    f"`sweep run SPEC --storage URL --workers 0`",
                )
            ]  # fmt: skip
        ) from None
    if name not in names:
        known = f"studies here: {', '.join(names)}" if names else "the store holds no study yet"
        raise SweepError(
            [
                (
                    "study",
                    f"no study named {name!r} in {safe_url(url)} ({known}); create it first with "
                    "`sweep run SPEC --storage URL --workers 0`",
                )
            ]  # fmt: skip
        )
    if spec is None:
        return optuna.load_study(study_name=name, storage=storage)
    # Each worker's sampler gets its own seed: with one shared seed, workers would draw the same start-up trials.
    return optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(spec.search, salt=os.getpid()),
        pruner=make_pruner(spec.search),
    )
