"""The studies of a store as a service sees them: each one's state, progress, best value and workers; which study a
worker without a study name takes next; stopping and resuming a study. The command line (`sweep stop`, `sweep
resume`, `sweep worker` without a name) and the service (`sweep serve`) both go through here.

States: `queued` (budget left, nothing running), `running` (a trial is running), `finished` (the budget is reached),
`stopped` (stopped by a user: no new trial starts, and a running one ends within seconds), `failed` (its workers gave
up: three trials in a row failed).
A stopped or failed study becomes queued again on `resume`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table
from rich.text import Text

from record import (
    FINISHED,
    StudyRecord,
    ranked,
    read_trial,
    reevaluation_runs,
    study_from_attrs,
    trial_seconds,
    write_budget,
    write_stopped,
)
from record.study import RecordError
from reports.trials import search_trials
from sweep.errors import Conflict, SweepError
from sweep.spec import trials_problem
from sweep.storage import load_study, open_storage, safe_url, study_ids, trial_state_counts

State = Literal["queued", "running", "finished", "stopped", "failed"]
STATES: tuple[State, ...] = ("queued", "running", "finished", "stopped", "failed")


@dataclass(frozen=True)
class StudySummary:
    """One line of the studies list (JSON-ready through `as_dict`)."""

    name: str
    state: State
    finished: int  # complete + pruned trials (what counts towards the budget)
    budget: int
    running: int
    queued: int  # trials waiting to run (retries of stopped or dead trials)
    failed: int
    best_value: float | None
    best_trial: int | None
    metric: str | None
    direction: str  # maximize | minimize
    task: str
    workers: list[str] = field(default_factory=list)  # `host:pid` of the workers running its trials now
    # those of them on this machine whose process is gone (killed: their trials wait for the heartbeat's grace period)
    gone_workers: list[str] = field(default_factory=list)
    submitted_at: float | None = None
    priority: int = 0
    stopped: str | None = None
    failure: str | None = None
    # the search's own share: finished trials and budget without `sweep reevaluate`'s runs (which `--n-trials` and the
    # service's `n_trials` leave out too)
    search_finished: int = 0
    search_budget: int = 0
    metric_label: str | None = None  # the metric as views name it: `f1_binary of 'spam'` says which class's F1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_of(record: StudyRecord, *, finished: int, budget: int, running: int) -> State:
    """The one rule for a study's state (see the module docstring)."""
    if finished >= budget:
        return "finished"
    if record.stopped is not None:  # a trial may still run for a few seconds: the study no longer does
        return "stopped"
    if running:
        return "running"
    if record.failure is not None:
        return "failed"
    return "queued"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def summarize(study: optuna.Study, record: StudyRecord | None = None) -> StudySummary:
    """A study's summary, from one read of its trials."""
    record = record or study_from_attrs(study.user_attrs)
    return _summary(study.study_name, study.direction, record, study.get_trials(deepcopy=False))


