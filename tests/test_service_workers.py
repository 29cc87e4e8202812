"""Workers for the service: `sweep worker` without a study name (the catalog's order, priority first), a study stopped
from the store while a trial trains (the trial fails with the reason and is retried after `resume`), a study whose
workers gave up (`failed`), and the command line's `stop`, `resume` and studies list.

Real trials run on the tiny BERT with 1 epoch on a few dozen examples; the catalog and CLI error tests build
studies with `optuna.trial.create_trial` and no training.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import quickstart_subset, split_per_class, write_csv
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

import sweep.joining
from record import (
    FINISHED,
    StudyRecord,
    TrialWriter,
    read_trial,
    study_attrs,
    trial_attrs,
    write_failure,
    write_stopped,
)
from sweep.callbacks import StopCheck
from sweep.catalog import (
    STATES,
    is_stopped,
    list_studies,
    next_study,
    resume_study,
    stop_study,
    study_progress,
    workable,
)
from sweep.cli import main
from sweep.errors import NoSuchStudy, SweepError
from sweep.runner import run_study
from sweep.storage import StoreBusy, StudyStopped, open_storage, sqlite_writer_lock
from sweep.worker import GracefulStop, StopRequested, StoreStopWatch

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
LR = FloatDistribution(1e-4, 1e-2, log=True)


# --- studies built without training -----------------------------------------------------------------------------


def make_study(
    url: str, name: str, *, budget: int, states: list[TrialState], submitted_at: float, priority: int = 0,
    stopped: str | None = None, failure: str | None = None,
) -> optuna.Study:  # fmt: skip
    """A sweep study (its record as `sweep run` writes it) with trials in the given states."""
    study = optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")
    record = StudyRecord(spec={"name": name}, data_fingerprint="f" * 8, metric="f1_macro", budget=budget,
                         submitted_at=submitted_at, priority=priority)  # fmt: skip
    for key, value in study_attrs(record).items():
        study.set_user_attr(key, value)
    for i, state in enumerate(states):
        value = 0.5 + i / 100 if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, value=value, params={"learning_rate": 1e-3 * (i + 1)},
                                     distributions={"learning_rate": LR}))  # fmt: skip
    if stopped:
        write_stopped(study.set_user_attr, stopped)
    if failure:
        write_failure(study.set_user_attr, failure)
    return study


C, R, W, F = TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL


def test_catalog_states_and_the_order_workers_take_studies_in(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "old-queued", budget=3, states=[C], submitted_at=100.0)
    make_study(url, "new-urgent", budget=3, states=[], submitted_at=300.0, priority=5)
    make_study(url, "busy", budget=2, states=[C, R], submitted_at=50.0)  # budget taken by a running trial
    make_study(url, "busy-retry", budget=2, states=[C, R, W], submitted_at=60.0)  # budget taken, a retry waits
    make_study(url, "running-room", budget=4, states=[C, R], submitted_at=200.0)
    make_study(url, "done", budget=2, states=[C, C, F], submitted_at=10.0)
    make_study(url, "halted", budget=3, states=[F, W], submitted_at=20.0, stopped="stopped by ann at noon")
    make_study(url, "broken", budget=3, states=[F, F, F], submitted_at=30.0, failure="three trials in a row failed")
    optuna.create_study(study_name="plain-optuna", storage=open_storage(url))  # not sweep's: not listed

    summaries = {s.name: s for s in list_studies(url)}
    assert set(summaries) == {"old-queued", "new-urgent", "busy", "busy-retry", "running-room", "done", "halted",
                              "broken"}  # fmt: skip
    states = {name: s.state for name, s in summaries.items()}
    assert states == {
        "old-queued": "queued", "new-urgent": "queued", "busy": "running", "busy-retry": "running",
        "running-room": "running", "done": "finished", "halted": "stopped", "broken": "failed",
    }  # fmt: skip
    assert set(states.values()) == set(STATES)
    # what workers poll: the same states, counts and order from two queries, no trial read
    fields = ("state", "finished", "budget", "running", "queued", "priority", "submitted_at")
    progress = {p.name: tuple(getattr(p, f) for f in fields) for p in study_progress(url)}
    assert progress == {name: tuple(getattr(s, f) for f in fields) for name, s in summaries.items()}
    assert [p.name for p in workable(study_progress(url))] == [s.name for s in workable(summaries.values())]
    assert summaries["halted"].stopped == "stopped by ann at noon" and summaries["halted"].queued == 1
    assert summaries["broken"].failure == "three trials in a row failed"
    assert (summaries["done"].finished, summaries["done"].budget, summaries["done"].failed) == (2, 2, 1)
    assert summaries["done"].best_value == pytest.approx(0.51) and summaries["done"].best_trial == 1

    # Highest priority first, then the oldest submission; a waiting retry makes a study workable though its budget
    # is taken; a running study with room is workable; finished, stopped, failed and full studies are not.
    assert [s.name for s in workable(summaries.values())] == ["new-urgent", "busy-retry", "old-queued",
                                                               "running-room"]  # fmt: skip
    assert next_study(url) == "new-urgent"
    assert next_study(url, skip={"new-urgent", "busy-retry"}) == "old-queued"

    # stop / resume: the record says who stopped it; resume clears a stop and a failure alike
    halted = optuna.load_study(study_name="old-queued", storage=open_storage(url))
    assert stop_study("old-queued", url, by="bob").state == "stopped"
    assert (is_stopped(halted) or "").startswith("stopped by bob at ")
    assert next_study(url, skip={"new-urgent", "busy-retry"}) == "running-room"
    assert resume_study("old-queued", url).state == "queued" and is_stopped(halted) is None
    assert resume_study("broken", url).state == "queued"
    assert {s.name: s for s in list_studies(url)}["broken"].failure is None
    with pytest.raises(SweepError, match="'done' .* is finished: there is nothing to stop"):
        stop_study("done", url)
    with pytest.raises(SweepError, match="'done' .* is finished: raise its budget"):
        resume_study("done", url)
    with pytest.raises(NoSuchStudy, match="no study named 'nope'"):
        stop_study("nope", url)


def test_the_studies_list_reads_again_only_the_studies_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The studies page polls `list_studies` every few seconds and used to read every trial of every study each time;
    a study whose trial counts and record did not change is not read again, one with a running trial always is."""
    from optuna.storages import RDBStorage

    import sweep.catalog

    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "done", budget=2, states=[C, C], submitted_at=10.0)
    make_study(url, "waiting", budget=3, states=[C], submitted_at=20.0)
    make_study(url, "busy", budget=3, states=[C, R], submitted_at=30.0)
    read: list[int] = []
    original = RDBStorage.get_all_trials

    def counted(self: RDBStorage, study_id: int, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        read.append(study_id)
        return original(self, study_id, *args, **kwargs)

    monkeypatch.setattr(RDBStorage, "get_all_trials", counted)
    sweep.catalog.forget_summaries()
    first = {s.name: s for s in list_studies(url)}
    assert len(read) == 3
    read.clear()
    assert {s.name: s for s in list_studies(url)} == first and len(read) == 1  # only "busy", which runs a trial
    # a trial that completes, a stop and a raised budget each make the study read again, and show
    waiting = optuna.load_study(study_name="waiting", storage=open_storage(url))
    waiting.add_trial(create_trial(value=0.9, params={"learning_rate": 1e-3}, distributions={"learning_rate": LR}))
    resume_study("done", url, n_trials=4)
    read.clear()
    after = {s.name: s for s in list_studies(url)}
    assert len(read) == 3
    assert after["waiting"].best_value == pytest.approx(0.9) and after["waiting"].finished == 2
    assert after["done"].budget == 4 and after["done"].state == "queued"
    stop_study("waiting", url)
    read.clear()
    assert {s.name: s for s in list_studies(url)}["waiting"].state == "stopped" and len(read) == 2
    # a study deleted and created again under its name is another study (another id), not the one remembered
    optuna.delete_study(study_name="done", storage=open_storage(url))
    make_study(url, "done", budget=2, states=[C, C], submitted_at=10.0)
    optuna.load_study(study_name="done", storage=open_storage(url)).add_trial(create_trial(
        state=TrialState.FAIL, params={"learning_rate": 1e-3}, distributions={"learning_rate": LR}))  # fmt: skip
    assert {s.name: s for s in list_studies(url)}["done"].failed == 1
    # a study created between the ids' query and the studies' is listed, not a KeyError (a 500 on the page)
    monkeypatch.setattr(sweep.catalog, "study_ids", lambda storage: {})
    assert {s.name for s in list_studies(url)} == {"done", "waiting", "busy"}


def test_resume_with_n_trials_raises_the_budget_of_a_finished_study_without_its_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raising a budget needed `sweep run SPEC --n-trials N`: a study submitted to the service has no spec file on the
    team lead's machine. `sweep resume NAME --n-trials N` (and the service's `n_trials`) count the search's trials,
    as `--n-trials` does; re-evaluation runs come on top."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = make_study(url, "done", budget=3, states=[C, C], submitted_at=10.0)
    study.add_trial(create_trial(value=0.6, params={"learning_rate": 1e-3}, distributions={"learning_rate": LR},
                                 user_attrs=trial_attrs(reevaluates=0, seed=1)))  # fmt: skip
    summary = {s.name: s for s in list_studies(url)}["done"]
    assert (summary.state, summary.finished, summary.budget) == ("finished", 3, 3)
    assert (summary.search_finished, summary.search_budget) == (2, 2)
    with pytest.raises(SweepError, match=r"finished: raise its budget with `sweep resume done --n-trials N` \(more "
                                         r"than 2\)"):  # fmt: skip
        resume_study("done", url)
    with pytest.raises(SweepError, match=r"finished: raise its budget with the form field n_trials \(more than 2\)"):
        resume_study("done", url, field="n_trials")  # the service's answer to an API user
    with pytest.raises(SweepError, match=r"finished trials of its search already \(the search's budget 2, with 1 re-"):
        resume_study("done", url, 2)
    with pytest.raises(SweepError, match="must be >= 1, got 0"):
        resume_study("done", url, 0)
    # a typo of many digits (a team lead's 99999999999999999999 set the budget to 1e20 and the workers went on)
    with pytest.raises(SweepError, match=r"n_trials: must be at most 10,000 .*, got 99,999,999,999,999,999,999"):
        resume_study("done", url, 99999999999999999999, field="n_trials")
    (tmp_path / "spec.yaml").write_text("name: x\ndata: {train: t.csv}\n")
    assert main(["run", str(tmp_path / "spec.yaml"), "--n-trials", "10001"]) == 2
    assert "--n-trials: must be at most 10,000" in capsys.readouterr().err
    assert {s.name: s for s in list_studies(url)}["done"].budget == 3  # refusals change nothing

    raised = resume_study("done", url, 4)
    assert (raised.state, raised.budget, raised.search_budget) == ("queued", 5, 4)
    assert [s.name for s in workable(list_studies(url))] == ["done"] and next_study(url) == "done"

    # the command line: the same rule, the change said, and who runs the new trials
    assert main(["resume", "done", "--storage", url, "--n-trials", "6"]) == 0
    said = capsys.readouterr().out
    assert "study done: queued · 3/7 trials finished (budget 5 -> 7)" in said
    assert "nothing runs yet" in said and "`sweep worker done --storage URL` on this machine (a SQLite store" in said
    assert "\n" not in said.split("(budget 5 -> 7)\n", 1)[1].rstrip()  # one line: not cut for a file or pipe
    stop_study("done", url)
    assert main(["resume", "done", "--storage", url, "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: --n-trials: study 'done' has 2 finished trials of its search already (the search's budget " in err
    assert {s.name: s for s in list_studies(url)}["done"].state == "stopped"  # a refused resume leaves the stop


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_the_store_starts_no_trial_and_no_retry_of_a_stopped_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "s", budget=4, states=[F], submitted_at=1.0)
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    study.enqueue_trial({"learning_rate": 1e-3})  # a retry waiting to run
    stop_study("s", url)
    study.enqueue_trial({"learning_rate": 2e-3})  # queueing a retry while stopped is allowed: it waits
    with pytest.raises(StudyStopped, match=r"the study is stopped \(stopped by user at "):
        study.ask()  # pops a waiting retry first: refused
    assert [t.state for t in study.get_trials()] == [F, W, W]
    resume_study("s", url)
    trial = study.ask()  # the first queued trial runs now
    assert trial.number == 1 and study.get_trials()[1].state == R
    stop_study("s", url)
    study.tell(trial, 0.5)  # a trial that was running may still be recorded
    with pytest.raises(StudyStopped):
        study.ask()  # the second retry: refused
    resume_study("s", url)
    assert study.ask().number == 2  # the retry
    stop_study("s", url)
    with pytest.raises(StudyStopped):
        study.ask()  # no retry left: a new draw, refused too
    assert [t.state for t in study.get_trials()] == [F, C, R]


def test_a_request_from_another_thread_ends_training_at_the_next_batch_boundary() -> None:
    stop = GracefulStop()
    check = StopCheck(stop.check)
    reads = iter([None, None, "stopped by ann at noon"])
    with StoreStopWatch(lambda: next(reads, None), stop, interval=0.05):
        deadline = time.monotonic() + 5
        while stop.requested is None and time.monotonic() < deadline:
            check.on_train_batch_end(None, None)  # type: ignore[arg-type]  # nothing asked yet: training goes on
            time.sleep(0.01)
    assert stop.requested == "ann at noon" and not stop.signalled
    with pytest.raises(StopRequested, match="stopped by ann at noon"):
        check.on_train_batch_end(None, None)  # type: ignore[arg-type]
    with pytest.raises(StopRequested):
        check.on_validation_batch_end(None, None)  # type: ignore[arg-type]
    stop.request("someone else")
    assert stop.requested == "ann at noon"  # the first request stands
    def unreachable() -> str | None:
        raise ConnectionError("the store does not answer")

    failing = StoreStopWatch(unreachable, GracefulStop(), interval=0.01)
    with failing:
        time.sleep(0.05)
    assert failing.stop.requested is None


# --- the command line: stop, resume, studies list, errors --------------------------------------------------------


def test_stop_resume_and_the_studies_list_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "alpha", budget=3, states=[C, F, W], submitted_at=100.0, priority=2)
    make_study(url, "omega", budget=2, states=[C, C], submitted_at=200.0)

    assert main(["stop", "alpha", "--storage", url]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("study alpha: stopped (stopped by ") and "(sweep stop)" in out[0]
    assert out[0].endswith("· 1/3 trials finished, 1 queued for a retry")
    assert main(["resume", "alpha", "--storage", url]) == 0
    assert capsys.readouterr().out.strip() == "study alpha: queued · 1/3 trials finished, 1 queued for a retry"
    assert main(["resume", "alpha", "--storage", url]) == 0  # again: says it had nothing to resume
    assert capsys.readouterr().out.strip().endswith("queued for a retry (it was queued, not stopped: nothing changed)")

    assert main(["status", "--storage", url]) == 0
    table = capsys.readouterr().out
    for cell in ("alpha", "queued", "1/3 (1 queued)", "f1_macro 0.5000 (trial 0)", "omega", "finished", "2/2",
                 "f1_macro 0.5100 (trial 1)"):  # fmt: skip
        assert cell in table, cell
    assert table.index("omega") < table.index("alpha")  # newest submission first

    for args, message in [
        (["stop", "nope"], "error: study: no study named 'nope' in sqlite:///"),
        (["resume", "nope"], "error: study: no study named 'nope' in sqlite:///"),
        (["stop", "omega"], "error: study: study 'omega' in sqlite:///"),
        (["resume", "omega"], "error: study: study 'omega' in sqlite:///"),
        (["worker", "--spec", "s.yaml"], "error: --spec: belongs to one study: give the study's name"),
        (["worker", "--poll", "0"], "error: --poll: must be > 0 seconds, got 0"),
    ]:
        assert main([*args, "--storage", url]) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), (args, lines)
    assert main(["stop", "omega", "--storage", url]) == 2
    assert "is finished: there is nothing to stop" in capsys.readouterr().err

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    open_storage(empty)
    assert main(["status", "--storage", empty]) == 0
    assert capsys.readouterr().out.strip() == f"no sweep studies in {empty} yet"
    assert main(["worker", "--storage", empty, "--exit-when-idle"]) == 0  # nothing to do: exits at once
    assert "worked on studies: none" in capsys.readouterr().out


