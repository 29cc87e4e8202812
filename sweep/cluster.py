"""Workers on a Ray cluster: `sweep run SPEC --ray [ADDRESS] --workers N`.

Each worker is a Ray task that joins the study (`sweep.joining.join_study`, as `sweep worker` does) with the CPUs
and GPUs the spec's `resources:` asks for; Ray places the tasks. A task whose process or node dies is retried by
Ray (up to `RETRIES` times): the new process joins the study again, and the trial the dead one left RUNNING is
failed by the heartbeat after the grace period and retried with the same parameters, so the budget stays exact.

The store must be one every node reaches (PostgreSQL); the storage URL travels to the tasks as an argument in
Ray's object store, never in a command line, an environment variable or a log line. `ray` is an optional extra:
`pip install 'sweep[ray]'`.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from sweep.errors import SweepError
from sweep.store_checks import is_sqlite, safe_url

LOCAL = "local"  # `--ray` without an address: start a Ray on this machine for this run
RETRIES = 10  # Ray retries of a worker task whose process or node died
INSTALL_HINT = "pip install 'sweep[ray]'"
CONNECT_TIMEOUT_S = 5.0


STOP_WAIT_S = 60.0  # after a signal: how long the cancelled tasks get to record their trials


@dataclass(frozen=True)
class RayResult:
    exit_codes: list[int]  # 0 per worker task that finished its share, 1 per task that raised
    errors: list[str]  # one line per failed task
    stopped_by: str | None = None  # SIGINT / SIGTERM when a signal ended the run


def _ray() -> Any:
    """The `ray` module, imported with Ray's log deduplication off: it folds lines that differ only in numbers, so
    each worker's "worker host:pid joined study ..." (and its errors) would show once "[repeated 2x across
    cluster]" instead of naming every worker. A user's own RAY_DEDUP_LOGS wins."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not sys.stderr.isatty():  # the relayed lines' worker prefix without colour codes in a log file
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    import ray

    return ray


def ray_problems(address: str, url: str, workers: int) -> list[tuple[str, str]]:
    """Everything that makes `--ray` impossible, checked before anything is written or started."""
    problems: list[tuple[str, str]] = []
    try:
        _ray()
    except ImportError:
        problems.append(("--ray", f"ray is not installed here: {INSTALL_HINT}"))
    if is_sqlite(url):
        problems.append(
            ("--ray", f"Ray workers on several processes and machines need a shared PostgreSQL store, not the SQLite "
                      f"file {safe_url(url)}: pass --storage postgresql+psycopg://USER:PASSWORD@HOST/DB (or set "
                      "SWEEP_STORAGE)")
        )  # fmt: skip
    if workers < 1:
        problems.append(("--workers", f"must be >= 1 with --ray, got {workers}"))
    found = _auto_address() if address == "auto" and not problems else None
    if address == "auto" and not problems and found is None:
        problems.append(("--ray", "found no Ray cluster to join at 'auto': none was started on this machine (`ray "
                                  "start --head`) and RAY_ADDRESS is unset; start one, set RAY_ADDRESS, give the head "
                                  "node's address (HOST:6379 or ray://HOST:10001), or leave the address out to start "
                                  "a local Ray for this run"))  # fmt: skip
    elif address != LOCAL and not problems:
        reason = _unreachable(found or address)
        if reason:
            problems.append(("--ray", f"no Ray cluster answers at {address!r} ({reason}); start one with "
                                      "`ray start --head` or give the head node's address (HOST:6379 or "
                                      "ray://HOST:10001)"))  # fmt: skip
    return problems


def _host_port(address: str) -> tuple[str, int] | None:
    body = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = body.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _auto_address() -> str | None:
    """The cluster `--ray auto` joins as Ray finds it (RAY_ADDRESS, or the last `ray start` on this machine), or
    None where there is none."""
    try:
        from ray._private.services import get_ray_address_from_environment

        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        return None
    except Exception:  # noqa: BLE001 (another Ray's internals: let ray.init say what it finds)
        return "auto"
    return str(found) if found else None


def _unreachable(address: str) -> str | None:
    """Why nothing listens at ADDRESS (None when a TCP connection succeeds); Ray's own connect waits much longer."""
    if address == "auto":
        return None  # Ray finds the cluster this machine belongs to (RAY_ADDRESS, or a `ray start` here)
    target = _host_port(address)
    if target is None:
        return "expected HOST:PORT, ray://HOST:PORT or auto"
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _worker_task(name: str, url: str, spec_path: str | None, threads: int) -> str:
    """One Ray worker: join the study and run its trials until the study-wide budget is finished."""
    from sweep.joining import join_study
    from sweep.worker import worker_id

    # soft_wrap: one message, one line (Ray prefixes each line it relays with the worker's name)
    result = join_study(name, url, spec_path=spec_path, threads=threads, console=Console(stderr=True, soft_wrap=True))
    if result.failures_in_a_row:
        raise RuntimeError(f"study {name}: three trials in a row failed; see their errors with `sweep status {name}`")
    if result.stopped_by:
        return f"{worker_id()} stopped by {result.stopped_by} after {result.seconds:.0f} s in study {name}"
    return f"{worker_id()} finished its share of study {name} in {result.seconds:.0f} s"


