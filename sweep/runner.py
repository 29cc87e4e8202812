"""Run a study: validate everything first (nothing is written on bad input), prepare the data once, create or
resume the study (`sweep run`), then run trials until the study's budget is finished. Joining an existing study
(`sweep worker`, `sweep reevaluate`) is `sweep.joining`; it shares this module's opening, work loop and settings."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from datamodules import DataError, PreparedData, prepare_classification_data, prepare_multilabel_data
from datamodules.regression import prepare_regression_data
from record import FINISHED, StudyRecord, read_trial, reevaluation_runs, study_budget, write_budget, write_priority
from reports.advice import nothing_searched_line
from reports.trials import search_trials
from sweep.artifacts import artifact_settings, open_store
from sweep.checkpoints import prune_checkpoints, save_tokenizer_once
from sweep.dataspec import TOKEN_TASK, shown_source, tagged_columns
from sweep.encoders import resolve_encoder, resolve_pooling
from sweep.errors import StudyIsStopped, SweepError, beside_the_spec, folder_blocked
from sweep.lifecycle import (
    check_same_spec,
    create_or_resume,
    default_checkpoint_root,
    quiet_libraries,
    read_record,
    same_data,
    sampled_trials,
    with_past_defaults,
)
from sweep.objective import TrialSettings, build_objective, resolve_precision
from sweep.progress import StudyProgress, stderr_console
from sweep.space import searched
from sweep.spec import RangeParam, SearchSpec, Spec, check_paths, load_spec, resolve_data_path, trials_problem
from sweep.storage import (
    Heartbeat,
    existing_study_attrs,
    is_sqlite,
    open_storage,
    orphans_line,
    reachability_problems,
    recover_orphans,
    safe_url,
    shares_a_runs_store,
    sqlite_study_names,
    sqlite_writer_lock,
    storage_problems,
    study_record,
)
from sweep.store_checks import choose_storage, mask, shown_store
from sweep.study_callbacks import study_callbacks
from sweep.summary import trial_line
from sweep.taskspec import positive_label_problem
from sweep.warm_start import WarmStart, warm_start
from sweep.worker import GracefulStop, LoopResult, StoreStopWatch, budget, launch_workers, run_trials, stop_reason

DEFAULT_CACHE_DIR = ".sweep_cache"
ORPHAN_REASON = "its worker stopped without finishing it (found RUNNING when the store was opened again)"


@dataclass
class RunResult:
    study: optuna.Study
    storage_url: str
    resumed: bool
    seconds: float
    stopped_by: str | None = None  # SIGTERM / SIGINT when a signal ended the run
    interrupted: bool | None = None  # whether that signal ended a running trial (None: not known here)
    finished_trial: bool = False  # whether a trial running at the signal finished as usual (past its training)
    worker_exit_codes: list[int] = field(default_factory=list)
    failures_in_a_row: bool = False
    study_stopped: str | None = None  # the study was stopped from the store (`sweep stop`, the service): why


def balanced_class_weights(labels: list[int], num_labels: int) -> list[float]:
    """`n / (k * count_c)`, as scikit-learn's 'balanced'."""
    counts = Counter(labels)
    total = len(labels)
    return [total / (num_labels * counts[i]) if counts[i] else 0.0 for i in range(num_labels)]


