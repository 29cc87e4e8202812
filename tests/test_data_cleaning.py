"""normalize_text and clean_examples: every counted step, order, conflicts and the report's shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datamodules import clean_examples, normalize_text

COUNTERS = ("missing_text", "empty_text", "missing_label", "conflicting_rows", "duplicates")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  hello   world  ", "hello world"),
        ("tab\there\nnew\r\nline", "tab here new line"),
        ("no\u00a0break\u2003em\u3000ideographic", "no break em ideographic"),
        ("ﬁne ｆｕｌｌ Ｗｉｄｔｈ ①", "fine full Width 1"),  # NFKC compatibility forms
        ("e\u0301", "é"),  # composed
        ("already clean", "already clean"),
        (" \t\n ", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_each_drop_reason_is_counted_once_and_order_is_kept() -> None:
    texts = ["b  text", None, float("nan"), "   ", "no label", "nan label", "a", "b text", "c", "NA"]
    labels = ["x", "x", "x", "x", None, np.nan, " y ", "x", "  ", 0]
    result = clean_examples(texts, labels)
    assert result.texts == ["b text", "a", "NA"]
    assert result.labels == ["x", "y", "0"]
    report = result.report
    assert report["rows_in"] == 10
    assert report["missing_text"] == 2
    assert report["empty_text"] == 1
    assert report["missing_label"] == 3  # None, NaN and a whitespace-only label
    assert report["duplicates"] == 1  # "b text"/x after normalisation
    assert report["normalized"] == 1  # "b  text", kept (the blank "   " was normalised too, and dropped)
    assert report["rows_out"] == 3
    assert report["rows_in"] == report["rows_out"] + sum(report[k] for k in COUNTERS)


def test_conflicting_texts_keep_none_of_their_rows() -> None:
    texts = ["same", "same ", "same", "other", "keep", "keep"]
    labels = ["pos", "pos", "neg", "neg", "pos", "pos"]
    result = clean_examples(texts, labels)
    assert result.texts == ["other", "keep"]
    assert result.labels == ["neg", "pos"]
    report = result.report
    assert report["conflicting_rows"] == 3
    assert report["duplicates"] == 1
    assert report["conflicting_texts"] == [{"text": "same", "labels": {"neg": 1, "pos": 2}}]
    assert report["conflicting_texts_total"] == 1


def test_conflict_examples_are_sorted_and_capped_at_100() -> None:
    texts, labels = [], []
    for i in range(120):
        texts += [f"t{i:03d}", f"t{i:03d}"]
        labels += ["10", "2"]
    texts += ["big", "big", "big"]
    labels += ["a", "b", "b"]
    report = clean_examples(texts, labels).report
    assert report["conflicting_texts_total"] == 121
    assert len(report["conflicting_texts"]) == 100
    assert report["conflicting_texts"][0] == {"text": "big", "labels": {"a": 1, "b": 2}}  # most rows first
    assert [c["text"] for c in report["conflicting_texts"][1:4]] == ["t000", "t001", "t002"]
    assert list(report["conflicting_texts"][1]["labels"]) == ["2", "10"]  # numeric label order
    assert report["conflicting_rows"] == 243 and report["rows_out"] == 0


def test_labels_are_stringified_and_stripped() -> None:
    result = clean_examples(["a", "b", "c", "d"], [1, 0.0, " spam\u00a0", True])
    assert result.labels == ["1", "0", "spam", "True"]


def test_non_string_texts_become_strings() -> None:
    result = clean_examples([42, 3.5], ["x", "y"])
    assert result.texts == ["42", "3.5"]
    assert result.report["normalized"] == 0


def test_report_is_json_serialisable_with_plain_types() -> None:
    report = clean_examples(["a", "a", "b", None], ["x", "y", "z", "w"]).report
    assert json.loads(json.dumps(report)) == report
    assert all(type(report[k]) is int for k in (*COUNTERS, "rows_in", "rows_out", "normalized"))


def test_mismatched_lengths_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="differ in length: 2 != 1"):
        clean_examples(["a", "b"], ["x"])


def test_normalised_counts_only_the_rows_kept() -> None:
    """One normalised text kept, one that became a duplicate of an earlier row, one that became empty: 1."""
    result = clean_examples(["plain", "plain ", "two  spaces", " \t "], ["a", "a", "b", "b"])
    assert result.texts == ["plain", "two spaces"]
    assert (result.report["normalized"], result.report["duplicates"], result.report["empty_text"]) == (1, 1, 1)


def test_labels_written_two_ways_are_named_in_a_warning_and_beside_a_validation_class_unseen_in_training() -> None:
    from datamodules.errors import DataError
    from datamodules.report import cleaning_warnings
    from datamodules.splitting import check_label_coverage

    labels = ["billing"] * 3 + ["Billing", "ｂｉｌｌｉｎｇ", "billing\u200b", "1", "1.0", "US", "shipping"]
    result = clean_examples([f"text {i}" for i in range(len(labels))], labels)
    assert result.report["label_variants"] == [
        {"billing": 3, "Billing": 1, "billing\u200b": 1, "ｂｉｌｌｉｎｇ": 1}, {"1": 1, "1.0": 1}]  # fmt: skip
    lines = cleaning_warnings("train", result.report)
    assert lines[0].startswith("train: labels 'billing' (3 rows) / 'Billing' (1 row) / 'billing\\u200b' (1 row)")
    assert "trained as separate classes" in lines[0] and len(lines) == 2  # 'US' alone is no variant of anything
    with pytest.raises(DataError) as err:
        check_label_coverage(["account", "refund"], ["Account", "refund"])
    assert "class 'Account' has 1 row in validation but none in training" in str(err.value)
    assert "(training has 'account': the same label written another way?)" in str(err.value)