def _summary(name: str, direction: StudyDirection, record: StudyRecord, trials: list[FrozenTrial]) -> StudySummary:
    finished = sum(t.state in FINISHED for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    budget = record.budget or len(trials) or 1
    order = ranked((t for t in trials if t.state == TrialState.COMPLETE), maximize=direction != StudyDirection.MINIMIZE)
    best = order[0] if order else None
    reevaluating = reevaluation_runs(trials)
    return StudySummary(
        name=name,
        state=state_of(record, finished=finished, budget=budget, running=len(running)),
        finished=finished,
        budget=budget,
        running=len(running),
        queued=sum(t.state == TrialState.WAITING for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        best_value=_finite(best.value) if best is not None else None,
        best_trial=best.number if best is not None else None,
        metric=record.metric,
        metric_label=record.metric_label,
        direction="minimize" if direction == StudyDirection.MINIMIZE else "maximize",
        task=record.task,
        workers=(workers := sorted({w for w in (read_trial(t).worker for t in running) if w})),
        gone_workers=[w for w in workers if process_gone(w)],
        submitted_at=record.submitted_at,
        priority=record.priority,
        stopped=record.stopped,
        failure=record.failure,
        search_finished=len(search_trials(t for t in trials if t.state in FINISHED)) if reevaluating else finished,
        search_budget=budget - reevaluating,
    )


# Summaries `list_studies` built in this process, by (store, study id): the studies page polls every few seconds,
# and most studies of a store are finished or waiting. One is used again while nothing it rests on changed: its trial
# counts per state (a trial only moves forward, WAITING -> RUNNING -> finished, and none is deleted, so any change to
# its trials changes a count) and its attributes (the record: budget, stop, failure). A study with a running trial is
# always read afresh: its worker's attribute is written just after the trial starts.
_SUMMARIES: dict[tuple[str, int], tuple[Any, StudySummary]] = {}
_SUMMARIES_LOCK = threading.Lock()


def list_studies(url: str) -> list[StudySummary]:
    """Every study `sweep` created in the store, newest submission first (plain Optuna studies are left out).

    Three queries (the studies with their attributes, their ids, the trials counted per study and state), then the
    trials of each study that changed since this process last listed it (`_SUMMARIES`); workers poll the cheaper
    `study_progress`, this serves the studies page and `sweep status`."""
    storage = open_storage(url, must_exist=True, read_only=True)
    summaries = []
    try:
        counts, ids = trial_state_counts(storage), study_ids(storage)
        for study in storage.get_all_studies():
            try:
                record = study_from_attrs(study.user_attrs)
            except RecordError:
                continue  # written by a newer sweep: `sweep status NAME` says so
            if not record.created_by_sweep:
                continue
            by_state = counts.get(study.study_name, {})
            # a study created since `study_ids` ran has no id there yet: asked for on its own (and one deleted since
            # `get_all_studies` ran is no longer there to list)
            study_id = ids.get(study.study_name)
            if study_id is None:
                try:
                    study_id = storage.get_study_id_from_name(study.study_name)
                except KeyError:
                    continue
            key = (url, study_id)
            stamp = (sorted((state.name, n) for state, n in by_state.items()),
                     json.dumps(study.user_attrs, sort_keys=True, default=str))  # fmt: skip
            with _SUMMARIES_LOCK:
                cached = _SUMMARIES.get(key)
            if cached is not None and cached[0] == stamp and not by_state.get(TrialState.RUNNING):
                summaries.append(cached[1])
                continue
            trials = storage.get_all_trials(key[1], deepcopy=False)
            summary = _summary(study.study_name, study.directions[0], record, trials)
            with _SUMMARIES_LOCK:
                _SUMMARIES[key] = (stamp, summary)
            summaries.append(summary)
    finally:
        storage.engine.dispose()  # the page polls this every few seconds: no connection is left behind
    with _SUMMARIES_LOCK:  # deleted studies are forgotten
        for gone in [k for k in _SUMMARIES if k[0] == url and k[1] not in set(ids.values())]:
            del _SUMMARIES[gone]
    return sorted(summaries, key=lambda s: (-(s.submitted_at or 0.0), s.name))


def forget_summaries() -> None:
    """Drop the summaries `list_studies` keeps (a benchmark's cold read; tests)."""
    with _SUMMARIES_LOCK:
        _SUMMARIES.clear()


@dataclass(frozen=True)
class StudyProgress:
    """What a worker without a study name needs to pick a study: its state, trial counts, budget and place in line
    (`study_progress`: no trial is read, so polling it costs the same however many trials the store holds)."""

    name: str
    state: State
    finished: int
    budget: int
    running: int
    queued: int
    priority: int = 0
    submitted_at: float | None = None


def study_progress(url: str) -> list[StudyProgress]:
    """Every sweep study's progress in two queries (the studies with their attributes, the trials counted per study
    and state), as `list_studies` would give it."""
    storage = open_storage(url, must_exist=True, read_only=True)
    try:
        counts = trial_state_counts(storage)
        progress = []
        for study in storage.get_all_studies():
            try:
                record = study_from_attrs(study.user_attrs)
            except RecordError:
                continue
            if not record.created_by_sweep:
                continue
            by_state = counts.get(study.study_name, {})
            finished = sum(by_state.get(state, 0) for state in FINISHED)
            running = by_state.get(TrialState.RUNNING, 0)
            budget = record.budget or sum(by_state.values()) or 1
            progress.append(StudyProgress(
                name=study.study_name, state=state_of(record, finished=finished, budget=budget, running=running),
                finished=finished, budget=budget, running=running, queued=by_state.get(TrialState.WAITING, 0),
                priority=record.priority, submitted_at=record.submitted_at,
            ))  # fmt: skip
    finally:
        storage.engine.dispose()
    return progress


Progress = TypeVar("Progress", StudySummary, StudyProgress)


def workable(summaries: Iterable[Progress]) -> list[Progress]:
    """Studies a worker without a study name may take, in the order it takes them: the highest priority first, then
    the oldest submission. A study qualifies while it is neither finished, stopped nor failed and has room: a trial
    waiting for a retry, or fewer finished + running + waiting trials than its budget."""
    open_ = [
        s for s in summaries
        if s.state in ("queued", "running") and (s.queued or s.finished + s.running + s.queued < s.budget)
    ]  # fmt: skip
    return sorted(open_, key=lambda s: (-s.priority, s.submitted_at or 0.0, s.name))


def next_study(url: str, *, skip: Iterable[str] = ()) -> str | None:
    """The study a worker without a study name should join now (None: no study has work left)."""
    skipped = set(skip)
    for progress in workable(study_progress(url)):
        if progress.name not in skipped:
            return progress.name
    return None


def _writable(name: str, url: str) -> optuna.Study:
    return load_study(name, url, read_only=False)


def stop_study(name: str, url: str, *, by: str = "user") -> StudySummary:
    """Stop a study: no new trial starts; running trials end as on SIGTERM (recorded as failed with the reason and
    queued for a retry with the same parameters) when their workers next check, within seconds."""
    study = _writable(name, url)
    summary = summarize(study)
    if summary.state == "finished":
        raise Conflict([("study", f"study {name!r} in {safe_url(url)} is finished: there is nothing to stop")])
    if summary.state != "stopped":
        write_stopped(study.set_user_attr, f"stopped by {by} at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    return summarize(study)


def resume_study(name: str, url: str, n_trials: int | None = None, *, field: str = "--n-trials") -> StudySummary:
    """Let workers take a stopped (or failed) study again; the trials its stop interrupted run first. `n_trials`: the
    search's budget from now on (as `sweep run --n-trials` sets it; re-evaluation runs come on top), which continues a
    finished study too; `field` names it in an error (`n_trials` on the service)."""
    study = _writable(name, url)
    summary = summarize(study)
    if n_trials is not None:
        if (problem := trials_problem(n_trials)) is not None:
            raise SweepError([(field, problem)])
        done = summary.search_finished
        if n_trials <= done:
            runs = summary.budget - summary.search_budget
            on_top = f", with {runs} re-evaluation run{'s' if runs != 1 else ''} on top" if runs else ""
            raise SweepError([(field, f"study {name!r} has {done} finished trial{'s' if done != 1 else ''} of its "
                                      f"search already (the search's budget {summary.search_budget}{on_top}): give "
                                      f"more than {done} to run more")])  # fmt: skip
        write_budget(study.set_user_attr, n_trials + summary.budget - summary.search_budget)
    elif summary.state == "finished":
        how = (f"`sweep resume {name} --n-trials N`" if field.startswith("--")
               else f"the form field {field}")  # the service: an API user sends a field, not a command
        raise Conflict([("study", f"study {name!r} in {safe_url(url)} is finished: raise its budget with {how} "
                                    f"(more than {summary.search_finished}) to run more trials")])  # fmt: skip
    write_stopped(study.set_user_attr, None)
    return summarize(study)


def is_stopped(study: optuna.Study) -> str | None:
    """Why the study is stopped, read fresh from the store (None while it may run)."""
    return study_from_attrs(study.user_attrs).stopped


STATE_STYLES = {"queued": "cyan", "running": "green", "finished": "bold", "stopped": "yellow", "failed": "red"}


def studies_table(summaries: Iterable[StudySummary]) -> Table:
    """`sweep status` without a study name: the studies of a store, as the service lists them."""
    table = Table(title="studies", title_justify="left")
    for column in ("study", "state", "finished / budget", "best", "workers", "priority", "submitted"):
        table.add_column(column, justify="right" if column in ("finished / budget", "priority") else "left")
    for s in summaries:
        named = s.metric_label or s.metric or "value"
        best = f"{named} {s.best_value:.4f} (trial {s.best_trial})" if s.best_value is not None else "-"
        extra = [f"{s.running} running"] if s.running else []
        extra += [f"{s.queued} queued"] if s.queued else []
        submitted = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.submitted_at)) if s.submitted_at else "-"
        table.add_row(
            s.name, Text(s.state, style=STATE_STYLES[s.state]),
            f"{s.finished}/{s.budget}" + (f" ({', '.join(extra)})" if extra else ""),
            best, ", ".join(f"{w} (process gone)" if w in s.gone_workers else w for w in s.workers) or "-",
            str(s.priority), submitted,
        )  # fmt: skip
    return table


def state_line(s: StudySummary) -> Text:
    """`sweep status NAME`'s first line: the study's state as the studies list and the service page show it, with
    its progress, its workers and why it stopped or failed."""
    extra = [f"{s.running} running"] if s.running else []
    extra += [f"{s.queued} queued"] if s.queued else []
    line = Text.assemble(f"study {s.name}: ", (s.state, STATE_STYLES[s.state]),
                         f" · {s.finished}/{s.budget} trials finished" + (f" ({', '.join(extra)})" if extra else ""))
    if s.workers:
        line.append(" · workers " + ", ".join(f"{w} (process gone)" if w in s.gone_workers else w for w in s.workers))
    if s.priority:
        line.append(f" · priority {s.priority}")
    why = s.stopped if s.state == "stopped" else s.failure if s.state == "failed" else None
    if why:
        line.append(f"\n{s.state}: {why}")
    return line


def process_gone(worker: str) -> bool:
    """Whether a worker (`host:pid`) on this machine no longer runs: killed, its trial still RUNNING in the store
    until its heartbeat's grace period passes or a run on this store resumes. Other machines' workers: unknown."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: it exists
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A process that ended but that its parent has not waited for yet (Linux's `Z` state): it answers signal 0, and
    runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:  # no /proc (another system), or it is gone meanwhile
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def trial_summary(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as the service lists it: state, value, parameters, best epoch, per-evaluation values, worker."""
    record = read_trial(trial)
    at = record.best_at
    seconds = trial_seconds(trial) if trial.datetime_complete and trial.datetime_start else None
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": _finite(trial.value) if trial.value is not None else None,
        "params": dict(trial.params),
        # a number, as `sweep status` and the report show it: 2, or 0.64 inside epoch 1
        "best_epoch": None if at is None else int(at) if at.isdigit() else float(at),
        "intermediate_values": {str(k): _finite(v) for k, v in sorted(trial.intermediate_values.items())},
        "history": record.history,
        # a queued retry carries its original's worker, which runs nothing for it
        "worker": record.worker if trial.state != TrialState.WAITING else None,
        "worker_gone": trial.state == TrialState.RUNNING and bool(record.worker) and process_gone(record.worker or ""),
        "seconds": seconds,
        "failure": record.failure if trial.state == TrialState.FAIL else None,  # a queued retry carries its original's
    }