def prepare_data(
    spec: Spec,
    base: Path,
    encoder: str,
    console: Console,
    check: Callable[[str], None] | None = None,
    *,
    source: str | None = None,
) -> PreparedData:
    """The study's data, read, cleaned, split and tokenized (cached). Its problems are refused as the spec's
    (`source`: the spec file they start with, as the spec's own problems do)."""
    cache_dir = Path(spec.data.cache_dir or DEFAULT_CACHE_DIR)
    if not cache_dir.is_absolute() and spec.data.cache_dir:
        cache_dir = base / cache_dir
    common: dict[str, Any] = dict(
        train_source=resolve_data_path(spec.data.train, base),
        validation_source=resolve_data_path(spec.data.validation, base) if spec.data.validation else None,
        text_column=spec.data.text_column,
        text_separator=spec.data.text_separator,
        columns=spec.data.columns,
        label_column=spec.data.label_column,
        val_fraction=spec.data.val_fraction,
        seed=spec.search.seed,
        tokenizer_name_or_path=encoder,
        max_length=spec.model.max_length,
        cache_dir=cache_dir,
        log=lambda line: console.print(f"[dim]data:[/] {line}", highlight=False),
        check_fingerprint=check,
    )
    try:
        if spec.task == TOKEN_TASK:
            data = prepare_tagged(spec, base, encoder, cache_dir, console, check)
        elif spec.task == "multi-label":
            data = prepare_multilabel_data(**common, label_delimiter=spec.data.label_delimiter)
        elif spec.task == "regression":
            data = prepare_regression_data(**common, text_pair_column=spec.data.text_pair_column,
                                           label_range=spec.data.label_range)  # fmt: skip
        else:
            def labels_fit(label_names: list[str]) -> None:  # before anything is tokenized or cached
                why = positive_label_problem(spec.objective.metric, spec.objective.positive_label, label_names)
                if why is not None:
                    raise DataError([("objective.positive_label", why)])

            data = prepare_classification_data(**common, text_pair_column=spec.data.text_pair_column,
                                               check_labels=labels_fit)  # fmt: skip
    except DataError as exc:
        raise SweepError(exc.problems, source=source) from None
    except OSError as exc:  # transformers: no such hub model, no network, no tokenizer files in the folder
        if _under(getattr(exc, "filename", None), cache_dir):  # the tokenized cache could not be written
            raise SweepError([("data.cache_dir", f"cannot write the cache folder {cache_dir.resolve()}: "
                                                 f"{exc.strerror or exc} (set data.cache_dir to a writable folder)")],
                             source=source) from None  # fmt: skip
        reason = str(exc).strip().splitlines()[0]
        raise SweepError(
            [("model.encoder", f"cannot load a tokenizer from {spec.model.encoder!r}: {reason}")], source=source
        ) from None
    return _warned(data, console)


def _warned(data: PreparedData, console: Console) -> PreparedData:
    """`data`, after printing its report's warnings; its report names an uploaded file as its sender did."""
    for split in ("train", "validation"):
        if isinstance(source := data.report.get(split), str):
            data.report[split] = shown_source(source)
    for warning in data.report.get("warnings", []):
        console.print(f"[yellow]data warning:[/] {warning}", highlight=False)
    return data


