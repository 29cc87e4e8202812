"""What to try next: range-edge and budget advice, and per-class results ordered for a user with many classes."""

from __future__ import annotations

import inspect
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from record import StudyRecord, read_study, trial_attrs, write_study
from reports import build_report
from reports.advice import (
    LIMITS,
    STARTUP_TRIALS,
    Choices,
    Limit,
    Range,
    advice_lines,
    budget_advice,
    edge_of,
    format_number,
    range_edges,
    widened,
)
from reports.blocks import FigureBlock, ListBlock, NoteBlock, TableBlock
from reports.classes import MAX_MATRIX_CLASSES, class_blocks, classes_by_f1, confused_pairs, row_shares, shown_label
from reports.figures import ConfusionData, plot_confusion
from sweep.cli import main
from sweep.spec import _RULES

optuna.logging.set_verbosity(optuna.logging.WARNING)

LR = {"low": 5e-5, "high": 3e-4, "log": True, "step": None}
SPACE: dict[str, Any] = {
    "learning_rate": LR,
    "batch_size": [16, 32],
    "epochs": {"low": 2, "high": 4, "log": False, "step": None},
    "weight_decay": {"low": 0.0, "high": 0.1, "log": False, "step": None},
    "warmup_ratio": 0.1,
    "label_smoothing": 0.0,
    "dropout": 0.1,
}


def trials(*lrs: float, **other: Any) -> list[dict[str, Any]]:
    """Ranked params (best first): the given learning rates, everything else in the middle of SPACE."""
    return [{"learning_rate": lr, "batch_size": 16, "epochs": 3, "weight_decay": 0.05, **other} for lr in lrs]


NEW_STUDY = ", in a new study (another spec name: a study keeps its space)"


# --- range edges ----------------------------------------------------------------------------------------------


def test_best_at_the_top_of_a_log_range_says_widen_upwards_with_a_value() -> None:
    (advice,) = range_edges(SPACE, trials(2.9e-4, 2.8e-4, 1e-4))
    assert advice.text == ("learning_rate: best 2.9e-4 is at the top of [5e-5, 3e-4] (2 of the top 3 trials are): "
                           "widen the range upwards, e.g. high: 6e-4"
                           + NEW_STUDY)


def test_log_edges_are_measured_in_log_space() -> None:
    lr = Range(low=1e-5, high=1e-3, log=True)
    assert edge_of(8.0e-4, lr) == "top"  # 95.2% of the way up in log space
    assert edge_of(7.0e-4, lr) is None  # 92.3%: in linear terms it would be 70% of the way, but not an edge either
    assert edge_of(1.2e-5, lr) == "bottom"  # 4.0%
    assert edge_of(1.0e-4, lr) is None  # the middle in log space, 9% of the way in linear terms
    assert edge_of(1.0e-4, Range(low=1e-5, high=1e-3)) is None
    assert edge_of(1.0e-4, Range(low=1e-4, high=1e-1)) == "bottom"


def test_linear_edges_are_within_five_percent_of_the_width() -> None:
    wd = Range(low=0.0, high=0.2)
    assert edge_of(0.191, wd) == "top"
    assert edge_of(0.189, wd) is None
    assert edge_of(0.009, wd) == "bottom"
    assert edge_of(0.011, wd) is None
    assert edge_of(0.1, Range(low=0.1, high=0.1)) is None  # nothing searched, nothing to widen


def test_int_ranges_have_edges_only_at_their_end_values() -> None:
    epochs = Range(low=2, high=10, is_int=True)
    assert edge_of(10, epochs) == "top"
    assert edge_of(9, epochs) is None  # 87.5% of the way, still a value inside
    assert edge_of(2, epochs) == "bottom"
    stepped = Range(low=16, high=70, step=16, is_int=True)  # reaches 16, 32, 48, 64
    assert stepped.last == 64
    assert edge_of(64, stepped) == "top"
    assert widened(stepped, "top") == 96  # whole steps past the last reachable value
    assert widened(Range(low=2, high=4, is_int=True), "top", LIMITS["epochs"]) == 5
    assert widened(Range(low=8, high=128, log=True, is_int=True), "top") == 256


def test_choices_have_edges_only_when_numeric_and_at_least_three() -> None:
    batch = Choices([64, 16, 32])  # listed in any order: the numbers order it
    assert edge_of(64, batch) == "top" and edge_of(16, batch) == "bottom" and edge_of(32, batch) is None
    assert widened(batch, "top") == 128 and widened(batch, "bottom") == 8  # a doubling list keeps doubling
    assert widened(Choices([0.1, 0.2, 0.3]), "top", LIMITS["dropout"]) == pytest.approx(0.4)
    assert edge_of(32, Choices([16, 32])) is None  # with two choices every value would be an edge
    assert edge_of(32, Choices([16, 32, "auto"])) is None
    space = {"batch_size": [16, 32, 64]}
    (advice,) = range_edges(space, [{"batch_size": 64}, {"batch_size": 64}, {"batch_size": 16}])
    assert advice.text == ("batch_size: best 64 is the largest of the choices [16, 32, 64] (2 of the top 3 "
                           "trials are): add a larger choice, e.g. 128"
                           + NEW_STUDY)


