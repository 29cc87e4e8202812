"""The SQL store: URL checks without connecting, and read-only readers that never disturb a running study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweep.errors import SweepError
from sweep.storage import load_study, open_storage, storage_problems


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mongodb://localhost/x", "unsupported scheme 'mongodb'"),
        ("not a url", "not a database URL"),
        ("sqlite://", "in-memory SQLite store loses every trial"),
        ("sqlite:////no/such/folder/s.db", "folder does not exist: /no/such/folder"),
        # two slashes: the first folder is taken for a host and dropped (a user's store resolved to a wrong folder)
        ("sqlite://tmp/h/sweeps.db", "'sqlite://tmp/h/sweeps.db' has two slashes after sqlite:, so 'tmp' is read as "
                                     "a host and dropped: write sqlite:////tmp/h/sweeps.db for the absolute path"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    problems = storage_problems(url)
    assert len(problems) == 1 and problems[0][0] == "storage" and message in problems[0][1]


def test_good_urls_pass(tmp_path: Path) -> None:
    assert storage_problems(f"sqlite:///{tmp_path / 's.db'}") == []
    assert storage_problems("postgresql+psycopg://user@localhost/sweeps") == []


def test_unreachable_postgres_is_a_clear_error() -> None:
    with pytest.raises(SweepError, match=r"storage: (cannot open|the database driver)"):
        open_storage("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_read_only_reader_beside_a_running_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    writer = optuna.create_study(study_name="live", storage=open_storage(url), direction="maximize")
    running = writer.ask()
    running.report(0.5, 1)

    reader = load_study("live", url)  # read-only by default
    assert reader.trials[0].state == optuna.trial.TrialState.RUNNING
    assert reader.trials[0].intermediate_values == {1: 0.5}
    with pytest.raises(optuna.exceptions.StorageInternalError) as info:  # the reader cannot write
        reader.set_user_attr("x", 1)
    assert "attempt to write a readonly database" in str(info.value.__cause__)

    writer.tell(running, 0.7)  # the writer is not blocked by the reader
    assert load_study("live", url).best_value == 0.7


def test_readers_do_not_create_a_store(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="no study store at"):
        load_study("x", f"sqlite:///{tmp_path / 'missing.db'}")
    assert list(tmp_path.iterdir()) == []


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(tmp_path: Path) -> None:
    """A worker killed between creating its trial and its first heartbeat leaves a RUNNING trial with no heartbeat:
    after the grace period it is stale too (else it would fill the budget forever), while a beating trial is not."""
    import time

    from optuna.trial import TrialState

    from sweep.storage import Heartbeat

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=Heartbeat(interval=1, grace_period=2))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # RUNNING, never beats
    time.sleep(2.5)
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(alive._trial_id)
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    retry = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == study.trials[dead.number].params
    # why it failed is recorded (Optuna records nothing: the page and the report said "no error recorded")
    from record import read_trial

    failure = read_trial(study.trials[dead.number]).failure or ""
    assert failure.startswith("its worker (unknown) stopped sending heartbeats") and "queued for a retry" in failure


def test_a_retry_lost_between_failing_and_queueing_is_queued_once_by_the_next_pass(tmp_path: Path) -> None:
    """Optuna fails a stale trial, then queues its retry: a worker killed in between loses the retry. The next pass
    of any worker queues it (once), so the configuration is not lost."""
    import time

    from optuna.trial import TrialState

    from record import TrialWriter, retry_of
    from sweep.storage import Heartbeat

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=Heartbeat(interval=1, grace_period=2))
    study = optuna.create_study(study_name="s", storage=storage)
    lost = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(lost._trial_id)
    storage.set_trial_state_values(lost._trial_id, TrialState.FAIL)  # failed as stale; its worker died right after
    failed = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(failed._trial_id)
    TrialWriter(failed.set_user_attr).failed("ValueError: bad")  # a trial that raised records its error: no retry
    study.tell(failed, state=TrialState.FAIL)
    time.sleep(2.5)
    for _ in range(2):
        optuna.storages.fail_stale_trials(study)
    retries = [t for t in study.get_trials() if retry_of(t.system_attrs) is not None]
    assert [(retry_of(t.system_attrs), t.state) for t in retries] == [(lost.number, TrialState.WAITING)]
    assert retries[0].params == study.trials[lost.number].params


def test_a_dead_trials_checkpoint_scratch_is_removed_when_it_is_failed_and_a_live_ones_is_kept(tmp_path: Path) -> None:
    """A worker killed while it writes a checkpoint leaves `.trial-NNNNN-XXXX` in the checkpoint folder (and in a
    folder artifact store): the heartbeat pass and the SQLite orphan repair that fail its trial remove it, and leave
    a live trial's scratch alone."""
    import time

    from optuna.trial import TrialState

    from record import StudyRecord, write_study
    from sweep.artifacts import checkpoint_name
    from sweep.storage import Heartbeat, recover_orphans

    folders, store = tmp_path / "checkpoints", tmp_path / "artifacts"
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=Heartbeat(interval=1, grace_period=2))
    study = optuna.create_study(study_name="s", storage=storage)
    artifacts = {"store": "filesystem", "path": str(store)}
    write_study(study.set_user_attr, StudyRecord(checkpoint_dir=str(folders), artifact_store=artifacts))
    x = {"x": optuna.distributions.FloatDistribution(0, 1)}
    dead, alive = study.ask(x), study.ask(x)
    storage.record_heartbeat(dead._trial_id)

    def scratch(number: int) -> list[Path]:
        made = [root / f".{checkpoint_name(number)}-abc123" for root in (folders, store)]
        for folder in made:
            (folder / checkpoint_name(number)).mkdir(parents=True)
            (folder / checkpoint_name(number) / "model.safetensors").write_bytes(b"half")
        return made

    dead_scratch, live_scratch = scratch(dead.number), scratch(alive.number)
    time.sleep(3.5)  # SQLite's clock for heartbeats counts whole seconds
    storage.record_heartbeat(alive._trial_id)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[dead.number].state == TrialState.FAIL
    assert [p.exists() for p in dead_scratch + live_scratch] == [False, False, True, True]
    # SQLite after a crash: every RUNNING trial is an orphan, and its scratch goes with it.
    assert recover_orphans(study, "the worker died") == ([alive.number], [])
    assert not any(p.exists() for p in live_scratch)
    assert folders.is_dir() and store.is_dir()