def store_beside_spec(url: str, spec_path: Path, name: str) -> str | None:
    """Where a relative SQLite store would start a study afresh in the folder the command runs in while the spec's
    own folder holds a store with that study (a user ran `sweep run ../spec.yaml` from another folder and retrained
    from trial 0): what to run instead. None otherwise."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or Path(database).is_absolute():
        return None
    here, beside = Path(database).resolve(), (spec_path.resolve().parent / database)
    if beside == here or not beside.is_file():
        return None
    names = sqlite_study_names(beside)  # read only: the file may be anything
    if names is None or name not in names:
        return None
    return (f"{beside}, beside the spec, holds study {name!r} already; this run starts it afresh in {here} (a "
            f"relative SQLite path is read from the folder you run in): run from {beside.parent}, or give "
            f"--storage sqlite:///{beside} to continue it")


def accumulation_problem(spec: Spec, train_rows: int) -> tuple[str, str] | None:
    """trainer.accumulate_grad_batches above the batches of an epoch at the space's largest batch size: one optimizer
    step per epoch, on a gradient Lightning divides by the whole setting. None when it fits."""
    accumulate = spec.trainer.accumulate_grad_batches
    size = spec.search.space.batch_size
    largest = int(size.high if isinstance(size, RangeParam) else max(size) if isinstance(size, list) else size)
    batches = -(-train_rows // largest)
    if accumulate <= batches:
        return None
    return ("trainer.accumulate_grad_batches", f"{accumulate} is more than the {batches} batch"
            f"{'es' if batches != 1 else ''} of an epoch ({train_rows} training rows at batch_size {largest}): each "
            f"epoch would make one optimizer step; set it to at most {batches}, or lower batch_size")  # fmt: skip


def trainer_settings_line(spec: Spec) -> str | None:
    """`trainer: ...` for the settings that change what a trial learns beyond the space, where set; else None."""
    return spec.trainer.learning_settings_line(spec.search.space.batch_size)


def _labels_phrase(spec: Spec, data: PreparedData) -> str:
    """What the study predicts, for the opening line: `5 classes`, or the regression's score column."""
    if spec.task == "regression":
        return f"regression on {data.label_names[0]!r}"
    if spec.task == TOKEN_TASK:
        types = {name[2:] for name in data.label_names if name[:2] in ("B-", "I-")}
        return f"{len(types)} entity types, {len(data.label_names)} tags"
    if spec.task == "multi-label":
        return f"{len(data.label_names)} labels"
    return f"{len(data.label_names)} classes"


def _examples_phrase(spec: Spec, data: PreparedData) -> str:
    """`90 train / 30 validation examples`; for NER the sentences, and the windows when long ones were split (the
    model trains on windows; the report and the card count sentences)."""
    train, validation = len(data.train), len(data.validation)
    windows = data.report.get("windows") if spec.task == TOKEN_TASK else None
    if not isinstance(windows, dict):
        return f"{train} train / {validation} validation examples"
    sentences = [windows.get(split, {}).get("sentences") for split in ("train", "validation")]
    if not all(isinstance(n, int) for n in sentences):
        return f"{train} train / {validation} validation windows"
    said = f"{sentences[0]} train / {sentences[1]} validation sentences"
    return said if [train, validation] == sentences else f"{said} ({train} / {validation} windows)"


def _say_fewer_checkpoints(existing: StudyRecord, spec: Spec, study: optuna.Study, console: Console) -> None:
    """A lowered search.keep_checkpoints deletes kept weights after the next trial: say whose, while they can still
    be exported."""
    search = existing.spec.get("search")
    before = search.get("keep_checkpoints", SearchSpec().keep_checkpoints) if isinstance(search, dict) else None
    keep = spec.search.keep_checkpoints
    if not isinstance(before, int) or keep >= before:
        return
    going = prune_checkpoints(study, keep, dry_run=True)
    if going:
        listed = ", ".join(map(str, going))
        console.print(f"warning: search.keep_checkpoints {before} -> {keep}: the checkpoints of trial"
                      f"{'s' if len(going) > 1 else ''} {listed} are deleted after the next trial (export them first "
                      "with `sweep export --trial N` if you need them)", highlight=False)  # fmt: skip


def _under(filename: object, folder: Path) -> bool:
    """Whether an OSError's file is `folder` or inside it."""
    if not isinstance(filename, str | os.PathLike):
        return False
    path, root = Path(filename).resolve(), folder.resolve()
    return path == root or root in path.parents


def prepare_tagged(
    spec: Spec, base: Path, encoder: str, cache_dir: Path, console: Console, check: Callable[[str], None] | None
) -> PreparedData:
    """task: token-classification: tagged sentences (CoNLL or JSON lines), each word's tag on its first sub-token."""
    from datamodules.token_preparation import prepare_token_data

    tokens, tags = tagged_columns(spec.data)
    return prepare_token_data(
        train_source=resolve_data_path(spec.data.train, base),
        validation_source=resolve_data_path(spec.data.validation, base) if spec.data.validation else None,
        tokens_key=tokens, tags_key=tags, fmt=spec.data.format, val_fraction=spec.data.val_fraction,
        seed=spec.search.seed, tokenizer_name_or_path=encoder, max_length=spec.model.max_length, cache_dir=cache_dir,
        log=lambda line: console.print(f"[dim]data:[/] {line}", highlight=False), check_fingerprint=check,
    )  # fmt: skip


