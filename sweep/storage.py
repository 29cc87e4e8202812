"""The SQL store: Optuna's RDBStorage (SQLAlchemy underneath), SQLite by default, PostgreSQL for many workers."""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import functools
import inspect
import os
import random
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import text
from sqlalchemy.engine import make_url

from record import (
    FINISHED,
    RecordError,
    StudyRecord,
    TrialRecord,
    TrialWriter,
    read_study,
    read_trial,
    retry_history,
    retry_of,
    study_budget,
    study_from_attrs,
)
from sweep.artifacts import remove_scratch
from sweep.errors import NoSuchStudy, StorageLost, SweepError, disk_errors
from sweep.internals import reread, set_trial_attr
from sweep.store_checks import DEFAULT_STORAGE_URL as DEFAULT_STORAGE_URL
from sweep.store_checks import (
    engine_kwargs,
    is_sqlite,
    lost_connection,
    open_error,
    open_reason,
    read_only_url,
    refused_write_error,
    safe_url,
    shown_store,
    storage_problems,
    write_refused,
)
from sweep.store_checks import reachability_problems as reachability_problems

HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 300
DB_RETRY_S = 120  # how long a worker keeps retrying a database that stopped answering
TAKEN_STATES = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
_BUDGET_LOCK_BASE = 0x5357_0000  # PostgreSQL advisory lock key = base + study id
POSTGRES_HINT = (
    "a SQLite store is shared only by the workers of one `sweep run SPEC --workers N` on this machine: for workers "
    "started on their own or on several machines use PostgreSQL, e.g. "
    "a PostgreSQL server (apt install postgresql, or the postgres container image) and its URL in the environment, "
    "where `ps` and the shell history do not show its password: export SWEEP_STORAGE=postgresql+psycopg://USER:"
    "PASSWORD@HOST:5432/DB"
)
# Set by `sweep run --workers N` on a SQLite store for the workers it starts: the pid of the run, which holds the
# store's one-writer lock for them (sqlite_writer_lock lets a child of that process share it).
LOCK_HOLDER_ENV = "SWEEP_SQLITE_LOCK_HOLDER"


@dataclass(frozen=True)
class Heartbeat:
    """A worker's trial sends a heartbeat every `interval` s; one silent for `grace_period` s is failed and retried."""

    interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S


class BudgetReached(Exception):
    """No new trial: finished, running and queued trials already fill the study's budget."""


class StoreBusy(SweepError):
    """Another process holds the one-writer lock of a SQLite store (exit code 2; a worker without a study name waits
    for it instead)."""


class StudyStopped(BudgetReached):
    """No new trial, and no retry either: the study is stopped (`sweep stop`, the service) until resumed."""


