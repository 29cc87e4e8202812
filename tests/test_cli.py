"""The `sweep` command: run and status print results; user errors exit 2 with one line per problem."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from test_runner import write_spec

from sweep.cli import main


def test_run_then_status(tmp_path: Path, tiny_bert: Path, labelled_csvs, capsys: pytest.CaptureFixture[str]) -> None:
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2)
    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "study trec-tiny" in out and "best trial" in out and "f1_macro" in out

    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert main(["status", "trec-tiny", "--storage", url]) == 0
    out = capsys.readouterr().out
    for column in ("state", "f1_macro", "best epoch", "parameters", "duration", "COMPLETE", "learning_rate="):
        assert column in out
    assert "best trial" in out
    assert out.splitlines()[0] == "study trec-tiny: finished · 2/2 trials finished"  # as the studies list says it
    import optuna

    from record import write_budget, write_stopped

    writable = optuna.load_study(study_name="trec-tiny", storage=url)
    write_budget(writable.set_user_attr, 3)  # a finished study is "finished", stopped or not
    write_stopped(writable.set_user_attr, "stopped by a user of the service")
    assert main(["status", "trec-tiny", "--storage", url]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["study trec-tiny: stopped · 2/3 trials finished",
                                                        "stopped: stopped by a user of the service"]  # fmt: skip
    write_stopped(writable.set_user_attr, None)  # resumed

    # --n-trials continues the same study
    assert main(["run", str(spec), "--n-trials", "3"]) == 0
    assert "resuming study trec-tiny" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "Missing argument 'spec'. (sweep run --help"),
        (["frobnicate"], "No such command 'frobnicate'. (sweep --help"),
        (["status", "a", "b"], "Got unexpected extra argument(s) (b) (sweep status --help"),
        (["run", "x.yaml", "--bogus"], "No such option: --bogus (sweep run --help"),
        (["run", "x.yaml", "--n-trials", "x"], "Invalid value for '--n-trials'"),
        (["export", "study"], "Missing option '--out'. (sweep export --help"),
    ],
)
def test_a_command_line_click_refuses_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Usage errors, whichever copy of click raised them (typer >= 0.2x carries its own): one line, no traceback."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert not captured.out


def test_sweep_alone_shows_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    captured = capsys.readouterr()
    assert "run" in captured.out + captured.err and "Traceback" not in captured.out + captured.err


def test_bad_spec_exits_2_with_a_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: x\ndata: {train: t.csv, lable: y}\nsearch:\n  space:\n    learning_rate: {low: 1.0e-3, high: 1.0e-5}\n"
    )
    assert main(["run", str(spec)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"error: {spec}: ") for line in lines)
    assert "data.lable: unknown key" in lines[0]
    assert "search.space.learning_rate: low <= high must hold, got low=0.001, high=1e-05" in lines[1]
    assert f"data.train: file not found: {tmp_path / 't.csv'}" in lines[2]


def test_status_errors(tmp_path: Path, tiny_bert: Path, labelled_csvs, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["status", "trec-tiny", "--storage", missing]) == 2
    err = capsys.readouterr().err
    # named as the user set it: --storage here, SWEEP_STORAGE below
    assert f"error: --storage: no study store at {tmp_path / 'none.db'} (run `sweep run SPEC` first" in err
    monkeypatch.setenv("SWEEP_STORAGE", missing)
    assert main(["status", "trec-tiny"]) == 2
    assert capsys.readouterr().err.startswith(f"error: SWEEP_STORAGE: no study store at {tmp_path / 'none.db'}")
    monkeypatch.delenv("SWEEP_STORAGE")
    (tmp_path / "afile").write_text("notes\n", encoding="utf-8")  # a file where the store's folder should be
    assert main(["status", "trec-tiny", "--storage", f"sqlite:///{tmp_path / 'afile' / 's.db'}"]) == 2
    assert f"its folder {tmp_path / 'afile'} is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
    assert main(["status", "trec-tiny", "--storage", f"sqlite:///{tmp_path / 'nofolder' / 'x.db'}"]) == 2
    err = capsys.readouterr().err
    gone = tmp_path / "nofolder"
    assert f"no study store at {gone / 'x.db'}: its folder {gone} does not exist (check --storage or" in err

    train, val = labelled_csvs
    main(["run", str(write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1))])
    capsys.readouterr()
    assert main(["status", "trec-tiyn", "--storage", f"sqlite:///{tmp_path / 'sweeps.db'}"]) == 2
    err = capsys.readouterr().err
    assert "error: study: no study named 'trec-tiyn' in sqlite:///" in err and "(studies here: trec-tiny)" in err
    assert err.rstrip().endswith("did you mean 'trec-tiny'?")
    assert main(["status", "x", "--storage", "redis://localhost"]) == 2
    assert "error: --storage: unsupported scheme 'redis' in 'redis://localhost'" in capsys.readouterr().err


def test_offline_hub_encoder_is_a_clear_error(
    tmp_path: Path, labelled_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, transformers retried the Hub for about a minute, printing each retry, and failed only after the data
    was read: the Hub is probed once, before anything is read or written."""
    import socket

    def unreachable(*args: object, **kwargs: object) -> socket.socket:
        raise socket.gaierror(-2, "Name or service not known")

    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, Path("."), model__encoder="no-such-org/no-such-model")
    from huggingface_hub import constants

    for offline, why in ((True, "HF_HUB_OFFLINE is set"),
                         (False, "the Hub (https://huggingface.co) cannot be reached from here (Name or service not "
                                 "known)")):  # fmt: skip
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        assert main(["run", str(spec)]) == 2
        err = capsys.readouterr().err
        assert (f"model.encoder: 'no-such-org/no-such-model' is no local folder and not in the Hugging Face cache, "
                f"and {why}: give a local folder") in err
        assert "Retrying" not in err and "data: loaded" not in err
        assert not (tmp_path / "sweeps.db").exists()