def trial_settings(
    spec: Spec, data: PreparedData, encoder: str, checkpoint_root: Path, *, pooling: str
) -> TrialSettings:
    """What every trial of this worker shares, from the spec, the study's checkpoint folder (here) and the pooling
    its record says it trains with (`StudyRecord.pooling_as_trained`)."""
    keep = spec.search.keep_checkpoints
    artifacts = artifact_settings(spec.artifacts, checkpoint_root) if spec.artifacts.uses_artifacts and keep else None
    if artifacts is not None:
        open_store(artifacts)  # a missing library or a client that cannot be built: one line, before any trial
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
        keep_freed_memory=spec.trainer.keep_freed_memory,
        gradient_clip_val=spec.trainer.gradient_clip_val,
        accumulate_grad_batches=spec.trainer.accumulate_grad_batches,
        lr_schedule=spec.trainer.lr_schedule,
        early_stopping_patience=spec.trainer.early_stopping_patience,
        first_epoch_evals=spec.search.first_epoch_evals,
        checkpoint_root=checkpoint_root if keep else None,
        tokenizer_dir=save_tokenizer_once(encoder, checkpoint_root) if keep else None,
        keep_checkpoints=keep,
        task=spec.task,
        threshold=spec.model.threshold,
        artifacts=artifacts,
        positive_label=spec.objective.positive_label,
        pooling=pooling,
    )


def pooling_line(pooling: str | None, why: str) -> str | None:
    """What a new study's sequence heads read, where it is not simply the architecture's own head."""
    if pooling == "mean":
        return (f"pooling: mean of the token states ({why}); exported models load with trust_remote_code=True "
                "(model.pooling: cls for the architecture's own head)")  # fmt: skip
    if pooling == "cls" and why != "the architecture's own head":  # set in the spec, or the encoder pools otherwise
        return f"pooling: cls, the architecture's own head ({why})"
    return None


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


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


def planned_warm_start(spec: Spec, encoder: str) -> tuple[WarmStart | None, str | None]:
    """The warm start a new study queues (search.warm_start), and the line that says so (None when it is off)."""
    if not spec.search.warm_start:
        return None, None
    if spec.search.sampler == "grid":
        return None, "warm start: none with grid search, which covers its grid in its own order"
    warm = warm_start(spec.search.space, encoder, spec.trainer.accumulate_grad_batches)
    if warm is None:
        return None, (
            "warm start: none (the encoder's config.json names no model_type and hidden size, or nothing is "
            "searched): the sampler draws every trial"
        )
    return warm, f"warm start: trial 0 tries {warm.describe()}; search.warm_start: false turns it off"


def open_study(study: optuna.Study, url: str, default_budget: int, console: Console, headline: str) -> tuple[int, int]:
    """What both `sweep run` and `sweep worker` do once they hold the study: repair trials a dead process left
    RUNNING (SQLite, whose one writer is this process; the heartbeat does it on PostgreSQL) and say where the study
    stands. Returns (finished, budget). A worker of `sweep run --workers N` on SQLite leaves that to the run: the
    RUNNING trials there are its siblings'."""
    recovered, not_retried = (recover_orphans(study, ORPHAN_REASON) if is_sqlite(url) and not shares_a_runs_store()
                              else ([], []))  # fmt: skip
    done, total = count_finished(study), budget(study, default_budget)
    extra = reevaluation_runs(study.get_trials(deepcopy=False))
    parts = f" (the budget: {total - extra} of the search + {extra} re-evaluation runs)" if extra else ""
    console.print(f"{headline}: {done}/{total} trials finished{parts}", highlight=False)
    if recovered:
        how = "a run that ended without recording it (killed, or its machine lost)"
        console.print(orphans_line(recovered, not_retried, how), highlight=False)
    return done, total


