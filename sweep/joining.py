"""Joining an existing study to run its trials: `sweep worker` (any machine), and `sweep reevaluate` (this
process), both through `join`: checks first (nothing is written on bad input), the spec from the study or from
`--spec`, the data prepared and refused when it differs from the study's."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from datamodules import PreparedData
from record import FINISHED, StudyRecord
from sweep.catalog import next_study, study_progress, workable
from sweep.encoders import resolve_encoder
from sweep.errors import DiskError, StorageLost, StudyIsStopped, SweepError, stopped_line
from sweep.lifecycle import (
    check_same_spec,
    load_for_worker,
    quiet_libraries,
    read_record,
    same_data,
    with_past_defaults,
)
from sweep.progress import stderr_console
from sweep.runner import RunResult, finished_run, heartbeat_of, open_study, prepare_data, trial_settings, work
from sweep.spec import Spec, check_paths, load_spec, parse_spec
from sweep.storage import (
    DB_RETRY_S,
    Heartbeat,
    StoreBusy,
    load_study,
    open_storage,
    reachability_problems,
    safe_url,
    sqlite_writer_lock,
    storage_problems,
)
from sweep.store_checks import mask
from sweep.worker import GracefulStop, LoopResult, StopRequested, worker_id


@dataclass
class Joined:
    """A study opened by a process that will run its trials: its spec, where it starts, its data and encoder."""

    study: optuna.Study
    spec: Spec
    record: StudyRecord
    data: PreparedData
    encoder: str
    checkpoint_root: Path


def join(
    name: str,
    url: str,
    *,
    spec_path: str | Path | None = None,
    checkpoints: Path | None = None,
    threads: int | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    console: Console,
) -> Joined:
    """Open an existing study to run its trials (`sweep worker`, `sweep reevaluate`): everything is checked before
    anything is written, and the data is prepared here (refused when it differs from the study's).

    The spec comes from the study itself (recorded when it was created), or from `spec_path` (it must be the same
    spec; its folder is where relative data paths start). Tables are never created here.
    """
    problems = storage_problems(url, field="--storage", must_exist=True)
    if threads is not None and threads < 1:
        problems.append(("--threads", f"must be >= 1, got {threads}"))
    if not problems:
        problems += reachability_problems(url, field="--storage")
    if problems:
        raise SweepError(problems)
    quiet_libraries()
    record = read_record(load_for_worker(name, url, Heartbeat()))
    if not record.created_by_sweep:
        raise SweepError([("study", f"study {name!r} in {safe_url(url)} was not created by `sweep run`")])
    if record.stopped is not None:
        raise StudyIsStopped(name, record.stopped)
    if spec_path is not None:
        spec, base = load_spec(spec_path)
        spec, notes = with_past_defaults(record, spec)
        for note in notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        try:
            check_same_spec(record, spec, url)
        except SweepError as exc:
            raise SweepError([("--spec", f"{spec_path} is not the spec of this study: {exc.problems[0][1]}")]) from None
    else:
        spec = parse_spec(record.spec_as_it_ran, source=f"study {name}", stored=True)
        base = Path(record.spec_dir or ".")
    study = load_for_worker(name, url, heartbeat_of(spec, heartbeat_interval, grace_period), spec=spec)
    paths = check_paths(spec, base)
    if paths:
        hint = "" if spec_path else " (pass --spec with this machine's copy of the spec, beside its data)"
        raise SweepError([(where, msg + hint) for where, msg in paths], source=f"study {name}")
    encoder = resolve_encoder(spec.model.encoder, base, max_length=spec.model.max_length)
    torch.set_num_threads(threads or spec.trainer.num_threads or torch.get_num_threads())
    data = prepare_data(spec, base, encoder, console, check=same_data(record, spec, joining=True))
    root = checkpoints.resolve() if checkpoints else Path(record.checkpoint_dir or "checkpoints")
    return Joined(study, spec, record, data, encoder, root)


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
    """`sweep worker`: join an existing study and run its trials until the study-wide budget is finished."""
    console = console or stderr_console()
    started = time.perf_counter()
    joined = join(name, url, spec_path=spec_path, checkpoints=checkpoints, threads=threads,
                  heartbeat_interval=heartbeat_interval, grace_period=grace_period, console=console)  # fmt: skip
    loop = _work_on(joined, url, console, wait=True)
    return finished_run(joined.study, url, True, started, loop)


def _work_on(joined: Joined, url: str, console: Console, *, wait: bool, named: bool = False) -> LoopResult:
    """`named`: each trial's lines start with the study's name (a worker without a study name moves between
    studies, and the service's workers write to one log)."""
    study, spec = joined.study, joined.spec
    with sqlite_writer_lock(url):
        open_study(study, url, spec.search.n_trials, console, f"worker {worker_id()} joined study "
                   f"[bold]{study.study_name}[/] in {safe_url(url)}")  # fmt: skip
        settings = trial_settings(spec, joined.data, joined.encoder, joined.checkpoint_root,
                                  pooling=joined.record.pooling_as_trained)
        return work(study, spec, joined.data, settings, console, url, wait=wait,
                    label=study.study_name if named else None)  # fmt: skip


# --- a worker without a study name ------------------------------------------------------------------------------

DEFAULT_POLL_S = 5.0
REAP_EVERY_S = 30.0  # how often an idle worker looks for trials of dead workers


@dataclass
class ServiceRun:
    """What a worker without a study name did: the studies it worked on, and the signal that ended it, if one did."""

    storage_url: str
    seconds: float
    studies: list[str] = field(default_factory=list)
    stopped_by: str | None = None
    interrupted: bool = False  # whether the signal ended a running trial (else it came while joining or waiting)
    finished_trial: bool = False  # whether a trial running at the signal finished as usual (past its training)


def work_on_studies(
    url: str,
    *,
    poll: float = DEFAULT_POLL_S,
    exit_when_idle: bool = False,
    threads: int | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    console: Console | None = None,
) -> ServiceRun:
    """`sweep worker` without a study name: take the study `sweep.catalog.next_study` names, run its trials until it
    is finished, stopped, failed or its budget is taken by other workers' running trials, then take the next one.
    With no study to work on, poll every `poll` s (`exit_when_idle`: return instead). A study whose data cannot be
    prepared here is skipped by this worker (one line says why). A signal ends the running trial as in `sweep worker
    NAME` and returns with `stopped_by`."""
    console = console or stderr_console()
    problems = storage_problems(url, field="--storage", must_exist=True)
    if poll <= 0:
        problems.append(("--poll", f"must be > 0 seconds, got {poll:g}"))
    if threads is not None and threads < 1:
        problems.append(("--threads", f"must be >= 1, got {threads}"))
    if not problems:
        problems += reachability_problems(url, field="--storage")
    if problems:
        raise SweepError(problems)
    started = time.perf_counter()
    run = ServiceRun(url, 0.0)
    skip: set[str] = set()
    idle_said, reaped = False, -REAP_EVERY_S
    picker = _Picker(url, console)
    with GracefulStop() as signals:  # between studies: a signal interrupts the joining or the waiting at once
        while signals.requested is None:
            try:
                with signals.training():
                    name = picker.next(skip)
                    if name is None:
                        if time.monotonic() >= reaped + REAP_EVERY_S:
                            reap_stale_trials(url)
                            reaped = time.monotonic()
                        if exit_when_idle:
                            break
                        if not idle_said:
                            console.print(f"waiting for work: no unfinished study has budget left (polling every "
                                          f"{poll:g} s)", highlight=False)  # fmt: skip
                            idle_said = True
                        time.sleep(poll)
                        continue
                    if isinstance(name, _Unanswered):
                        time.sleep(min(poll, 5.0))
                        continue
                    idle_said = False
                    joined = _join_or_skip(name, url, skip, threads, heartbeat_interval, grace_period, console)
            except StopRequested:
                break
            if joined is None:
                continue
            ended = _ended_trials(joined.study)
            try:
                loop = _work_on(joined, url, console, wait=False, named=True)
            except StoreBusy as exc:  # SQLite: another process writes the store now (`sweep run`, a named worker)
                console.print(f"[yellow]waiting:[/] {escape(exc.lines()[0])}", highlight=False)
                time.sleep(poll)
                continue
            run.studies.append(name)
            if not (loop.study_stopped or loop.failures_in_a_row) and _ended_trials(joined.study) == ended:
                time.sleep(poll)  # other workers took its last places meanwhile: do not ask the store again at once
            if loop.stopped_by:
                run.stopped_by, run.interrupted = loop.stopped_by, loop.interrupted
                run.finished_trial = loop.finished_trial
                break
            if loop.study_stopped:
                console.print(stopped_line(name, loop.study_stopped), highlight=False)
            elif loop.failures_in_a_row:
                console.print(f"[red]study {name} failed:[/] three trials in a row failed; workers skip it until "
                              f"`sweep resume {name}` (see the errors with `sweep status {name}`)")  # fmt: skip
    run.stopped_by = run.stopped_by or signals.requested
    run.seconds = time.perf_counter() - started
    return run


class _Picker:
    """`next_study`, surviving a database that stops answering for a while (a restart, a network blip): one line
    says so, the list is asked again every few seconds, and after `DB_RETRY_S` the worker ends with `StorageLost`
    (exit code 3), as a worker inside a trial does."""

    def __init__(self, url: str, console: Console, retry_seconds: float | None = None):
        self.url, self.console = url, console
        self.retry_seconds = DB_RETRY_S if retry_seconds is None else retry_seconds
        self.since: float | None = None

    def next(self, skip: set[str]) -> str | None | _Unanswered:
        try:
            name = next_study(self.url, skip=skip)
        except (SweepError, SQLAlchemyError) as exc:
            if isinstance(exc, StorageLost | DiskError):
                raise
            return self._failed(exc)
        if self.since is not None:
            self.console.print(f"database reachable again: {safe_url(self.url)}", highlight=False)
            self.since = None
        return name

    def _failed(self, exc: Exception) -> _Unanswered:
        reason = exc.lines()[0] if isinstance(exc, SweepError) else str(exc).strip().splitlines()[0]
        reason = mask(reason, self.url)
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.console.print(f"[yellow]cannot read the studies:[/] {escape(reason)}; retrying for up to "
                               f"{self.retry_seconds:.0f} s", highlight=False)  # fmt: skip
        elif now - self.since >= self.retry_seconds:
            raise StorageLost([("storage", f"lost the database {safe_url(self.url)} for {self.retry_seconds:.0f} s "
                                           f"({reason}); the worker stopped: start it again once the database "
                                           "answers")])  # fmt: skip
        return _UNANSWERED


class _Unanswered:
    """The studies could not be read this time (the picker retries)."""


_UNANSWERED = _Unanswered()


def _ended_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL)))


