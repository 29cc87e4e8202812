"""search.prune_after_epochs: the median and percentile pruners stop no trial before it has trained that much. A spec
that names no value gets 0.5 with those pruners (0 with the others); a study stored without the key ran with 0 and is
continued, by a worker or a re-run, as it ran."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from pydantic import ValidationError

from sweep.lifecycle import make_pruner, warmup_steps
from sweep.spec import SearchSpec, Spec


@pytest.mark.parametrize(
    ("evals", "after", "steps"),
    [(2, 0.0, 0), (2, 1 / 3, 1), (2, 0.5, 2), (2, 2 / 3, 2), (2, 1.0, 3), (2, 2.0, 6), (0, 0.5, 1), (0, 1.0, 1)],
)
def test_the_warm_up_is_the_first_step_with_that_much_training(evals: int, after: float, steps: int) -> None:
    # Steps count 1 / (first_epoch_evals + 1) of an epoch: with 2, steps 1 and 2 are a third and two thirds in.
    assert warmup_steps(SearchSpec(first_epoch_evals=evals, prune_after_epochs=after)) == steps


@pytest.mark.parametrize("pruner", ["median", "percentile"])
def test_no_trial_is_pruned_before_the_warm_up(pruner: str) -> None:
    study = optuna.create_study(direction="maximize",
                                pruner=make_pruner(SearchSpec(pruner=pruner, prune_after_epochs=0.5)))  # fmt: skip
    for value in (0.8, 0.85, 0.9):
        study.add_trial(create_trial(value=value, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                     intermediate_values={1: value, 2: value, 3: value}))  # fmt: skip
    trial = study.ask()
    trial.report(0.1, 1)  # a third into epoch 1, far below the others: kept, it has trained only 1/3 epoch
    assert not trial.should_prune()
    trial.report(0.1, 2)  # two thirds in: now the median rule acts
    assert trial.should_prune()
    assert SearchSpec(pruner=pruner).prune_after_epochs == 0.5, "the default: half an epoch"
    eager = optuna.create_study(direction="maximize",
                                pruner=make_pruner(SearchSpec(pruner=pruner, prune_after_epochs=0)))  # fmt: skip
    for frozen in study.get_trials(states=(TrialState.COMPLETE,)):
        eager.add_trial(frozen)
    first = eager.ask()
    first.report(0.1, 1)
    assert first.should_prune()  # 0: from the first evaluation on


def test_other_pruners_and_negative_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="prune_after_epochs applies to the median and percentile pruners"):
        SearchSpec(pruner="hyperband", prune_after_epochs=1.0)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        SearchSpec(prune_after_epochs=-0.5)
    # Without the key, the pruners with their own first rung (and none) get no warm-up: nothing to refuse.
    for pruner in ("hyperband", "successive_halving", "none"):
        assert SearchSpec(pruner=pruner).prune_after_epochs == 0


def test_zero_keeps_the_spec_and_fingerprint_of_studies_made_before_the_key() -> None:
    base = {"name": "s", "data": {"train": "t.csv"}, "model": {"encoder": "e"}}
    default = Spec.model_validate(base)
    zero = Spec.model_validate({**base, "search": {"prune_after_epochs": 0}})
    half = Spec.model_validate({**base, "search": {"prune_after_epochs": 0.5}})
    # 0 is left out of the stored spec and the fingerprint, as studies made before the key were stored
    assert "prune_after_epochs" not in zero.model_dump(mode="json")["search"]
    assert default.fingerprint() == half.fingerprint() != zero.fingerprint()
    assert default.model_dump(mode="json")["search"]["prune_after_epochs"] == 0.5
    hyperband = Spec.model_validate({**base, "search": {"pruner": "hyperband"}})
    assert "prune_after_epochs" not in hyperband.model_dump(mode="json")["search"], "its fingerprint is unchanged"


def test_a_study_stored_without_the_key_continues_as_it_ran() -> None:
    from record import StudyRecord, study_from_attrs, write_study
    from sweep.errors import SweepError
    from sweep.lifecycle import check_same_spec
    from sweep.spec import parse_spec

    base = {"name": "old", "data": {"train": "t.csv"}, "model": {"encoder": "e"}}
    ran = Spec.model_validate({**base, "search": {"prune_after_epochs": 0}})  # how studies ran before the key
    attrs: dict[str, Any] = {}
    write_study(attrs.__setitem__, StudyRecord(spec=ran.model_dump(mode="json"), spec_fingerprint=ran.fingerprint()))
    record = study_from_attrs(attrs)
    # A worker rebuilds the pruner from the stored spec: the warm-up it ran with, not today's default.
    rebuilt = parse_spec(record.spec_as_it_ran, source="study old")
    assert "prune_after_epochs" not in record.spec["search"]  # as stored: what a new spec is compared with
    assert rebuilt.search.prune_after_epochs == 0 and rebuilt.fingerprint() == record.spec_fingerprint
    assert warmup_steps(rebuilt.search) == 0
    check_same_spec(record, Spec.model_validate({**base, "search": {"prune_after_epochs": 0}}), "sqlite:///s.db")
    # Re-running the original spec file (no key) now means 0.5: refused in one line that says what to add.
    with pytest.raises(SweepError) as exc:
        check_same_spec(record, Spec.model_validate(base), "sqlite:///s.db")
    (problem,) = exc.value.problems
    assert "changed: search.prune_after_epochs" in problem[1]
    assert "add `prune_after_epochs: 0` under search to continue it as it ran" in problem[1]


def test_a_changed_pruner_is_named_alone_when_the_warm_up_only_followed_it() -> None:
    from record import StudyRecord, study_from_attrs, write_study
    from sweep.errors import SweepError
    from sweep.lifecycle import check_same_spec

    base = {"name": "s", "data": {"train": "t.csv"}, "model": {"encoder": "e"}}
    ran = Spec.model_validate({**base, "search": {"pruner": "median"}})
    attrs: dict[str, Any] = {}
    write_study(attrs.__setitem__, StudyRecord(spec=ran.model_dump(mode="json"), spec_fingerprint=ran.fingerprint()))
    with pytest.raises(SweepError) as exc:
        check_same_spec(study_from_attrs(attrs), Spec.model_validate({**base, "search": {"pruner": "hyperband"}}), "x")
    assert '(changed: search.pruner "median" -> "hyperband")' in exc.value.problems[0][1]
