"""search.prune_after_epochs: the median and percentile pruners stop no trial before it has trained that much. A spec
that names no value gets 1.0 with those pruners (0 with the others). A study made under an earlier default (0 before
the key existed, then 0.5 with two evaluations inside epoch 1) is continued, by a worker or a re-run of a spec file
that leaves the keys out, as it ran."""

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
    search = SearchSpec(pruner=pruner, first_epoch_evals=2, prune_after_epochs=0.5)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(search))
    for value in (0.8, 0.85, 0.9):
        study.add_trial(create_trial(value=value, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                     intermediate_values={1: value, 2: value, 3: value}))  # fmt: skip
    trial = study.ask()
    trial.report(0.1, 1)  # a third into epoch 1, far below the others: kept, it has trained only 1/3 epoch
    assert not trial.should_prune()
    trial.report(0.1, 2)  # two thirds in: now the median rule acts
    assert trial.should_prune()
    assert SearchSpec(pruner=pruner).prune_after_epochs == 1.0, "the default: the end of epoch 1"
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
    one = Spec.model_validate({**base, "search": {"prune_after_epochs": 1.0}})
    half = Spec.model_validate({**base, "search": {"prune_after_epochs": 0.5}})
    # 0 is left out of the stored spec and the fingerprint, as studies made before the key were stored
    assert "prune_after_epochs" not in zero.model_dump(mode="json")["search"]
    assert default.fingerprint() == one.fingerprint() != zero.fingerprint()
    assert len({default.fingerprint(), half.fingerprint(), zero.fingerprint()}) == 3
    assert default.model_dump(mode="json")["search"]["prune_after_epochs"] == 1.0
    hyperband = Spec.model_validate({**base, "search": {"pruner": "hyperband"}})
    assert "prune_after_epochs" not in hyperband.model_dump(mode="json")["search"], "its fingerprint is unchanged"


def _stored(spec: Spec) -> Any:
    from record import StudyRecord, study_from_attrs, write_study

    attrs: dict[str, Any] = {}
    write_study(attrs.__setitem__, StudyRecord(spec=spec.model_dump(mode="json"), spec_fingerprint=spec.fingerprint()))
    return study_from_attrs(attrs)


def test_a_study_stored_without_the_key_continues_as_it_ran() -> None:
    from sweep.errors import SweepError
    from sweep.lifecycle import check_same_spec, with_past_defaults
    from sweep.spec import parse_spec

    base = {"name": "old", "data": {"train": "t.csv"}, "model": {"encoder": "e"}}
    record = _stored(Spec.model_validate({**base, "search": {"prune_after_epochs": 0}}))  # how studies ran before it
    # A worker rebuilds the pruner from the stored spec: the warm-up it ran with, not today's default.
    rebuilt = parse_spec(record.spec_as_it_ran, source="study old")
    assert "prune_after_epochs" not in record.spec["search"]  # as stored: what a new spec is compared with
    assert rebuilt.search.prune_after_epochs == 0 and rebuilt.fingerprint() == record.spec_fingerprint
    assert warmup_steps(rebuilt.search) == 0
    # Re-running the original spec file (no key, today 1.0) continues it with 0, and says so.
    spec, notes = with_past_defaults(record, Spec.model_validate(base))
    assert spec.search.prune_after_epochs == 0 and spec.fingerprint() == record.spec_fingerprint
    assert notes == ["study 'old' continues with search.prune_after_epochs: 0.0, as it was created (an earlier "
                     "default; today's is 1.0; name the key in the spec to say which)"]  # fmt: skip
    check_same_spec(record, spec, "sqlite:///s.db")
    # A spec that names another value is refused in one line that says what to write.
    named = Spec.model_validate({**base, "search": {"prune_after_epochs": 1.0}})
    assert with_past_defaults(record, named) == (named, [])
    with pytest.raises(SweepError) as exc:
        check_same_spec(record, named, "sqlite:///s.db")
    (problem,) = exc.value.problems
    assert "changed: search.prune_after_epochs" in problem[1]
    assert "add `prune_after_epochs: 0` under search to continue it as it ran" in problem[1]


def test_a_study_made_under_the_half_epoch_default_continues_with_it_and_its_evaluations() -> None:
    from sweep.lifecycle import check_same_spec, make_pruner, with_past_defaults

    base = {"name": "mid", "data": {"train": "t.csv"}, "model": {"encoder": "e"}}
    made = Spec.model_validate({**base, "search": {"prune_after_epochs": 0.5, "first_epoch_evals": 2}})
    record = _stored(made)
    spec, notes = with_past_defaults(record, Spec.model_validate(base))
    assert (spec.search.first_epoch_evals, spec.search.prune_after_epochs) == (2, 0.5)
    assert spec.fingerprint() == made.fingerprint() == record.spec_fingerprint
    assert [n.split(":")[0] for n in notes] == ["study 'mid' continues with search.first_epoch_evals",
                                                "study 'mid' continues with search.prune_after_epochs"]  # fmt: skip
    check_same_spec(record, spec, "x")
    assert warmup_steps(spec.search) == 2  # two thirds into epoch 1, as it ran
    assert make_pruner(spec.search)._n_warmup_steps == 2  # type: ignore[attr-defined]
    # Only keys the file leaves out: one it names keeps its value (and the rest still follow the study).
    named = Spec.model_validate({**base, "search": {"first_epoch_evals": 2}})
    spec, notes = with_past_defaults(record, named)
    assert (spec.search.first_epoch_evals, spec.search.prune_after_epochs) == (2, 0.5) and len(notes) == 1
    # A study made with today's defaults takes nothing from the past.
    today = Spec.model_validate(base)
    assert with_past_defaults(_stored(today), today) == (today, [])
    # A value no sweep ever defaulted to is the study's own choice: a file without the key is a changed spec.
    custom = _stored(Spec.model_validate({**base, "search": {"prune_after_epochs": 0.25}}))
    assert with_past_defaults(custom, today) == (today, [])
    # A hyperband study (stored without a warm-up) re-run as median is a changed pruner, not an earlier default.
    rungs = _stored(Spec.model_validate({**base, "search": {"pruner": "hyperband"}}))
    assert with_past_defaults(rungs, today) == (today, [])


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
