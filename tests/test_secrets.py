"""A store password never leaves the process: not in the terminal, an error, the report, the model card,
`sweep.json`, the study's attributes, nor the command lines of `sweep run --workers N`'s processes.

Every test uses a password that appears nowhere else, and searches every output for it. Paths that need no server
(errors, SWEEP_STORAGE precedence, worker command lines) always run; the full run/status/export/report/worker
round trip needs PostgreSQL (SWEEP_TEST_POSTGRES_URL, a role with CREATEROLE: .ci/run grants it).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from test_runner import write_spec

import sweep.worker
from sweep.cli import main
from sweep.store_checks import STORAGE_ENV, choose_storage, mask, safe_url

SECRET = "s3cret-" + uuid.uuid4().hex[:10]
CLOSED_PORT = f"postgresql+psycopg://sweep:{SECRET}@127.0.0.1:1/sweeps"


def no_secret(text: str, secret: str = SECRET, where: str = "output") -> None:
    at = text.find(secret)
    assert at < 0, f"the password is in the {where}: ...{text[max(at - 300, 0):at + 100]}..."


def everything_in(study: optuna.Study, *, but_spec_storage: bool = False) -> str:
    """Every attribute the store holds for a study and its trials, as one text (`but_spec_storage`: leave out the
    stored spec's `storage:`, a test of its own)."""
    user = dict(study.user_attrs)
    if but_spec_storage:
        user["spec"] = {k: v for k, v in user["spec"].items() if k != "storage"}
    trials = [(t.user_attrs, t.system_attrs, t.params) for t in study.get_trials()]
    system = study._storage.get_study_system_attrs(study._study_id)
    return json.dumps([user, system, trials], default=str)


# --- without a server ------------------------------------------------------------------------------------------


def test_masking_covers_unparsable_and_quoted_passwords() -> None:
    assert safe_url(f"postgre sql://u:{SECRET}@host/db") == "postgre sql://u:***@host/db"
    quoted = "postgresql+psycopg://u:p%40ss%3Aw%2Frd@host/db"  # the password p@ss:w/rd, URL-quoted
    assert safe_url(quoted) == "postgresql+psycopg://u:***@host/db"
    assert mask("failed for p@ss:w/rd and p%40ss%3Aw%2Frd", quoted) == "failed for *** and ***"


def test_a_password_in_the_query_with_an_unescaped_at_or_without_a_scheme_is_masked() -> None:
    """`?password=` was never masked (it reached messages, the stored spec and exports); `u:pa@ss@host` showed the
    password's end; a URL missing its scheme was printed whole."""
    query = f"postgresql+psycopg://u@127.0.0.1:1/db?sslmode=require&password={SECRET}"
    assert safe_url(query) == "postgresql+psycopg://u@127.0.0.1:1/db?password=***&sslmode=require"  # SQLAlchemy's order
    assert mask(f"connecting with password {SECRET} to {query}", query) == (
        "connecting with password *** to postgresql+psycopg://u@127.0.0.1:1/db?sslmode=require&password=***")
    at = f"postgresql+psycopg://u:{SECRET}@tail@127.0.0.1:1/db"
    assert safe_url(at) == "postgresql+psycopg://u:***@127.0.0.1:1/db"
    assert mask(f"unknown host 'tail@127.0.0.1' for {SECRET}@tail", at) == "unknown host 'tail@127.0.0.1' for ***"
    # what SQLAlchemy parses and connects with: a user with an @ (Azure's user@server), a password with / # or ?
    for parsed in (f"postgresql+psycopg://admin@myserver:{SECRET}@127.0.0.1:1/db",
                   f"postgresql+psycopg://u:{SECRET}/x#y?z@127.0.0.1:1/db", "postgresql+psycopg://u:sh/rt@h/db"):
        assert "***@127.0.0.1" in safe_url(parsed) or safe_url(parsed) == "postgresql+psycopg://u:***@h/db", parsed
        no_secret(safe_url(parsed))
        no_secret(mask(f"cannot open the store {parsed}", parsed))
    assert "sh/rt" not in mask("store postgresql+psycopg://u:sh/rt@h/db", "postgresql+psycopg://u:sh/rt@h/db")
    for bare in (f"u:{SECRET}@127.0.0.1", f"//u:{SECRET}@127.0.0.1:1/db"):
        no_secret(safe_url(bare))
        no_secret(mask(f"not a database URL: {bare!r}", bare))


def test_a_query_password_in_the_spec_is_masked_in_the_stored_spec() -> None:
    from sweep.lifecycle import spec_record
    from sweep.spec import parse_spec

    spec = parse_spec({"name": "q", "data": {"train": "t.csv"},
                       "storage": f"postgresql+psycopg://u@db/x?password={SECRET}"}, source="spec.yaml")  # fmt: skip
    no_secret(json.dumps(spec_record(spec)), where="stored spec")


def test_a_driver_message_that_quotes_the_password_is_masked() -> None:
    from sqlalchemy.exc import OperationalError

    from sweep.store_checks import open_reason

    url = f"postgresql+psycopg://sweep:{SECRET}@db.example.com/sweeps"
    said = OperationalError("SELECT 1", {}, Exception(f"invalid connection option in 'password={SECRET} host=db'"))
    assert open_reason(said, url) == "invalid connection option in 'password=*** host=db'"


def test_storage_precedence_option_then_environment_then_spec_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert choose_storage(None, None) == ("sqlite:///sweeps.db", "storage")
    assert choose_storage(None, "sqlite:///spec.db") == ("sqlite:///spec.db", "storage")
    monkeypatch.setenv(STORAGE_ENV, "sqlite:///env.db")
    assert choose_storage(None, "sqlite:///spec.db") == ("sqlite:///env.db", STORAGE_ENV)
    assert choose_storage("sqlite:///opt.db", "sqlite:///spec.db") == ("sqlite:///opt.db", "--storage")


@pytest.mark.parametrize("via", ["--storage", STORAGE_ENV])
@pytest.mark.parametrize("command", ["status", "export", "report", "worker"])
def test_errors_of_readers_and_workers_hide_the_password(
    command: str, via: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--out", str(tmp_path / "out")] if command in ("export", "report") else []
    args = [command, "s", *extra]
    if via == "--storage":
        args += ["--storage", CLOSED_PORT]
    else:
        monkeypatch.setenv(STORAGE_ENV, CLOSED_PORT)
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "postgresql+psycopg://sweep:***@127.0.0.1:1/sweeps" in captured.err and "connection refused" in captured.err
    no_secret(captured.out + captured.err)


@pytest.mark.parametrize(
    "url",
    [
        CLOSED_PORT,
        f"postgresql+pg8000://sweep:{SECRET}@127.0.0.1:1/sweeps",  # driver not installed
        f"postgres://sweep:{SECRET}@127.0.0.1:1/sweeps",  # Heroku's scheme
        f"mongodb://sweep:{SECRET}@127.0.0.1:1/sweeps",  # not a SQL store
        f"postgre sql://sweep:{SECRET}@127.0.0.1:1/sweeps",  # not a URL at all
    ],
)
@pytest.mark.parametrize("via", ["spec", "--storage", STORAGE_ENV])
def test_errors_of_run_hide_the_password(
    url: str, via: str, tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, storage=url if via == "spec" else None)
    args = ["run", str(spec)]
    if via == "--storage":
        args += ["--storage", url]
    elif via == STORAGE_ENV:
        monkeypatch.setenv(STORAGE_ENV, url)
    assert main(args) == 2
    captured = capsys.readouterr()
    assert f"{'storage' if via == 'spec' else via}: " in captured.err  # the line names where the URL came from
    no_secret(captured.out + captured.err)


def test_sweep_storage_is_read_by_every_command_and_an_option_overrides_it(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    in_spec, in_env, in_option = (f"sqlite:///{tmp_path / name}" for name in ("spec.db", "env.db", "option.db"))
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, storage=in_spec)
    monkeypatch.setenv(STORAGE_ENV, in_env)
    assert main(["run", str(spec), "--workers", "0"]) == 0  # creates the study only: no training
    assert (tmp_path / "env.db").is_file() and not (tmp_path / "spec.db").exists()
    assert main(["run", str(spec), "--workers", "0", "--storage", in_option]) == 0
    assert (tmp_path / "option.db").is_file() and not (tmp_path / "spec.db").exists()
    capsys.readouterr()
    assert main(["status", "trec-tiny"]) == 0
    optuna.delete_study(study_name="trec-tiny", storage=in_option)
    assert main(["status", "trec-tiny", "--storage", in_option]) == 2
    assert f"no study named 'trec-tiny' in {in_option}" in capsys.readouterr().err


def test_local_workers_get_the_url_in_their_environment_not_on_their_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[list[str], dict[str, str]]] = []

    class Finished:  # a worker process that has already exited
        stdout: list[str] = []

        def __init__(self, cmd: list[str], *, env: dict[str, str], **kwargs: Any) -> None:
            started.append((cmd, env))

        def poll(self) -> int:
            return 0

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(sweep.worker.subprocess, "Popen", Finished)
    from rich.console import Console

    codes, signalled = sweep.worker.launch_workers(
        2, "s", CLOSED_PORT, tmp_path / "spec.yaml", threads=None, console=Console(), poll=lambda: (0, 0), total=1
    )
    assert codes == [0, 0] and signalled is None and len(started) == 2
    for cmd, env in started:
        no_secret(" ".join(cmd))  # `ps` shows command lines to every user of the machine
        assert "--storage" not in cmd and env[STORAGE_ENV] == CLOSED_PORT


# --- against PostgreSQL ----------------------------------------------------------------------------------------


def _outputs_of_every_command(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], run_args: list[str]
) -> tuple[dict[str, str], optuna.Study]:
    """Run the study, then status, export, report and worker (success and error paths): each output by name."""
    outputs: dict[str, str] = {}

    def command(args: list[str], code: int) -> None:
        assert main(args) == code, capsys.readouterr().err[-3000:]
        captured = capsys.readouterr()
        outputs[" ".join(args[:2])] = captured.out + captured.err

    command(run_args, 0)
    command(["status", "trec-tiny"], 0)
    command(["export", "trec-tiny", "--out", str(tmp_path / "model")], 0)
    command(["report", "trec-tiny", "--out", str(tmp_path / "report.html")], 0)
    command(["worker", "trec-tiny"], 0)  # the budget is finished: it joins, says so and exits
    for args in (["status", "nope"], ["export", "nope", "--out", str(tmp_path / "m2")], ["worker", "nope"]):
        command(args, 2)
        assert "no study named 'nope'" in outputs[" ".join(args[:2])]
    for path in (tmp_path / "model" / "README.md", tmp_path / "model" / "sweep.json", tmp_path / "report.html"):
        outputs[path.name] = path.read_text(encoding="utf-8")
    from sweep.storage import load_study

    return outputs, load_study("trec-tiny", url)