def test_an_idle_worker_says_so_once_and_a_signal_ends_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "done", budget=1, states=[C], submitted_at=1.0)
    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "sweep", "worker", "--storage", url, "--poll", "0.2"],
                                env=ENV, stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "waiting for work" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a few polls more
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    text = log.read_text()
    assert code == 143, text
    assert text.count("waiting for work: no unfinished study has budget left (polling every 0.2 s)") == 1, text
    assert "stopped by SIGTERM: no trial was running" in text and "recorded as FAIL" not in text, text


# --- real workers on the tiny BERT ---------------------------------------------------------------------------------


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, Path]:
    """Quickstart tickets, 4 classes, 8 train + 4 validation per class."""
    train, val = split_per_class(quickstart_subset(12, seed=5), 4)
    return write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "val.csv", val)


def write_spec(tmp_path: Path, data: tuple[Path, Path], encoder: Path, url: str, name: str, *, n_trials: int = 2,
               epochs: int = 1) -> Path:  # fmt: skip
    spec = {
        "name": name,
        "storage": url,
        "checkpoint_dir": str(tmp_path / "checkpoints" / name),
        "data": {"train": str(data[0]), "validation": str(data[1]), "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(encoder), "max_length": 24},
        "search": {
            "n_trials": n_trials, "sampler": "random", "pruner": "none", "keep_checkpoints": 0,
            "space": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "batch_size": 4, "epochs": epochs},
        },
        "trainer": {"num_threads": 1},
        "heartbeat": {"interval": 1, "grace_period": 5},
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def trials(url: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url, read_only=True)).get_trials()


