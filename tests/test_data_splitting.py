"""sorted_labels, stratified_split, check_label_coverage and remove_overlap."""

from __future__ import annotations

from collections import Counter

import pytest

from datamodules import DataError, check_label_coverage, remove_overlap, sorted_labels, stratified_split


def make_rows(counts: dict[str, int]) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for label, n in counts.items():
        texts += [f"{label} example {i}" for i in range(n)]
        labels += [label] * n
    return texts, labels


# -- sorted_labels ----------------------------------------------------------------------------------------


def test_sorted_labels_numeric_ones_numerically() -> None:
    assert sorted_labels(["10", "2", "1", "2", "-1", "0.5"]) == ["-1", "0.5", "1", "2", "10"]


def test_sorted_labels_words_alphabetically_after_numbers() -> None:
    assert sorted_labels(["spam", "ham", "3", "NaN", "ABBR"]) == ["3", "ABBR", "NaN", "ham", "spam"]


# -- stratified_split -------------------------------------------------------------------------------------


def test_stratified_split_keeps_class_proportions_and_every_row() -> None:
    texts, labels = make_rows({"a": 60, "b": 30, "c": 10})
    tr_t, tr_l, va_t, va_l = stratified_split(texts, labels, val_fraction=0.2, seed=0)
    assert Counter(va_l) == {"a": 12, "b": 6, "c": 2}
    assert Counter(tr_l) == {"a": 48, "b": 24, "c": 8}
    assert sorted(tr_t + va_t) == sorted(texts)
    assert all(t.startswith(lab) for t, lab in zip(tr_t + va_t, tr_l + va_l, strict=True))
    assert tr_t == [t for t in texts if t in set(tr_t)]  # input order kept


def test_stratified_split_is_seeded() -> None:
    texts, labels = make_rows({"a": 40, "b": 40})
    first = stratified_split(texts, labels, val_fraction=0.25, seed=3)
    assert stratified_split(texts, labels, val_fraction=0.25, seed=3) == first
    assert stratified_split(texts, labels, val_fraction=0.25, seed=4)[2] != first[2]


def test_stratified_split_puts_a_rare_class_on_both_sides() -> None:
    texts, labels = make_rows({"big": 300, "rare": 2})
    for seed in range(5):
        _, tr_l, _, va_l = stratified_split(texts, labels, val_fraction=0.1, seed=seed)
        assert tr_l.count("rare") == 1 and va_l.count("rare") == 1


def test_a_class_with_one_row_cannot_be_split() -> None:
    texts, labels = make_rows({"ENTY": 20, "HUM": 20, "ABBR": 1})
    with pytest.raises(DataError) as info:
        stratified_split(texts, labels, val_fraction=0.2, seed=0)
    [(field, message)] = info.value.problems
    assert field == "data.train"
    assert message.startswith("class 'ABBR' has only 1 row; a stratified split needs at least 2 per class")
    assert "data.validation" in message


def test_too_small_a_fraction_for_the_classes() -> None:
    texts, labels = make_rows({str(i): 10 for i in range(6)})
    with pytest.raises(DataError) as info:
        stratified_split(texts, labels, val_fraction=0.05, seed=0)
    assert info.value.problems == [
        (
            "data.val_fraction",
            "val_fraction=0.05 gives 3 validation rows for 6 classes (need one per class): use at least 0.1",
        ),
    ]


def test_too_large_a_fraction_leaves_too_few_training_rows() -> None:
    texts, labels = make_rows({"a": 5, "b": 5, "c": 5})
    with pytest.raises(DataError) as info:
        stratified_split(texts, labels, val_fraction=0.9, seed=0)
    [(field, message)] = info.value.problems
    assert field == "data.val_fraction"
    assert message.startswith("val_fraction=0.9 leaves 1 training row for 3 classes")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_must_be_strictly_between_0_and_1(fraction: float) -> None:
    texts, labels = make_rows({"a": 5, "b": 5})
    with pytest.raises(DataError) as info:
        stratified_split(texts, labels, val_fraction=fraction, seed=0)
    expected = f"must be between 0 and 1 (exclusive), got {fraction}"
    assert info.value.problems == [("data.val_fraction", expected)]


# -- check_label_coverage ---------------------------------------------------------------------------------


