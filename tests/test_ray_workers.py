"""`sweep run SPEC --ray [ADDRESS] --workers N`: workers as Ray tasks on a local Ray (started by the run itself, 2 CPUs)
and the PostgreSQL store .ci/run starts; a worker killed mid-trial is retried by Ray, its trial by the heartbeat.

The error paths (no ray installed, SQLite, an address nobody answers at) need neither Ray nor PostgreSQL running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from test_service_api import ENV, free_port, place, spec_body, yaml_of
from test_workers import data, macro_f1_of_export, running_trial, start, sweep_cmd, trials, wait_for, write_spec

from record import FINISHED, read_trial
from sweep.cli import _optional_values, main
from sweep.cluster import LOCAL, _host_port, _unreachable
from sweep.storage import open_storage

__all__ = ["data", "place"]  # fixtures, shared with test_workers and test_service_api

ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install 'sweep[ray]'")


def ray_spec(tmp_path: Path, data: tuple[Path, Path], encoder: Path, url: str, budget: int, **extra: object) -> Path:
    spec = write_spec(tmp_path, data, encoder, url, resources={"cpus": 1}, **extra)
    body = yaml.safe_load(spec.read_text())
    body["search"].update(n_trials=budget, pruner="none")
    body["search"]["space"]["epochs"] = {"low": 1, "high": 2}
    spec.write_text(yaml.safe_dump(body))
    return spec


def test_ray_without_an_address_means_a_local_ray() -> None:
    assert _optional_values(["run", "s.yaml", "--ray", "--workers", "2"]) == [
        "run", "s.yaml", "--ray", LOCAL, "--workers", "2",
    ]  # fmt: skip
    assert _optional_values(["run", "s.yaml", "--ray"]) == ["run", "s.yaml", "--ray", LOCAL]
    assert _optional_values(["run", "s.yaml", "--ray", "10.0.0.5:6379"])[-1] == "10.0.0.5:6379"
    assert _host_port("ray://head:10001") == ("head", 10001) and _host_port("head") is None


def test_ray_with_sqlite_is_refused(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec = ray_spec(tmp_path, data, tiny_bert, f"sqlite:///{tmp_path / 's.db'}", 2)
    assert main(["run", str(spec), "--ray", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--ray: Ray workers on several processes and machines need a shared PostgreSQL store" in err
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "cache").exists()


def test_ray_not_installed_is_one_line(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = ray_spec(tmp_path, data, tiny_bert, "postgresql+psycopg://u:secretpw@127.0.0.1:1/db", 2)
    assert main(["run", str(spec), "--ray", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--ray: ray is not installed here: pip install 'sweep[ray]'" in err
    assert "secretpw" not in err


def test_an_address_nobody_answers_at_is_refused_quickly(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _unreachable("127.0.0.1:1") is not None
    spec = ray_spec(tmp_path, data, tiny_bert, postgres_url, 2)
    assert main(["run", str(spec), "--ray", "127.0.0.1:1", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--ray: no Ray cluster answers at '127.0.0.1:1'" in err and "ray start --head" in err
    assert not (tmp_path / "cache").exists()  # refused before any data was prepared


@pytest.mark.postgres
def test_two_ray_workers_finish_the_budget_and_a_killed_one_is_retried(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], postgres_url: str
) -> None:
    budget = 6
    spec = ray_spec(tmp_path, data, tiny_bert, postgres_url, budget, heartbeat={"interval": 1, "grace_period": 4})
    body = yaml.safe_load(spec.read_text())
    body["search"]["space"]["epochs"] = 3  # long enough that the trial is still training when the kill lands
    spec.write_text(yaml.safe_dump(body))
    log = tmp_path / "run.log"
    run = start(sweep_cmd("run", str(spec), "--ray", "--workers", "2"), log)
    try:
        victim = wait_for(lambda: running_trial(postgres_url), 300, "a Ray worker's running trial")
        pid = int((read_trial(victim).worker or "").rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)  # the Ray worker process, mid-trial
        assert run.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            run.wait(timeout=60)
    final = trials(postgres_url)
    assert sum(t.state in FINISHED for t in final) == budget, [(t.number, t.state) for t in final]
    assert not [t.number for t in final if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    lost = final[victim.number]
    assert lost.state == TrialState.FAIL
    retries = [t for t in final if read_trial(t).retry_of == victim.number]
    assert len(retries) == 1 and retries[0].params == lost.params and retries[0].state in FINISHED
    text = log.read_text()
    assert "2 Ray worker tasks for study workers (1 CPU, 0 GPU each) on a local Ray" in text
    # Both tasks ended well, the killed one through Ray's retry in a new process (else the run would exit 1), and
    # the worker processes said where they joined (Ray relays their lines). The retry's own line is not counted:
    # Ray's log monitor relays a new process's output asynchronously, and CI saw it arrive after the driver had
    # ended; the retry itself is proven by the store above (its trial finished with the killed trial's parameters).
    assert len(re.findall(r"ray worker: \S+:\d+ finished its share of study workers", text)) == 2  # host:pid
    assert text.count("joined study workers in") >= 2, text[-3000:]
    assert postgres_url not in text  # the URL with its password stays out of the output
    study = optuna.load_study(study_name="workers", storage=open_storage(postgres_url, read_only=True))
    f1, best = macro_f1_of_export(study, data[1], tmp_path / "model")
    assert f1 == pytest.approx(best.value, abs=1e-6)


@pytest.mark.postgres
def test_ctrl_c_on_a_local_ray_run_records_the_running_trial_and_queues_its_retry(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], postgres_url: str
) -> None:
    """A Ctrl-C in the terminal (SIGINT to the whole process group, Ray's processes too) ended `sweep run --ray` with
    no line, its trial left RUNNING: the next run waited the heartbeat's grace period (5 min) for it."""
    spec = ray_spec(tmp_path, data, tiny_bert, postgres_url, 4)  # the default grace period: 300 s
    body = yaml.safe_load(spec.read_text())
    body["search"]["space"]["epochs"] = 12  # still training when the signal lands
    spec.write_text(yaml.safe_dump(body))
    log = tmp_path / "run.log"
    with log.open("ab") as handle:
        run = subprocess.Popen(sweep_cmd("run", str(spec), "--ray", "--workers", "1"), env=ENV, stdout=handle,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        victim = wait_for(lambda: running_trial(postgres_url), 300, "a Ray worker's running trial")
        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=60)
    final = trials(postgres_url)
    assert not [t.number for t in final if t.state == TrialState.RUNNING], log.read_text()[-3000:]
    stopped = final[victim.number]
    assert stopped.state == TrialState.FAIL and read_trial(stopped).failure
    retries = [t for t in final if read_trial(t).retry_of == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING and retries[0].params == stopped.params
    text = log.read_text()
    assert "stopped by SIGINT" in text and postgres_url not in text
    assert "finished its share" not in text  # the worker says it was stopped


@pytest.mark.postgres
def test_sweep_serve_with_ray_workers_runs_a_submitted_study(
    place: Path, tiny_bert: Path, tmp_path: Path, postgres_url: str
) -> None:
    """`sweep serve --ray --workers 1`: a study submitted over HTTP is run by a Ray worker without a study name, which
    the server cancels when it stops."""
    port = free_port()
    env = dict(ENV, SWEEP_STORAGE=postgres_url)
    env.pop("SWEEP_SERVICE_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep", "serve", "--port", str(port), "--folder", str(tmp_path / "server"),
         "--data-root", str(place / "data"), "--model-root", str(tiny_bert), "--workers", "1", "--ray"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/api/studies") or proc.poll() is not None, 120, "sweep serve --ray")
        assert proc.poll() is None, "sweep serve --ray ended early"
        body = yaml_of(spec_body("served-by-ray", tiny_bert, data={"train": "train.csv", "validation": "val.csv"}))
        assert httpx.post(f"{base}/api/studies", data={"spec_text": body}, timeout=60).status_code == 201
        wait_for(lambda: httpx.get(f"{base}/api/studies/served-by-ray", timeout=10).json()["study"]["state"]
                 == "finished", 240, "the Ray worker to finish the submitted study")  # fmt: skip
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=90)
    assert "1 Ray workers (1 CPU, 0 GPU each) on a local Ray" in out, out[-3000:]
    # "finished" above shows the only worker, the Ray one, ran the study; its own lines reach `out` through Ray's
    # asynchronous log relay, which the server's shutdown may cut short, so they are not asserted
    assert "stopped by SIGTERM; stopping the workers" in out
    assert postgres_url not in out
    assert proc.returncode == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_ray_auto_without_a_cluster_is_refused_before_anything_starts(
    tmp_path: Path, tiny_bert: Path, data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`--ray auto` with no Ray running said "resuming study ..." and then Ray's own error, pointing at an --address
    flag sweep does not have."""
    import sweep.cluster

    monkeypatch.setattr(sweep.cluster, "_auto_address", lambda: None)
    spec = ray_spec(tmp_path, data, tiny_bert, "postgresql+psycopg://u:secretpw@127.0.0.1:1/db", 2)
    assert main(["run", str(spec), "--ray", "auto", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: --ray: found no Ray cluster to join at 'auto'" in " ".join(err.split())  # an option: not in the spec
    assert "resuming" not in err and "--address" not in err and "secretpw" not in err
    monkeypatch.setattr(sweep.cluster, "_auto_address", lambda: "127.0.0.1:1")  # one found, gone since
    assert main(["run", str(spec), "--ray", "auto", "--workers", "1"]) == 2
    assert "--ray: no Ray cluster answers at 'auto'" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_ray_is_imported_with_log_deduplication_off_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray folds log lines that differ only in numbers: every worker's "joined study" line must show, so sweep turns
    the folding off; a user's own RAY_DEDUP_LOGS is kept."""
    pytest.importorskip("ray")
    from sweep.cluster import _ray

    monkeypatch.delenv("RAY_DEDUP_LOGS", raising=False)
    _ray()
    assert os.environ["RAY_DEDUP_LOGS"] == "0"
    monkeypatch.setenv("RAY_DEDUP_LOGS", "1")
    _ray()
    assert os.environ["RAY_DEDUP_LOGS"] == "1"