def test_best_in_the_middle_says_nothing_unless_most_of_the_top_three_sit_at_an_edge() -> None:
    assert range_edges(SPACE, trials(1.2e-4, 2.9e-4, 6e-5)) == []  # one at each edge is no majority
    (advice,) = range_edges(SPACE, trials(1.2e-4, 5.1e-5, 5.2e-5))
    assert not advice.best_at_edge and advice.side == "bottom" and advice.at_edge == 2
    assert advice.text == ("learning_rate: 2 of the top 3 trials are at the bottom of [5e-5, 3e-4] (the best has "
                           "1.2e-4): widen the range downwards, e.g. low: 2.5e-5"
                           + NEW_STUDY)


def test_bottom_edge_and_a_single_completed_trial() -> None:
    (advice,) = range_edges(SPACE, trials(5.2e-5))
    assert advice.text == ("learning_rate: best 5.2e-5 is at the bottom of [5e-5, 3e-4] (the only completed trial): "
                           "widen the range downwards, e.g. low: 2.5e-5"
                           + NEW_STUDY)
    assert range_edges(SPACE, []) == []


def test_suggestions_stay_within_what_the_spec_allows() -> None:
    assert widened(Range(low=0.5, high=0.9), "top", LIMITS["dropout"]) == pytest.approx(0.95)  # 1.1 is not < 1
    assert widened(Range(low=1e-5, high=1e-4), "bottom", LIMITS["learning_rate"]) == pytest.approx(5e-6)
    assert widened(Range(low=0.02, high=0.1), "bottom", LIMITS["weight_decay"]) == 0.0
    assert widened(Range(low=1, high=4, is_int=True), "bottom", LIMITS["epochs"]) is None
    (advice,) = range_edges(SPACE, trials(1e-4, 2e-4, 1.5e-4, weight_decay=0.002))
    assert advice.suggestion is None
    assert advice.text == ("weight_decay: best 0.002 is at the bottom of [0, 0.1] (3 of the top 3 trials are), as far "
                           "as weight_decay may go: nothing to widen; fix it at 0 to spend the trials on the other "
                           "parameters")


def test_limits_agree_with_the_spec_rules() -> None:
    assert set(LIMITS) == set(_RULES)
    for name, limit in LIMITS.items():
        _, ok = _RULES[name]
        assert limit.low is not None
        assert ok(limit.low) == limit.low_included, name
        assert ok(1 if name in ("batch_size", "epochs") else limit.low + 1e-9), name
        if limit.high is not None:
            below = limit.high - 1 if name in ("batch_size", "epochs") else limit.high - 1e-9
            assert ok(limit.high) == limit.high_included and ok(below), name


def test_startup_trials_are_optunas_defaults() -> None:
    samplers = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler}
    assert {k: inspect.signature(v).parameters["n_startup_trials"].default for k, v in samplers.items()} == \
        STARTUP_TRIALS


def test_format_number() -> None:
    assert [format_number(v) for v in (2.9e-4, 6e-4, 1e-5, 0.05, 0.15, 128, 2.0, 0.0, 1.5e-3)] == \
        ["2.9e-4", "6e-4", "1e-5", "0.05", "0.15", "128", "2", "0", "0.0015"]
    assert Limit(low=0.0, low_included=False).allows(0.0) is False


# --- budget ---------------------------------------------------------------------------------------------------


def test_budget_too_small_for_the_searched_parameters() -> None:
    # 4 searched (learning_rate, batch_size with 2 choices, epochs, weight_decay): 8 completed wanted
    # 13 trials still to run in a budget of 20: room enough for 8 completed, nothing said yet
    assert budget_advice(SPACE, completed=5, finished=7, budget=20, sampler="random") == []
    (line,) = budget_advice(SPACE, completed=3, finished=6, budget=6, sampler="random")
    assert line == ("budget: 3 completed trials (n_trials 6) for 4 searched parameters (learning_rate, batch_size, "
                    "epochs, weight_decay): too few to tell which values work; aim for at least 8 completed "
                    "(2 per searched parameter), e.g. sweep run SPEC --n-trials 11, or fix some parameters at one "
                    "value")
    assert budget_advice(SPACE, completed=8, finished=9, budget=9, sampler="random") == []
    assert budget_advice({"learning_rate": 1e-4}, completed=0, finished=0, budget=1, sampler="tpe") == []
    # after `sweep reevaluate` the study's budget holds its runs too: the line says which budget it counts
    (after,) = budget_advice(SPACE, completed=3, finished=6, budget=6, sampler="random", reevaluated=True)
    assert after.startswith("budget: 3 completed trials (n_trials 6, the search's; re-evaluation runs aside) for 4")


