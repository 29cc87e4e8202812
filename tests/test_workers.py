"""Many workers, killed workers, stopped workers: real processes on the tiny BERT and the quickstart support tickets.

The PostgreSQL tests need a server (SWEEP_TEST_POSTGRES_URL, started by .ci/run) and skip visibly without one;
they are modelled on Optuna's multi-process storage test and Ray Tune's worker-kill test. The SQLite tests
(guardrail, SIGTERM, resume after a crash) always run.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import quickstart_subset, split_per_class, write_csv
from optuna.trial import FrozenTrial, TrialState

from record import FINISHED, read_trial
from sweep.errors import StorageLost, SweepError
from sweep.runner import run_study
from sweep.storage import open_storage, sqlite_writer_lock

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, Path]:
    """Quickstart tickets, 4 classes, 60 train + 12 validation per class: trials of a few seconds on the tiny BERT."""
    train, val = split_per_class(quickstart_subset(72, seed=3), 12)
    return write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "val.csv", val)


def write_spec(tmp_path: Path, data: tuple[Path, Path], encoder: Path, storage: str, **extra: Any) -> Path:
    spec: dict[str, Any] = {
        "name": "workers",
        "storage": storage,
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "data": {"train": str(data[0]), "validation": str(data[1]), "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(encoder), "max_length": 32},
        "search": {
            "n_trials": 24,
            "sampler": "random",
            "pruner": "median",
            "keep_checkpoints": 2,
            "space": {
                "learning_rate": {"low": 1e-3, "high": 5e-3, "log": True},
                "batch_size": [8, 16],
                "epochs": {"low": 1, "high": 3},
            },
        },
        "trainer": {"num_threads": 1},
        **extra,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweep", *args]


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(args, env=ENV, stdout=handle, stderr=subprocess.STDOUT)


def trials(url: str, name: str = "workers") -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url, read_only=True)).get_trials()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def running_trial(
    url: str, pid: int | None = None, *, fresh_only: bool = False, skip_pids: frozenset[int] = frozenset()
) -> FrozenTrial | None:
    """A RUNNING trial that has started training (its worker recorded itself), optionally of one process.

    `skip_pids`: workers already killed, whose trials stay RUNNING until the heartbeat fails them.
    """
    try:
        found = trials(url)
    except Exception:  # the study may not exist yet
        return None
    for trial in found:
        worker = (read_trial(trial).worker or "")
        if trial.state != TrialState.RUNNING or not worker:
            continue
        if pid is not None and not worker.endswith(f":{pid}"):
            continue
        if int(worker.rsplit(":", 1)[1]) in skip_pids:
            continue
        if fresh_only and read_trial(trial).retry_of is not None:
            continue
        return trial
    return None


def assert_intermediate_values_intact(trial: FrozenTrial) -> None:
    """Every reported value is the one the trial's history recorded, in order."""
    history = read_trial(trial).history
    values = [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
    assert values == pytest.approx([r["val_f1_macro"] for r in history])


def macro_f1_of_export(study: optuna.Study, val: Path, out: Path) -> tuple[float, FrozenTrial]:
    from sklearn.metrics import f1_score
    from transformers import pipeline

    from sweep.export import export_trial

    path, best = export_trial(study, out)
    with val.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    classify = pipeline("text-classification", model=str(path), device=-1)
    predicted = [p["label"] for p in classify([r["text"] for r in rows], truncation=True, max_length=32)]
    return float(f1_score([r["label"] for r in rows], predicted, average="macro")), best


def no_orphan_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".") or "tmp" in p.name]
    assert leftovers == [], f"half-written files left: {leftovers}"


# --- SQLite: guardrail, SIGTERM, resume after a crash ---------------------------------------------------------