class SweepStorage(RDBStorage):
    """Optuna's RDBStorage with two guarantees the many-worker path needs.

    - A lost database is retried (with backoff, up to `retry_seconds`) and then reported as `StorageLost`; a
      transaction that failed was rolled back, so a retry cannot leave half a write behind.
    - A new trial is created only while finished + running + queued trials stay below the study's budget
      (study attr `n_trials`), counted under a lock (a PostgreSQL advisory lock; on SQLite an flock beside the
      file, which only the workers of one `sweep run --workers N` on one machine share), so N
      workers asked for 30 trials finish exactly 30. Retries of failed trials (queued as WAITING) are outside
      the count of new trials: they replace a trial that did not finish.
    """

    retry_seconds: float = DB_RETRY_S
    log: Callable[[str], None] = staticmethod(lambda line: print(line, file=sys.stderr))  # noqa: T201
    _lost: StorageLost | None = None

    def _retrying(self, name: str, call: Callable[[], Any]) -> Any:
        if self._lost is not None:
            raise self._lost
        deadline, delay, warned = time.monotonic() + self.retry_seconds, 0.5, False
        while True:
            try:
                result = call()
            except Exception as exc:
                refused = write_refused(exc)
                if refused is not None:  # a full or read-only disk: say so now, a retry cannot help
                    if name == "record_heartbeat":  # Optuna's heartbeat thread: the trial's next write says it
                        return None
                    raise refused_write_error(self.url, exc, refused) from None
                cause = lost_connection(exc)
                if cause is None:
                    raise
                reason = open_reason(cause, self.url)
                busy = "database is locked" in str(cause).lower()  # SQLite: another local worker's write
                if time.monotonic() >= deadline:
                    self._lost = StorageLost(
                        [
                            (
                                "storage",
                                f"lost the database {safe_url(self.url)!r} for {self.retry_seconds:.0f} s ({reason}); "
                                "stopped without changing anything else: the running trial will be failed by the "
                                "heartbeat and retried by the next worker, or run the same command again",
                            )
                        ]
                    )
                    raise self._lost from None
                if busy:  # a read that could not become a write while another worker wrote: rolled back, try again
                    time.sleep(min(0.05 * (1 + random.random()), max(deadline - time.monotonic(), 0.0)))
                    continue
                if not warned:
                    self.log(f"database unreachable during {name} ({reason}); retrying for up to "
                             f"{self.retry_seconds:.0f} s")  # fmt: skip
                    warned = True
                time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
                delay = min(delay * 2, 10.0)
            else:
                if warned:
                    self.log(f"database reachable again ({name})")
                return result

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        # Both paths end here: RDBStorage.create_new_trial, and Optuna's _CachedStorage (what a Study holds).
        if template_trial is not None:  # enqueued or added trials (retries, tests): not a new draw
            return super()._create_new_trial(study_id, template_trial)
        with self._budget_lock(study_id):
            attrs = self.get_study_user_attrs(study_id)
            _refuse_if_stopped(attrs)
            budget = study_budget(attrs)
            if budget is not None:
                taken = len(self.get_all_trials(study_id, deepcopy=False, states=TAKEN_STATES))
                if taken >= budget:
                    raise BudgetReached(f"{taken} trials finished, running or queued of a budget of {budget}")
            return super()._create_new_trial(study_id)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        # A queued trial (a retry) starts here, WAITING -> RUNNING: not while its study is stopped.
        if state == TrialState.RUNNING:
            # RDBStorage has no public trial -> study lookup; Optuna's own `trials` table holds it.
            with self.engine.connect() as conn:
                study_id = conn.execute(
                    text("SELECT study_id FROM trials WHERE trial_id = :id"), {"id": trial_id}
                ).scalar_one()
            _refuse_if_stopped(self.get_study_user_attrs(study_id))
        return super().set_trial_state_values(trial_id, state, values)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna's rule misses a worker killed between creating its trial and its first heartbeat (milliseconds; more
        # under load): the trial stays RUNNING without a heartbeat and fills the budget forever. A live worker beats
        # at once, so a RUNNING trial with no heartbeat older than the grace period has a dead worker too.
        stale = super()._get_stale_trial_ids(study_id)
        grace = timedelta(seconds=self.grace_period or 2 * (self.heartbeat_interval or 60))
        now = datetime.now()
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if trial._trial_id in stale or trial.datetime_start is None or now - trial.datetime_start <= grace:
                continue
            if not self._has_heartbeat(trial._trial_id):
                stale.append(trial._trial_id)
        # Optuna fails them next and records no reason (the page, `sweep status` and the report said "no error
        # recorded"); a finished trial takes no attribute, so the reason is written while they still run
        numbered = {t.number: t for t in self.get_all_trials(study_id, deepcopy=False)} if stale else {}
        for trial_id in stale:
            trial = self.get_trial(trial_id)
            # a retry carries its original's reason (Optuna copies the attributes): written again with its own
            if trial.state == TrialState.RUNNING and read_trial(trial).lost != lost_reason(trial, numbered):
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # another worker was first
                    writer = TrialWriter(functools.partial(self.set_trial_user_attr, trial_id))
                    if inherited_outcome(trial, numbered):
                        writer.forget_inherited_outcome()
                    writer.lost(lost_reason(trial, numbered), self._silent_seconds(trial_id))
        self._queue_lost_retries(study_id, now - grace)
        return stale

    def _queue_lost_retries(self, study_id: int, before: datetime) -> None:
        # Optuna fails a stale trial, then queues its retry: a worker killed between the two loses the retry (the
        # budget stays exact, the configuration is lost). Every pass queues the missing retry of a trial the heartbeat
        # failed (no error or stop recorded, not itself a retry) more than a grace period ago, under the budget lock
        # so that two workers do not both queue it.
        trials = self.get_all_trials(study_id, deepcopy=False)
        retried = {retry_of(t.system_attrs) for t in trials}
        candidates = [
            t for t in trials
            if t.state == TrialState.FAIL and t.number not in retried and retry_of(t.system_attrs) is None
            and t.datetime_complete is not None and t.datetime_complete < before
        ]  # fmt: skip
        lost = [t for t in candidates if _died_silently(read_trial(t)) and self._has_heartbeat(t._trial_id)]
        if not lost:
            return
        with self._budget_lock(study_id):
            study = optuna.load_study(study_name=self.get_study_name_from_id(study_id), storage=self)
            retried = {retry_of(t.system_attrs) for t in self.get_all_trials(study_id, deepcopy=False)}
            for trial in lost:
                if trial.number not in retried:
                    queue_retry(study, trial)
                    remove_dead_scratch(study, trial.number)

    def _silent_seconds(self, trial_id: int) -> float | None:
        # From one heartbeat interval after the trial's last heartbeat until now, on the database's clock (Optuna
        # stamps heartbeats with it; this process's clock or time zone may differ); None without a heartbeat
        from optuna.storages._rdb.models import TrialHeartbeatModel
        from sqlalchemy import func, select

        with self.engine.connect() as conn:
            row = conn.execute(
                select(TrialHeartbeatModel.heartbeat, func.now()).where(TrialHeartbeatModel.trial_id == trial_id)
            ).first()
        if row is None or row[0] is None or row[1] is None:
            return None
        # the worker died within one interval after its last heartbeat (its next one never came): only the time
        # after that is surely silence, so the trial's seconds are at most one interval too long, never too short
        since = (row[1].replace(tzinfo=None) - row[0].replace(tzinfo=None)).total_seconds()
        return max(0.0, since - float(self.heartbeat_interval or 0))

    def _has_heartbeat(self, trial_id: int) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM trial_heartbeats WHERE trial_id = :id"), {"id": trial_id}
            ).first()
        return found is not None

    @contextlib.contextmanager
    def _budget_lock(self, study_id: int) -> Iterator[None]:
        if self.engine.dialect.name == "sqlite":
            # The workers of one `sweep run --workers N` share the file on this machine: an flock beside it.
            with _sqlite_budget_lock(self.engine.url.database):
                yield
            return
        if self.engine.dialect.name != "postgresql":
            yield  # MySQL: not supported for many workers
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _BUDGET_LOCK_BASE + study_id})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _BUDGET_LOCK_BASE + study_id})
                conn.commit()