def test_a_relative_sqlite_store_is_shown_with_the_file_it_resolves_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sqlite:///sweeps.db` means a file in the folder the command runs in: messages say which file."""
    from sweep.store_checks import shown_store

    monkeypatch.chdir(tmp_path)
    assert shown_store("sqlite:///sweeps.db") == f"sqlite:///sweeps.db ({tmp_path / 'sweeps.db'})"
    assert shown_store(f"sqlite:///{tmp_path / 'a.db'}") == f"sqlite:///{tmp_path / 'a.db'}"
    assert "(" not in shown_store("sqlite:///:memory:")  # no file
    assert shown_store("postgresql+psycopg://me:s3cret@db/sweeps") == "postgresql+psycopg://me:***@db/sweeps"


def test_a_retry_that_dies_too_gets_its_own_reason_not_its_originals(tmp_path: Path) -> None:
    """Optuna copies a failed trial's attributes to its retry, the reason why it failed included: a retry whose worker
    died before clearing it said 'worker A ... queued for a retry' of itself."""
    import time

    from record import TrialWriter, read_trial
    from sweep.storage import Heartbeat

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=Heartbeat(interval=1, grace_period=2))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    TrialWriter(dead.set_user_attr).lost("its worker hostA:1 stopped sending heartbeats ...; queued for a retry")
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    failure = read_trial(study.trials[dead.number]).failure or ""
    assert failure.startswith("its worker (unknown) stopped sending heartbeats") and "hostA" not in failure


def test_a_stop_is_no_death_a_stopped_trials_retry_that_dies_is_retried_once(tmp_path: Path) -> None:
    """A trial stopped from the service, retried, whose retry's worker was then killed: the configuration was
    dropped (a retry was 'already used') while the message said it was queued again."""
    from optuna.trial import TrialState

    from record import TrialWriter, read_trial, retry_of
    from sweep.internals import set_trial_attr
    from sweep.storage import orphans_line, queue_retry, recover_orphans

    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    first = study.ask(space)
    TrialWriter(lambda k, v: set_trial_attr(study, study.trials[first.number], k, v)).stopped("ann", "stopped")
    study.tell(first.number, state=TrialState.FAIL)
    queue_retry(study, study.trials[first.number], again=True)
    second = study.ask(space)  # the queued retry, which its worker starts (clearing what it copied of the original)
    assert retry_of(study.trials[second.number].system_attrs) == first.number
    TrialWriter(second.set_user_attr).start(worker="w:2", seed=1, hyperparameters={}, data_fingerprint="f",
                                             inherited=study.trials[second.number].user_attrs)  # fmt: skip
    failed, not_retried = recover_orphans(study, "its worker exited without finishing it")
    assert failed == [second.number] and not_retried == []  # the stop before it was no death
    third = study.ask(space)
    assert third.params == first.params
    TrialWriter(third.set_user_attr).start(worker="w:3", seed=2, hyperparameters={}, data_fingerprint="f",
                                            inherited=study.trials[third.number].user_attrs)  # fmt: skip
    failed, not_retried = recover_orphans(study, "its worker exited without finishing it")
    assert failed == not_retried == [third.number]  # a second death: the configuration is not tried again
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert orphans_line([third.number], [third.number], "a worker that died") == (
        f"trial {third.number} was left RUNNING by a worker that died: marked failed; {third.number} not retried "
        "(the configuration's worker died once before)")
    assert read_trial(study.trials[second.number]).failure == "its worker exited without finishing it"