def test_report_command(tmp_path: Path, tiny_bert: Path, labelled_csvs, capsys: pytest.CaptureFixture[str]) -> None:
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2)
    assert main(["run", str(spec)]) == 0
    other = write_spec(tmp_path, train, val, tiny_bert, name="trec-tiny-b", search__n_trials=1)
    assert main(["run", str(other)]) == 0
    capsys.readouterr()
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    target = tmp_path / "report.html"
    assert main(["report", "trec-tiny", "trec-tiny-b", "--out", str(target), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert f"wrote {target}" in out
    html = target.read_text(encoding="utf-8")
    assert "trec-tiny-b" in html and "Comparison" in html and "Expected validation performance" in html
    assert "importance needs at least 2 completed trials" in out  # the 1-trial study says what is missing

    # an earlier report is replaced; any other file is not (`--out train.csv` replaced the training data)
    assert main(["report", "trec-tiny", "--out", str(target), "--storage", url]) == 0
    before = train.read_bytes()
    assert main(["report", "trec-tiny", "--out", str(train), "--storage", url]) == 2
    assert (f"error: --out: {train} exists and is not an earlier sweep report: name a new file, or move it away "
            "first") in " ".join(capsys.readouterr().err.split())
    assert train.read_bytes() == before
    assert main(["report", "nope", "--out", str(tmp_path / "r2.html"), "--storage", url]) == 2
    assert "error: study: no study named 'nope' in sqlite:///" in capsys.readouterr().err
    assert main(["report", "trec-tiny", "--out", str(tmp_path), "--storage", url]) == 2
    assert f"error: --out: {tmp_path} is a folder: give a file name such as report.html" in capsys.readouterr().err
    assert not (tmp_path / "r2.html").exists()
    # a missing folder is made, as `sweep export --out` makes one, and said; a file in the way is refused
    nested = tmp_path / "reports" / "week 1" / "r.html"
    assert main(["report", "trec-tiny", "--out", str(nested), "--storage", url]) == 0
    assert f"made the folder {nested.parent}" in capsys.readouterr().out and nested.is_file()
    assert main(["report", "nope", "--out", str(tmp_path / "more" / "r.html"), "--storage", url]) == 2
    assert not (tmp_path / "more").exists()  # a refused report makes no folder
    assert main(["report", "trec-tiny", "--out", str(target / "r.html"), "--storage", url]) == 2
    assert f"error: --out: {target} is a file, so no folder can be made there" in capsys.readouterr().err
    assert main(["report", "trec-tiny", "--out", "/proc/sweep-no-such/r.html", "--storage", url]) == 2  # no traceback
    err = capsys.readouterr().err
    assert "--out: " in err and "/proc/sweep-no-such" in err and "Traceback" not in err and err.count("\n") == 1


def test_piped_output_keeps_each_line_of_the_summary_whole(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`sweep run ... > log` cut the summary's long lines at 160 columns ("... e.g. sweep run SPEC ⏎ --n-trials 20");
    the tables keep their width."""
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1)
    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out  # captured: not a terminal
    advice = [line for line in out.splitlines() if line.startswith("next: ")]
    assert advice and max(len(line) for line in advice) > 160  # a sentence of advice on one line, not cut at 160
    lines = out.splitlines()
    after = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith("next: ")]
    assert all(line.startswith(("next: ", "wall time ")) for line in after), after  # no continuation lines
    table = [line for line in out.splitlines() if line.startswith(("┏", "│", "└"))]
    assert table and all(len(line) <= 160 for line in table)


@pytest.mark.parametrize(
    "argv", [["export", "s", "--out", ""], ["report", "s", "--out="], ["audit", "x.yaml", "--out", ""]]
)
def test_an_empty_option_value_is_refused_by_name(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`--out ''` (an unset shell variable) read as the current folder, and export then suggested --force."""
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == ("error: --out: is followed by an empty value: give one, or leave the "
                                               "option out")


def test_forked_pool_workers_of_a_terminable_command_end_on_sigterm_as_usual(tmp_path: Path) -> None:
    """cleanlab's multiprocessing pool forks workers that inherited the command's SIGTERM handler: the pool's
    shutdown SIGTERM made them raise inside a queue lock, printing tracebacks, and an audit hung 16 min. A forked
    child told SIGTERM must die of it, as a pool expects; a bare fork (no pool, which can itself hang when forked
    from a threaded process) keeps this check deterministic."""
    import subprocess
    import sys

    script = tmp_path / "fork.py"
    script.write_text(
        "import os, signal, time\n"
        "from sweep.cli import _terminable\n"
        "with _terminable('audit'):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        "            time.sleep(30)\n"
        "        except BaseException:\n"
        "            os._exit(7)\n"
        "        os._exit(0)\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else f'exit {os.WEXITSTATUS(status)}')\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(int(signal.SIGTERM)), done.stdout + done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def test_an_option_or_the_store_variable_is_not_said_to_be_in_the_spec_file(
    tmp_path: Path, labelled_csvs: tuple[Path, Path], tiny_bert: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`spec.yaml: --workers: ...` and `spec.yaml: SWEEP_STORAGE: ...` named the spec for what is not in it; a spec
    key in capitals keeps its file."""
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert)
    monkeypatch.setenv("SWEEP_STORAGE", "postgresql+psycopg://u:pw@127.0.0.1:pg/db")
    assert main(["run", str(spec), "--workers", "-2"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("error: SWEEP_STORAGE: the port in ")
    assert lines[1] == "error: --workers: must be >= 0, got -2"
    caps = tmp_path / "caps.yaml"
    caps.write_text(spec.read_text(encoding="utf-8") + "NAME: x\n", encoding="utf-8")
    assert main(["run", str(caps)]) == 2
    assert f"error: {caps}: NAME: unknown key" in capsys.readouterr().err