def test_coverage_passes_when_both_sides_hold_the_same_classes() -> None:
    check_label_coverage(["a", "b", "a"], ["b", "a"])


def test_one_class_in_train_names_it() -> None:
    with pytest.raises(DataError) as info:
        check_label_coverage(["pos", "pos"], ["pos"])
    assert info.value.problems == [
        ("data.train", "training data has 1 class ('pos'); classification needs at least 2: check data.label_column"),
    ]


def test_class_missing_from_validation_and_unseen_class_are_reported_together() -> None:
    train = ["ABBR"] * 3 + ["HUM"] * 5 + ["LOC"] * 4
    val = ["HUM", "LOC", "NUM", "NUM"]
    with pytest.raises(DataError) as info:
        check_label_coverage(train, val)
    assert info.value.problems == [
        (
            "data.validation",
            "class 'ABBR' has 0 rows in validation (train has 3): add validation rows for it "
            "or use a stratified split by removing data.validation",
        ),
        (
            "data.validation",
            "class 'NUM' has 2 rows in validation but none in training, so no model can "
            "predict it: add training rows for it or remove it from validation",
        ),
    ]


def test_a_training_label_written_another_way_is_named_as_such() -> None:
    """'Positive' (2 rows) and 'POSITIVE' (1) beside 'positive' in training were told to "add validation rows"."""
    train = ["positive"] * 5 + ["Positive"] * 2 + ["POSITIVE"] + ["negative"] * 5
    with pytest.raises(DataError) as info:
        check_label_coverage(train, ["positive", "negative"])
    assert info.value.problems == [
        ("data.validation", "class 'POSITIVE' has 0 rows in validation (train has 1): is it 'positive' written "
                            "another way? (relabel those training rows 'positive')"),
        ("data.validation", "class 'Positive' has 0 rows in validation (train has 2): is it 'positive' written "
                            "another way? (relabel those training rows 'positive')"),
    ]  # fmt: skip


def test_empty_validation() -> None:
    with pytest.raises(DataError) as info:
        check_label_coverage(["a", "b"], [])
    assert info.value.problems == [("data.validation", "validation data has no usable rows")]


# -- remove_overlap ---------------------------------------------------------------------------------------


def test_remove_overlap_drops_leaking_train_rows() -> None:
    train_t = ["a", "b", "c", "b", "d"]
    train_l = ["x", "y", "x", "y", "y"]
    texts, labels, report = remove_overlap(train_t, train_l, ["b", "d", "z"])
    assert (texts, labels) == (["a", "c"], ["x", "x"])
    assert report == {"train_val_overlap": 3, "overlap_examples": ["b", "d"]}


def test_remove_overlap_caps_examples_at_20() -> None:
    train = [f"t{i}" for i in range(30)]
    texts, _, report = remove_overlap(train, ["x"] * 30, train[:25])
    assert texts == train[25:]
    assert report["train_val_overlap"] == 25 and report["overlap_examples"] == train[:20]


def test_an_id_column_named_as_the_labels_is_one_line_and_many_missing_labels_are_counted() -> None:
    """`label_column: id` on 400 rows printed 201 lines, one per "class" missing from a side."""
    ids = [str(1000 + i) for i in range(400)]
    with pytest.raises(DataError) as caught:
        check_label_coverage(ids[:300], ids[300:])
    (problem,) = caught.value.problems
    assert problem == ("data.label_column", "300 different labels in 300 training rows, 300 of them on one row only "
                       "(e.g. '1000', '1001', '1002'): that is an id or a text, not classes; name the column that "
                       "holds the classes")  # fmt: skip
    # few-shot data, one training row for each of 77 intents that validation has too, is classes, not ids
    intents = [f"intent_{i:02d}" for i in range(77)]
    check_label_coverage(intents, intents + intents)
    # 77 real classes of 5 rows each are classes: missing ones are listed, ten at most, then counted
    train = [f"intent_{i:02d}" for i in range(77) for _ in range(5)]
    with pytest.raises(DataError) as caught:
        check_label_coverage(train, [f"intent_{i:02d}" for i in range(60)])
    lines = caught.value.problems
    assert len(lines) == 11 and lines[0][1].startswith("class 'intent_60' has 0 rows in validation (train has 5)")
    assert lines[-1] == ("data.validation", "... and 7 more labels like these")