def test_budget_within_a_model_based_samplers_random_start() -> None:
    lines = budget_advice(SPACE, completed=9, finished=10, budget=10, sampler="tpe")
    assert lines == ["sampler: tpe draws its first 10 trials at random (Optuna's n_startup_trials), so a budget of 10 "
                     "never uses its model: raise it, e.g. sweep run SPEC --n-trials 20"]
    assert budget_advice(SPACE, completed=9, finished=11, budget=11, sampler="tpe") == []
    both = budget_advice(SPACE, completed=3, finished=6, budget=6, sampler="tpe")  # 11 would do for the first alone
    assert [line.split(":")[0] for line in both] == ["budget", "sampler"]
    assert both[0].endswith("--n-trials 20 (it also takes tpe past its random start), or fix some parameters at one "
                            "value")  # a user read 20 as what 4 completed trials need
    assert both[1].endswith("--n-trials 20")
    # the reason for 20 comes right after it, before the spec-less command (a user read 20 as what 4 need)
    named = budget_advice(SPACE, completed=3, finished=6, budget=6, sampler="tpe", study="s")
    assert "--n-trials 20 (it also takes tpe past its random start) (or sweep resume s --n-trials 20" in named[0]
    assert budget_advice(SPACE, completed=9, finished=10, budget=10, sampler="qmc") == []


def test_advice_lines_put_ranges_before_the_budget() -> None:
    lines = advice_lines(SPACE, trials(2.9e-4), completed=1, finished=1, budget=1, sampler="random")
    assert [line.split(":")[0] for line in lines] == ["learning_rate", "budget"]


# --- per class ------------------------------------------------------------------------------------------------


def intent_matrix(k: int = 77) -> tuple[list[str], list[list[int]]]:
    """A k-class matrix, 20 rows per class mostly right, with four planted confusions of known size."""
    labels = sorted(f"intent_{i:02d}" for i in range(k))
    matrix = [[20 if i == j else 0 for j in range(k)] for i in range(k)]
    planted = {(5, 6): 9, (40, 2): 7, (3, 70): 4, (70, 3): 4}
    for (i, j), count in planted.items():
        matrix[i][i] -= count
        matrix[i][j] = count
    rng = random.Random(0)
    for i in rng.sample(range(k), 10):  # single stray errors
        j = (i + 1) % k
        if matrix[i][i] == 20 and (i, j) not in planted:
            matrix[i][i], matrix[i][j] = 19, 1
    return labels, matrix


def test_most_confused_pairs_of_77_classes_come_biggest_first() -> None:
    labels, matrix = intent_matrix()
    pairs = confused_pairs(matrix, labels, limit=4)
    assert [(p.given, p.predicted, p.count) for p in pairs] == [
        ("intent_05", "intent_06", 9), ("intent_40", "intent_02", 7),
        ("intent_03", "intent_70", 4), ("intent_70", "intent_03", 4),  # a tie keeps label order
    ]
    assert pairs[0].share == pytest.approx(9 / 20)
    assert all(p.example is None for p in pairs)
    assert len(confused_pairs(matrix, labels)) == 10


def test_pairs_take_example_texts_when_the_caller_has_them() -> None:
    matrix = [[5, 1, 0], [2, 5, 0], [0, 0, 4]]
    examples = {("a", "b"): "block my card", ("b", "a"): "card " * 60, ("c", "a"): "never confused"}
    pairs = confused_pairs(matrix, ["a", "b", "c"], examples=examples)
    assert [(p.given, p.predicted, p.count) for p in pairs] == [("b", "a", 2), ("a", "b", 1)]
    assert len(pairs[0].example or "") == 160 and (pairs[0].example or "").endswith("…")
    assert pairs[1].example == "block my card"
    table = class_blocks(0, {}, ["a", "b", "c"], ConfusionData(["a", "b", "c"], matrix), examples=examples)[1]
    assert isinstance(table, TableBlock) and table.columns[-1] == "example text"
    assert table.rows[1] == ["a → b", 1, "16.7%", "block my card"]
    assert confused_pairs([[3, 0], [0, 2]], ["a", "b"]) == []


def test_classes_lowest_f1_first() -> None:
    per_class = {
        "balance": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 20},
        "card_lost": {"precision": 0.5, "recall": 0.3, "f1": 0.375, "support": 20},
        "atm": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 20},
        "top_up": {"precision": 0.6, "recall": 0.8, "f1": 0.686, "support": 20},
        "legacy": {"support": 3},
    }
    scores = classes_by_f1(per_class, ["atm", "balance", "card_lost", "legacy", "top_up"])
    assert [s.label for s in scores] == ["card_lost", "top_up", "atm", "balance", "legacy"]
    assert scores[-1].f1 is None and scores[-1].support == 3
    # a class absent from validation scores 0 by convention: it goes last and says why (WNUT's corporation, say)
    absent = classes_by_f1({**per_class, "corporation": {"precision": 0, "recall": 0, "f1": 0.0, "support": 0}})
    assert absent[-1].label == "corporation" and shown_label(absent[-1]) == "corporation (not in validation)"
    assert shown_label(absent[0]) == "card_lost"
    assert row_shares([[1, 3], [0, 0]]) == [[0.25, 0.75], [0.0, 0.0]]