def test_only_the_workers_a_run_starts_share_its_sqlite_store(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path]
) -> None:
    """The workers `sweep run --workers N` starts share the SQLite store it holds: the holder named in their
    environment must be their parent and the lock's holder. A worker started on its own is refused with the PostgreSQL
    hint, and so is one that names a process that is not its parent."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_spec(tmp_path, data, tiny_bert, url)
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["search"].update(n_trials=1, space={"learning_rate": 1e-3, "batch_size": 8, "epochs": 1})
    spec.write_text(yaml.safe_dump(spec_data))
    run_study(spec, workers=0)  # creates the study, then lets go of the store
    worker = sweep_cmd("worker", "workers", "--storage", url, "--spec", str(spec))
    with sqlite_writer_lock(url):  # this process holds the store, as `sweep run --workers N` does
        for holder in (None, str(os.getppid())):  # on its own; naming a process that is not its parent
            env = {**ENV, **({"SWEEP_SQLITE_LOCK_HOLDER": holder} if holder else {})}
            done = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 2, done.stderr[-2000:]
            assert "is already used by a running sweep" in done.stderr and "postgresql+psycopg://" in done.stderr
        assert trials(url) == []
        env = {**ENV, "SWEEP_SQLITE_LOCK_HOLDER": str(os.getpid())}  # started by the holder
        done = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert [t.state for t in trials(url)] == [TrialState.COMPLETE]


def test_sqlite_second_process_is_refused_while_one_runs(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path]
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_spec(tmp_path, data, tiny_bert, url)
    with sqlite_writer_lock(url), pytest.raises(SweepError, match="already used by a running sweep.*PostgreSQL"):
        run_study(spec)  # another process (here: this one's other lock) holds the store
    with sqlite_writer_lock(url):  # released again
        pass


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigterm_fails_the_trial_with_a_reason_and_the_retry_repeats_it(
    backend: str, tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    spec = write_spec(tmp_path, data, tiny_bert, url)
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["search"].update(
        n_trials=2, space={"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "batch_size": 8, "epochs": 6}
    )
    spec.write_text(yaml.safe_dump(spec_data))
    proc = start(sweep_cmd("run", str(spec)), tmp_path / "run.log")
    # Inside its training: its first evaluation (a third into epoch 1 of 6) is stored, nearly all of it still to come.
    # A fixed sleep let a fast machine end trial 0 first; the stop then found no trial to fail.
    wait_for(lambda: (t := running_trial(url, proc.pid)) is not None and bool(t.intermediate_values), 120,
             "the trial's first evaluation")  # fmt: skip
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    took = time.monotonic() - signalled
    log = (tmp_path / "run.log").read_text()
    assert code == 143, log
    assert took < 15, f"SIGTERM took {took:.1f} s to end the trial"
    assert "stopped by SIGTERM: the running trial is recorded as FAIL and queued for a retry" in log, log
    stopped_trials = [t for t in trials(url) if t.state == TrialState.FAIL]
    assert len(stopped_trials) == 1
    stopped = trial = stopped_trials[0]
    assert stopped.state == TrialState.FAIL
    assert read_trial(stopped).stopped_by == "SIGTERM"
    assert read_trial(stopped).error.startswith("stopped by SIGTERM after")
    queued = [t for t in trials(url) if read_trial(t).retry_of == trial.number]
    assert len(queued) == 1 and queued[0].state == TrialState.WAITING
    assert queued[0].params == stopped.params and "learning_rate" in stopped.params
    assert not any(t.state == TrialState.RUNNING for t in trials(url))
    no_orphan_files(tmp_path / "checkpoints")

    # Running the same command again continues: the retry runs first, with the same parameters and seed.
    subprocess.run(sweep_cmd("run", str(spec)), env=ENV, check=True, capture_output=True)
    final = trials(url)
    retry = next(t for t in final if read_trial(t).retry_of == trial.number)
    assert retry.state in FINISHED and retry.params == stopped.params
    assert read_trial(retry).seed == read_trial(stopped).seed
    assert sum(t.state in FINISHED for t in final) == 2
    no_orphan_files(tmp_path / "checkpoints")


def test_run_after_a_crash_simply_continues(tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_spec(tmp_path, data, tiny_bert, url)
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["search"]["n_trials"] = 3
    spec_data["search"]["space"]["epochs"] = 3  # no 1-epoch trial that could end between its detection and the kill
    spec.write_text(yaml.safe_dump(spec_data))
    proc = start(sweep_cmd("run", str(spec)), tmp_path / "run.log")
    killed = wait_for(lambda: running_trial(url, proc.pid), 120, "a running trial")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert next(t for t in trials(url) if t.number == killed.number).state == TrialState.RUNNING

    done = subprocess.run(sweep_cmd("run", str(spec)), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"trial {killed.number} was left RUNNING by a run that ended without recording it" in done.stderr
    final = trials(url)
    orphan = next(t for t in final if t.number == killed.number)
    assert orphan.state == TrialState.FAIL and "stopped without finishing" in read_trial(orphan).error
    retry = next(t for t in final if read_trial(t).retry_of == killed.number)
    assert retry.state in FINISHED and retry.params == orphan.params
    assert sum(t.state in FINISHED for t in final) == 3
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in final)


def test_a_lost_database_is_retried_then_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from sqlalchemy import event

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    optuna.create_study(study_name="s", storage=storage)
    lines: list[str] = []
    monkeypatch.setattr(storage, "log", lines.append)
    monkeypatch.setattr(storage, "retry_seconds", 3.0)
    failing = {"left": 2}

    @event.listens_for(storage.engine, "do_connect")
    def refuse(*args: Any) -> None:
        if failing["left"]:
            failing["left"] -= 1
            raise sqlite3.OperationalError("unable to open database file (simulated outage)")

    storage.engine.dispose()  # the next operation needs a new connection
    assert [s.study_name for s in storage.get_all_studies()] == ["s"]  # came back within the window
    assert lines[0].startswith("database unreachable during get_all_studies (") and "retrying" in lines[0]
    assert lines[-1] == "database reachable again (get_all_studies)"

    failing["left"] = 10**6
    storage.engine.dispose()
    started = time.monotonic()
    with pytest.raises(StorageLost, match=r"lost the database .* for 3 s \(.*simulated outage"):
        storage.get_all_studies()
    assert 2.5 < time.monotonic() - started < 15
    started = time.monotonic()
    with pytest.raises(StorageLost):  # once given up, later calls fail at once
        storage.get_study_id_from_name("s")
    assert time.monotonic() - started < 1


# --- PostgreSQL: many workers, chaos ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_three_workers_finish_exactly_the_budget(
    backend: str, tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    """`sweep run --workers 3`: on PostgreSQL, and on the default SQLite file, which the run holds for its workers
    (they count the budget under an flock beside it, and retry a write that met another's)."""
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    spec = write_spec(tmp_path, data, tiny_bert, url)
    done = subprocess.run(
        sweep_cmd("run", str(spec), "--workers", "3"), env=ENV, capture_output=True, text=True, timeout=900
    )
    (tmp_path / "run.log").write_text(done.stderr)
    assert done.returncode == 0, "\n".join(line for line in done.stderr.splitlines() if "COMPLETE" not in line)[-6000:]
    prefixes = {line.split(" ", 1)[0] for line in done.stderr.splitlines() if line[:1] == "w"}
    assert {"w1", "w2", "w3"} <= prefixes  # one combined display with every worker's lines
    assert "database unreachable" not in done.stderr and "locked" not in done.stderr
    final = trials(url)
    numbers = [t.number for t in final]
    assert len(numbers) == len(set(numbers)) == max(numbers) + 1  # no duplicate or missing trial numbers
    assert sum(t.state in FINISHED for t in final) == 24
    assert not [t.number for t in final if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not [t.number for t in final if t.state == TrialState.FAIL]
    workers = Counter(read_trial(t).worker for t in final)
    assert len(workers) == 3, workers  # all three took part
    for trial in final:
        assert_intermediate_values_intact(trial)
    params = [tuple(sorted(t.params.items())) for t in final]
    assert len(set(params)) == len(params)  # each worker's sampler has its own seed: no duplicated draws


@pytest.mark.postgres
def test_chaos_killed_workers_lose_nothing(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], postgres_url: str
) -> None:
    budget, kills = 12, 3
    spec = write_spec(
        # grace 10 s: a killed trial is still RUNNING when it is counted 3 s after the kill (with 4 s, a heartbeat sent
        # about 1 s before the kill could let a live worker fail it first, and the count below would miss it)
        tmp_path, data, tiny_bert, postgres_url, heartbeat={"interval": 1, "grace_period": 10}
    )
    spec_data = yaml.safe_load(spec.read_text())
    # Every trial keeps its checkpoint, so a kill may land in a write too. Trials of 20-30 epochs last seconds: with
    # 2-3 epochs (0.4 s each) the live worker finished 8 trials while one kill was counted, and on a slower machine
    # the budget ran out before the third kill, leaving no trial to kill.
    spec_data["search"].update(n_trials=budget, pruner="none", keep_checkpoints=budget + kills)
    spec_data["search"]["space"]["epochs"] = {"low": 20, "high": 30}
    spec.write_text(yaml.safe_dump(spec_data))
    subprocess.run(sweep_cmd("run", str(spec), "--workers", "0"), env=ENV, check=True, capture_output=True)
    worker_cmd = sweep_cmd("worker", "workers", "--storage", postgres_url, "--threads", "1")
    log = tmp_path / "workers.log"
    procs = [start(worker_cmd, log) for _ in range(2)]
    rng = random.Random(0)
    killed: list[int] = []
    dead: set[int] = set()

    def fresh_running_trial_while_workers_live() -> FrozenTrial | None:
        found = running_trial(postgres_url, fresh_only=True, skip_pids=frozenset(dead))
        if found is None and all(p.poll() is not None for p in procs):
            states = [(t.number, t.state.name) for t in trials(postgres_url)]
            raise AssertionError(f"every worker ended after kills on {killed}: {states}\n{log.read_text()[-2000:]}")
        return found

    attempts = 0
    while len(killed) < kills:  # a kill that lands just after its trial ended hits no trial: kill again
        attempts += 1
        assert attempts <= 3 * kills, f"only {len(killed)} of {attempts - 1} kills hit a running trial"
        victim = wait_for(fresh_running_trial_while_workers_live, 240, "a running trial")
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere in its first second of training
        pid = int(read_trial(victim).worker.rsplit(":", 1)[1])
        proc = next(p for p in procs if p.pid == pid)
        kill_at = datetime.now()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        dead.add(pid)
        # The trial the kill hit: RUNNING and held by no live worker. Not only the ones naming this pid: a kill that
        # lands just after the victim's trial ended can hit the next trial in the instant before it records its
        # worker (or while it still carries the worker of the trial it retries); live workers record theirs within
        # a moment, so wait that moment first.
        # A trial that started after the kill is a live worker's, whatever it has recorded yet (under load a worker
        # can take seconds to record itself).
        time.sleep(3.0)
        live = {f":{p.pid}" for p in procs if p.poll() is None}
        killed += [t.number for t in trials(postgres_url) if t.state == TrialState.RUNNING and t.number not in killed
                   and t.datetime_start is not None and t.datetime_start <= kill_at
                   and not any((read_trial(t).worker or "").endswith(tag) for tag in live)]  # fmt: skip
        procs.append(start(worker_cmd, log))
    for proc in procs:
        if proc.poll() is None:
            assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]

    final = trials(postgres_url)
    assert len(killed) == kills
    assert not [t.number for t in final if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state in FINISHED for t in final) == budget
    for number in killed:
        lost = final[number]
        assert lost.state == TrialState.FAIL
        if read_trial(lost).retry_of is not None:
            continue  # a retry itself killed (rare: its trial ended just before the kill): retries are not retried
        retries = [t for t in final if read_trial(t).retry_of == number]
        assert len(retries) == 1, f"trial {number} retried {len(retries)} times"
        assert retries[0].params == lost.params and (retries[0].state in FINISHED or retries[0].number in killed)
    assert not [t.number for t in final if t.state == TrialState.FAIL and t.number not in killed]
    for trial in final:
        if trial.state in FINISHED:
            assert_intermediate_values_intact(trial)
    study = optuna.load_study(study_name="workers", storage=open_storage(postgres_url, read_only=True))
    f1, best = macro_f1_of_export(study, data[1], tmp_path / "model")
    assert f1 == pytest.approx(best.value, abs=1e-6)
    no_orphan_files(tmp_path / "checkpoints")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_training_raises_stop_requested_and_outside_it_only_records(signum: int) -> None:
    from sweep.worker import GracefulStop, StopRequested

    name = signal.Signals(signum).name
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # SIG_IGN when started with `&`
    with GracefulStop() as stop:
        with pytest.raises(StopRequested, match=f"stopped by {name}"), stop.training():
            os.kill(os.getpid(), signum)
            time.sleep(5)  # interrupted long before
        assert stop.requested == name
        with pytest.raises(StopRequested), stop.training():  # no new training once a stop was requested
            pass
    with GracefulStop() as stop:
        os.kill(os.getpid(), signum)  # between trials: recorded, nothing raised
        time.sleep(0.1)
        assert stop.requested == name
        assert stop.shielded(lambda: "written")() == "written"  # a database write is never interrupted
    assert {sig: signal.getsignal(sig) for sig in before} == before  # handlers restored


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigterm_to_run_with_workers_stops_each_worker_cleanly(
    backend: str, tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    spec = write_spec(tmp_path, data, tiny_bert, url)
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["search"].update(
        # 40 epochs: the first worker's trial must still be training when the second worker's starts (CI once saw the
        # first end in between, so that worker stopped between trials with nothing to fail); no trial here ends anyway
        n_trials=6, space={"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "batch_size": 8, "epochs": 40}
    )
    spec.write_text(yaml.safe_dump(spec_data))
    proc = start(sweep_cmd("run", str(spec), "--workers", "2"), tmp_path / "run.log")

    def both_training() -> bool:
        try:
            return sum(t.state == TrialState.RUNNING and bool(read_trial(t).worker)
                       for t in trials(url)) >= 2  # fmt: skip
        except Exception:  # the study is not created yet
            return False

    wait_for(both_training, 180, "both workers training")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)  # to the parent only: it passes it on to its workers, once
    assert proc.wait(timeout=90) == 143, (tmp_path / "run.log").read_text()[-3000:]
    log = (tmp_path / "run.log").read_text()
    assert "stopped by SIGTERM" in log
    final = trials(url)
    stopped = [t for t in final if t.state == TrialState.FAIL]
    assert len(stopped) == 2 and {read_trial(t).stopped_by for t in stopped} == {"SIGTERM"}
    assert len({read_trial(t).worker for t in stopped}) == 2
    queued = [t for t in final if t.state == TrialState.WAITING]
    assert sorted(read_trial(t).retry_of for t in queued) == sorted(t.number for t in stopped)
    assert not [t for t in final if t.state == TrialState.RUNNING]
    no_orphan_files(tmp_path / "checkpoints")


def test_a_killed_worker_of_a_sqlite_run_loses_nothing(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path]
) -> None:
    """`sweep run --workers 2` on SQLite, one worker killed mid-trial: the run sees it end, fails that trial at once
    (not after the heartbeat's grace period) and queues its retry, the other worker runs it, the budget is finished
    exactly, and the run reports the dead worker (exit code 0: nothing is missing from the study)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_spec(tmp_path, data, tiny_bert, url, heartbeat={"interval": 1, "grace_period": 600})
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["search"].update(n_trials=4, pruner="none")
    spec_data["search"]["space"]["epochs"] = {"low": 3, "high": 3}
    spec.write_text(yaml.safe_dump(spec_data))
    log = tmp_path / "run.log"
    proc = start(sweep_cmd("run", str(spec), "--workers", "2"), log)
    victim = wait_for(lambda: running_trial(url, fresh_only=True), 240, "a running trial")
    os.kill(int(read_trial(victim).worker.rsplit(":", 1)[1]), signal.SIGKILL)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert ("warning: 1 of 2 workers ended abnormally (exit codes [-9]); their trials were retried and the study "
            "finished its budget") in " ".join(log.read_text().split())
    final = trials(url)
    assert not [t.number for t in final if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state in FINISHED for t in final) == 4
    lost = final[victim.number]
    if lost.state == TrialState.FAIL:  # the kill hit it (not just after it ended): retried once, with its parameters
        (retry,) = [t for t in final if read_trial(t).retry_of == victim.number]
        assert retry.params == lost.params and retry.state in FINISHED
        worker = read_trial(victim).worker
        assert (read_trial(lost).failure or "").startswith(f"its worker {worker} ended (killed by SIGKILL); failed at "
                                                           "once by the process that started it")
        said = " ".join(log.read_text().split())
        assert f"trial {victim.number} was left RUNNING by worker {worker} (killed by SIGKILL)" in said
    no_orphan_files(tmp_path / "checkpoints")


def test_a_runs_workers_draw_from_numbered_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker k of `sweep run --workers N` seeds its sampler with search.seed + k (the run repeated draws the same);
    a worker started on its own adds its process id."""
    from sweep.lifecycle import (
        SAMPLER_HISTORY_ENV,
        WORKER_NUMBER_ENV,
        make_sampler,
        sampled_trials,
        sampler_history,
        worker_salt,
    )
    from sweep.spec import SearchSpec

    monkeypatch.setenv(WORKER_NUMBER_ENV, "2")
    assert worker_salt() == 2

    def first_draw(salt: int) -> float:
        sampler = make_sampler(SearchSpec(sampler="random", seed=7), salt=salt)
        return optuna.create_study(sampler=sampler).ask().suggest_float("x", 0, 1)

    assert first_draw(worker_salt()) == first_draw(worker_salt()) != first_draw(3)
    monkeypatch.delenv(WORKER_NUMBER_ENV)
    assert worker_salt() == os.getpid()

    # A continued study's workers draw anew: the history (trials sampled before) is part of the seed, the value the
    # run counted when it started its workers, else what the study holds when a worker joins.
    search = SearchSpec(sampler="random", seed=7)
    study = optuna.create_study(sampler=make_sampler(search))
    drawn = [study.ask().suggest_float("x", 0, 1) for _ in range(3)]
    study.enqueue_trial({"x": 0.5})  # a queued retry was not drawn by the sampler
    assert sampled_trials(study) == 3 and sampler_history(study) == 3
    again = optuna.create_study(sampler=make_sampler(search, history=sampled_trials(study)))
    assert again.ask().suggest_float("x", 0, 1) not in drawn
    monkeypatch.setenv(SAMPLER_HISTORY_ENV, "2")
    assert sampler_history(study) == 2


