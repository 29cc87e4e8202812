"""`sweep serve`: check what the server is started with (address, token, folders, store), then run uvicorn, with N
local `sweep worker` processes beside it when asked. The token is read from the environment or a file and never
printed or logged; the access log carries no query strings."""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sweep.errors import SweepError
from sweep.service.settings import TOKEN_ENV, TOKEN_FILE_ENV, ServiceSettings
from sweep.store_checks import STORAGE_ENV

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


MIN_TOKEN_LENGTH = 16  # a guessable token guards nothing; `openssl rand -hex 24` gives 48


def read_token(environ: Mapping[str, str]) -> str | None:
    """The bearer token from $SWEEP_SERVICE_TOKEN, else from the file $SWEEP_SERVICE_TOKEN_FILE names; None when
    neither is set. A named file that is missing or empty, or a token shorter than MIN_TOKEN_LENGTH, is an error (the
    message never holds the token)."""
    if environ.get(TOKEN_ENV, "").strip():
        return _long_enough(environ[TOKEN_ENV].strip(), TOKEN_ENV)
    name = environ.get(TOKEN_FILE_ENV, "").strip()
    if not name:
        return None
    try:
        token = Path(name).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SweepError([(TOKEN_FILE_ENV, f"cannot read the token file {name}: {reason}")]) from None
    if not token:
        raise SweepError([(TOKEN_FILE_ENV, f"the token file {name} is empty: write the token in it")])
    return _long_enough(token, TOKEN_FILE_ENV)