def test_class_blocks_lead_with_weak_classes_and_pairs_then_a_readable_matrix() -> None:
    labels, matrix = intent_matrix()
    per_class = {name: {"precision": 0.9, "recall": row[i] / 20, "f1": row[i] / 20, "support": 20}
                 for i, (name, row) in enumerate(zip(labels, matrix, strict=True))}
    blocks = class_blocks(7, per_class, labels, ConfusionData(labels, matrix))
    scores, pairs, heatmap = blocks
    assert isinstance(scores, TableBlock) and [r[0] for r in scores.rows[:2]] == ["intent_05", "intent_40"]
    assert isinstance(pairs, TableBlock) and pairs.rows[0][:3] == ["intent_05 → intent_06", 9, "45.0%"]
    assert pairs.columns == ["given → predicted", "rows", "share of given"]  # no texts at hand: no text column
    assert isinstance(heatmap, FigureBlock)
    trace = heatmap.figure.data[0]
    assert trace.texttemplate is None  # 77 × 77 numbers are unreadable: hover only
    assert trace.z[5][6] == pytest.approx(0.45) and trace.customdata[5][6] == 9
    assert heatmap.figure.layout.height >= 77 * 16
    assert plot_confusion(ConfusionData(labels[:3], [r[:3] for r in matrix[:3]])).data[0].texttemplate

    big = [f"c{i}" for i in range(MAX_MATRIX_CLASSES + 1)]
    eye = [[5 if i == j else 0 for j in range(len(big))] for i in range(len(big))]
    blocks = class_blocks(1, {}, big, ConfusionData(big, eye))
    assert [type(b) for b in blocks] == [NoteBlock, NoteBlock, NoteBlock]
    assert "confused no two labels" in blocks[1].text
    assert blocks[2].missing and f"above {MAX_MATRIX_CLASSES} classes" in blocks[2].text


# --- the report and `sweep status` ------------------------------------------------------------------------------

DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(5e-5, 3e-4, log=True),
    "batch_size": CategoricalDistribution([16, 32]),
    "epochs": IntDistribution(2, 4),
    "weight_decay": FloatDistribution(0.0, 0.1),
}


def advised_study(storage: str | None = None) -> optuna.Study:
    """A finished 6-trial study shaped like sweep's: the best two learning rates at the top of their range."""
    study = optuna.create_study(study_name="intents", storage=storage, direction="maximize")
    write_study(study.set_user_attr, StudyRecord(
        spec={"model": {"encoder": "minilm"},
              "search": {"n_trials": 6, "sampler": "tpe", "pruner": "median", "space": SPACE}},
        metric="f1_macro", budget=6, label_names=["a", "b"],
    ))  # fmt: skip
    for value, lr in ((0.81, 2.9e-4), (0.79, 2.95e-4), (0.7, 1e-4), (0.6, 6e-5)):
        params = {"learning_rate": lr, "batch_size": 16, "epochs": 3, "weight_decay": 0.05}
        study.add_trial(create_trial(value=value, params=params, distributions=DISTRIBUTIONS, user_attrs=trial_attrs(
            best_epoch=2, hyperparameters={**params, "warmup_ratio": 0.1, "dropout": 0.1},
            metrics={"val_f1_macro": value}, per_class={"a": {"f1": value}, "b": {"f1": value - 0.1}},
            confusion_matrix=[[8, 2], [1, 9]])))
    for _ in range(2):
        study.add_trial(create_trial(state=TrialState.PRUNED, params={"learning_rate": 1e-4, "batch_size": 32,
                        "epochs": 4, "weight_decay": 0.01}, distributions=DISTRIBUTIONS, intermediate_values={1: 0.2}))
    return study


def test_report_has_a_what_to_try_next_section() -> None:
    sections = {s.title: s for s in build_report([advised_study()])}
    titles = list(sections)
    assert titles.index("What to try next") == titles.index("Summary") + 1
    advice = sections["What to try next"].blocks
    assert isinstance(advice[0], ListBlock)
    assert advice[0].items[0].startswith("learning_rate: best 2.9e-4 is at the top of [5e-5, 3e-4] (2 of the top 3")
    assert advice[0].items[1].startswith("budget: 4 completed trials (n_trials 6) for 4 searched parameters")
    assert advice[0].items[2].startswith("sampler: tpe draws its first 10 trials at random")
    per_class = sections["Best trial: per class"]
    assert [t.caption.split(" of trial")[0] for t in per_class.tables] == ["Per-class scores",
                                                                           "Most-confused label pairs"]
    assert per_class.tables[1].rows == [["a → b", 2, "20.0%"], ["b → a", 1, "10.0%"]]