def _service_worker_task(url: str, threads: int) -> str:
    """One Ray worker of `sweep serve --ray`: a worker without a study name, taking whichever study has work."""
    from sweep.joining import work_on_studies
    from sweep.worker import worker_id

    result = work_on_studies(url, threads=threads, console=Console(stderr=True, soft_wrap=True))
    return f"{worker_id()} ended after {result.seconds:.0f} s"


@dataclass
class ServiceWorkers:
    """The Ray tasks `sweep serve --ray --workers N` started; `stop` cancels them (their running trials end as on
    Ctrl-C: failed with the reason, queued for a retry) and disconnects."""

    refs: list[Any]
    address: str

    def stop(self) -> None:
        ray = _ray()

        for ref in self.refs:
            ray.cancel(ref)
        ray.wait(self.refs, num_returns=len(self.refs), timeout=30)
        ray.shutdown()


def start_service_workers(
    url: str, *, address: str, workers: int, cpus: float, gpus: float, console: Console
) -> ServiceWorkers:
    """N Ray tasks, each a worker without a study name (what `sweep serve --workers N` starts as local processes)."""
    ray = _ray()

    _init(ray, address, console)
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False)(
        _service_worker_task
    )
    refs = [remote.options(name=f"sweep-worker-{i + 1}").remote(url, max(1, int(cpus))) for i in range(workers)]
    console.print(f"{workers} Ray workers ({cpus:g} CPU, {gpus:g} GPU each) on {_where(ray, address)}",
                  highlight=False)  # fmt: skip
    return ServiceWorkers(refs, address)


def run_ray_workers(
    name: str,
    url: str,
    *,
    address: str,
    workers: int,
    cpus: float,
    gpus: float,
    spec_path: str | None,
    poll: Callable[[], tuple[int, int]],
    total: int,
    console: Console,
) -> RayResult:
    """Start `workers` Ray tasks on the cluster at `address` (a local Ray for LOCAL), show one progress bar over the
    study, and wait for them. A Ctrl-C or SIGTERM cancels the tasks, which stop their running trials as a `sweep
    worker` does (recorded as failed, queued for a retry), and waits up to STOP_WAIT_S for them; a second one stops
    waiting. A trial whose worker ended without recording it is failed by the caller (`fail_gone_local_workers`, a
    local Ray) or by the heartbeat."""
    import signal
    import threading
    import time

    ray = _ray()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    _init(ray, address, console)
    received: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False)(_worker_task)
        threads = max(1, int(cpus))
        refs = [remote.options(name=f"sweep-worker-{name}-{i + 1}").remote(name, url, spec_path, threads)
                for i in range(workers)]  # fmt: skip
        console.print(
            f"{workers} Ray worker tasks for study [bold]{name}[/] ({cpus:g} CPU, {gpus:g} GPU each) on "
            f"{_where(ray, address)}; store {safe_url(url)}",
            highlight=False,
        )
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal,
        )  # fmt: skip
        pending, codes, errors = list(refs), [], []
        deadline: float | None = None
        with progress:
            bar = progress.add_task(f"study {name} · {workers} Ray workers", total=total)
            while pending:
                if received and deadline is None:
                    console.print(f"{received[0]} received: the Ray worker tasks are cancelled; each running trial "
                                  "stops at its next step (recorded as failed, queued for a retry) (send it again to "
                                  "stop waiting for them)", highlight=False)  # fmt: skip
                    for ref in pending:
                        ray.cancel(ref)
                    deadline = time.monotonic() + STOP_WAIT_S
                if deadline is not None and (len(received) > 1 or time.monotonic() > deadline):
                    break
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in done:
                    try:
                        console.print(f"ray worker: {ray.get(ref)}", highlight=False)
                        codes.append(0)
                    except Exception as exc:  # noqa: BLE001 (a task's error, reported per worker)
                        if not received:  # a cancelled task's end is no failure
                            errors.append(_task_error(exc))
                            codes.append(1)
                finished, running = poll()
                progress.update(bar, completed=finished,
                                description=f"study {name} · {workers} Ray workers · {running} running")  # fmt: skip
        return RayResult(codes, errors, received[0] if received else None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if address == LOCAL:
            ray.shutdown()


def _init(ray: Any, address: str, console: Console) -> None:
    """Connect to the cluster (or start a local Ray); a refusal becomes one line (exit 2)."""
    try:
        if address == LOCAL:
            ray.init(include_dashboard=False, configure_logging=False)
        else:
            ray.init(address=address, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 (ConnectionError, RuntimeError: say what Ray said, on one line)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError([("--ray", f"cannot connect to Ray at {address!r}: {reason}")]) from None


def _where(ray: Any, address: str) -> str:
    if address == LOCAL:
        return "a local Ray"
    dashboard = getattr(ray.get_runtime_context(), "dashboard_url", None) or ""
    return f"the Ray cluster at {address}" + (f" (dashboard http://{dashboard})" if dashboard else "")


def _task_error(exc: BaseException) -> str:
    """The last line of a failed task's error (Ray wraps the task's own traceback)."""
    cause = getattr(exc, "cause", None) or exc
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__
