"""The SQL store: Optuna's RDBStorage (SQLAlchemy underneath), SQLite by default, PostgreSQL for many workers."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sweep.errors import SweepError

DEFAULT_STORAGE_URL = "sqlite:///sweeps.db"
SCHEMES = ("sqlite", "postgresql", "mysql")
HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 300


def storage_problems(url: str, *, field: str = "storage", must_exist: bool = False) -> list[tuple[str, str]]:
    """What is wrong with a storage URL, checked without connecting."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return [(field, f"not a database URL: {url!r} (e.g. sqlite:///sweeps.db or postgresql+psycopg://user@host/db)")]
    backend = parsed.get_backend_name()
    if backend not in SCHEMES:
        return [
            (field, f"unsupported scheme '{parsed.drivername}' in {url!r} (use sqlite:///FILE or postgresql://...)")
        ]
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            return [(field, "an in-memory SQLite store loses every trial: give a file, e.g. sqlite:///sweeps.db")]
        path = Path(database)
        if must_exist and not path.is_file():
            return [(field, f"no study store at {path.resolve()} (run `sweep run SPEC` first, or pass --storage)")]
        if not path.resolve().parent.is_dir():
            return [(field, f"folder does not exist: {path.resolve().parent} (create it or change {url!r})")]
    return []


def _engine_kwargs(url: str) -> dict[str, object]:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": 60}}
    # Trials can be silent for an hour: test each pooled connection before use.
    return {"pool_pre_ping": True, "pool_recycle": 3600}


def read_only_url(url: str) -> tuple[str, dict[str, object]]:
    """The URL and engine options that open the store read-only where the backend allows it."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = Path(parsed.database or "").resolve()
        return f"sqlite:///file:{path}?mode=ro&uri=true", {"connect_args": {"timeout": 60, "uri": True}}
    if backend == "postgresql":
        return url, {"pool_pre_ping": True, "connect_args": {"options": "-c default_transaction_read_only=on"}}
    return url, _engine_kwargs(url)


def _rdb_storage(url: str, *, read_only: bool = False) -> optuna.storages.RDBStorage:
    """Heartbeats mark a killed worker's trial FAIL after the grace period; it is then retried once."""
    if read_only:
        ro_url, kwargs = read_only_url(url)
        return optuna.storages.RDBStorage(
            ro_url, engine_kwargs=kwargs, skip_compatibility_check=True, skip_table_creation=True
        )
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=_engine_kwargs(url),
        heartbeat_interval=HEARTBEAT_INTERVAL_S,
        grace_period=GRACE_PERIOD_S,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
    )


def open_storage(url: str, *, must_exist: bool = False, read_only: bool = False) -> optuna.storages.RDBStorage:
    """Open (and on first use create) the store; user errors come back as SweepError.

    `read_only` is for readers (status, report, export): they never block or change a running study.
    """
    problems = storage_problems(url, must_exist=must_exist or read_only)
    if problems:
        raise SweepError(problems)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _rdb_storage(url, read_only=read_only)
    except ImportError as exc:
        raise SweepError([("storage", f"the database driver for {url!r} is not installed ({exc.name})")]) from None
    except Exception as exc:  # SQLAlchemy OperationalError and friends: say what could not be reached
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise SweepError([("storage", f"cannot open {url!r}: {reason}")]) from None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def load_study(name: str, url: str, *, read_only: bool = True) -> optuna.Study:
    """Load an existing study (read-only by default), or say which studies the store holds."""
    storage = open_storage(url, must_exist=True, read_only=read_only)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        known = f"studies here: {', '.join(names)}" if names else "the store holds no study yet"
        raise SweepError([("study", f"no study named {name!r} in {url} ({known})")]) from None
