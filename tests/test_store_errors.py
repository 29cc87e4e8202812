"""Store errors: which store could not be opened and why, and a disk that refuses writes stops the run at once.

Faults are injected where they happen: at the SQLAlchemy layer (a DBAPI execute raising SQLite's own
"attempt to write a readonly database" / "database or disk is full") and at the filesystem layer (os.replace or
a file copy raising ENOSPC / EROFS while a checkpoint is written). Root ignores file permissions, so a chmod
would prove nothing here.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event
from test_runner import write_spec

import sweep.checkpoints
import sweep.storage
from record import read_trial
from sweep.cli import main
from sweep.errors import DiskError
from sweep.storage import open_storage
from sweep.store_checks import lost_connection, storage_problems, write_refused

CLOSED_PORT = "postgresql+psycopg://sweep:pw@127.0.0.1:1/sweeps"


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def files_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


# --- a store that cannot be opened -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "export", "report", "worker"])
def test_a_text_file_named_sweeps_db_is_not_a_database(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "sweeps.db"
    store.write_text("these are my notes, not a database\n")
    before = files_under(tmp_path)
    extra = ["--out", str(tmp_path / "out")] if command in ("export", "report") else []
    assert main([command, "s", "--storage", f"sqlite:///{store}", *extra]) == 2
    line = error_line(capsys.readouterr().err)
    assert f"cannot open the SQLite store {store}: not a SQLite database" in line
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("command", ["status", "export", "report", "worker"])
def test_a_server_that_does_not_answer_says_connection_refused(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--out", str(tmp_path / "out")] if command in ("export", "report") else []
    assert main([command, "s", "--storage", CLOSED_PORT, *extra]) == 2
    line = error_line(capsys.readouterr().err)
    assert "127.0.0.1:1" in line and "connection refused" in line and "exceeding max length" not in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_a_wrong_password_says_authentication_failed(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy.engine import make_url

    wrong = make_url(postgres_url).set(password="not-the-password-7f3a").render_as_string(hide_password=False)
    for args in (["status", "s", "--storage", wrong], ["worker", "s", "--storage", wrong]):
        assert main(args) == 2
        err = capsys.readouterr().err
        line = error_line(err)
        assert f"authentication failed for user '{make_url(postgres_url).username}'" in line
        assert "not-the-password-7f3a" not in err


def test_a_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails, as on a machine without it
    [(where, message)] = storage_problems("postgresql+psycopg://u:pw@localhost/db")
    assert where == "storage"
    assert message == (
        "the database driver 'psycopg' for postgresql+psycopg://u:***@localhost/db is not installed: "
        "pip install 'sweep[postgres]'"
    )
    # another driver: install ours and write the URL the way it expects
    [(_, other)] = storage_problems("postgresql+pg8000://u:pw@localhost/db")
    assert "'pg8000'" in other and "pip install 'sweep[postgres]' and write the URL as postgresql+psycopg://" in other


def test_the_heroku_postgres_scheme_says_what_to_write() -> None:
    [(_, message)] = storage_problems("postgres://u:pw@db.example.com:5433/prod")
    assert message.endswith("write postgresql+psycopg://u:***@db.example.com:5433/prod")


# --- a disk that refuses writes: not a lost database -----------------------------------------------------------


def refuse_writes(engine: Any, message: str, armed_by: Callable[[str], bool] = lambda statement: True) -> None:
    """From the first statement `armed_by` accepts on, every write raises SQLite's own error `message`."""
    state = {"armed": False}

    def execute(cursor: Any, statement: str, parameters: Any, context: Any) -> None:
        state["armed"] = state["armed"] or armed_by(statement)
        if state["armed"] and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError(message)

    event.listen(engine, "do_execute", execute)
    event.listen(engine, "do_executemany", execute)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("attempt to write a readonly database", "read-only file system or permission denied"),
        ("database or disk is full", "no space left on device"),
    ],
)
def test_a_refused_write_is_reported_at_once_not_retried(
    message: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    lines: list[str] = []
    monkeypatch.setattr(storage, "log", lines.append)
    monkeypatch.setattr(storage, "retry_seconds", 60.0)
    refuse_writes(storage.engine, message)
    started = time.monotonic()
    with pytest.raises(DiskError) as caught:
        study.set_user_attr("x", 1)
    assert time.monotonic() - started < 5 and lines == []  # no "database unreachable ... retrying"
    [(where, line)] = caught.value.problems
    assert where == "storage"
    store = f"sqlite:///{tmp_path / 's.db'}"
    assert line.startswith(f"cannot write to the store {store} in {tmp_path}: {reason} ({message})")
    assert study.user_attrs == {}  # reads still work; nothing was written


def _wrapped(orig: BaseException) -> BaseException:
    """A driver error as SQLAlchemy and then Optuna hand it on."""
    from sqlalchemy.exc import OperationalError

    try:
        try:
            raise OperationalError("UPDATE studies SET ...", {}, orig)
        except OperationalError as exc:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from exc
    except optuna.exceptions.StorageInternalError as outer:
        return outer


class DiskFull(Exception):
    sqlstate = "53100"  # PostgreSQL's disk_full, as psycopg reports it


@pytest.mark.parametrize(
    ("orig", "refused", "lost"),
    [
        (sqlite3.OperationalError("unable to open database file"), None, True),  # a mount gone: retried
        (sqlite3.OperationalError("database or disk is full"), "no space left on device", False),
        (sqlite3.OperationalError("attempt to write a readonly database"), "read-only", False),
        (sqlite3.DatabaseError("file is not a database"), None, False),
        (DiskFull('could not extend file "base/1/2": No space left on device'), "no space left on device", False),
    ],
)
def test_database_errors_are_told_apart(orig: BaseException, refused: str | None, lost: bool) -> None:
    exc = _wrapped(orig)
    found = write_refused(exc)
    assert (found is None) if refused is None else (found is not None and found.startswith(refused))
    assert (lost_connection(exc) is not None) == lost


def test_a_read_only_store_mid_run_stops_the_run_at_once(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    real = sweep.storage._rdb_storage

    def faulty(url: str, **kwargs: Any) -> Any:
        storage = real(url, **kwargs)
        if not kwargs.get("read_only"):  # the disk turns read-only at the trial's first evaluation
            refuse_writes(storage.engine, "attempt to write a readonly database",
                          armed_by=lambda statement: "trial_intermediate_values" in statement)  # fmt: skip
        return storage

    monkeypatch.setattr(sweep.storage, "_rdb_storage", faulty)
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__space={"epochs": 1, "batch_size": 16})
    started = time.monotonic()
    assert main(["run", str(spec)]) == 2
    assert time.monotonic() - started < 90  # not two minutes of retries
    err = capsys.readouterr().err
    line = error_line(err)
    assert f"storage: cannot write to the store sqlite:///{tmp_path / 'sweeps.db'} in {tmp_path}: read-only" in line
    assert "unreachable" not in err and "lost the database" not in err
    trials = optuna.load_study(study_name="trec-tiny", storage=f"sqlite:///{tmp_path / 'sweeps.db'}").trials
    assert len(trials) == 1  # stopped at the first refused write: no second trial was started


def test_a_read_only_folder_for_the_writer_lock_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(path: Any, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(sweep.storage, "open", read_only, raising=False)  # the lock file beside the database
    with pytest.raises(DiskError) as caught, sweep.storage.sqlite_writer_lock(f"sqlite:///{tmp_path / 's.db'}"):
        pass
    assert caught.value.problems == [
        ("storage", f"cannot write the lock file of s.db in {tmp_path}: read-only file system; make the folder "
                    "writable (or choose another), then run the same command again")
    ]  # fmt: skip


@pytest.fixture()
def full_disk_for_checkpoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """os.replace of a trial's checkpoint folder fails as on a full disk (the tokenizer files still get written)."""
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).name.startswith("trial-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    yield


def test_a_full_checkpoint_disk_fails_the_trial_and_stops_the_run(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], full_disk_for_checkpoints: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__space={"epochs": 1, "batch_size": 16})
    assert main(["run", str(spec)]) == 2
    line = error_line(capsys.readouterr().err)
    folder = tmp_path / "checkpoints" / "trec-tiny"
    assert f"checkpoint_dir: cannot write the checkpoint trial-00000 in {folder}: no space left on device" in line
    trials = optuna.load_study(study_name="trec-tiny", storage=f"sqlite:///{tmp_path / 'sweeps.db'}").trials
    assert [t.state for t in trials] == [TrialState.FAIL]  # one trial, not one failure after another
    assert "no space left on device" in read_trial(trials[0]).error
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer"]  # no half-written checkpoint left


def test_a_full_disk_under_a_checkpoint_packed_from_memory_stops_the_run_too(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Trial 0's checkpoint goes through save_pretrained; trial 1's is packed from memory, and the disk is full then."""
    import sweep.checkpoints

    real = sweep.checkpoints.pack_members

    def full(members: Any, target: Path) -> str:
        with target.open("wb") as handle:  # a part of the tar is written, then the disk is full
            handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    calls: list[str] = []

    def pack_members(members: Any, target: Path) -> str:
        calls.append(target.name)
        return full(members, target)

    monkeypatch.setattr(sweep.checkpoints, "pack_members", pack_members)
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__space={"epochs": 1, "batch_size": 16},
                      search__n_trials=2)  # fmt: skip
    assert main(["run", str(spec)]) == 2
    assert len(calls) == 1 and real is not pack_members, "trial 1's checkpoint, packed from memory"
    line = error_line(capsys.readouterr().err)
    folder = tmp_path / "checkpoints" / "trec-tiny"
    assert f"checkpoint_dir: cannot write the checkpoint trial-00001 in {folder}: no space left on device" in line
    trials = optuna.load_study(study_name="trec-tiny", storage=f"sqlite:///{tmp_path / 'sweeps.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert not [p for p in folder.iterdir() if p.name.startswith(".trial-00001")], "its scratch folder is gone"


@pytest.mark.parametrize(
    ("patched", "code", "reason"),
    [("os.replace", errno.ENOSPC, "no space left on device"), ("shutil.copy2", errno.EROFS, "read-only file system")],
)
def test_save_checkpoint_turns_a_refused_write_into_one_line(
    patched: str, code: int, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import save_file

    class Model:  # what save_checkpoint needs of a transformers model
        def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
            self.state = state

        def save_pretrained(self, directory: Path, safe_serialization: bool = True) -> None:
            save_file(self.state, str(Path(directory) / "model.safetensors"))

    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    (tokenizer / "vocab.txt").write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    (tmp_path / "ckpt").mkdir()

    module = os if patched == "os.replace" else shutil
    real = getattr(module, patched.split(".")[1])

    def refuse(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        if "trial-00003" in str(dst):
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(module, patched.split(".")[1], refuse)
    with pytest.raises(DiskError) as caught:
        sweep.checkpoints.save_checkpoint(Model(), {"w": torch.ones(3)}, tokenizer, tmp_path / "ckpt" / "trial-00003")
    [(where, line)] = caught.value.problems
    assert where == "checkpoint_dir"
    assert line.startswith(f"cannot write the checkpoint trial-00003 in {tmp_path / 'ckpt'}: {reason}")
    assert list((tmp_path / "ckpt").iterdir()) == []  # the temporary folder is gone


def test_an_out_file_is_replaced_only_when_empty_or_an_earlier_output(tmp_path: Path) -> None:
    from sweep.errors import overwrite_problem

    empty = tmp_path / "r.html"
    empty.touch()  # mktemp's: nothing to lose
    assert overwrite_problem(empty, (b"<!DOCTYPE",), "an earlier sweep report") is None
    data = tmp_path / "train.csv"
    data.write_text("text,label\na,b\n")
    assert overwrite_problem(data, (b"<!DOCTYPE",), "an earlier sweep report") == (
        f"{data} exists and is not an earlier sweep report: name a new file, or move it away first")
    assert overwrite_problem(tmp_path / "new.html", (b"<!DOCTYPE",), "x") is None