@pytest.mark.postgres
def test_a_url_from_the_environment_is_never_written_anywhere(
    secret_url: tuple[str, str], tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    url, password = secret_url
    monkeypatch.setenv(STORAGE_ENV, url)
    spec = write_spec(
        tmp_path, *labelled_csvs, tiny_bert, storage=None, checkpoint_dir=str(tmp_path / "ck"), search__n_trials=2,
        search__space={"epochs": 1, "batch_size": 16},
    )  # fmt: skip
    # two local worker processes: their lines are relayed, and their command lines are what `ps` shows
    outputs, study = _outputs_of_every_command(url, tmp_path, capsys, ["run", str(spec), "--workers", "2"])
    run = outputs["run " + str(spec)]
    assert "w1 " in run and "w2 " in run and "store postgresql+psycopg://" in run  # workers' lines, closing line
    for name, text in outputs.items():
        no_secret(text, password, where=name)
    no_secret(everything_in(study), password, where="store")


@pytest.mark.postgres
def test_a_url_in_the_spec_file_is_never_written_anywhere(
    secret_url: tuple[str, str], tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    url, password = secret_url
    spec = write_spec(
        tmp_path, *labelled_csvs, tiny_bert, storage=url, checkpoint_dir=str(tmp_path / "ck"), search__n_trials=1,
        search__space={"epochs": 1, "batch_size": 16},
    )  # fmt: skip
    monkeypatch.setenv(STORAGE_ENV, url)  # for the commands after `run`, which read no spec
    outputs, study = _outputs_of_every_command(url, tmp_path, capsys, ["run", str(spec)])
    metadata = json.loads(outputs.pop("sweep.json"))
    del metadata["spec"]["storage"]  # a copy of the stored spec: see the test below
    outputs["sweep.json"] = json.dumps(metadata)
    for name, text in outputs.items():
        no_secret(text, password, where=name)
    no_secret(everything_in(study, but_spec_storage=True), password, where="store")


@pytest.mark.postgres
def test_the_stored_spec_hides_the_password_of_the_spec_file(
    secret_url: tuple[str, str], tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    from sweep.storage import load_study

    url, password = secret_url
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, storage=url, checkpoint_dir=str(tmp_path / "ck"))
    assert main(["run", str(spec), "--workers", "0"]) == 0  # the study and its attributes, no trial
    no_secret(everything_in(load_study("trec-tiny", url)), password, where="store")


def test_a_short_password_that_is_a_word_is_masked_where_it_stands_not_in_every_word() -> None:
    """A team's store `postgresql+psycopg://sweep:sweep@...`: the service answered ``run `*** reevaluate` first``
    and `***:***@localhost`, which garbled the message and told which word the password was."""
    url = "postgresql+psycopg://sweep:sweep@localhost:5432/team"
    said = ("run `sweep reevaluate trec-a` first; store postgresql+psycopg://sweep:sweep@localhost:5432/team; "
            "connection 'user=sweep password=sweep host=db'; Password: 'sweep'")  # fmt: skip
    assert mask(said, url) == ("run `sweep reevaluate trec-a` first; store postgresql+psycopg://sweep:***@localhost:5432"
                               "/team; connection 'user=sweep password=*** host=db'; Password: '***'")  # fmt: skip
    # as a driver or a dict may say it: a key's value, user:password@ without a scheme
    short = "postgresql+psycopg://ann:hunter1@db/x"
    said = mask("TypeError: {'password': 'hunter1', 'host': 'db'}", short)
    assert said == "TypeError: {'password': '***', 'host': 'db'}"
    assert mask("connecting ann:hunter1@db failed; pwd=hunter1", short) == "connecting ann:***@db failed; pwd=***"
    assert mask("hunter12 and hunter1s stay", short) == "hunter12 and hunter1s stay"  # other words are other words
    long_url = f"postgresql+psycopg://sweep:{SECRET}@db/x"
    assert mask(f"a driver said {SECRET} plainly", long_url) == "a driver said *** plainly"  # long: everywhere
