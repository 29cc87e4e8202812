"""Workers: run a study's trials until its budget is reached, stop cleanly on a signal, share a study safely.

One worker is one process running `run_trials`. `sweep run SPEC` is one worker (or starts N local ones with
`--workers N`); `sweep worker STUDY --storage URL` joins an existing study from any machine.

- Budget: the store refuses a new trial once finished + running + queued trials fill the study's `n_trials`
  (see `SweepStorage.create_new_trial`), so N workers finish exactly the budget. A worker that finds the budget
  taken waits while other workers' trials run: if one of them dies, its trial is failed by the heartbeat and
  queued for a retry with the same parameters, which a waiting worker then runs.
- Signals: the first SIGTERM or Ctrl-C raises `StopRequested` inside the running trial's training (never inside
  a database write or a checkpoint write): the trial is recorded as FAIL with the reason, queued for one retry
  with its parameters, and the worker exits. A second signal exits at once.
- Stop from the store (`sweep stop`, the service): `StoreStopWatch` reads the study's stop flag on a daemon thread
  and asks `GracefulStop.request`; training checks the request at batch boundaries (`sweep.callbacks.StopCheck`)
  and the trial ends as on SIGTERM. The store itself refuses new trials and retries of a stopped study.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState
from rich.console import Console

from record import FINISHED, read_trial, study_budget, write_failure
from sweep.errors import DiskError, StorageLost, SweepError
from sweep.lifecycle import SAMPLER_HISTORY_ENV, WORKER_NUMBER_ENV
from sweep.storage import fail_dead_worker, sqlite_workers_env
from sweep.store_checks import STORAGE_ENV, mask

T = TypeVar("T")
WAIT_POLL_S = 2.0
STOP_POLL_S = 2.0  # how often a worker reads its study's stop flag from the store


class StopRequested(Exception):
    """Raised inside a trial's training when the worker was asked to stop (SIGTERM, Ctrl-C)."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ended_how(code: int) -> str:
    """How a process ended, from its return code: `killed by SIGKILL`, `killed by signal 40`, `exit code 3`."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name
        return f"killed by signal {-code}"


def say_or_go_quiet(line: str) -> None:
    """Print `line` to stderr; if the reader is gone (Ctrl-C in a terminal also ends the `| tee` or `| grep` that
    reads a run's output), send this process's output to /dev/null from now on instead of failing: a
    BrokenPipeError raised in the signal handler failed the trial as an error and lost its retry."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, RuntimeError, ValueError):  # BrokenPipeError, a terminal gone; a write the signal interrupted
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in (1, 2):
                with contextlib.suppress(OSError):
                    os.dup2(devnull, fd)
        finally:
            os.close(devnull)


class GracefulStop:
    """SIGTERM/SIGINT handlers for a worker's main thread, and stop requests from the store (`request`).

    The first signal records the request; if a trial is training at that moment, `StopRequested` is raised there
    (an Exception, not KeyboardInterrupt: Lightning turns KeyboardInterrupt into `sys.exit`). Outside training the
    request is only recorded and the worker stops after the current step. The second signal exits at once.
    A request from another thread (`request`) is only recorded: training raises it at its next batch boundary.
    """

    def __init__(self) -> None:
        self.requested: str | None = None  # who asked: a signal's name, or the store's reason (`stopped by` ...)
        self.signalled = False  # whether the request came from a signal (the worker then exits 143/130)
        self.trials_stopped = 0  # trials this stop ended (recorded as FAIL, queued for a retry)
        self.trials_finished = 0  # trials that finished as usual after the request (it came after their training)
        self._training = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signalled:  # second signal: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested, self.signalled = name, True
        say_or_go_quiet(f"{name} received: a running trial stops at its next step (recorded as failed, queued for a "
                        "retry) and no further trial starts (send it again to exit at once)")  # fmt: skip
        if self._training:
            self._training = False
            raise StopRequested(f"stopped by {name}")

    def request(self, reason: str) -> None:
        """Ask the running trial to end as a signal would (from any thread; the first request stands): training
        raises `StopRequested` at its next batch boundary, and no further trial starts."""
        if self.requested is None:
            self.requested = reason

    def check(self) -> None:
        """Raise `StopRequested` if a stop was requested (called where a trial may safely end)."""
        if self.requested is not None:
            raise StopRequested(f"stopped by {self.requested}")

    def shielded(self, fn: Callable[..., T]) -> Callable[..., T]:
        """`fn` made uninterruptible (a database write inside training); a stop requested meanwhile is raised
        right after it returns."""

        def call(*args: Any, **kwargs: Any) -> T:
            was, self._training = self._training, False
            try:
                value = fn(*args, **kwargs)
            finally:
                self._training = was
            if was and self.requested is not None:
                self._training = False
                raise StopRequested(f"stopped by {self.requested}")
            return value

        return call

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """While inside, a signal interrupts the work with `StopRequested`."""
        self.check()
        self._training = True
        try:
            yield
        finally:
            self._training = False


class StoreStopWatch:
    """Reads a study's stop flag (`read`: the reason, or None) every `interval` s on a daemon thread and hands the
    first reason it sees to `stop.request`. A failed read is skipped: the next one tries again (a lost store is
    reported by the trial's own writes)."""

    def __init__(self, read: Callable[[], str | None], stop: GracefulStop, interval: float | None = None):
        self.read, self.stop = read, stop
        self.interval = STOP_POLL_S if interval is None else interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sweep-stop-watch", daemon=True)

    def __enter__(self) -> StoreStopWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            try:
                reason = self.read()
            except Exception:  # noqa: BLE001 (a store that did not answer this time)
                continue
            if reason:
                self.stop.request(reason.removeprefix("stopped by "))
                return


def budget(study: optuna.Study, default: int) -> int:
    """The study's trial budget as last set by `sweep run` (fresh from the store: another run may raise it)."""
    return study_budget(study.user_attrs, default) or default


def budget_finished(study: optuna.Study) -> bool:
    """Whether the study's budget is finished: as many finished trials as it asks for, none running or queued."""
    total = study_budget(study.user_attrs)
    trials = study.get_trials(deepcopy=False)
    return (total is not None and sum(t.state in FINISHED for t in trials) >= total
            and not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials))  # fmt: skip


