"""search.warm_start: a new study's first trial tries a known-good configuration for the encoder's family, placed inside
the study's space, says so in the output and in the trial's record; the sampler draws the rest."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
from rich.console import Console
from test_runner import write_spec

from record import read_trial
from sweep.runner import run_study
from sweep.spec import RangeParam, SpaceSpec
from sweep.storage import load_study
from sweep.summary import best_epoch_text, trials_table
from sweep.warm_start import encoder_shape, inside, known_good, warm_start


def config_folder(tmp_path: Path, name: str = "encoder", **config: object) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("model_type", "width", "rate"),
    [("bert", 384, 1e-4), ("bert", 768, 5e-5), ("roberta", 768, 2e-5), ("xlm-roberta", 1024, 2e-5),
     ("bert", 1024, 2e-5), ("electra", 256, 1e-4)],
)  # fmt: skip
def test_the_known_good_learning_rate_falls_as_the_encoder_widens(model_type: str, width: int, rate: float) -> None:
    config, source = known_good(model_type, width)
    assert config["learning_rate"] == rate
    assert config["batch_size"] == 16 and config["epochs"] == 3 and config["warmup_ratio"] == 0.06
    assert model_type in source and str(width) in source


def test_the_configuration_is_placed_inside_the_space() -> None:
    assert inside([16, 32], 16) == 16
    assert inside([8, 64], 16) == 8  # nearest on a log scale: 16/8 = 2 < 64/16 = 4
    assert inside([1e-5, 3e-5, 1e-3], 1e-4) == 3e-5
    assert inside(RangeParam(low=1e-5, high=5e-5, log=True), 1e-4) == 5e-5  # clamped
    assert inside(RangeParam(low=2e-4, high=1e-3, log=True), 1e-4) == 2e-4
    assert inside(RangeParam(low=1, high=2), 3) == 2 and isinstance(inside(RangeParam(low=1, high=2), 3), int)
    assert inside(RangeParam(low=2, high=10, step=4), 3) == 2  # onto the step grid (2, 6, 10)
    assert inside(RangeParam(low=0.0, high=0.1, step=0.04), 0.06) == pytest.approx(0.08)


def test_only_searched_parameters_are_queued(tmp_path: Path) -> None:
    folder = config_folder(tmp_path, model_type="bert", hidden_size=384)
    space = SpaceSpec(learning_rate=RangeParam(low=1e-5, high=1e-4, log=True), batch_size=[16, 32],
                      epochs=RangeParam(low=1, high=3), weight_decay=0.0)  # fmt: skip
    warm = warm_start(space, str(folder))
    assert warm is not None
    assert warm.params == {"learning_rate": 1e-4, "batch_size": 16, "epochs": 3}  # weight_decay is fixed, not queued
    assert "bert encoder of width 384" in warm.describe() and "learning_rate=0.0001" in warm.describe()


def test_with_summed_batches_the_recipes_batch_is_per_optimizer_step(tmp_path: Path) -> None:
    """A helper's study summed 8 batches per step and the warm start still tried batch 16: an effective 128."""
    folder = config_folder(tmp_path, model_type="bert", hidden_size=384)
    space = SpaceSpec(learning_rate=RangeParam(low=1e-5, high=1e-4, log=True), batch_size=[2, 4, 8, 16])
    warm = warm_start(space, str(folder), accumulate=8)
    assert warm is not None and warm.params["batch_size"] == 2
    assert "batch 16 per optimizer step, 8 batches summed per step" in warm.describe()
    alone = warm_start(space, str(folder))
    assert alone is not None and alone.params["batch_size"] == 16
    fixed = warm_start(SpaceSpec(learning_rate=RangeParam(low=1e-5, high=1e-4, log=True), batch_size=[16]),
                       str(folder), accumulate=2)  # fmt: skip
    assert fixed is not None and "summed" not in fixed.describe()  # its batch is not the warm start's to choose