def _long_enough(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise SweepError([(where, f"the token has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} (for "
                                  "example `openssl rand -hex 24`)")])  # fmt: skip
    return token


def _folders(values: list[Path], option: str) -> tuple[list[Path], list[tuple[str, str]]]:
    resolved, problems = [], []
    for value in values:
        path = value.expanduser().resolve()
        if not path.is_dir():
            problems.append((option, f"no such folder: {path}"))
        resolved.append(path)
    return resolved, problems


def check_settings(
    *,
    storage_url: str,
    host: str,
    port: int,
    folder: Path,
    data_roots: list[Path],
    model_roots: list[Path],
    max_upload_mb: float,
    workers: int,
    environ: Mapping[str, str],
    ray_address: str | None = None,
) -> ServiceSettings:
    """The server's settings, or SweepError listing every problem (nothing is created on bad input)."""
    from sweep.storage import POSTGRES_HINT
    from sweep.store_checks import is_sqlite, storage_problems

    problems: list[tuple[str, str]] = []
    try:
        token = read_token(environ)
    except SweepError as exc:
        token, problems = None, list(exc.problems)
    if not is_loopback(host) and token is None and not problems:
        problems.append(("--host", f"{host} is not a loopback address: set a token in {TOKEN_ENV} (or a file "
                                   f"named by {TOKEN_FILE_ENV}) so only your team can use the server"))  # fmt: skip
    if not 0 < port < 65536:
        problems.append(("--port", f"must be 1..65535, got {port}"))
    if max_upload_mb <= 0:
        problems.append(("--max-upload-mb", f"must be > 0, got {max_upload_mb}"))
    if ray_address is not None:
        from sweep.cluster import ray_problems

        problems += ray_problems(ray_address, storage_url, workers) if not storage_problems(storage_url) else []
    elif workers < 0:
        problems.append(("--workers", f"must be >= 0, got {workers}"))
    elif workers > 1 and not storage_problems(storage_url) and is_sqlite(storage_url):
        problems.append(("--workers", f"{workers} workers cannot share the SQLite store {storage_url}; "
                                      f"{POSTGRES_HINT}"))  # fmt: skip
    roots, more = _folders(data_roots, "--data-root")
    models, even_more = _folders(model_roots, "--model-root")
    problems += more + even_more + storage_problems(storage_url)
    folder = folder.expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        problems.append(("--folder", f"{folder} is a file: give a folder for the server's uploads and exports"))
    if problems:
        raise SweepError(problems)
    return ServiceSettings(
        storage_url=storage_url, folder=folder, data_roots=tuple(roots), model_roots=tuple(models), token=token,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
    )  # fmt: skip


def prepare_store(settings: ServiceSettings) -> None:
    """Create the server's folder (0755) and the store's tables, once, before any request or worker."""
    from sweep.storage import open_storage
    from sweep.store_checks import reachability_problems

    problems = reachability_problems(settings.storage_url, field="--storage")
    if problems:
        raise SweepError(problems)
    settings.folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    open_storage(settings.storage_url)


def worker_command() -> list[str]:
    """A worker without a study name: it takes whichever study has work (the URL comes in SWEEP_STORAGE)."""
    return [sys.executable, "-m", "sweep", "worker"]


def start_workers(
    n: int, url: str, popen: Callable[..., Any] = subprocess.Popen, gpus: int | None = None
) -> list[Any]:
    """N local `sweep worker` processes (each its share of the CPU threads, or its own GPU of `gpus`, counted here
    when not given); the store URL travels in their environment, never on their command line (`ps` shows command
    lines to every user)."""
    from sweep.worker import _gpu_count

    if gpus is None:
        gpus = _gpu_count() if n else 0
    return [start_worker(i, n, url, gpus, popen) for i in range(n)]


def start_worker(i: int, n: int, url: str, gpus: int, popen: Callable[..., Any] = subprocess.Popen) -> Any:
    """Worker `i` of `n` (see `start_workers`)."""
    from sweep.worker import cpu_share

    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env[STORAGE_ENV] = url
    env.pop(TOKEN_ENV, None)  # workers talk to the store, not to the server: they need no token
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
    cmd = [*worker_command(), "--threads", str(cpu_share(n, None))]
    return popen(cmd, env=env, start_new_session=True)


# A worker that ends while the server runs is started again, unless this many ended within RESTART_WINDOW_S (a worker
# that cannot start: its message is in the server's output above).
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0


class WorkerKeeper:
    """The server's local workers, kept running: a worker that ends (killed, out of memory) is waited for, said, and
    started again, so its trial is failed by the heartbeat and retried rather than left RUNNING on a process that
    no longer runs (nothing else on the machine would notice it without another worker)."""

    def __init__(self, n: int, url: str, say: Callable[[str], None], *,
                 popen: Callable[..., Any] = subprocess.Popen, every: float = 2.0) -> None:  # fmt: skip
        from sweep.worker import _gpu_count

        self.n, self.url, self.say, self.popen, self.every = n, url, say, popen, every
        self.gpus = _gpu_count() if n else 0
        self.procs = start_workers(n, url, popen, gpus=self.gpus)
        self.restarts: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sweep-worker-keeper", daemon=True)
        if n:
            self._thread.start()

    def check(self) -> None:
        """Wait for each worker that ended, and start it again (within the restart limit)."""
        for i, proc in enumerate(self.procs):
            if isinstance(proc, _Ended):
                continue
            code = proc.poll()
            if code is None or self._done.is_set():
                continue
            from sweep.worker import ended_how

            how = ended_how(code)
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S]
            if len(self.restarts) >= MAX_RESTARTS:
                if self.procs[i] is proc:
                    self.say(f"sweep serve: worker {proc.pid} ended ({how}); not started again: {MAX_RESTARTS} workers "
                             f"ended within {RESTART_WINDOW_S:.0f} s (see their lines above); restart the server, or "
                             f"run `sweep worker`{self.fail_trials_of(proc.pid, how)}")  # fmt: skip
                    self.procs[i] = _Ended(code)
                continue
            self.restarts.append(now)
            self.procs[i] = start_worker(i, self.n, self.url, self.gpus, self.popen)
            self.say(f"sweep serve: worker {proc.pid} ended ({how}); started worker {self.procs[i].pid} in its place"
                     f"{self.fail_trials_of(proc.pid, how)}")  # fmt: skip

    def fail_trials_of(self, pid: int, how: str) -> str:
        """Fail the trials a worker of this server left RUNNING when it ended, and queue their retries, at once: its
        process is known to be gone, so nobody need wait the heartbeat's grace period (minutes, during which the
        page showed a running trial of a dead worker and a stop could not end it). What was done, as the end of a
        line."""
        from sweep.storage import fail_dead_worker
        from sweep.store_checks import mask

        try:
            lines = fail_dead_worker(self.url, f"{socket.gethostname()}:{pid}", how)
        except Exception as exc:  # the store is unreachable just now: the heartbeat fails them later
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return (" (its trials are failed by the heartbeat after the grace period; failing them now did not work: "
                    f"{mask(first, self.url)})")
        return f"; {'; '.join(lines)}" if lines else " (it was running no trial)"

    def _watch(self) -> None:
        while not self._done.wait(self.every):
            self.check()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.every + 5)
        stop_workers([p for p in self.procs if not isinstance(p, _Ended)])


