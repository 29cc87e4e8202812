"""Tables without a header row (data.columns, the no-header rule) and several text columns joined into one."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules import DataError, load_table
from datamodules.header import first_row_is_data
from datamodules.loading import join_texts


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


def problems_of(path: Path, text: str | list[str] = "text", label: str = "label") -> list[tuple[str, str]]:
    with pytest.raises(DataError) as info:
        load_table(str(path), text_column=text, label_column=label, field="data.train")
    return info.value.problems


AG_NEWS = (
    '"3","Wall St. Bears Claw Back Into the Black (Reuters)","Reuters - Short-sellers, Wall Street\'s dwindling '
    'band of ultra-cynics, are seeing green again."\n'
    '"4","Carlyle Looks Toward Commercial Aerospace (Reuters)","Reuters - Private investment firm Carlyle Group."\n'
    '"3","Oil and Economy Cloud Stocks\' Outlook (Reuters)",\n'
)


def test_headerless_csv_is_named_as_such_with_the_columns_to_give(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", AG_NEWS)
    [(field, message)] = problems_of(path)
    assert field == "data.train"
    assert message.startswith("train.csv looks like it has no header row (its first row reads as data: '3', ")
    assert message.endswith(
        "give its 3 columns with data.columns: [label, text, column3] (rename column3 as you like; "
        "data.text_column may list several)"
    )


def test_headerless_message_uses_the_spec_names_when_they_fit(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", AG_NEWS)
    with pytest.raises(DataError) as info:
        load_table(str(path), text_column=["title", "description"], label_column="label", field="data.validation")
    [(field, message)] = info.value.problems
    assert field == "data.validation"
    assert message.endswith("give its 3 columns with data.columns: [label, title, description]")


def test_columns_read_a_headerless_file_and_join_the_text_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", AG_NEWS)
    table = load_table(
        str(path),
        text_column=["title", "description"],
        label_column="label",
        field="data.train",
        columns=["label", "title", "description"],
        text_separator=". ",
    )
    assert table.columns == ["label", "title", "description"]
    assert table.labels == ["3", "4", "3"]  # the first row is data, not lost as a header
    assert (
        table.texts[1]
        == "Carlyle Looks Toward Commercial Aerospace (Reuters). Reuters - Private investment firm Carlyle Group."
    )
    assert table.texts[2] == "Oil and Economy Cloud Stocks' Outlook (Reuters)"  # a missing part adds no separator


def test_headerless_tsv_with_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", 'it is "great"\tpos\nawful\tneg\n')
    table = load_table(
        str(path), text_column="text", label_column="label", field="data.train", columns=["text", "label"]
    )
    assert table.texts == ['it is "great"', "awful"] and table.labels == ["pos", "neg"]


def test_columns_must_match_the_field_count_and_the_file_must_have_no_header(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", AG_NEWS)
    with pytest.raises(DataError) as info:
        load_table(str(path), text_column="text", label_column="label", field="data.train", columns=["label", "text"])
    assert info.value.problems == [
        (
            "data.columns",
            "names 2 columns (label, text) but the rows of train.csv have 3 fields: name each of them, in order",
        )
    ]
    headed = write(tmp_path / "headed.csv", "label,text\npos,great\n")
    with pytest.raises(DataError) as info:
        load_table(str(headed), text_column="text", label_column="label", field="data.train", columns=["label", "text"])
    [(field, message)] = info.value.problems
    assert field == "data.columns"
    assert message.startswith("headed.csv has a header row (label, text): data.columns is only for files without one")


def test_columns_only_for_delimited_files(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", '{"text": "a", "label": "p"}\n')
    with pytest.raises(DataError) as info:
        load_table(str(path), text_column="text", label_column="label", field="data.train", columns=["text", "label"])
    assert info.value.problems == [
        ("data.columns", "applies only to .csv and .tsv files without a header row, not train.jsonl")
    ]


@pytest.mark.parametrize(
    ("content", "headerless"),
    [
        (AG_NEWS, True),  # "3" above numbers
        ("How far is it from Denver to Aspen ?,NUM\nWho wrote Hamlet ?,HUM\n", True),  # a sentence above texts
        ("review,stars\ngreat food and service,5\nawful,1\n", False),  # a real header, misnamed columns
        ("Review Text,Rating\ngreat food and service,5\n", False),  # names with spaces are still names
        ("0,1\ngreat food and service,pos\n", False),  # numbers above text: a header of numbers
    ],
)
def test_the_no_header_rule(tmp_path: Path, content: str, headerless: bool) -> None:
    [(_, message), *_] = problems_of(write(tmp_path / "train.csv", content))
    assert ("no header row" in message) is headerless, message


def test_several_text_columns_must_all_exist_and_differ_from_the_label(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "title,body,label\na,b,c\n")
    problems = problems_of(path, text=["title", "bdy"])
    assert problems == [
        ("data.text_column", "no such column 'bdy' in train.csv (columns: title, body, label); did you mean 'body'?")
    ]
    problems = problems_of(path, text=["title", "label"])
    assert problems == [("data.label_column", "is the same column as data.text_column ('label')")]


def test_join_texts_leaves_out_missing_and_blank_parts() -> None:
    titles: list[object] = ["A", None, None, " ", 5]
    bodies: list[object] = ["b", "c", None, "", "x"]
    assert join_texts([titles, bodies], " | ") == ["A | b", "c", None, "", "5 | x"]
    assert join_texts([titles], " | ") == titles  # one column: as read


def test_first_row_is_data_needs_a_vote_from_the_values_below() -> None:
    assert first_row_is_data(["3", "x"], [["1", "2"], ["a", "b"]])
    assert first_row_is_data(["id", "a text of five words"], [["1", "2"], ["b", "c"]])
    assert not first_row_is_data(["label", "text"], [["1", "2"], ["a much longer text than its name", "b"]])
    assert not first_row_is_data(["3", "a text of five words"], [[None, " "], ["7", "8"]])  # nothing to compare
