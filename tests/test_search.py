"""Tests that would catch a broken sweep: the real pruners and samplers, a broken setup stopping the study, and
studies (or workers) refusing data that changed under them.

Pruners are driven by a scripted learning curve through our own callbacks (EvaluationSchedule + PruningCallback) on
a real Lightning Trainer: the model is a single weight, the validation metric is whatever the script says at that
Optuna step. Samplers and the rest run real sweeps on the tiny BERT.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import pytorch_lightning as pl
import torch
import yaml
from conftest import quickstart_subset, split_per_class, write_csv
from optuna.trial import TrialState
from torch.utils.data import DataLoader

import sweep.objective
from record import read_trial
from sweep.callbacks import EvaluationSchedule, PruningCallback
from sweep.cli import main
from sweep.lifecycle import make_pruner, make_sampler
from sweep.runner import run_study
from sweep.space import suggest
from sweep.spec import SearchSpec
from sweep.study_callbacks import MAX_CONSECUTIVE_FAILURES

Curve = Callable[[int], float]
EPOCHS, EVALS_IN_FIRST_EPOCH = 3, 2  # Optuna steps 1, 2, 3 (end of epoch 1), 6, 9
LAST_STEP = EPOCHS * (EVALS_IN_FIRST_EPOCH + 1)


# ---------------------------------------------------------------- pruners, on a scripted learning curve


class ScriptedCurve(pl.LightningModule):
    """Trains one weight on 3 batches per epoch; each validation logs `curve(step)` at the schedule's Optuna step."""

    def __init__(self, curve: Curve, schedule: EvaluationSchedule):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.curve, self.schedule = curve, schedule

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return (self.weight * batch).pow(2).sum()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_f1_macro", self.curve(self.schedule.step))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def run_scripted_trial(study: optuna.Study, curve: Curve) -> tuple[TrialState, list[int]]:
    """One trial of `study`: train on the scripted curve with our pruning callback; returns its state and steps."""
    trial = study.ask()
    reported: dict[int, float] = {}

    def report(value: float, step: int) -> None:
        reported[step] = value
        trial.report(value, step)

    schedule = EvaluationSchedule(EVALS_IN_FIRST_EPOCH)
    pruning = PruningCallback("val_f1_macro", report=report, should_prune=trial.should_prune, schedule=schedule)
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[schedule, pruning],
    )
    data = torch.ones(3, 1)
    trainer.fit(ScriptedCurve(curve, schedule), DataLoader(data, batch_size=1), DataLoader(data[:1], batch_size=1))
    assert reported == {step: pytest.approx(curve(step)) for step in reported}
    if pruning.pruned_at is not None:
        if pruning.pruned_at < LAST_STEP:
            assert trainer.global_step < EPOCHS * 3, "a trial pruned before its last evaluation must stop training"
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, max(reported.values()))
    frozen = study.trials[trial.number]
    assert frozen.intermediate_values == reported
    return frozen.state, sorted(reported)


def good(rank: int) -> Curve:
    """A learning curve that rises with the step; a higher `rank` is better at every step than a lower one."""
    return lambda step: 0.5 + 0.01 * rank + 0.03 * step


def bad(step: int) -> float:
    return 0.1


def pruner_study(name: str) -> optuna.Study:
    search = SearchSpec(
        pruner=name, first_epoch_evals=EVALS_IN_FIRST_EPOCH, space={"epochs": {"low": 1, "high": EPOCHS}}
    )
    return optuna.create_study(study_name=f"pruner-{name}", direction="maximize", pruner=make_pruner(search))


@pytest.fixture(autouse=True)
def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.mark.parametrize("name", ["median", "percentile", "successive_halving"])
def test_pruner_stops_a_bad_trial_at_its_first_allowed_evaluation(name: str) -> None:
    study = pruner_study(name)
    # median and percentile wait for 3 finished trials (n_startup_trials=3), and with sweep's default warm-up
    # (prune_after_epochs 1.0) for the evaluation at the end of the first epoch; successive halving prunes a trial
    # that is not the best of those that reached the same rung (fewer than reduction_factor trials there so far), from
    # its first evaluation on.
    for rank in range(3):
        assert run_scripted_trial(study, good(rank)) == (TrialState.COMPLETE, [1, 2, 3, 6, 9])
    stopped = [1] if name == "successive_halving" else [1, 2, 3]  # a third into its first epoch, or at its end
    assert run_scripted_trial(study, bad) == (TrialState.PRUNED, stopped)
    assert run_scripted_trial(study, good(3)) == (TrialState.COMPLETE, [1, 2, 3, 6, 9])