@contextlib.contextmanager
def _sqlite_budget_lock(database: str | None) -> Iterator[None]:
    """Count-then-create of new trials, one process at a time, for the local workers sharing a SQLite file (its own
    lock file: never an flock on the database, whose POSIX locks SQLite owns). In-memory: one process anyway."""
    if not database or database == ":memory:":
        yield
        return
    path = Path(database).resolve()
    with open(path.with_name(f".{path.name}.budget-lock"), "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _died_silently(record: TrialRecord) -> bool:
    """A failed trial that recorded neither an error nor a stop: its worker died (the heartbeat failed it)."""
    return not (record.error or record.stopped_by)


def _refuse_if_stopped(attrs: Mapping[str, Any]) -> None:
    stopped = study_from_attrs(attrs).stopped
    if stopped is not None:
        raise StudyStopped(f"the study is stopped ({stopped})")


def _wrap(name: str) -> Callable[..., Any]:
    method = getattr(SweepStorage, name)

    @functools.wraps(method)
    def wrapper(self: SweepStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(name, lambda: method(self, *args, **kwargs))

    return wrapper


# Every storage operation (including the heartbeat thread's) goes through the retry loop.
for _name in [
    n
    for n in dir(RDBStorage)
    if (
        not n.startswith("_")
        or n in ("_create_new_trial", "_get_best_trial_id", "_get_stale_trial_ids", "_get_trials", "_set_trial_param")
    )
    and callable(getattr(RDBStorage, n))
    and n not in ("get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "remove_session")
    and not isinstance(inspect.getattr_static(RDBStorage, n), staticmethod | classmethod)
]:
    setattr(SweepStorage, _name, _wrap(_name))


def has_study_tables(url: str) -> bool:
    """Whether the store holds Optuna's tables (a fresh server database does not); checked without writing."""
    if is_sqlite(url):
        path = Path(make_url(url).database or "")
        if not path.is_file():
            return False
    import sqlalchemy

    ro_url, kwargs = read_only_url(url)
    engine = sqlalchemy.create_engine(ro_url, **kwargs)  # type: ignore[arg-type]
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


def existing_study_attrs(url: str, name: str) -> dict[str, Any] | None:
    """The user attrs of study `name` if the store already holds it; None (and nothing created) otherwise."""
    if not has_study_tables(url):
        return None
    storage = open_storage(url, read_only=True)
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    except Exception:  # noqa: BLE001 (a server database without optuna's tables yet: no study)
        return None
    return storage.get_study_user_attrs(study_id)


def _rdb_storage(
    url: str, *, read_only: bool = False, create_tables: bool = True, heartbeat: Heartbeat | None = None
) -> RDBStorage:
    """Heartbeats mark a killed worker's trial FAIL after the grace period; it is then retried once."""
    if read_only:
        ro_url, kwargs = read_only_url(url)
        return RDBStorage(ro_url, engine_kwargs=kwargs, skip_compatibility_check=True, skip_table_creation=True)
    heartbeat = heartbeat or Heartbeat()
    return SweepStorage(
        url,
        engine_kwargs=engine_kwargs(url),
        skip_table_creation=not create_tables,
        heartbeat_interval=heartbeat.interval,
        grace_period=heartbeat.grace_period,
        heartbeat_stale_trial_callback=_retry_and_clean,
    )


def open_storage(
    url: str,
    *,
    must_exist: bool = False,
    read_only: bool = False,
    create_tables: bool = True,
    heartbeat: Heartbeat | None = None,
) -> RDBStorage:
    """Open (and on first use create) the store; user errors come back as SweepError.

    `read_only` is for readers (status, report, export): they never block or change a running study.
    Workers joining a study pass `create_tables=False`: the tables were created once, before they started.
    """
    problems = storage_problems(url, must_exist=must_exist or read_only)
    if problems:
        raise SweepError(problems)
    if read_only and not is_sqlite(url) and not _quietly(has_study_tables, url):
        raise SweepError([("storage", f"no sweep studies in {safe_url(url)} yet (run `sweep run SPEC --storage URL`)")])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _rdb_storage(url, read_only=read_only, create_tables=create_tables, heartbeat=heartbeat)
    except Exception as exc:  # SQLAlchemy OperationalError and friends: say what could not be reached
        raise open_error(url, exc) from None


def trial_state_counts(storage: RDBStorage) -> dict[str, dict[TrialState, int]]:
    """Each study's number of trials per state, by study name, in one query over Optuna's own `studies` and `trials`
    tables (RDBStorage counts a study's trials by loading them, one study at a time: what every worker without a
    study name did every few seconds, for every study in the store)."""
    with storage.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.study_name, t.state, COUNT(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "GROUP BY s.study_name, t.state"
        )).all()  # fmt: skip
    counts: dict[str, dict[TrialState, int]] = {}
    for name, state, n in rows:
        counts.setdefault(name, {})[TrialState[state]] = int(n)
    return counts


def sqlite_study_names(path: Path) -> list[str] | None:
    """The studies in the SQLite file at `path`, read without writing to it (opening it as an Optuna store would
    create Optuna's tables in any SQLite file); None where it is no Optuna store or cannot be read."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            return [str(row[0]) for row in conn.execute("SELECT study_name FROM studies")]
    except sqlite3.Error:
        return None


def study_ids(storage: RDBStorage) -> dict[str, int]:
    """Each study's id by its name, in one query over Optuna's `studies` table (a name deleted and created again
    may get another id; on SQLite it may get the same one, the highest, back)."""
    with storage.engine.connect() as conn:
        return {name: int(study_id) for name, study_id in conn.execute(
            text("SELECT study_name, study_id FROM studies")).all()}  # fmt: skip


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def load_study(name: str, url: str, *, read_only: bool = True) -> optuna.Study:
    """Load an existing study (read-only by default), or say which studies the store holds."""
    storage = open_storage(url, must_exist=True, read_only=read_only)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        known = f"studies here: {', '.join(names)}" if names else "the store holds no study yet"
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise NoSuchStudy([("study", f"no study named {name!r} in {shown_store(url)} ({known}){guess}")]) from None
    except SweepError:
        raise
    except Exception as exc:  # the server went away since it was opened, or the file is no database after all
        raise open_error(url, exc) from None
    study_record(name, study.user_attrs)  # a record written by a newer sweep is refused here, before anything reads it
    return study


def study_record(name: str, attrs: Mapping[str, Any]) -> StudyRecord:
    """A study's record from its attributes; a SweepError (one line, exit 2) for a record written by a newer sweep."""
    try:
        return study_from_attrs(attrs)
    except RecordError as exc:
        raise SweepError([("study", f"{name!r}: {exc}")]) from None


def _quietly(check: Callable[[str], bool], url: str) -> bool:
    """`check(url)`, with connection problems left for the caller's own open to report."""
    try:
        return check(url)
    except Exception:  # noqa: BLE001
        return True


@contextlib.contextmanager
def sqlite_writer_lock(url: str) -> Iterator[None]:
    """Hold the one-writer lock of a SQLite store for the whole run; a second process is refused at once.

    The lock is an flock on a hidden file beside the database (never on the database file itself: closing another
    descriptor of that file would drop SQLite's own POSIX locks). Not a SQLite store: nothing to do.
    """
    if not is_sqlite(url):
        yield
        return
    database = Path(make_url(url).database or "").resolve()
    lock_path = database.with_name(f".{database.name}.writer-lock")
    with disk_errors(database.parent, "storage", f"the lock file of {database.name}"):
        handle: IO[str] = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the whole run)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if _held_by_my_run(holder):
                yield  # a worker of `sweep run --workers N`: the run holds the store for its workers
                return
            raise StoreBusy(
                [("storage", f"{safe_url(url)} is already used by a running sweep ({holder}); {POSTGRES_HINT}")]
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _held_by_my_run(holder: str) -> bool:
    """Whether the lock's holder is the `sweep run --workers N` that started this process (its parent, named in the
    environment it gave its workers): only then may this process write beside it."""
    return shares_a_runs_store() and holder == f"pid {os.environ[LOCK_HOLDER_ENV]} on {socket.gethostname()}"


def shares_a_runs_store() -> bool:
    """Whether this process is a worker that `sweep run --workers N` started on a SQLite store it holds."""
    run = os.environ.get(LOCK_HOLDER_ENV, "")
    return run.isdigit() and int(run) == os.getppid()


def sqlite_workers_env(url: str) -> dict[str, str]:
    """What `sweep run --workers N` gives the workers it starts so that they share its hold of a SQLite store."""
    return {LOCK_HOLDER_ENV: str(os.getpid())} if is_sqlite(url) else {}


def recover_orphans(study: optuna.Study, reason: str) -> tuple[list[int], list[int]]:
    """Fail the study's RUNNING trials (no worker can own them) and queue each for a retry with its parameters
    (`retried_after_death`); returns the trials failed and those of them not retried.

    Only for a store this process alone writes (SQLite under `sqlite_writer_lock`): a RUNNING trial there was left
    by a worker that died. On PostgreSQL the heartbeat does this, after the grace period.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def why(writer: TrialWriter, trial: FrozenTrial, _trials: Mapping[int, FrozenTrial]) -> None:
        writer.failed(reason)
        writer.silence(silent_seconds(study, trial))  # its seconds end near its worker's death, not now

    return _fail_for_retry(study, running, why)


def silent_seconds(study: optuna.Study, trial: FrozenTrial) -> float | None:
    """How long `trial`'s worker has surely been silent (`SweepStorage._silent_seconds`), or None (no heartbeat)."""
    storage = getattr(study._storage, "_backend", study._storage)
    return storage._silent_seconds(trial._trial_id) if isinstance(storage, SweepStorage) else None


def _fail_for_retry(
    study: optuna.Study,
    running: Sequence[FrozenTrial],
    record: Callable[[TrialWriter, FrozenTrial, Mapping[int, FrozenTrial]], None],
) -> tuple[list[int], list[int]]:
    """Fail each of `running` (after `record(writer, trial, trials)` wrote why) and queue its retry where its
    configuration earns one (`retried_after_death`); returns the trials failed and those of them not retried. A
    trial that finished meanwhile is left as it is."""
    failed, not_retried = [], []
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for trial in running:
        writer = TrialWriter(functools.partial(set_trial_attr, study, trial))
        try:
            if inherited_outcome(trial, trials):
                writer.forget_inherited_outcome()
            record(writer, trial, trials)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker's heartbeat pass failed it first
            continue
        if study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True).state != TrialState.FAIL:
            continue
        failed.append(trial.number)
        if retried_after_death(trial, trials):
            queue_retry(study, reread(study, trial))
        else:
            not_retried.append(trial.number)
        remove_dead_scratch(study, trial.number)
    return failed, not_retried


def fail_dead_worker(url: str, worker: str, how: str) -> list[str]:
    """Fail the RUNNING trials of `worker` (`host:pid`), a process known to have ended (`sweep serve` waited for it),
    and queue each for a retry as the heartbeat would (`retried_after_death`), at once rather than after the grace
    period; returns a line per study touched. Under the study's budget lock, so that another worker's heartbeat pass
    does not queue the same retry."""
    storage = open_storage(url)
    assert isinstance(storage, SweepStorage)
    try:
        lines = []
        for summary in storage.get_all_studies():
            running = storage.get_all_trials(summary._study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if not any(read_trial(t).worker == worker for t in running):
                continue
            with storage._budget_lock(summary._study_id):
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                mine = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                        if read_trial(t).worker == worker]  # fmt: skip

                def why(writer: TrialWriter, trial: FrozenTrial, trials: Mapping[int, FrozenTrial]) -> None:
                    retry = ("queued for a retry with the same parameters" if retried_after_death(trial, trials) else
                             "not retried again (its configuration's worker died once before)")  # fmt: skip
                    writer.lost(f"its worker {worker} ended ({how}); failed at once by the process that started it, "
                                f"{retry}")

                failed, not_retried = _fail_for_retry(study, mine, why)
            if failed:
                lines.append(f"{summary.study_name}: " + orphans_line(failed, not_retried, f"worker {worker} ({how})"))
    finally:  # a server calls this now and then: no connection is left behind
        storage.engine.dispose()
    return lines


def orphans_line(failed: Sequence[int], not_retried: Sequence[int], how: str) -> str:
    """What `recover_orphans` did, in one line: `how` says who left them RUNNING."""
    retried = [n for n in failed if n not in not_retried]
    parts = []
    if retried:
        parts.append(f"{'trial' if len(retried) == 1 else 'trials'} {', '.join(map(str, retried))} queued for a retry "
                     "with the same parameters")
    if not_retried:
        parts.append(f"{', '.join(map(str, not_retried))} not retried (the configuration's worker died once before)")
    return (f"{'trial' if len(failed) == 1 else 'trials'} {', '.join(map(str, failed))} "
            f"{'was' if len(failed) == 1 else 'were'} left RUNNING by {how}: marked failed; " + "; ".join(parts))


def _retry_and_clean(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat callback for a trial whose worker died: queue its retry (`retried_after_death`), remove the
    checkpoint scratch folder the worker may have been writing when it was killed, and say so in this worker's
    output."""
    backend = getattr(study._storage, "_backend", study._storage)
    # under the budget lock, as a dead-worker repair queues: the two cannot both find no retry and queue one each
    lock = backend._budget_lock(study._study_id) if isinstance(backend, SweepStorage) else contextlib.nullcontext()
    with lock:
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        queue_retry(study, trial)
    remove_dead_scratch(study, trial.number)
    print(f"trial {trial.number} of {study.study_name}: {lost_reason(trial, trials)}", file=sys.stderr, flush=True)


def retried_after_death(trial: FrozenTrial, trials: Mapping[int, FrozenTrial]) -> bool:
    """Whether a trial whose worker died is queued again: the first death in its configuration's chain is; a second
    is not (a configuration that kills its worker must not loop). Stops earlier in the chain (a signal, `sweep
    stop`) are no deaths: a stop loses nothing, not even the retry a later death is owed."""
    earlier = [trials.get(n) for n in retry_history(trial.system_attrs)]
    return not any(t is not None and t.state == TrialState.FAIL and read_trial(t).stopped_by is None for t in earlier)


def inherited_outcome(trial: FrozenTrial, trials: Mapping[int, FrozenTrial]) -> bool:
    """Whether a retry's stop or error is the one Optuna copied from the trial it retries (the last of its chain):
    its worker died before clearing it (`TrialWriter.start`)."""
    history = retry_history(trial.system_attrs)
    previous = trials.get(history[-1]) if history else None
    if previous is None:
        return False
    mine, theirs = read_trial(trial), read_trial(previous)
    return (mine.stopped_by or mine.error) is not None and (mine.stopped_by, mine.error) == (
        theirs.stopped_by, theirs.error)  # fmt: skip


def lost_reason(trial: FrozenTrial, trials: Mapping[int, FrozenTrial]) -> str:
    """Why the heartbeat fails a trial, as its record keeps it (`SweepStorage._get_stale_trial_ids` writes it)."""
    worker = read_trial(trial).worker or "(unknown)"
    retry = "queued for a retry with the same parameters" if retried_after_death(trial, trials) else (
        "not retried again (its configuration's worker died once before)")  # fmt: skip
    return (f"its worker {worker} stopped sending heartbeats (the process was killed, or its machine or connection "
            f"was lost); failed by another worker, {retry}")


def remove_dead_scratch(study: optuna.Study, number: int) -> None:
    record = read_study(study)
    roots = {Path(record.checkpoint_dir)} if record.checkpoint_dir else set()
    if record.artifact_store and record.artifact_store.get("store") == "filesystem":
        roots.add(Path(record.artifact_store["path"]))
    remove_scratch(roots, number)


def queue_retry(study: optuna.Study, trial: FrozenTrial, *, again: bool = False) -> None:
    """Queue a failed trial once more with its parameters (Optuna's retry bookkeeping: `failed_trial`) — for
    heartbeat-stale trials, stopped workers and orphans alike. A trial whose worker died is retried once (a
    configuration that kills its worker must not loop); `again`: a stopped trial (a signal, `sweep stop`) is queued
    however often it was stopped before, so each stop loses nothing."""
    trials = study.get_trials(deepcopy=False)
    if not again and not retried_after_death(trial, {t.number: t for t in trials}):
        return
    if any(retry_history(t.system_attrs)[-1:] == [trial.number] for t in trials):
        return  # queued already: another worker's heartbeat pass and a dead-worker repair may both get here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)