def work(
    study: optuna.Study, spec: Spec, data: PreparedData, settings: TrialSettings, console: Console, url: str,
    *, wait: bool = True, label: str | None = None,
) -> LoopResult:  # fmt: skip
    """This process's share of the study: trials until the budget is finished, a signal, a stop from the store (read
    from `url` while trials run), or a broken setup. `wait=False`: return when other workers' trials fill the budget.
    `label`: what each trial's lines start with (the study's name, for a worker that moves between studies).
    """
    total = budget(study, spec.search.n_trials)
    reading = open_storage(url, read_only=True)  # the stop flag is read apart from the trial's own connection
    reader = optuna.load_study(study_name=study.study_name, storage=reading)
    with (
        _disposing(reading),
        GracefulStop() as stop,
        StoreStopWatch(lambda: stop_reason(reader), stop),
        StudyProgress(console, total=total, done=count_finished(study), name=spec.name, label=label) as progress,
    ):
        monitor = f"val_{spec.objective.metric}"
        objective = build_objective(
            data,
            settings,
            trial_callbacks=lambda number, hp, steps: [progress.trial_callback(number, hp.epochs, steps, monitor)],
            stop=stop,
        )

        def show(study: optuna.Study, trial: FrozenTrial, counts: bool) -> None:
            progress.trial_done(trial_line(study, trial, spec.objective.metric), counts=counts)

        callbacks, failures = study_callbacks(spec.search.keep_checkpoints, stop, show, artifacts=settings.artifacts)
        return run_trials(
            study, objective, callbacks, default_budget=spec.search.n_trials, stop=stop, failures=failures,
            console=console, wait=wait,
        )  # fmt: skip


@contextlib.contextmanager
def _disposing(storage: optuna.storages.RDBStorage) -> Iterator[None]:
    try:
        yield
    finally:
        storage.engine.dispose()


def finished_run(study: optuna.Study, url: str, resumed: bool, started: float, loop: LoopResult) -> RunResult:
    return RunResult(
        study, url, resumed, time.perf_counter() - started,
        stopped_by=loop.stopped_by, interrupted=loop.interrupted, finished_trial=loop.finished_trial,
        failures_in_a_row=loop.failures_in_a_row,
        study_stopped=loop.study_stopped,
    )  # fmt: skip


