"""A trial's time split (record.Timings): training steps, validation forward passes and overhead add up to the trial's
wall time, and work outside the steps (here a deliberately slow metric computation) lands in the overhead."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import quickstart_subset, split_per_class, write_csv
from optuna.trial import TrialState
from rich.console import Console

import models.classifier
from record import Timings, read_trial
from reports.blocks import TableBlock
from reports.sections import summary_blocks
from reports.trials import describe_time_split, time_split
from sweep.runner import run_study
from sweep.summary import best_summary

SLOW = 0.5  # seconds the patched metric computation sleeps per evaluation


def one_trial_spec(tmp_path: Path, encoder: Path) -> Path:
    train, val = split_per_class(quickstart_subset(16, seed=4, n_classes=3), 4)
    spec = {
        "name": "timings",
        "storage": f"sqlite:///{tmp_path / 'sweeps.db'}",
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "data": {"train": str(write_csv(tmp_path / "train.csv", train)),
                 "validation": str(write_csv(tmp_path / "val.csv", val)), "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(encoder), "max_length": 32},
        "search": {"n_trials": 1, "sampler": "random", "pruner": "none", "first_epoch_evals": 2, "keep_checkpoints": 1,
                   "space": {"learning_rate": 1e-3, "batch_size": 8, "epochs": 1}},
    }  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_slow_metrics_count_as_overhead_and_the_parts_add_up(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = models.classifier.classification_metrics

    def slow_metrics(*args: Any, **kwargs: Any) -> Any:
        time.sleep(SLOW)
        return real(*args, **kwargs)

    monkeypatch.setattr(models.classifier, "classification_metrics", slow_metrics)
    study = run_study(one_trial_spec(tmp_path, tiny_bert)).study
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE
    record = read_trial(trial)
    t = record.timings
    assert t is not None and t.train_steps is not None and t.validation_forward is not None
    evaluations = record.evaluations
    assert evaluations == 3  # 1/3, 2/3 and the end of the one epoch

    # The three parts are the trial's wall time; the measured ones fit inside their loops and inside the total.
    assert t.overhead is not None and t.overhead_share is not None
    assert t.train_steps + t.validation_forward + t.overhead == pytest.approx(t.total, abs=1e-6)
    assert 0 < t.train_steps <= t.train and 0 < t.validation_forward <= t.validation
    assert t.train + t.validation + t.data + t.model_load + t.checkpoint <= t.total + 0.003  # each rounded to 1 ms
    wall = (trial.datetime_complete - trial.datetime_start).total_seconds()  # type: ignore[operator]
    assert t.total <= wall + 0.05 and wall - t.total < 2.0 + 0.1 * wall  # only the last storage writes are outside
    parts = t.overhead_parts()
    assert parts is not None and sum(parts.values()) == pytest.approx(t.overhead, abs=1e-6)
    assert all(v >= 0 for v in parts.values())

    # The slow metric computation is overhead (the evaluation loop around its forward passes), not validation.
    assert t.validation_forward < evaluations * SLOW  # had the sleeps landed there, it would be at least this
    assert parts["evaluation_loop"] >= evaluations * SLOW
    assert t.overhead >= evaluations * SLOW and t.overhead_share > evaluations * SLOW / t.total - 1e-9
    assert t.validation >= t.validation_forward + evaluations * SLOW  # the evaluation loop still holds it

    # The stored form carries the overhead for readers outside this class.
    stored = t.as_dict()
    assert stored["overhead"] == pytest.approx(t.overhead, abs=1e-3)
    assert Timings.from_dict(stored) == t

    # Shown where timings are shown: the report's study summary and `sweep status`.
    split = time_split(study)
    assert split is not None and split.trials == 1 and split.overhead == pytest.approx(t.overhead)
    line = describe_time_split(split)
    assert f"{t.overhead_share:.1%} overhead" in line and "metrics, best-weights copy and pruner" in line
    rows = {row[0]: row[1] for block in summary_blocks(study) if isinstance(block, TableBlock) for row in block.rows}
    assert rows["where trial time went"] == line
    console = Console(record=True, width=400)
    console.print(best_summary(study))
    assert f"trial time (1 finished trial): {line}" in console.export_text()


def test_timings_recorded_before_the_split_have_no_overhead() -> None:
    old = Timings.from_dict({"data": 0.1, "model_load": 0.5, "train": 8.0, "validation": 1.0, "checkpoint": 0.2,
                             "total": 10.0, "train_examples": 96})  # fmt: skip
    assert old.train_steps is None and old.overhead is None and old.overhead_share is None
    assert old.overhead_parts() is None
    assert "overhead" not in old.as_dict()
    new = Timings(data=0.1, model_load=0.5, train=8.0, validation=1.0, checkpoint=0.2, total=10.0,
                  train_steps=7.5, validation_forward=0.8)  # fmt: skip
    assert new.overhead == pytest.approx(1.7) and new.overhead_share == pytest.approx(0.17)
    assert new.overhead_parts() == pytest.approx(
        {"data": 0.1, "model_load": 0.5, "train_loop": 0.5, "evaluation_loop": 0.2, "checkpoint": 0.2, "other": 0.2}
    )


def test_the_overhead_parts_add_up_and_a_part_named_with_commas_stays_one_part() -> None:
    """A user read "1.7% overhead (0.8% checkpoint writes, 0.5% metrics, best-weights copy and pruner around
    validation)" as four parts that did not add up to 1.7."""
    from reports.trials import TimeSplit

    split = TimeSplit(total=100.0, train_steps=88.0, validation_forward=10.3, overhead=1.7, trials=2,
                      parts={"checkpoint": 0.8, "evaluation_loop": 0.5, "train_loop": 0.3, "other": 0.1})  # fmt: skip
    assert describe_time_split(split) == (
        "88.0% training steps, 10.3% validation forward passes, 1.7% overhead (0.8% checkpoint writes; 0.5% metrics, "
        "best-weights copy and pruner around validation; 0.4% the rest)"
    )
    whole = TimeSplit(total=100.0, train_steps=90.0, validation_forward=8.7, overhead=1.3, trials=1,
                      parts={"checkpoint": 0.8, "evaluation_loop": 0.5})  # fmt: skip
    assert describe_time_split(whole).endswith("1.3% overhead (0.8% checkpoint writes; 0.5% metrics, best-weights "
                                               "copy and pruner around validation)")