def test_a_stopped_trials_retry_that_dies_before_starting_reads_as_a_death_not_as_the_stop(tmp_path: Path) -> None:
    """Optuna copies the stopped trial's stop to its retry; a retry whose worker died before clearing it read as
    "stopped by ann" (status, page) and, being no death, let its configuration kill a worker once more."""
    import time

    from optuna.trial import TrialState

    from record import TrialWriter, read_trial
    from sweep.internals import set_trial_attr
    from sweep.storage import Heartbeat, queue_retry, recover_orphans

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=Heartbeat(interval=1, grace_period=2))
    study = optuna.create_study(study_name="s", storage=storage)
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def stopped_then_retried() -> optuna.trial.Trial:
        first = study.ask(space)
        TrialWriter(lambda k, v: set_trial_attr(study, study.trials[first.number], k, v)).stopped("ann", "stopped")
        study.tell(first.number, state=TrialState.FAIL)
        queue_retry(study, study.trials[first.number], again=True)
        retry = study.ask(space)  # its worker dies before `start`
        assert read_trial(study.trials[retry.number]).stopped_by == "ann"  # copied
        return retry

    orphan = stopped_then_retried()
    failed, not_retried = recover_orphans(study, "its worker exited without finishing it")
    assert failed == [orphan.number] and not_retried == []
    record = read_trial(study.trials[orphan.number])
    assert record.stopped_by is None and record.failure == "its worker exited without finishing it"
    again = study.ask(space)  # the configuration's second death is not retried: the first one counted
    failed, not_retried = recover_orphans(study, "its worker exited without finishing it")
    assert failed == not_retried == [again.number]

    silent = stopped_then_retried()  # the same through the heartbeat (another store's worker notices)
    time.sleep(3.2)
    optuna.storages.fail_stale_trials(study)
    record = read_trial(study.trials[silent.number])
    assert record.state == TrialState.FAIL and record.stopped_by is None and record.error is None
    assert record.lost is not None and record.failure == record.lost


def test_a_failed_trial_is_queued_for_a_retry_once_whoever_repairs_it(tmp_path: Path) -> None:
    """A heartbeat pass and a dead-worker repair that both fail the same trial each queued a retry: the
    configuration then trained twice more."""
    from optuna.trial import TrialState

    from record import retry_history
    from sweep.storage import queue_retry

    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(dead.number, state=TrialState.FAIL)
    for _ in range(2):
        queue_retry(study, study.trials[dead.number])
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and retry_history(waiting[0].system_attrs) == [dead.number]


def test_trials_of_gone_local_workers_are_failed_at_once_and_live_ones_left(tmp_path: Path) -> None:
    """After a local Ray ends (`sweep run --ray`), a trial its worker left RUNNING waited the grace period."""
    import os
    import socket
    import subprocess

    from optuna.trial import TrialState

    from record import TrialWriter, read_trial, retry_history
    from sweep.runner import fail_gone_local_workers

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    gone = subprocess.Popen(["true"])
    gone.wait()
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    dead, alive = study.ask(space), study.ask(space)
    host = socket.gethostname()
    for trial, pid in ((dead, gone.pid), (alive, os.getpid())):
        TrialWriter(trial.set_user_attr).start(worker=f"{host}:{pid}", seed=0, hyperparameters={},
                                               data_fingerprint="f")  # fmt: skip
    lines = fail_gone_local_workers(url, "s", "the local Ray ended", wait_s=0.5)
    assert len(lines) == 1 and f"worker {host}:{gone.pid} (the local Ray ended)" in lines[0]
    final = study.get_trials()
    assert final[dead.number].state == TrialState.FAIL and final[alive.number].state == TrialState.RUNNING
    assert "the local Ray ended" in (read_trial(final[dead.number]).failure or "")
    assert [retry_history(t.system_attrs) for t in final if t.state == TrialState.WAITING] == [[dead.number]]