def count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


class StopOnDiskError:
    """The objective, ending the worker at the first disk that refuses writes (store or checkpoints): the trial is
    recorded as FAIL with the reason, no further trial starts (each would fail the same way), the error is raised."""

    def __init__(self, objective: Callable[[Any], float], study: optuna.Study):
        self.objective, self.study = objective, study
        self.error: DiskError | None = None

    def __call__(self, trial: Any) -> float:
        try:
            return self.objective(trial)
        except DiskError as exc:
            self.error = exc
            self.study.stop()
            raise


def _store_error_in(exc: BaseException) -> SweepError | None:
    """The lost store or refused write behind `exc`: when the store refuses to record a trial, Optuna's tell
    fails with it, and an assertion in Optuna's cleanup (the trial is still RUNNING) then hides it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StorageLost | DiskError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass
class LoopResult:
    stopped_by: str | None = None  # the signal (SIGTERM, SIGINT) that stopped this worker
    interrupted: bool = False  # whether that signal ended a running trial (else it came between trials)
    finished_trial: bool = False  # whether a trial running at the signal finished as usual (past its training)
    failures_in_a_row: bool = False
    study_stopped: str | None = None  # the study was stopped from the store (the reason: `stopped by ...`)
    budget_taken: bool = False  # returned without waiting while other workers' trials fill the budget (wait=False)


def stop_reason(study: optuna.Study) -> str | None:
    """Why the study is stopped, read fresh from its store (None: it may run)."""
    from sweep.catalog import is_stopped

    return is_stopped(study)


def _stopped(result: LoopResult, stop: GracefulStop) -> bool:
    """Record why the loop ends, if it must: a signal, or a stop from the store."""
    if stop.requested is None:
        return False
    if stop.signalled:
        result.stopped_by = stop.requested
        result.interrupted = stop.trials_stopped > 0
        result.finished_trial = stop.trials_finished > 0
    else:
        result.study_stopped = f"stopped by {stop.requested}"
    return True


def _record_failure(study: optuna.Study) -> None:
    """The study is `failed` until resumed: workers without a study name skip it."""
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    last = read_trial(failed[-1]).error if failed else None
    detail = f" (last: trial {failed[-1].number}: {last.splitlines()[0][:300]})" if failed and last else ""
    write_failure(study.set_user_attr, f"three trials in a row failed on {worker_id()}{detail}")


def run_trials(
    study: optuna.Study,
    objective: Any,
    callbacks: list[Any],
    *,
    default_budget: int,
    stop: GracefulStop,
    failures: Any,
    console: Console,
    wait: bool = True,
) -> LoopResult:
    """Run trials until the budget is finished (across all workers), a stop is requested (a signal, or the study
    stopped in the store) or the setup is broken.

    When the budget is taken but not finished (other workers' trials still run), wait: a trial whose worker died
    is failed by the heartbeat after the grace period and queued for a retry, which this worker then runs. With
    `wait=False` (a worker without a study name) return instead, `budget_taken` set: it looks for other work.
    """
    from sweep.storage import BudgetReached

    result = LoopResult()
    announced = False
    guarded = StopOnDiskError(objective, study)
    while True:
        target = budget(study, default_budget)
        if count(study, FINISHED) >= target:
            return result
        try:
            study.optimize(
                guarded,
                n_trials=None,
                catch=(Exception,),
                callbacks=[*callbacks, optuna.study.MaxTrialsCallback(target, states=FINISHED)],
            )
        except BudgetReached:
            pass
        except Exception as exc:  # Optuna's own bookkeeping can fail after ours (a trial it could not record)
            found = guarded.error or _store_error_in(exc)
            if found is None:
                raise
            raise found from None
        if guarded.error is not None:
            raise guarded.error
        if _stopped(result, stop):
            return result
        if getattr(failures, "tripped", False):
            result.failures_in_a_row = True
            _record_failure(study)
            return result
        reason = stop_reason(study)  # the store refused a new trial (StudyStopped) before the watcher saw the stop
        if reason:
            result.study_stopped = reason
            return result
        if count(study, FINISHED) >= budget(study, default_budget):
            return result
        if count(study, (TrialState.WAITING,)):
            continue
        running = count(study, (TrialState.RUNNING,))
        if not running:
            continue  # a trial failed meanwhile and freed a place in the budget
        if not wait:
            result.budget_taken = True
            return result
        if not announced:
            console.print(
                f"budget taken: waiting for {running} running trial(s) of other workers (a trial whose worker died "
                "is failed by the heartbeat and retried here)",
                highlight=False,
            )
            announced = True
        while not stop.requested and count(study, (TrialState.RUNNING,)) and not count(study, (TrialState.WAITING,)):
            time.sleep(WAIT_POLL_S)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        if _stopped(result, stop):
            return result


# --- N local workers ------------------------------------------------------------------------------------------


def cpu_share(workers: int, requested: int | None) -> int:
    """Torch threads per worker: the usable cores split evenly (at least 1), capped by the spec's num_threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // workers)
    return min(share, requested) if requested else share


def launch_workers(
    n: int,
    study_name: str,
    url: str,
    spec_path: Path,
    *,
    threads: int | None,
    console: Console,
    poll: Any,
    total: int,
    history: int = 0,
) -> tuple[list[int], str | None]:
    """Start N `sweep worker` processes, relay their lines (prefixed w1..wN) and one study progress bar; wait.

    A SIGTERM or Ctrl-C here is passed on to every worker (once), which ends its trial cleanly. Returns the
    workers' exit codes and the name of the signal that stopped them, if one did.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    gpus = _gpu_count()
    procs: list[subprocess.Popen[str]] = []
    for i in range(n):
        # The URL travels in the environment, never on the command line: `ps` shows command lines to every user.
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        env[STORAGE_ENV] = url
        env.update(sqlite_workers_env(url))  # on SQLite, this process holds the store for them
        env[WORKER_NUMBER_ENV] = str(i + 1)  # its sampler's seed: search.seed + this number
        env[SAMPLER_HISTORY_ENV] = str(history)  # ... + the study's sampled trials (one value for all N workers)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        cmd = [sys.executable, "-m", "sweep", "worker", study_name, "--spec", str(spec_path)]
        cmd += ["--threads", str(cpu_share(n, threads))]
        procs.append(
            # Own session: a Ctrl-C in the terminal reaches only this process, which passes it on once (a second
            # signal would make a worker exit without recording its trial).
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                start_new_session=True,
            )  # fmt: skip
        )

    def relay(index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            console.print(f"[dim]w{index + 1}[/] {line.rstrip()}", highlight=False, soft_wrap=True)

    readers = [threading.Thread(target=relay, args=(i, p), daemon=True) for i, p in enumerate(procs)]
    for reader in readers:
        reader.start()

    received: list[str] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )  # fmt: skip
    ended: set[int] = set()

    def fail_trials_of_ended() -> None:
        # a worker that ended (killed, out of memory) while others run: its trial is failed and retried now, not
        # after the heartbeat's grace period (minutes in which it filled a place of the budget for nothing)
        for proc in procs:
            code = proc.poll()
            if code is None or code == 0 or proc.pid in ended or received:  # exit 0: it recorded its trials
                continue
            ended.add(proc.pid)
            how = ended_how(code)
            try:
                lines = fail_dead_worker(url, f"{socket.gethostname()}:{proc.pid}", how)
            except Exception as exc:  # the store is out of reach just now: the heartbeat fails the trial later
                lines = [f"a worker ended ({how}); its trial is failed by the heartbeat after the grace period "
                         f"({mask((str(exc).strip().splitlines() or [type(exc).__name__])[0], url)})"]
            for line in lines:
                console.print(f"[yellow]run:[/] {line}", highlight=False)

    try:
        with progress:
            task = progress.add_task(f"study {study_name} · {n} workers", total=total)
            while any(p.poll() is None for p in procs):
                fail_trials_of_ended()
                finished, running = poll()
                progress.update(
                    task, completed=finished, description=f"study {study_name} · {n} workers · {running} running"
                )
                time.sleep(1.0)
            fail_trials_of_ended()  # the last worker to end, too (on PostgreSQL no heartbeat may be left)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for reader in readers:
        reader.join(timeout=5)
    return [p.wait() for p in procs], (received[0] if received else None)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 (no usable CUDA: CPU workers)
        return 0