def finished(url: str, name: str) -> list[FrozenTrial]:
    return [t for t in trials(url, name) if t.state in FINISHED]


@pytest.fixture()
def stopper(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Armed with a study and a store, the first training batch of the next trial stops that study through the
    store (as `sweep stop` or the service would) and waits until the worker's watcher has seen it: the next batch
    boundary then ends the trial. The watcher reads the store every 0.1 s here (2 s in use)."""
    monkeypatch.setattr("sweep.worker.STOP_POLL_S", 0.1)
    armed: dict[str, Any] = {"study": None, "url": None, "hits": 0}
    original = StopCheck.on_train_batch_end

    def on_train_batch_end(self: StopCheck, trainer: Any, module: Any, *args: Any) -> None:
        if armed["study"] is not None:
            stop_study(armed["study"], armed["url"], by="the test")
            armed["study"], armed["hits"] = None, armed["hits"] + 1
            stop: GracefulStop = self.check.__self__  # type: ignore[attr-defined]
            deadline = time.monotonic() + 15
            while stop.requested is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert stop.requested is not None, "the worker never saw the stop in the store"
        original(self, trainer, module, *args)

    monkeypatch.setattr(StopCheck, "on_train_batch_end", on_train_batch_end)
    return armed


def test_one_worker_without_a_name_runs_queued_studies_by_priority_and_a_stop_ends_its_trial(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], stopper: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = write_spec(tmp_path, data, tiny_bert, url, "first", n_trials=3)
    urgent = write_spec(tmp_path, data, tiny_bert, url, "urgent", n_trials=2)
    assert main(["run", str(first), "--workers", "0"]) == 0
    assert main(["run", str(urgent), "--workers", "0", "--priority", "5"]) == 0
    capsys.readouterr()

    assert main(["worker", "--storage", url, "--exit-when-idle"]) == 0
    err = capsys.readouterr().err
    assert err.index("joined study urgent") < err.index("joined study first"), err
    # it moves between studies: each trial's lines name theirs (a team lead's log mixed two workers' `trial 3 ...`)
    assert "urgent · trial 0 COMPLETE" in err and "first · trial 2 COMPLETE" in err, err
    assert "urgent · trial 0 · evaluated at epoch" in err
    assert len(finished(url, "urgent")) == 2 and len(finished(url, "first")) == 3, err  # each exactly its budget
    last_urgent = max(str(t.datetime_complete) for t in trials(url, "urgent"))
    assert all(str(t.datetime_start) > last_urgent for t in trials(url, "first"))  # one study after the other
    assert main(["worker", "--storage", url, "--exit-when-idle"]) == 0  # nothing left: exits at once
    assert "joined study" not in capsys.readouterr().err

    # A study stopped from the store while its trial trains: the trial fails with the reason, a retry with the same
    # parameters waits, nothing else starts; the worker says so and goes on (here: no other work, it exits).
    later = write_spec(tmp_path, data, tiny_bert, url, "later", n_trials=2, epochs=3)
    assert main(["run", str(later), "--workers", "0"]) == 0
    stopper.update(study="later", url=url)
    assert main(["worker", "--storage", url, "--exit-when-idle"]) == 0
    err = capsys.readouterr().err
    assert stopper["hits"] == 1
    assert "study later was stopped (stopped by the test at " in err
    assert "`sweep resume later` lets workers continue" in err
    stopped, retry = trials(url, "later")  # no other trial started
    assert stopped.state == F and retry.state == W
    assert stopped.intermediate_values == {}  # ended at the batch boundary, before its first evaluation
    assert (read_trial(stopped).stopped_by or "").startswith("the test at ")
    assert (read_trial(stopped).error or "").startswith("stopped by the test at ")
    assert read_trial(retry).retry_of == stopped.number and retry.params == stopped.params

    # Stopped: `sweep worker NAME` says so and runs nothing (exit 0); `sweep run` refuses (exit 2, one line).
    assert main(["worker", "later", "--storage", url]) == 0
    assert "study later was stopped (stopped by the test at " in capsys.readouterr().err
    assert main(["run", str(later)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "study: study later is stopped (stopped by the test at " in lines[0]
    assert lines[0].endswith("run `sweep resume later` first")
    assert len(trials(url, "later")) == 2

    # Resumed, then stopped again during the retry (here `sweep worker NAME` runs it: exit 0 with the stop line): the
    # retry is queued once more, with the same parameters.
    assert main(["resume", "later", "--storage", url]) == 0
    capsys.readouterr()
    stopper.update(study="later", url=url)
    assert main(["worker", "later", "--storage", url]) == 0 and stopper["hits"] == 2
    assert "study later was stopped (stopped by the test at " in capsys.readouterr().err
    assert [t.state for t in trials(url, "later")] == [F, F, W]

    # Resumed: the retry runs first with the same parameters and seed, then the study finishes its exact budget.
    assert main(["resume", "later", "--storage", url]) == 0
    assert main(["worker", "later", "--storage", url]) == 0 and stopper["hits"] == 2
    final = trials(url, "later")
    retries = [t for t in final if read_trial(t).retry_of == stopped.number]
    assert [t.state for t in retries] == [F, TrialState.COMPLETE]
    rerun = retries[-1]
    assert rerun.params == stopped.params and read_trial(rerun).seed == read_trial(stopped).seed
    assert str(rerun.datetime_start) < min(str(t.datetime_start) for t in final if t.number > rerun.number)
    assert len(finished(url, "later")) == 2 and len(final) == 4
    assert not [t for t in final if t.state in (R, W)]


def test_sweep_run_stopped_from_the_store_exits_0_with_the_stop_line(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], stopper: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_spec(tmp_path, data, tiny_bert, url, "named", n_trials=2, epochs=3)
    stopper.update(study="named", url=url)
    assert main(["run", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "study named was stopped (stopped by the test at " in err and "`sweep resume named`" in err
    stopped, retry = trials(url, "named")
    assert (stopped.state, retry.state, stopped.intermediate_values) == (F, W, {})
    assert [s.state for s in list_studies(url)] == ["stopped"]


def test_three_failures_in_a_row_mark_the_study_failed_until_resumed(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_spec(tmp_path, data, tiny_bert, url, "doomed", n_trials=4)
    assert main(["run", str(spec), "--workers", "0"]) == 0
    # A study whose data this machine lacks: skipped by this worker with one line, the others still run.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    elsewhere = (moved / "train.csv", moved / "val.csv")
    for source, target in zip(data, elsewhere, strict=True):
        target.write_bytes(source.read_bytes())
    assert main(["run", str(write_spec(moved, elsewhere, tiny_bert, url, "gone")), "--workers", "0"]) == 0
    elsewhere[0].unlink()
    capsys.readouterr()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: no kernel image is available")

    monkeypatch.setattr("sweep.objective.train_trial", broken)
    # SQLite has one writer: while another process holds the store, the worker waits for it instead of exiting.
    # The lock is let go once the worker has met it (a slow machine takes more than a second to get there), or
    # after a minute so that a worker that never meets it fails the assertion below instead of hanging.
    holding = contextlib.ExitStack()
    holding.enter_context(sqlite_writer_lock(url))
    release = threading.Timer(60.0, holding.close)
    release.start()
    work_on = sweep.joining._work_on

    def work_on_then_release(*args: Any, **kwargs: Any) -> Any:
        try:
            return work_on(*args, **kwargs)
        except StoreBusy:
            holding.close()
            raise

    monkeypatch.setattr("sweep.joining._work_on", work_on_then_release)
    try:
        assert main(["worker", "--storage", url, "--exit-when-idle", "--poll", "0.3"]) == 0
    finally:
        release.cancel()
        holding.close()
    err = capsys.readouterr().err
    assert "waiting: storage: sqlite:///" in err and "is already used by a running sweep" in err
    assert f"skipping study gone: data.train: file not found: {elsewhere[0]}" in err
    assert trials(url, "gone") == []
    assert "study doomed failed: three trials in a row failed; workers skip it until `sweep resume doomed`" in err
    summary = next(s for s in list_studies(url) if s.name == "doomed")
    assert summary.state == "failed" and (summary.failure or "").startswith("three trials in a row failed on ")
    assert "(last: trial 2: RuntimeError: CUDA error: no kernel image is available)" in (summary.failure or "")
    assert [t.state for t in trials(url, "doomed")] == [F, F, F]
    assert next_study(url, skip={"gone"}) is None
    assert resume_study("doomed", url).state == "queued" and next_study(url, skip={"gone"}) == "doomed"


# --- PostgreSQL: two workers without a study name, two queued studies ---------------------------------------------


@pytest.mark.postgres
def test_two_workers_on_postgresql_finish_two_queued_studies_exactly(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], postgres_url: str
) -> None:
    budgets = {"pg-a": 3, "pg-b": 3}
    for name, n in budgets.items():  # created here as `sweep run SPEC --workers 0` would (no process to start)
        # 3 epochs: trials long enough that the second worker, started a few seconds later, still finds work
        run_study(write_spec(tmp_path, data, tiny_bert, postgres_url, name, n_trials=n, epochs=3), workers=0)
    cmd = [sys.executable, "-m", "sweep", "worker", "--storage", postgres_url, "--exit-when-idle", "--threads", "1"]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    workers: set[str] = set()
    for name, budget in budgets.items():
        final = trials(postgres_url, name)
        assert len([t for t in final if t.state in FINISHED]) == budget, (name, [t.state for t in final])
        assert not [t for t in final if t.state in (R, W)]
        fresh = [t for t in final if read_trial(t).retry_of is None]
        params = [tuple(sorted(t.params.items())) for t in fresh]
        assert len(set(params)) == len(params), f"a trial ran twice in {name}"
        numbers = [t.number for t in final]
        assert numbers == list(range(len(final)))
        workers |= {read_trial(t).worker or "" for t in final}
    assert len(workers) == 2, workers  # both took part
    progress = {p.name: (p.state, p.finished, p.budget) for p in study_progress(postgres_url)}
    assert {name: progress[name] for name in budgets} == {name: ("finished", n, n) for name, n in budgets.items()}
    for out in outputs:
        assert "joined study pg-" in out and "worked on studies:" in out


def test_a_worker_without_a_study_name_waits_out_a_database_that_stopped_answering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While it looks for work, an unreachable database is one line and a retry, not the end of the worker; after the
    retry window it ends with StorageLost (exit code 3), the password masked."""
    import io

    from rich.console import Console

    import sweep.joining
    from sweep.errors import StorageLost
    from sweep.joining import _Picker, _Unanswered

    url = "postgresql+psycopg://sweep:s3cr3t-pw@127.0.0.1:1/sweeps"
    answers: list[object] = [SweepError([("storage", f"cannot reach {url}")]), "study-a"]

    def next_study(url: str, *, skip: set[str]) -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(sweep.joining, "next_study", next_study)
    buffer = io.StringIO()
    picker = _Picker(url, Console(file=buffer, width=200), retry_seconds=60)
    assert isinstance(picker.next(set()), _Unanswered)
    assert picker.next(set()) == "study-a"
    text = buffer.getvalue()
    assert "cannot read the studies:" in text and "retrying for up to 60 s" in text
    assert "database reachable again" in text and "s3cr3t-pw" not in text

    answers[:] = [SweepError("down"), SweepError("still down")]
    picker = _Picker(url, Console(file=io.StringIO()), retry_seconds=0.2)
    assert isinstance(picker.next(set()), _Unanswered)
    time.sleep(0.3)
    with pytest.raises(StorageLost) as lost:
        picker.next(set())
    assert "s3cr3t-pw" not in str(lost.value) and "lost the database" in str(lost.value)


def test_a_worker_of_this_machine_whose_process_is_gone_is_marked_in_the_studies_table() -> None:
    import os
    import socket
    import subprocess
    import sys

    from sweep.catalog import process_gone

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)  # fmt: skip
    host = socket.gethostname()
    assert process_gone(f"{host}:{child.stdout.strip()}")  # exited (a pid is not reused this soon)
    assert not process_gone(f"{host}:{os.getpid()}") and not process_gone("another-host:1")


