"""The study record: old stores still read, newer ones are refused, one ranking everywhere, writers round-trip."""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from record import (
    RECORD_VERSION,
    RecordError,
    StudyRecord,
    Timings,
    TrialResult,
    TrialWriter,
    best_trial,
    enters_top,
    ranked,
    read_study,
    read_trial,
    reported_value,
    study_attrs,
    study_from_attrs,
    trial_attrs,
)
from sweep.cli import main
from sweep.internals import reread, set_trial_attr
from sweep.objective import stored_trial
from sweep.storage import load_study

FIXTURE = Path(__file__).parent / "fixtures" / "store-main-34edfc5.db"


@pytest.fixture()
def legacy_url(tmp_path: Path) -> str:
    """A copy of a store written by the code before the record existed (see fixtures/README.md)."""
    copy = tmp_path / "legacy.db"
    shutil.copy(FIXTURE, copy)
    return f"sqlite:///{copy}"


def test_a_store_written_before_the_record_reads_through_it(legacy_url: str) -> None:
    study = load_study("legacy-main", legacy_url)
    record = read_study(study)
    assert record.version == 1 and record.created_by_sweep
    assert record.label_names == ["account", "billing", "product", "returns", "shipping"]
    assert record.metric == "f1_macro" and record.steps_per_epoch == 2 and record.budget == 4
    assert record.spec["name"] == "legacy-main" and record.search_space["batch_size"] == [32, 64]
    assert record.data_fingerprint and record.data_report["num_train"] > 0
    trials = [read_trial(t) for t in study.trials]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    for t in trials:
        assert t.seed == t.number and t.worker and t.hyperparameters["batch_size"] in (32, 64)
        assert t.best_epoch is not None and t.history and t.metrics["val_f1_macro"] >= 0
        assert t.timings is not None and t.timings.total > 0 and t.timings.train_examples > 0
        assert len(t.validation_wall_times) == t.evaluations
        assert set(t.per_class) == set(record.label_names)
    assert trials[3].pruned_at_epoch is not None and trials[0].checkpoint == "trial-00000"
    # Trials 0 and 1 tie: the earlier one ranks first, wherever the ranking is asked for.
    assert study.trials[0].value == study.trials[1].value
    best = best_trial(study)
    assert best is not None and best.number == 0


def test_status_and_report_read_an_old_store(legacy_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["status", "legacy-main", "--storage", legacy_url]) == 0
    out = capsys.readouterr().out
    assert "best trial 0" in out and "f1_macro" in out
    report = tmp_path / "r.html"
    assert main(["report", "legacy-main", "--storage", legacy_url, "--out", str(report)]) == 0
    assert "legacy-main" in report.read_text(encoding="utf-8")


def test_a_record_from_a_newer_sweep_is_refused(legacy_url: str, capsys: pytest.CaptureFixture) -> None:
    path = legacy_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, 'record_version', '99')")
    assert main(["status", "legacy-main", "--storage", legacy_url]) == 2
    err = capsys.readouterr().err
    assert "record version 99" in err and f"reads up to {RECORD_VERSION}" in err and "upgrade sweep" in err
    with pytest.raises(RecordError, match="not a positive integer"):
        study_from_attrs({"record_version": "one"})


def test_new_studies_carry_the_current_version() -> None:
    attrs = study_attrs(StudyRecord(spec={"name": "x"}, data_fingerprint="abc", metric="f1_macro", budget=5))
    assert attrs["record_version"] == RECORD_VERSION and attrs["n_trials"] == 5
    back = study_from_attrs(attrs)
    assert back.created_by_sweep and back.budget == 5 and back.metric == "f1_macro"


def _trial(number: int, value: float | None, state: TrialState = TrialState.COMPLETE, **attrs: object):
    trial = create_trial(
        value=value if state == TrialState.COMPLETE else None,
        state=state,
        params={"lr": 0.1},
        distributions={"lr": FloatDistribution(0.0, 1.0)},
        user_attrs=trial_attrs(**attrs),
        intermediate_values={1: 0.3, 2: 0.5} if state == TrialState.PRUNED else None,
    )
    trial.number = number
    return trial


def test_one_ranking_direction_aware_and_safe() -> None:
    # Optuna stores no NaN for a complete trial (it fails the trial), but +-inf it does.
    trials = [_trial(0, 0.5), _trial(1, -math.inf), _trial(2, 0.7), _trial(3, 0.7), _trial(4, math.inf),
              _trial(5, None, TrialState.PRUNED), _trial(6, 0.1)]  # fmt: skip
    assert [t.number for t in ranked(trials)] == [2, 3, 0, 6]  # ties: the earlier trial first; inf left out
    assert [t.number for t in ranked(trials, maximize=False)] == [6, 0, 2, 3]

    for direction, expected in (("maximize", 2), ("minimize", 6)):
        study = optuna.create_study(direction=direction)
        for t in trials:
            study.add_trial(t)
        best = best_trial(study)
        assert best is not None and best.number == study.trials[expected].number
    assert reported_value(trials[5]) == 0.5 and reported_value(trials[5], maximize=False) == 0.3


def test_enters_top_respects_direction_and_ties() -> None:
    study = optuna.create_study(direction="minimize")
    for number, value in enumerate((0.3, 0.1, 0.2)):
        study.add_trial(_trial(number, value))
    assert enters_top(study, 0.15, keep=2) and not enters_top(study, 0.2, keep=2)  # a tie loses to the earlier
    assert not enters_top(study, 0.05, keep=0) and not enters_top(study, math.nan, keep=5)
    assert enters_top(study, 0.9, keep=4)  # fewer than k completed: anything enters