def test_a_signal_still_stops_the_trial_cleanly_when_the_output_reader_is_gone(tmp_path: Path) -> None:
    """Ctrl-C on `sweep run ... | tee log` also ends `tee`: the handler's line then met a broken pipe, and the
    BrokenPipeError it raised failed the trial as an error with no retry, instead of `stopped by SIGINT`."""
    result = tmp_path / "result.txt"
    code = f"""
import os, signal, sys, time
read, write = os.pipe()
os.close(read)  # the reader of this process's output is gone
os.dup2(write, 1)
os.dup2(write, 2)
from sweep.worker import GracefulStop, StopRequested
outcome = "not stopped"
with GracefulStop() as stop:
    try:
        with stop.training():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    except StopRequested as exc:
        outcome = str(exc)
print("later output goes nowhere, without an error", file=sys.stderr, flush=True)
open({str(result)!r}, "w").write(outcome)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert result.read_text() == "stopped by SIGINT"


def test_how_a_worker_ended_is_said_for_any_return_code() -> None:
    """A worker killed by a real-time signal (kill -40) has no signal name: the line that says so crashed the
    keeper's thread and the run's wait loop."""
    from sweep.worker import ended_how

    assert ended_how(-9) == "killed by SIGKILL" and ended_how(3) == "exit code 3"
    assert ended_how(-40) == "killed by signal 40"