def run_study(
    spec_path: str | Path,
    *,
    storage_url: str | None = None,
    n_trials: int | None = None,
    workers: int = 1,
    priority: int | None = None,
    ray_address: str | None = None,
    console: Console | None = None,
) -> RunResult:
    """Validate everything first (nothing is written on bad input), then create or resume and optimise.

    `workers`: 1 runs trials in this process; N > 1 starts N local `sweep worker` processes (PostgreSQL only);
    0 only creates (or updates) the study, for workers started elsewhere. `priority`: written to the study (workers
    without a study name take the highest first); None leaves it as it is (0 for a new study).
    A study stopped from the store is refused unless `workers` is 0 (nothing runs then).
    With `ray_address` (`sweep.cluster.LOCAL` for a Ray started here) the N workers are Ray tasks on that
    cluster instead.
    """
    console = console or stderr_console()
    started = time.perf_counter()
    spec, base = load_spec(spec_path)
    if n_trials is not None:
        if (budget_problem := trials_problem(n_trials)) is not None:
            raise SweepError([("--n-trials", budget_problem)])
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"n_trials": n_trials})})
    url, field_name = choose_storage(storage_url, spec.storage)  # --storage, $SWEEP_STORAGE, spec, default
    problems = check_paths(spec, base) + storage_problems(url, field=field_name)
    if ray_address is not None:
        from sweep.cluster import ray_problems

        problems += ray_problems(ray_address, url, workers) if not problems else []
    elif workers < 0:
        problems.append(("--workers", f"must be >= 0, got {workers}"))
    try:
        encoder = resolve_encoder(spec.model.encoder, base, max_length=spec.model.max_length)
    except SweepError as exc:
        problems += exc.problems
    if not problems:
        problems += reachability_problems(url, field=field_name)
    if spec.artifacts.store in ("s3", "gcs"):
        try:  # the store's library and client, before anything is written
            open_store(artifact_settings(spec.artifacts, Path()))
        except SweepError as exc:
            problems += exc.problems
    if problems:
        raise SweepError(problems, source=str(spec_path), outside=beside_the_spec(problems))
    attrs = existing_study_attrs(url, spec.name)
    existing = study_record(spec.name, attrs) if attrs is not None else None
    if existing is None and (elsewhere := store_beside_spec(url, Path(spec_path), spec.name)) is not None:
        console.print(f"[yellow]note:[/] {elsewhere}", highlight=False)
    if existing is not None:  # before any data is read or cached: a clash writes nothing
        spec, notes = with_past_defaults(existing, spec)
        for note in notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        check_same_spec(existing, spec, url)
        if existing.stopped is not None and workers != 0:
            raise StudyIsStopped(spec.name, existing.stopped)
    # the folder this run's trials keep checkpoints in, before the study is made or data cached (a file on its path
    # failed after, with a traceback, and left a study behind); not where no trial runs here or none is kept
    if workers != 0 and spec.search.keep_checkpoints != 0 and spec.artifacts.store not in ("s3", "gcs"):
        recorded = existing.checkpoint_dir if existing is not None else None
        root = Path(recorded) if recorded else default_checkpoint_root(spec, base, url)
        if (blocked := folder_blocked(root)) is not None:
            raise SweepError([("checkpoint_dir", f"cannot keep checkpoints in {root}: {blocked}; give a checkpoint_dir "
                                                 "you can write to")], source=str(spec_path))  # fmt: skip
    quiet_libraries()
    if spec.trainer.num_threads:
        torch.set_num_threads(spec.trainer.num_threads)
    # A resumed study refuses changed data before it is tokenized or cached: nothing is written.
    check = same_data(existing, spec, joining=False) if existing is not None else None
    data = prepare_data(spec, base, encoder, console, check=check, source=str(spec_path))
    if (problem := accumulation_problem(spec, len(data.train))) is not None:
        raise SweepError([problem], source=str(spec_path))
    with sqlite_writer_lock(url):
        storage = open_storage(url, heartbeat=heartbeat_of(spec))
        warm, warm_note = planned_warm_start(spec, encoder) if existing is None else (None, None)
        # what a new study records (a resumed one trains what it recorded); token tasks tag tokens and pool nothing
        pooling, pooling_why = (resolve_pooling(spec.model.pooling, encoder) if existing is None
                                and spec.task != TOKEN_TASK else (None, ""))  # fmt: skip
        study, resumed = create_or_resume(
            storage, spec, data, url, default_checkpoint_root(spec, base, url), base, warm=warm, pooling=pooling
        )  # fmt: skip
        # n_trials counts the search's trials; re-evaluation runs (`sweep reevaluate`) come on top of them.
        extra = reevaluation_runs(study.get_trials(deepcopy=False))
        total = spec.search.n_trials + extra
        earlier = study_budget(study.user_attrs) if resumed and n_trials is None else None
        if earlier is not None and earlier > total:  # raised before with --n-trials: a plain rerun keeps it
            parts = f"{earlier - extra} of the search + {extra} re-evaluation runs; " if extra else ""
            console.print(f"budget stays {earlier} trials, as raised before ({parts}the spec's n_trials is "
                          f"{spec.search.n_trials}; --n-trials N sets the search's)", highlight=False)  # fmt: skip
            total = earlier
        finished = study.get_trials(deepcopy=False, states=FINISHED) if resumed else []
        search_done = len(search_trials(finished))  # what --n-trials counts
        # a budget at or below what the search ran: nothing of it to run (the same rule as `sweep resume --n-trials`;
        # comparing totals let a lower N drop a queued re-evaluation run's room)
        if n_trials is not None and resumed and n_trials <= search_done:
            kept = study_budget(study.user_attrs) or total
            runs = extra
            budget_said = (f"the search's budget stays {kept - runs}, with {runs} re-evaluation run"
                           f"{'s' if runs != 1 else ''} on top" if runs else f"the budget stays {kept}")  # fmt: skip
            console.print(f"--n-trials {n_trials}: {search_done} trials of the search have finished already, "
                          f"nothing to run ({budget_said}; --n-trials {search_done + 1} or more continues the "
                          "study)", highlight=False)  # fmt: skip
            total = kept
        write_budget(study.set_user_attr, total)
        if priority is not None:
            write_priority(study.set_user_attr, priority)
        done, _ = open_study(
            study, url, total, console,
            f"{'resuming' if resumed else 'created'} study [bold]{spec.name}[/] in {shown_store(url)} "
            f"({_examples_phrase(spec, data)}, {_labels_phrase(spec, data)})",
        )  # fmt: skip
        if warm_note is not None and not resumed:
            console.print(warm_note, highlight=False)
        if not resumed and (line := pooling_line(pooling, pooling_why)) is not None:
            console.print(line, highlight=False)
        if not resumed and total > 1 and not searched(spec.search.space):
            console.print(f"note: {nothing_searched_line(total)}", highlight=False)
        if (settings_line := trainer_settings_line(spec)) is not None:
            console.print(settings_line, highlight=False)
        if existing is not None:
            _say_fewer_checkpoints(existing, spec, study, console)
        if spec.trainer.precision == "auto":
            chosen = resolve_precision("auto", spec.trainer.accelerator)
            why = "the hardware computes in bf16" if chosen == "bf16-mixed" else "no native bf16 here"
            console.print(f"precision auto: {chosen} on this machine ({why})", highlight=False)
        on_gpu = spec.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        if spec.trainer.precision.startswith("16") and not on_gpu:  # Lightning's own switch, said only in a warning
            console.print(f"precision {spec.trainer.precision}: a CPU has no fp16 autocast, so Lightning trains in "
                          "bf16-mixed here (say bf16-mixed, or auto, to train as the spec reads)", highlight=False)
        if done >= total:
            return RunResult(study, url, resumed, time.perf_counter() - started)
        if workers == 0:
            console.print(
                f"study ready: start workers with `sweep worker {spec.name}`, the store {safe_url(url)} in "
                f"SWEEP_STORAGE or --storage (add --spec {spec_path} where the data sits elsewhere)",
                highlight=False,
            )
            return RunResult(study, url, resumed, time.perf_counter() - started)
        if ray_address is not None:
            return _run_ray_workers(study, spec, Path(spec_path), url, workers, ray_address, console, resumed, started)
        if workers > 1:
            return _run_local_workers(study, spec, Path(spec_path), url, workers, console, resumed, started)
        record = read_record(study)
        settings = trial_settings(spec, data, encoder, Path(record.checkpoint_dir or "checkpoints"),
                                  pooling=record.pooling_as_trained)  # fmt: skip
        loop = work(study, spec, data, settings, console, url)
    return finished_run(study, url, resumed, started, loop)