def test_no_warm_start_without_a_readable_family(tmp_path: Path) -> None:
    assert encoder_shape(str(config_folder(tmp_path, hidden_size=384))) is None  # no model_type
    assert encoder_shape(str(tmp_path / "missing")) is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json", encoding="utf-8")
    assert warm_start(SpaceSpec(), str(tmp_path / "bad")) is None
    bert = config_folder(tmp_path, "bert", model_type="bert", hidden_size=32)
    assert warm_start(SpaceSpec(), str(bert)) is None  # every parameter fixed: nothing to warm-start
    assert warm_start(SpaceSpec(batch_size=[16, 32]), str(bert)) is not None


SPACE = {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "batch_size": [8, 16],
         "epochs": {"low": 1, "high": 2}, "weight_decay": {"low": 0.0, "high": 0.1}}  # fmt: skip


def run_captured(spec: Path, **kwargs: object) -> tuple[str, object]:
    out = io.StringIO()
    result = run_study(spec, console=Console(file=out, width=200), **kwargs)  # type: ignore[arg-type]
    return out.getvalue(), result


def test_a_new_study_tries_the_known_good_configuration_first(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2, search__warm_start=True, search__space=SPACE)
    output, result = run_captured(spec)
    # The tiny BERT is a bert of width 32: 1e-4 is below the space, so the warm start takes its low end.
    assert "warm start: trial 0 tries learning_rate=0.001, batch_size=16, epochs=2, weight_decay=0.01" in output
    assert "known-good for a bert encoder of width 32" in output and "search.warm_start: false" in output
    study = load_study("trec-tiny", result.storage_url)  # type: ignore[attr-defined]
    first, second = (read_trial(t) for t in study.trials)
    assert first.params == {"learning_rate": 1e-3, "batch_size": 16, "epochs": 2, "weight_decay": 0.01}
    assert first.state == TrialState.COMPLETE and first.warm_start is not None and "bert" in first.warm_start
    assert second.warm_start is None and second.params != first.params  # the sampler's own draw
    assert "trial 0 COMPLETE · warm start" in output
    table = io.StringIO()
    Console(file=table, width=200).print(trials_table(study))
    assert "warm start" in table.getvalue()

    # Resumed with more trials, or with the warm start turned off (not part of the spec's fingerprint): nothing new
    # is queued and nothing is said.
    again, _ = run_captured(
        write_spec(tmp_path, train, val, tiny_bert, search__n_trials=3, search__warm_start=False, search__space=SPACE)
    )
    assert "warm start" not in again.replace("trial 0 COMPLETE · warm start", "")
    trials = load_study("trec-tiny", result.storage_url).trials  # type: ignore[attr-defined]
    assert len(trials) == 3 and [read_trial(t).warm_start is not None for t in trials] == [True, False, False]


def test_warm_start_is_off_by_default_and_said_to_be_skipped_for_grid_search(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    train, val = labelled_csvs
    output, result = run_captured(write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1))
    assert "warm start" not in output
    assert read_trial(load_study("trec-tiny", result.storage_url).trials[0]).warm_start is None  # type: ignore[attr-defined]

    grid = tmp_path / "grid"
    grid.mkdir()
    spec = write_spec(grid, train, val, tiny_bert, name="grid", search__n_trials=1, search__sampler="grid",
                      search__warm_start=True, search__space={"learning_rate": [1e-3, 2e-3], "batch_size": 16,
                                                              "epochs": 1, "weight_decay": 0.0})  # fmt: skip
    output, result = run_captured(spec)
    assert "warm start: none with grid search" in output
    assert read_trial(load_study("grid", result.storage_url).trials[0]).warm_start is None  # type: ignore[attr-defined]


def test_a_trial_pruned_inside_its_first_epoch_shows_how_far_it_got() -> None:
    """The best-epoch column of a trial stopped two thirds into epoch 1 says 0.67, not epoch 1 it never finished."""
    trial = optuna.trial.create_trial(
        state=TrialState.PRUNED, params={"epochs": 4}, distributions={"epochs": IntDistribution(1, 4)}
    )
    inside = dataclasses.replace(read_trial(trial), best_epoch=1, best_epochs_trained=2 / 3)
    assert best_epoch_text(inside) == "0.67/4"
    assert best_epoch_text(dataclasses.replace(inside, best_epoch=2, best_epochs_trained=2.0)) == "2/4"
    assert best_epoch_text(dataclasses.replace(inside, best_epochs_trained=None)) == "1/4"  # a record from before