def test_a_killed_workers_name_is_marked_in_the_summaries_and_a_queued_retry_names_no_worker(tmp_path: Path) -> None:
    """A team lead killed a worker: `sweep status` said `(process gone)`, the page and the API only the worker's name
    beside a running trial that never moved; a queued retry showed the dead worker as its own."""
    import socket

    from sweep.catalog import trial_summary

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = make_study(url, "lost", budget=3, states=[C], submitted_at=10.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone, alive = f"{socket.gethostname()}:{dead.pid}", f"{socket.gethostname()}:{os.getpid()}"
    for worker in (gone, alive):
        trial = study.ask({"learning_rate": LR})
        TrialWriter(trial.set_user_attr).start(worker=worker, seed=0, hyperparameters={}, data_fingerprint="f")
    study.add_trial(create_trial(state=W, params={"learning_rate": 1e-3}, distributions={"learning_rate": LR},
                                 user_attrs=trial_attrs(worker=gone)))  # fmt: skip
    summary = {s.name: s for s in list_studies(url)}["lost"]
    assert summary.workers == sorted([gone, alive]) and summary.gone_workers == [gone]
    shown = {t.number: trial_summary(t) for t in study.get_trials()}
    assert (shown[1]["worker"], shown[1]["worker_gone"]) == (gone, True)
    assert (shown[2]["worker"], shown[2]["worker_gone"]) == (alive, False)
    assert shown[3]["worker"] is None and shown[3]["worker_gone"] is False  # the queued retry runs nowhere yet


def test_a_stopped_study_whose_trial_still_runs_reads_stopped(tmp_path: Path) -> None:
    """Stop answered `"state": "running"` with `stopped` set while the trial wound down: the page said running."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "busy", budget=3, states=[C, R], submitted_at=10.0)
    summary = stop_study("busy", url, by="ann")
    assert (summary.state, summary.running) == ("stopped", 1) and (summary.stopped or "").startswith("stopped by ann")
    assert {p.name: p.state for p in study_progress(url)} == {"busy": "stopped"}
    assert workable(study_progress(url)) == []