def _store_poll(url: str, name: str) -> Callable[[], tuple[int, int]]:
    """(finished, running) trials of the study, read from the store (what the progress bar shows)."""
    reader = optuna.load_study(study_name=name, storage=open_storage(url, read_only=True))

    def poll() -> tuple[int, int]:
        trials = reader.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        return sum(t.state in FINISHED for t in trials), sum(t.state == TrialState.RUNNING for t in trials)

    return poll


def _run_ray_workers(
    study: optuna.Study, spec: Spec, spec_path: Path, url: str, workers: int, address: str, console: Console,
    resumed: bool, started: float,
) -> RunResult:  # fmt: skip
    """`sweep run --ray [ADDRESS] --workers N`: N Ray tasks, each a `sweep worker` with the spec's resources."""
    from sweep.cluster import LOCAL, run_ray_workers

    total = study_budget(study.user_attrs, spec.search.n_trials) or spec.search.n_trials
    result = run_ray_workers(
        spec.name, url, address=address, workers=workers, cpus=spec.resources.cpus, gpus=spec.resources.gpus,
        spec_path=str(spec_path.resolve()), poll=_store_poll(url, spec.name), total=total, console=console,
    )  # fmt: skip
    for line in result.errors:
        console.print(f"[red]ray worker failed:[/] {line}", highlight=False)
    if address == LOCAL:  # the local Ray is gone with its workers: a trial still RUNNING has no worker left
        how = f"the local Ray ended at {result.stopped_by}" if result.stopped_by else "the local Ray ended"
        try:
            lines = fail_gone_local_workers(url, spec.name, how)
        except Exception as exc:  # the store is out of reach just now: the heartbeat fails such a trial later
            reason = mask((str(exc).strip().splitlines() or [type(exc).__name__])[0], url)
            lines = [f"trials left RUNNING by the local Ray's workers are failed by the heartbeat after the grace "
                     f"period ({reason})"]
        for line in lines:
            console.print(f"[yellow]run:[/] {line}", highlight=False)
    return RunResult(study, url, resumed, time.perf_counter() - started, stopped_by=result.stopped_by,
                     worker_exit_codes=[] if result.stopped_by else result.exit_codes)  # fmt: skip