def test_hyperband_prunes_bad_trials_by_bracket() -> None:
    """Hyperband (min_resource 1, max_resource 9 steps, reduction factor 3) runs three successive-halving brackets
    whose first rungs sit at step 1, 3 and 9. A trial's bracket is fixed by a hash of study name and trial number
    (crc32: the same on every machine), and only trials of one bracket compete, so 9 good trials go first and every
    bracket has some. Here bad trials 9-14 fall in brackets 1, 2, 1, 2, 0, 0."""
    study = pruner_study("hyperband")
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    for rank in range(9):
        assert run_scripted_trial(study, good(rank)) == (TrialState.COMPLETE, [1, 2, 3, 6, 9])
    outcomes = [run_scripted_trial(study, bad) for _ in range(6)]
    early = [(state, steps) for state, steps in outcomes if steps[-1] < LAST_STEP]
    # Stopped at their bracket's first rung: a third into the first epoch (bracket 0) or at its end (bracket 1).
    assert early == [(TrialState.PRUNED, [1, 2, 3])] * 2 + [(TrialState.PRUNED, [1])] * 2, outcomes
    # The others sit in the bracket whose first rung is the last step: they ran every evaluation. (Whether a trial
    # may still be pruned at its last evaluation is the objective's rule, not the pruner's; not asserted here.)
    assert [steps for _, steps in outcomes if steps[-1] == LAST_STEP] == [[1, 2, 3, 6, 9]] * 2, outcomes


def test_no_pruner_never_prunes() -> None:
    study = pruner_study("none")
    for rank in range(3):
        run_scripted_trial(study, good(rank))
    assert run_scripted_trial(study, bad) == (TrialState.COMPLETE, [1, 2, 3, 6, 9])


# ---------------------------------------------------------------- samplers, two-trial studies on the tiny BERT

SAMPLER_CLASSES = {
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": optuna.samplers.GridSampler,
}