def test_status_prints_the_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    advised_study(url)
    assert main(["status", "intents", "--storage", url]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("next: learning_rate: best 2.9e-4 is at the top of [5e-5, 3e-4] (2 of the top 3 trials are): widen the "
            "range upwards, e.g. high: 6e-4") in out
    assert "next: budget: 4 completed trials (n_trials 6) for 4 searched parameters" in out
    assert "--n-trials 20" in out  # one number for both lines: past tpe's 10 random trials too
    # a study submitted to the service has no spec on the reader's side: the command without one is named too
    assert "(or sweep resume intents --n-trials 20 without the spec)" in out


def test_epochs_at_the_top_count_only_when_the_best_evaluation_came_last() -> None:
    """The quickstart's best trial ran 4 epochs of [2, 4] but peaked at epoch 2: no reason to allow more epochs."""
    space = {"epochs": {"low": 2, "high": 4}}
    leaders = [{"epochs": 4}, {"epochs": 3}, {"epochs": 2}]
    assert range_edges(space, leaders, best_epochs=[2, 3, 2]) == []
    (advice,) = range_edges(space, leaders, best_epochs=[4, 3, 2])
    assert advice.side == "top" and advice.suggestion == 5
    assert range_edges(space, leaders)[0].side == "top"  # without best epochs: the parameter values alone
    # A reviewer's study: all three top trials at the top, the third peaking before its last epoch;
    # "2 of the top 3 trials are at the top (the best has 2)" read as a contradiction without the third said.
    (advice,) = range_edges({"epochs": {"low": 1, "high": 3}}, [{"epochs": 3}] * 3, best_epochs=[3, 3, 1])
    assert advice.at_edge == 2 and advice.peaked_early == 1
    assert "(2 of the top 3 trials are); 1 more at the top peaked before its last epoch, which says nothing for more " \
           "epochs" in advice.text


def test_a_study_that_learned_nothing_says_so_before_ranges_and_budgets() -> None:
    """A user's SMS study ended at accuracy 0.8586 = always 'ham', a WNUT study at entity F1 0 on every trial; the
    next: lines only spoke of the sampler's budget."""
    from reports.advice import learning_advice

    majority = learning_advice(value=0.462, metric="f1_macro", maximize=True, confusion=[[0, 79], [0, 480]],
                               label_names=["spam", "ham"])  # fmt: skip
    assert majority == ["learning: the best trial predicts 'ham' for every validation row (its accuracy 0.859 is "
                        "that class's share): no trial learned to tell the classes apart; raise the learning rate or "
                        "the epochs, or check the labels"]
    unweighted = learning_advice(value=0.462, metric="f1_macro", maximize=True, confusion=[[0, 79], [0, 480]],
                                 label_names=["spam", "ham"], weighted=False)  # fmt: skip
    assert unweighted[0].endswith("check the labels; 'ham' is 86% of the rows: model.class_weights: balanced weighs "
                                  "the rarer classes up in the loss")
    nothing = learning_advice(value=0.0, metric="f1_micro", maximize=True, confusion=None, label_names=["person"])
    assert nothing and nothing[0].startswith("learning: every trial scored 0 f1_micro: no trial learned anything")
    assert "entity" not in nothing[0]  # a classification study is not told about NER
    (entities,) = learning_advice(value=0.0, metric="f1_micro", maximize=True, confusion=None, label_names=["person"],
                                  task="token-classification")  # fmt: skip
    assert entities.startswith("learning: every trial scored 0 entity f1_micro: no trial found an entity yet")
    assert "classes" not in entities and entities.endswith("or check the tags")
    assert learning_advice(value=0.0, metric="recall_micro", maximize=True, confusion=None, label_names=["person"],
                           task="token-classification")  # fmt: skip
    assert learning_advice(value=0.8, metric="f1_macro", maximize=True, confusion=[[5, 1], [2, 9]],
                           label_names=["a", "b"]) == []  # fmt: skip
    assert learning_advice(value=0.0, metric="rmse", maximize=False, confusion=None, label_names=["score"]) == []


def test_trials_that_learned_nothing_are_described_in_their_task_s_terms() -> None:
    """A WNUT study's advice read "one class for every row ... no better than the mean": words of other tasks."""
    from reports.advice import collapsed_trials_advice, model_learning_warning

    collapsed, learned = [(4, {"learning_rate": 1e-5})], [{"learning_rate": 5e-5}]
    (ner,) = collapsed_trials_advice(collapsed, learned, task="token-classification")
    assert ner.startswith("learning: trial 4 learned nothing (no entity found) while 1 other did")
    (scores,) = collapsed_trials_advice(collapsed, learned, task="regression")
    assert "(no better than always predicting the training mean)" in scores
    warning = model_learning_warning(value=0.0, metric="f1_micro", maximize=True, confusion=None,
                                     label_names=["person"], task="token-classification")  # fmt: skip
    assert warning == "this model scores 0 entity f1_micro on validation: it found no entity"


def test_a_range_of_two_integers_has_no_edge_as_a_list_of_two_choices_has_none() -> None:
    """epochs {low: 2, high: 3}: a user was told to widen it downwards while the best sat at 3."""
    assert range_edges({"epochs": {"low": 2, "high": 3}}, [{"epochs": 2}, {"epochs": 2}, {"epochs": 3}]) == []
    (advice,) = range_edges({"epochs": {"low": 1, "high": 3}}, [{"epochs": 3}, {"epochs": 3}, {"epochs": 1}])
    assert advice.side == "top"


def test_a_regression_study_no_better_than_the_training_mean_says_it_learned_nothing() -> None:
    """A reviewer's STS-B study: best RMSE 1.526 against 1.516 for always predicting the training mean; nothing said."""
    from reports.advice import score_learning_advice

    distribution = {"train": {"mean": 2.6, "std": 1.5}, "validation": {"mean": 2.7, "std": 1.5126}}
    (line,) = score_learning_advice([1.5263, 1.6], distribution)  # baseline sqrt(1.5126^2 + 0.1^2) = 1.5159
    assert line.startswith("learning: the lowest RMSE of any trial, 1.526, is no better than always predicting the "
                           "training mean (1.516 on validation)")
    assert score_learning_advice([0.93], distribution) == []
    assert score_learning_advice([], distribution) == [] and score_learning_advice([2.0], {}) == []


def test_a_space_that_searches_nothing_is_said_for_a_budget_of_several_trials() -> None:
    """A user's spec without search.space ran 20 trials of one configuration and nothing said so."""
    fixed = {"learning_rate": 5e-5, "batch_size": 32, "epochs": 3}
    (line,) = budget_advice(fixed, completed=2, finished=2, budget=20, sampler="tpe")
    assert line.startswith("space: nothing is searched (search.space gives every hyperparameter one value), so the 20 "
                           "trials train one configuration with different seeds; give ranges or lists")
    assert budget_advice(fixed, completed=1, finished=1, budget=1, sampler="tpe") == []  # one trial: nothing to say
    assert budget_advice(None, completed=1, finished=1, budget=20, sampler="tpe") == []  # a store of other code


def test_the_exported_models_warning_is_about_that_model_and_covers_a_regression() -> None:
    """The card said "every trial scored 0" of an export of one trial, and a regression export said nothing on the
    command line."""
    from reports.advice import model_learning_warning

    one = model_learning_warning(value=0.62, metric="accuracy", maximize=True, confusion=[[0, 38], [0, 62]],
                                 label_names=["CONTRADICTION", "NEUTRAL"])  # fmt: skip
    assert one == ("this model predicts 'NEUTRAL' for every validation row (its accuracy 0.620 is that class's share): "
                   "it did not learn to tell the classes apart")
    zero = model_learning_warning(value=0.0, metric="f1_micro", maximize=True, confusion=None, label_names=[])
    assert zero == "this model scores 0 f1_micro on validation: it did not learn the task"
    scale = {"train": {"mean": 2.5, "std": 1.4}, "validation": {"mean": 2.5, "std": 1.5}}
    flat = model_learning_warning(value=1.52, metric="rmse", maximize=False, confusion=None, label_names=["score"],
                                  rmse=1.52, distribution=scale)  # fmt: skip
    assert flat == ("this model's validation RMSE, 1.52, is no better than always predicting the training mean (1.5): "
                    "it did not learn the scores")
    assert model_learning_warning(value=1.2, metric="rmse", maximize=False, confusion=None, label_names=["score"],
                                  rmse=1.2, distribution=scale) is None  # fmt: skip
    # a correlation objective is judged by the correlation: a model that ranks the rows (Spearman 0.26) learned,
    # though its RMSE misses the mean's on scale (a user's STS-B trial was called "learned nothing")
    assert model_learning_warning(value=0.26, metric="spearman", maximize=True, confusion=None, label_names=["score"],
                                  rmse=1.64, distribution=scale) is None  # fmt: skip
    constant = model_learning_warning(value=0.0, metric="spearman", maximize=True, confusion=None,
                                      label_names=["score"], rmse=1.52, distribution=scale)  # fmt: skip
    assert constant == "this model scores 0 spearman on validation: it did not learn the task"


def test_trials_that_learned_nothing_while_others_did_are_named_with_the_learning_rate_to_avoid() -> None:
    """A study where the highest learning rates collapsed to one class: the trials table showed F1 0.33 beside 0.8 and
    nothing said why, or which end of the range to move."""
    from reports.advice import collapsed_trials_advice
    from reports.trials import study_advice

    study = advised_study()
    wider = {**DISTRIBUTIONS, "learning_rate": FloatDistribution(5e-5, 1e-3, log=True)}  # the range raised since
    for lr in (4e-4, 5e-4):  # well above every trial that learned: they predict 'a' for every row
        params = {"learning_rate": lr, "batch_size": 16, "epochs": 3, "weight_decay": 0.05}
        study.add_trial(create_trial(value=0.33, params=params, distributions=wider, user_attrs=trial_attrs(
            best_epoch=1, hyperparameters=params, metrics={"val_f1_macro": 0.33},
            confusion_matrix=[[10, 0], [10, 0]])))  # fmt: skip
    first = study_advice(study)[0]
    assert first.startswith("learning: trials 6, 7 learned nothing (one class for every row, or a score of 0) "
                            "while 4 others did: each trained at a learning rate of 4e-4 or "
                            "more, above every one that learned (up to 2.95e-4): lower learning_rate's high end to "
                            "about 2.95e-4")
    # ... and no line says to widen learning_rate upwards (the unmarred study's first line), the budget's stays
    assert not any(line.startswith("learning_rate:") for line in study_advice(study))
    assert any(line.startswith("budget:") for line in study_advice(study))
    assert study_advice(advised_study())[0].startswith("learning_rate: best 2.9e-4 is at the top")

    low = collapsed_trials_advice([(3, {"learning_rate": 1e-6})], [{"learning_rate": 1e-5}, {"learning_rate": 3e-5}])
    assert low == ["learning: trial 3 learned nothing (one class for every row, a score of 0, or no better than the "
                   "mean) while 2 others did: each trained at a learning rate of 1e-6 or less, below every one that "
                   "learned (from 1e-5): raise learning_rate's low end, or the epochs"]
    mixed = collapsed_trials_advice([(1, {"learning_rate": 2e-5})], [{"learning_rate": 1e-5}, {"learning_rate": 3e-5}])
    assert mixed[0].endswith("while 2 others did: their settings are in the trials table")
    # rates 1% apart do not make the learning rate the cause (batch 32 collapsed where batch 16 learned)
    close = collapsed_trials_advice([(1, {"learning_rate": 1.06e-4, "batch_size": 32})],
                                    [{"learning_rate": 1.07e-4, "batch_size": 16}])  # fmt: skip
    assert close[0].endswith("while 1 other did: their settings are in the trials table")
    assert collapsed_trials_advice([(1, {})], []) == [] and collapsed_trials_advice([], [{}]) == []
    assert not any(line.startswith("learning:") for line in study_advice(advised_study()))
    # another setting parts the groups as cleanly: named, and the learning rate only the usual cause (a user's
    # 1-epoch batch-32 trial was blamed on its learning rate alone)
    (thin,) = collapsed_trials_advice([(2, {"learning_rate": 1.84e-4, "batch_size": 32, "epochs": 1})],
                                      [{"learning_rate": 1.34e-4, "batch_size": 16, "epochs": 2},
                                       {"learning_rate": 1e-4, "batch_size": 16, "epochs": 2}],
                                      task="regression", metric="spearman")  # fmt: skip
    assert thin == ("learning: trial 2 learned nothing (a correlation of 0 or less with the true scores) while 2 "
                    "others did: each trained at a learning rate of 1.84e-4 or more, above every one that learned (up "
                    "to 1.34e-4); batch_size parts them too (32 against 16); epochs parts them too (1 against 2): "
                    "lower learning_rate's high end to about 1.34e-4, the usual cause, though these trials cannot "
                    "tell which setting it was")
    # a number inside the learned ones' range parts nothing (distinct floats are always disjoint sets)
    (inside,) = collapsed_trials_advice([(3, {"learning_rate": 3e-4, "weight_decay": 0.05, "batch_size": 16})],
                                        [{"learning_rate": 5e-5, "weight_decay": 0.01, "batch_size": 16},
                                         {"learning_rate": 8e-5, "weight_decay": 0.09, "batch_size": 32}])  # fmt: skip
    assert "parts them too" not in inside and "the usual cause" not in inside


def test_a_reevaluation_that_contradicts_its_trial_says_learning_depends_on_the_seed() -> None:
    """A re-evaluation run collapsed at the settings of a trial that learned, and the advice still called those
    learning rates safe: one run per configuration cannot tell."""
    from record import reevaluation_attrs
    from reports.trials import seed_flips, study_advice

    study = advised_study()
    assert seed_flips(study, read_study(study)) == []
    trial0 = study.trials[0]
    study.add_trial(create_trial(value=0.5, params=trial0.params, distributions=trial0.distributions, user_attrs={
        **trial_attrs(best_epoch=1, hyperparameters=trial0.params, metrics={"val_f1_macro": 0.5},
                      confusion_matrix=[[10, 0], [10, 0]]), **reevaluation_attrs(of=0, seed=1000)}))  # fmt: skip
    assert seed_flips(study, read_study(study)) == [(6, 0, True)]
    line = next(line for line in study_advice(study) if line.startswith("learning:"))
    assert line == ("learning: trial 6 re-trained trial 0's settings with another seed and learned nothing, where "
                    "trial 0 learned: whether these settings learn depends on the seed, and one run per configuration "
                    "cannot tell which learning rates are safe; choose by the mean over seeds (sweep export --by "
                    "mean)")


def test_f1_binary_names_its_class_and_studies_of_other_classes_are_not_ranked_as_one_metric() -> None:
    """Two f1_binary studies, one of 'positive' and one of 'negative', were compared as one metric (`best of these`)
    without a word; status and the report never said which class's F1 it was, nor that the loss was weighted."""
    from reports.sections import comparison_section, summary_blocks
    from sweep.summary import best_summary

    def binary(name: str, positive: str, value: float) -> optuna.Study:
        study = optuna.create_study(study_name=name, direction="maximize")
        write_study(study.set_user_attr, StudyRecord(
            spec={"model": {"encoder": "minilm", "class_weights": "balanced"},
                  "objective": {"metric": "f1_binary", "positive_label": positive},
                  "search": {"n_trials": 1, "sampler": "tpe", "pruner": "median", "space": SPACE}},
            metric="f1_binary", budget=1, label_names=["negative", "positive"],
        ))  # fmt: skip
        params = {"learning_rate": 1e-4, "batch_size": 16, "epochs": 3, "weight_decay": 0.05}
        study.add_trial(create_trial(value=value, params=params, distributions=DISTRIBUTIONS,
                                     user_attrs=trial_attrs(best_epoch=1, metrics={"val_f1_binary": value})))
        return study

    pos, neg = binary("pos", "positive", 0.8), binary("neg", "negative", 0.7)
    note = comparison_section([pos, neg]).blocks[0]
    assert isinstance(note, NoteBlock)
    assert note.text.startswith("The studies optimise different metrics (f1_binary of 'positive', f1_binary of "
                                "'negative')")
    rows = {r[0]: r[1] for r in next(b for b in summary_blocks(pos) if isinstance(b, TableBlock)).rows}
    assert rows["metric"] == "validation f1_binary of 'positive' (maximised)"
    assert rows["loss"].startswith("cross-entropy with balanced class weights")
    assert "validation f1_binary of 'positive' = " in str(best_summary(pos).renderables[0])  # type: ignore[union-attr]


def test_searched_parameters_every_trial_drew_one_value_of_are_said_to_be_left_out_of_the_importance() -> None:
    from reports.sections import importance_blocks

    notes = [b.text for b in importance_blocks(advised_study(), seed=0) if isinstance(b, NoteBlock)]
    assert "batch_size is left out: every completed trial drew 16 (it has no effect to measure yet)" in notes
    assert "epochs is left out: every completed trial drew 3 (it has no effect to measure yet)" in notes
    assert "weight_decay is left out: every completed trial drew 0.05 (it has no effect to measure yet)" in notes
    assert not any(n.startswith("learning_rate is left out") for n in notes)  # it varies: it is measured


def test_a_multi_label_model_predicting_one_label_set_for_every_row_learned_nothing() -> None:
    """A multi-label model at learning rate 1e-8 predicted the same 6 labels for all 150 rows at micro-F1 0.24 (the
    tuned threshold over the head's bias), and nothing said so: a score of 0 was its only "learned nothing"."""
    from reports.advice import learning_advice, model_learning_warning, one_label_set

    rows = 10
    constant = {"card": {"precision": 0.4, "recall": 1.0, "f1": 0.57, "support": 4},  # on all 10 rows, 4 true
                "pin": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3},  # on none
                "new": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}  # fmt: skip
    assert one_label_set(constant, rows) == ["card"]
    learned = {**constant, "pin": {"precision": 1.0, "recall": 0.67, "f1": 0.8, "support": 3}}
    assert one_label_set(learned, rows) is None
    precise = {**constant, "card": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 4}}  # on its 4 rows only
    assert one_label_set(precise, rows) is None and one_label_set(constant, None) is None
    said = model_learning_warning(value=0.24, metric="f1_micro", maximize=True, confusion=None,
                                  label_names=list(constant), task="multi-label", per_class=constant, rows=rows)
    assert said == ("this model predicts the same labels for every validation row ('card'): it did not learn to "
                    "tell the rows apart")
    (line,) = learning_advice(value=0.24, metric="f1_micro", maximize=True, confusion=None,
                              label_names=list(constant), task="multi-label", per_class=constant, rows=rows)
    assert line.startswith("learning: the best trial predicts the same labels for every validation row ('card')")
    assert model_learning_warning(value=0.24, metric="f1_micro", maximize=True, confusion=None,
                                  label_names=list(constant), task="multi-label", per_class=learned,
                                  rows=rows) is None  # fmt: skip