def fail_gone_local_workers(url: str, name: str, how: str, wait_s: float = 10.0) -> list[str]:
    """Fail, and queue for a retry, the RUNNING trials of study `name` whose worker ran on this machine and is gone
    (`storage.fail_dead_worker`), waiting up to `wait_s` for their processes to end; a worker still running, or on
    another machine, is left to the heartbeat. Returns the lines saying what was done."""
    from sweep.catalog import process_gone
    from sweep.storage import fail_dead_worker

    reader = optuna.load_study(study_name=name, storage=open_storage(url, read_only=True))
    here = socket.gethostname()
    workers = {w for t in reader.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if (w := read_trial(t).worker) and w.rpartition(":")[0] == here}  # fmt: skip
    deadline = time.monotonic() + wait_s
    while workers and not all(process_gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    return [line for w in sorted(workers) if process_gone(w) for line in fail_dead_worker(url, w, how)]


def _run_local_workers(
    study: optuna.Study, spec: Spec, spec_path: Path, url: str, workers: int, console: Console, resumed: bool,
    started: float,
) -> RunResult:  # fmt: skip
    """`sweep run --workers N`: N `sweep worker` processes on this machine, one progress bar over the study."""
    poll = _store_poll(url, spec.name)
    total = study_budget(study.user_attrs, spec.search.n_trials) or spec.search.n_trials
    codes, signalled = launch_workers(
        workers, spec.name, url, spec_path.resolve(), threads=spec.trainer.num_threads, console=console, poll=poll,
        total=total, history=sampled_trials(study),
    )  # fmt: skip
    if is_sqlite(url):  # every worker has exited and this process still holds the store: a RUNNING trial is orphaned
        recovered, not_retried = recover_orphans(study, "its worker exited without finishing it")
        if recovered:
            console.print(orphans_line(recovered, not_retried, "a worker that died"), highlight=False)
    return RunResult(
        study, url, resumed, time.perf_counter() - started,
        worker_exit_codes=[] if signalled else codes, stopped_by=signalled, study_stopped=stop_reason(study),
    )  # fmt: skip