def _join_or_skip(
    name: str, url: str, skip: set[str], threads: int | None, heartbeat_interval: int | None,
    grace_period: int | None, console: Console,
) -> Joined | None:  # fmt: skip
    """Join study `name`; None when it cannot run here (its data, its spec) or was stopped meanwhile."""
    try:
        return join(name, url, threads=threads, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                    console=console)  # fmt: skip
    except StudyIsStopped:
        return None  # stopped since it was picked: the picker no longer offers it
    except (StorageLost, DiskError):
        raise
    except SweepError as exc:
        where, message = exc.problems[0]  # the first problem says enough; `sweep worker NAME` lists them all
        line = f"{where}: {message}" if where else message
        console.print(f"[yellow]skipping study {escape(name)}:[/] {escape(line)}", highlight=False)
        skip.add(name)
        return None


def reap_stale_trials(url: str) -> None:
    """Fail (and queue for a retry) the trials of dead workers in studies whose budget they fill: without a worker
    that waits on such a study (workers without a study name do not), nobody else would."""
    for summary in study_progress(url):
        # a stopped study's trials end on their own within seconds, unless their worker died: reaped here too
        if not (summary.running and summary.state in ("running", "stopped") and not workable([summary])):
            continue
        try:
            record = read_record(load_study(summary.name, url))
            spec = parse_spec(record.spec_as_it_ran, source=f"study {summary.name}", stored=True)
            storage = open_storage(url, must_exist=True, create_tables=False, heartbeat=heartbeat_of(spec))
        except SweepError:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(optuna.load_study(study_name=summary.name, storage=storage))
        finally:
            storage.engine.dispose()