class _Ended:
    """A worker slot left empty for good (its workers kept ending)."""

    def __init__(self, code: int) -> None:
        self.code = code


def stop_workers(procs: list[Any], timeout: float = 30.0) -> None:
    """SIGTERM each worker once (it records its running trial as failed, queued for a retry), then wait; kill what
    is still there after `timeout` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_port(host: str, port: int) -> None:
    """Refuse a port this host cannot listen on (another program holds it, or it needs privileges) before anything
    starts or is printed: one line naming --port, not the server's traceback after its banner."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = "another program listens there" if exc.errno == errno.EADDRINUSE else "see the reason"
            raise SweepError([("--port", f"cannot listen on {host}:{port}: {reason.lower()} ({hint}; choose another "
                                         "--port)")]) from None  # fmt: skip


def serve(
    settings: ServiceSettings, *, host: str, port: int, workers: int, say: Callable[[str], None],
    ray_address: str | None = None, worker_cpus: float = 1, worker_gpus: float = 0,
) -> None:  # fmt: skip
    """Run the server until it is stopped (Ctrl-C, SIGTERM); its workers (local processes, or Ray tasks with
    `ray_address`) are stopped with it."""
    import uvicorn

    from sweep.service.app import create_app
    from sweep.store_checks import shown_store

    check_port(host, port)
    prepare_store(settings)
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    roots = ", ".join(str(r) for r in settings.data_roots) or "none (uploads only)"
    local = f" · {workers} local worker{'s' if workers != 1 else ''}" if workers else ""
    say(f"sweep serve: http://{shown}:{port}/ · store {shown_store(settings.storage_url)} · data roots {roots} · "
        f"{'token required' if settings.token else 'no token (this machine only)'}{local}")  # fmt: skip
    ray_workers = None
    if ray_address is not None:
        from rich.console import Console

        from sweep.cluster import start_service_workers

        ray_workers = start_service_workers(settings.storage_url, address=ray_address, workers=workers,
                                            cpus=worker_cpus, gpus=worker_gpus, console=Console(stderr=True))
        keeper = None
    else:
        keeper = WorkerKeeper(workers, settings.storage_url, say)
    # uvicorn ends on SIGTERM / Ctrl-C, then raises the signal again: caught here, so the workers are stopped too.
    previous = {s: signal.signal(s, _stopped) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    except _Stopped as stop:
        say(f"sweep serve: stopped by {signal.Signals(stop.signum).name}"
            f"{'; stopping the workers (their running trials are queued for a retry)' if workers else ''}")
    finally:
        if keeper is not None:
            keeper.stop()
        if ray_workers is not None:
            ray_workers.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stopped(signum: int, frame: Any) -> None:
    raise _Stopped(signum)