def test_trial_writer_round_trip() -> None:
    attrs: dict[str, object] = {}
    writer = TrialWriter(attrs.__setitem__)
    writer.start(worker="h:1", seed=7, hyperparameters={"epochs": 3, "batch_size": 8}, data_fingerprint="fp",
                 inherited={"error": "old", "stopped_by": "SIGTERM"})  # fmt: skip
    assert attrs["error"] is None and attrs["stopped_by"] is None  # a retry does not keep its original's outcome
    history = [{"epoch": 0, "step": 1, "val_f1_macro": 0.4}, {"epoch": 1, "step": 2, "val_f1_macro": 0.6}]
    writer.result(TrialResult(best_epoch=2, best_epochs_trained=2, epochs_run=2, evaluations=2,
                              metrics=history[1], per_class={"a": {"f1": 0.6}}, confusion_matrix=[[1, 0], [0, 1]],
                              history=history))  # fmt: skip
    writer.checkpoint("trial-00004", 2)
    writer.timings(Timings(train=1.5, total=2.0, train_examples=64), [10.12345, 11.0])
    writer.pruned(None)
    trial = create_trial(value=0.6, params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.0, 1.0)},
                         user_attrs=attrs)  # fmt: skip
    record = read_trial(trial)
    assert record.seed == 7 and record.worker == "h:1" and record.best_epoch == 2 and record.planned_epochs == 3
    assert record.history == history and record.confusion_matrix == [[1, 0], [0, 1]]
    assert record.checkpoint == "trial-00004" and record.checkpoint_epoch == 2
    assert record.timings == Timings(train=1.5, total=2.0, train_examples=64)
    assert record.validation_wall_times == [10.123, 11.0]
    assert record.all_hyperparameters == {"epochs": 3, "batch_size": 8, "lr": 0.1}
    writer.stopped("SIGTERM", "stopped by SIGTERM after 1.0 s")
    assert read_trial(create_trial(state=TrialState.FAIL, user_attrs=attrs)).failure.startswith("stopped by")


def test_trial_attrs_names_unknown_fields() -> None:
    with pytest.raises(TypeError, match=r"not trial record fields: \['best_epok'\]"):
        trial_attrs(best_epok=1)


def test_private_optuna_helpers(tmp_path: Path) -> None:
    """The few calls Optuna has no public API for still do what we rely on (they would break on an upgrade)."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    running = study.ask()
    assert stored_trial(running).system_attrs == {} and stored_trial(running).number == running.number
    frozen = study.get_trials(states=(TrialState.RUNNING,))[0]
    set_trial_attr(study, frozen, "error", "lost")
    assert read_trial(reread(study, frozen)).error == "lost"


def test_run_refuses_a_study_written_by_a_newer_sweep(
    legacy_url: str, tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture
) -> None:
    """`sweep run` reads an existing study's record before anything else: a newer one is one line, exit 2."""
    import yaml

    path = legacy_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, 'record_version', '7')")
    before = Path(path).read_bytes()
    tickets = Path(__file__).resolve().parents[1] / "data" / "quickstart" / "support_tickets.csv"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "legacy-main", "storage": legacy_url, "data": {"train": str(tickets)},
                                    "model": {"encoder": str(tiny_bert), "max_length": 32}}))  # fmt: skip
    assert main(["run", str(spec)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "'legacy-main'" in lines[0] and "record version 7" in lines[0]
    assert Path(path).read_bytes() == before


def test_the_best_epoch_reads_the_same_everywhere_inside_epoch_1_too() -> None:
    """The report said "best epoch 1 of 1 run" where the command line said 0.68/1 (weights from inside epoch 1)."""
    from reports.sections import best_trial_table
    from sweep.summary import best_epoch_text

    trial = optuna.trial.create_trial(
        value=0.5, params={"epochs": 1}, distributions={"epochs": optuna.distributions.IntDistribution(1, 3)},
        user_attrs=trial_attrs(best_epoch=1, best_epochs_trained=0.6771, epochs_run=1.0),
    )  # fmt: skip
    record = read_trial(trial)
    assert record.best_at == "0.68" and best_epoch_text(record) == "0.68/1"
    assert dict(best_trial_table(trial, "f1_macro").rows)["best epoch"] == "0.68 of 1 run"
    whole = read_trial(optuna.trial.create_trial(value=0.5, user_attrs=trial_attrs(best_epoch=2)))
    assert whole.best_at == "2" and read_trial(optuna.trial.create_trial(value=0.5)).best_at is None


def test_a_metric_reads_with_the_same_digits_in_the_report_as_on_the_command_line() -> None:
    """The report gave 4 significant digits (1.235, 0.05123) where status and the card give 4 decimals (1.2346,
    0.0512); hyperparameters keep 4 significant digits."""
    from reports.blocks import Score, format_value
    from reports.page import render_table
    from reports.sections import best_trial_table

    trial = optuna.trial.create_trial(
        value=1.23456, params={"learning_rate": 3.14159e-5},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-4, log=True)},
    )  # fmt: skip
    table = best_trial_table(trial, "rmse")
    assert format_value(dict(table.rows)["validation rmse"]) == f"{trial.value:.4f}" == "1.2346"
    assert format_value(dict(table.rows)["hyperparameter: learning_rate"]) == "3.14e-05"
    assert format_value(Score(0.05123)) == "0.0512" and format_value(0.05123) == "0.05123"
    assert format_value(Score(0.97)) == "0.9700" and format_value(Score(float("nan"))) == "nan"
    assert '<td class="num">1.2346</td>' in render_table(table)