@pytest.fixture(scope="module")
def small_csvs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 quickstart classes, 12 train + 4 validation tickets each: a one-epoch trial takes about a second."""
    root = tmp_path_factory.mktemp("small-data")
    train, val = split_per_class(quickstart_subset(16, seed=4, n_classes=3), 4)
    return write_csv(root / "train.csv", train), write_csv(root / "val.csv", val)


def write_spec(tmp_path: Path, csvs: tuple[Path, Path], encoder: Path, **search: Any) -> Path:
    spec = {
        "name": "search",
        "storage": f"sqlite:///{tmp_path / 'sweeps.db'}",
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "data": {"train": str(csvs[0]), "validation": str(csvs[1]), "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(encoder), "max_length": 32},
        "search": {
            "n_trials": 2,
            "sampler": "random",
            "pruner": "none",
            "first_epoch_evals": 0,
            "keep_checkpoints": 0,
            "space": {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "batch_size": [8, 16], "epochs": 1},
            **search,
        },
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("sampler", sorted(SAMPLER_CLASSES))
def test_each_sampler_runs_a_two_trial_study(
    sampler: str, tmp_path: Path, tiny_bert: Path, small_csvs: tuple[Path, Path]
) -> None:
    extra: dict[str, Any] = {"sampler": sampler}
    if sampler == "grid":  # a grid needs a finite space
        extra["space"] = {"learning_rate": [1e-3, 5e-3], "batch_size": [8, 16], "epochs": 1}
    study = run_study(write_spec(tmp_path, small_csvs, tiny_bert, **extra)).study
    assert type(study.sampler) is SAMPLER_CLASSES[sampler]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [read_trial(t).error for t in trials]
    assert all(0.0 <= t.value <= 1.0 for t in trials)  # type: ignore[operator]
    assert trials[0].params != trials[1].params  # the sampler drew two configurations, not one twice
    if sampler == "grid":
        lrs = {t.params["learning_rate"] for t in trials}
        assert lrs <= {1e-3, 5e-3} and {t.params["batch_size"] for t in trials} <= {8, 16}
    else:
        assert all(1e-4 <= t.params["learning_rate"] <= 1e-2 for t in trials)


def test_gp_sampler_fits_its_model_after_the_random_start() -> None:
    """GPSampler draws its first 10 trials at random; the 11th and 12th need its Gaussian process (torch + scipy).
    A missing optional dependency fails here, it is not skipped."""
    search = SearchSpec(sampler="gp", space={"learning_rate": {"low": 1e-5, "high": 1e-2, "log": True}, "epochs": 1})
    study = optuna.create_study(direction="maximize", sampler=make_sampler(search))
    space = search.space

    def objective(trial: optuna.Trial) -> float:
        hp = suggest(trial, space)
        return -((torch.tensor(hp.learning_rate).log10().item() + 3.0) ** 2)  # best at lr 1e-3

    study.optimize(objective, n_trials=12)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 12
    assert study.trials[10].params != study.trials[11].params


# ---------------------------------------------------------------- a broken setup stops the study


def test_three_failures_in_a_row_stop_the_study(
    tmp_path: Path, tiny_bert: Path, small_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tokenizer and model disagree (simulated)")

    monkeypatch.setattr(sweep.objective, "train_trial", broken)
    spec = write_spec(tmp_path, small_csvs, tiny_bert, n_trials=10)
    assert main(["run", str(spec)]) == 1
    assert "stopped: three trials in a row failed" in capsys.readouterr().err
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'sweeps.db'}")
    assert MAX_CONSECUTIVE_FAILURES == 3
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3  # not 10: the fourth is never started
    assert {read_trial(t).error for t in study.trials} == {"RuntimeError: tokenizer and model disagree (simulated)"}


def test_failures_that_are_not_in_a_row_do_not_stop_it(
    tmp_path: Path, tiny_bert: Path, small_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sweep.objective.train_trial

    def every_third_works(hp, data, settings, *, seed, callbacks):  # type: ignore[no-untyped-def]
        if seed % 3 != 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(hp, data, settings, seed=seed, callbacks=callbacks)

    monkeypatch.setattr(sweep.objective, "train_trial", every_third_works)
    result = run_study(write_spec(tmp_path, small_csvs, tiny_bert, n_trials=2))
    states = [t.state for t in result.study.trials]
    fail, done = TrialState.FAIL, TrialState.COMPLETE
    assert states == [fail, fail, done, fail, fail, done] and not result.failures_in_a_row


# ---------------------------------------------------------------- data that changed under a study


def edit_first_row(path: Path) -> None:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    rows[1][0] = rows[1][0] + " please"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def store_state(url: str) -> list[tuple[str, int, dict[str, Any]]]:
    return [(s.study_name, s.n_trials, s.user_attrs) for s in optuna.get_all_study_summaries(url)]


def files_under(root: Path, skip: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p != skip}


def copy_csvs(tmp_path: Path, csvs: tuple[Path, Path]) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    return tuple(Path(write_csv(data / p.name, list(csv.reader(p.open(encoding="utf-8")))[1:])) for p in csvs)  # type: ignore[return-value]


def test_resuming_a_study_whose_data_changed_is_refused(
    tmp_path: Path, tiny_bert: Path, small_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    csvs = copy_csvs(tmp_path, small_csvs)
    spec = write_spec(tmp_path, csvs, tiny_bert, n_trials=1)
    assert main(["run", str(spec)]) == 0
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    edit_first_row(csvs[0])
    before, files = store_state(url), files_under(tmp_path, tmp_path / "sweeps.db")
    capsys.readouterr()

    assert main(["run", str(spec), "--n-trials", "2"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    assert "data: study 'search' was run on different data (or tokenizer) than" in lines[0]
    assert str(csvs[0]) in lines[0] and "give the spec a new name" in lines[0]
    assert store_state(url) == before
    assert files_under(tmp_path, tmp_path / "sweeps.db") == files


def test_a_worker_whose_data_differs_is_refused(
    tmp_path: Path, tiny_bert: Path, small_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    csvs = copy_csvs(tmp_path, small_csvs)
    spec = write_spec(tmp_path, csvs, tiny_bert, n_trials=2)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert main(["run", str(spec), "--workers", "0"]) == 0  # created, no trial run
    edit_first_row(csvs[0])
    before, files = store_state(url), files_under(tmp_path, tmp_path / "sweeps.db")
    capsys.readouterr()

    assert main(["worker", "search", "--storage", url, "--spec", str(spec)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    assert f"data: the data on this machine ({csvs[0]}) differs from the data study 'search' was created" in lines[0]
    assert store_state(url) == before
    assert files_under(tmp_path, tmp_path / "sweeps.db") == files  # no cache entry for the other data


def test_first_epoch_evaluations_land_after_an_optimizer_step_when_batches_are_summed() -> None:
    """With 8 batches per step, the third-of-an-epoch point of 12 batches (batch 4) would score weights no step had
    touched: it is dropped; points move to a step's last batch, never between a step's batches."""
    from record.study import evaluation_points

    assert evaluation_points(63, 3) == {21: 1, 42: 2}  # one batch per step: even thirds, as always
    assert evaluation_points(15, 3, accumulate=2) == {4: 1, 10: 2}
    assert evaluation_points(12, 3, accumulate=8) == {8: 2}
    assert evaluation_points(23, 3, accumulate=100) == {}  # no step before the epoch's end: only the end evaluates
