"""The search space: Optuna suggestions, fixed values, grids."""

from __future__ import annotations

import optuna
import pytest

from sweep.space import fixed, grid, grid_size, searched, suggest
from sweep.spec import parse_spec


def space_of(space: dict):
    return parse_spec({"name": "x", "data": {"train": "a.csv"}, "search": {"space": space}}).search.space


def test_fixed_values_are_not_searched() -> None:
    space = space_of({"learning_rate": 3e-5, "batch_size": [16], "epochs": {"low": 1, "high": 3}})
    assert set(searched(space)) == {"epochs"}
    assert fixed(space)["learning_rate"] == 3e-5 and fixed(space)["batch_size"] == 16
    hp = suggest(optuna.trial.FixedTrial({"epochs": 2}), space)
    assert (hp.learning_rate, hp.batch_size, hp.epochs) == (3e-5, 16, 2)
    assert hp.weight_decay == 0.01  # default when the spec leaves it out


def test_suggestions_follow_types_and_bounds() -> None:
    space = space_of(
        {
            "learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
            "batch_size": [16, 32],
            "epochs": {"low": 2, "high": 4},
            "weight_decay": {"low": 0.0, "high": 0.1},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    for _ in range(20):
        trial = study.ask()
        hp = suggest(trial, space)
        assert 1e-5 <= hp.learning_rate <= 1e-4
        assert hp.batch_size in (16, 32) and isinstance(hp.batch_size, int)
        assert 2 <= hp.epochs <= 4 and isinstance(hp.epochs, int)
        assert 0.0 <= hp.weight_decay <= 0.1
        study.tell(trial, 0.0)
    dists = study.trials[0].distributions
    assert isinstance(dists["learning_rate"], optuna.distributions.FloatDistribution) and dists["learning_rate"].log
    assert isinstance(dists["epochs"], optuna.distributions.IntDistribution)
    assert isinstance(dists["batch_size"], optuna.distributions.CategoricalDistribution)
    assert set(study.trials[0].params) == {"learning_rate", "batch_size", "epochs", "weight_decay"}


def test_grid() -> None:
    space = space_of(
        {
            "learning_rate": [1e-5, 3e-5],
            "epochs": {"low": 1, "high": 3},
            "warmup_ratio": {"low": 0.0, "high": 0.1, "step": 0.05},
        }
    )
    g = grid(space)
    assert g["learning_rate"] == [1e-5, 3e-5]
    assert g["epochs"] == [1, 2, 3]
    assert g["warmup_ratio"] == pytest.approx([0.0, 0.05, 0.1])
    assert grid_size(space) == 18