def test_an_orphans_seconds_end_near_its_workers_death_not_when_the_next_run_found_it(tmp_path: Path) -> None:
    """`kill -9` of a run, resumed a minute later: its trial of a few seconds showed 73.1 s, and the report's compute
    time counted the downtime (hours for a run resumed the next morning)."""
    import time

    from record import read_trial, trial_seconds
    from sweep.storage import Heartbeat, recover_orphans

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=Heartbeat(interval=1, grace_period=2))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(dead._trial_id)  # beats once, then the process is killed
    time.sleep(4.2)  # the downtime (whole seconds on SQLite's clock)
    recover_orphans(study, "its worker stopped without finishing it")
    trial = study.trials[dead.number]
    assert trial.datetime_complete is not None and trial.datetime_start is not None
    wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
    silent = read_trial(trial).silent_seconds
    assert silent is not None and silent >= 2.0
    seconds = trial_seconds(trial)
    assert seconds is not None and seconds <= wall - 2.0


def test_a_lost_trials_seconds_end_at_its_last_heartbeat_not_when_another_worker_noticed(tmp_path: Path) -> None:
    """The heartbeat fails a silent trial a grace period after its worker died: that silence is no training, so the
    trial's seconds (status, the page, the report's compute time) stop one heartbeat interval after its last
    heartbeat (it died within that interval; a trial killed before its second heartbeat must not read 0 s)."""
    import time

    from optuna.trial import TrialState

    from record import read_trial, trial_seconds
    from sweep.storage import Heartbeat

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=Heartbeat(interval=1, grace_period=2))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(dead._trial_id)  # beats once, then its worker dies
    time.sleep(4.2)  # SQLite's clock for heartbeats counts whole seconds
    optuna.storages.fail_stale_trials(study)
    trial = study.trials[dead.number]
    assert trial.state == TrialState.FAIL
    assert trial.datetime_complete is not None and trial.datetime_start is not None
    wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
    silent = read_trial(trial).silent_seconds
    assert silent is not None and 3.0 <= silent <= wall - 1.0 + 1.0  # less the interval; whole seconds in SQLite
    seconds = trial_seconds(trial)
    assert seconds is not None and seconds <= wall - 2.0  # the silence is left out
    # a retry that dies before its first heartbeat records no silence of its own, not its original's copied one
    retry = next(t for t in study.get_trials() if t.state == TrialState.WAITING)
    assert read_trial(retry).silent_seconds == silent  # Optuna copies the attributes to the retry
    running = study.ask()  # the worker that takes the retry dies at once
    assert running.number == retry.number
    time.sleep(3.2)
    optuna.storages.fail_stale_trials(study)
    again = read_trial(study.trials[retry.number])
    assert again.state == TrialState.FAIL and again.lost is not None and again.silent_seconds is None


def test_a_trial_another_worker_failed_meanwhile_is_left_as_it_is(tmp_path: Path) -> None:
    """The dead-worker repair lists RUNNING trials, then fails them: one that a heartbeat pass failed in between
    raised UpdateFinishedTrialError on the reason's write and aborted the rest of the repair."""
    from typing import Any

    from optuna.trial import TrialState

    from record import trial_attrs
    from sweep.storage import fail_dead_worker

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    trials = [study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}) for _ in range(2)]
    for trial in trials:
        for key, value in trial_attrs(worker="host:1").items():
            trial.set_user_attr(key, value)
    import sweep.storage as storage_module

    real = storage_module._fail_for_retry

    def finished_first(study: optuna.Study, running: Any, record: Any) -> Any:
        study.tell(running[0].number, state=TrialState.FAIL)  # another worker's heartbeat pass was first
        return real(study, running, record)

    storage_module._fail_for_retry = finished_first  # type: ignore[assignment]
    try:
        lines = fail_dead_worker(url, "host:1", "killed by SIGKILL")
    finally:
        storage_module._fail_for_retry = real
    assert lines == ["s: trial 1 was left RUNNING by worker host:1 (killed by SIGKILL): marked failed; trial 1 queued "
                     "for a retry with the same parameters"]
    assert [t.state for t in optuna.load_study(study_name="s", storage=url).trials[:2]] == [TrialState.FAIL] * 2
