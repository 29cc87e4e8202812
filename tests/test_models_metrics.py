"""classification_metrics against cases worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import classification_metrics

SCALARS = [
    "accuracy",
    "precision_macro", "recall_macro", "f1_macro",
    "precision_micro", "recall_micro", "f1_micro",
    "precision_weighted", "recall_weighted", "f1_weighted",
]  # fmt: skip


def test_three_class_example_by_hand() -> None:
    # true:  a a a b b c      a: TP 2 FP 0 FN 1 -> P 1,   R 2/3, F1 0.8, support 3
    # pred:  a a b b c c      b: TP 1 FP 1 FN 1 -> P 1/2, R 1/2, F1 1/2, support 2
    #                         c: TP 1 FP 1 FN 0 -> P 1/2, R 1,   F1 2/3, support 1
    result = classification_metrics([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2], ["a", "b", "c"])

    expected = {
        "accuracy": 4 / 6,
        "precision_macro": (1 + 1 / 2 + 1 / 2) / 3,
        "recall_macro": (2 / 3 + 1 / 2 + 1) / 3,
        "f1_macro": (0.8 + 1 / 2 + 2 / 3) / 3,
        "precision_micro": 4 / 6,
        "recall_micro": 4 / 6,
        "f1_micro": 4 / 6,
        "precision_weighted": (3 * 1 + 2 * 1 / 2 + 1 * 1 / 2) / 6,
        "recall_weighted": (3 * 2 / 3 + 2 * 1 / 2 + 1 * 1) / 6,
        "f1_weighted": (3 * 0.8 + 2 * 1 / 2 + 1 * 2 / 3) / 6,
    }
    assert {k: result[k] for k in SCALARS} == pytest.approx(expected)
    assert result["per_class"] == {
        "a": {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3},
        "b": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        "c": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
    }
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_classes_never_predicted_or_never_present_score_zero_and_are_kept() -> None:
    # "c" occurs twice but is never predicted; "d" occurs nowhere. Both stay, with zeros.
    # a: P 1, R 1, F1 1 | b: TP 1 FP 2 -> P 1/3, R 1, F1 1/2 | c: 0 | d: 0
    result = classification_metrics(np.array([0, 1, 1, 1]), np.array([0, 1, 2, 2]), ["a", "b", "c", "d"])

    assert list(result["per_class"]) == ["a", "b", "c", "d"]
    assert result["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert result["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["per_class"]["b"]["precision"] == pytest.approx(1 / 3)
    assert result["f1_macro"] == pytest.approx((1 + 1 / 2 + 0 + 0) / 4)
    assert result["precision_macro"] == pytest.approx((1 + 1 / 3) / 4)
    assert result["recall_macro"] == pytest.approx((1 + 1) / 4)
    assert result["f1_micro"] == pytest.approx(2 / 4)
    assert result["f1_weighted"] == pytest.approx((1 * 1 + 1 * 1 / 2 + 2 * 0) / 4)
    assert result["confusion_matrix"] == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0]]


def test_perfect_predictions() -> None:
    result = classification_metrics([2, 0, 1, 1], [2, 0, 1, 1], ["x", "y", "z"])

    assert all(result[k] == 1.0 for k in SCALARS)
    assert [v["f1"] for v in result["per_class"].values()] == [1.0, 1.0, 1.0]
    assert [v["support"] for v in result["per_class"].values()] == [1, 2, 1]
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]


def test_result_is_plain_json() -> None:
    result = classification_metrics(np.array([0, 1, 1], dtype=np.int32), np.array([0, 1, 0]), ["a", "b"])

    assert json.loads(json.dumps(result)) == result
    assert all(type(result[k]) is float for k in SCALARS)
    assert type(result["per_class"]["a"]["support"]) is int
    assert all(type(n) is int for row in result["confusion_matrix"] for n in row)


@pytest.mark.parametrize(
    ("preds", "targets", "message"),
    [
        ([0, 3], [0, 1], "preds must lie in 0..2"),
        ([0, 1], [0, -1], "targets must lie in 0..2"),
        ([0, 1, 1], [0, 1], "same length"),
        ([], [], "at least one"),
        ([0.5, 1.0], [0, 1], "integer label ids"),
    ],
)
def test_bad_inputs_are_rejected(preds: list[float], targets: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classification_metrics(preds, targets, ["a", "b", "c"])  # type: ignore[arg-type]


def test_duplicate_label_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        classification_metrics([0, 1], [0, 1], ["a", "a"])


def test_the_averages_are_scikit_learns_to_the_last_bit() -> None:
    # The per-class pass is averaged here rather than by four more scikit-learn calls: stored trial values (and so
    # which trial is best) must not move by a rounding difference.
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        preds, targets = rng.integers(0, 5, n), rng.integers(0, 5, n)
        result = classification_metrics(preds, targets, ["a", "b", "c", "d", "e"])
        assert result["accuracy"] == accuracy_score(targets, preds)
        for average in ("macro", "micro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(
                targets, preds, labels=list(range(5)), average=average, zero_division=0
            )
            assert (result[f"precision_{average}"], result[f"recall_{average}"], result[f"f1_{average}"]) == (p, r, f)


def test_the_binary_scores_are_scikit_learns_for_the_positive_class() -> None:
    from sklearn.metrics import f1_score, precision_score, recall_score

    from models.metrics import classification_metrics

    targets = [0, 1, 1, 0, 1, 1, 0, 0, 1, 0]
    preds = [0, 1, 0, 0, 1, 1, 1, 0, 0, 0]
    for positive in (0, 1):
        got = classification_metrics(preds, targets, ["ham", "spam"], positive)
        assert got["f1_binary"] == f1_score(targets, preds, pos_label=positive)
        assert got["precision_binary"] == precision_score(targets, preds, pos_label=positive)
        assert got["recall_binary"] == recall_score(targets, preds, pos_label=positive)
    assert "f1_binary" not in classification_metrics(preds, targets, ["ham", "spam"])
    with pytest.raises(ValueError, match=r"positive must be a label id in \[0, 2\), got 2"):
        classification_metrics(preds, targets, ["ham", "spam"], 2)
