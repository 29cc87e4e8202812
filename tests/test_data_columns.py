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


def test_rows_with_more_fields_than_the_first_are_named_by_the_longest(tmp_path: Path) -> None:
    """STS-B as its organisers ship it: most rows have 7 fields, some 9 (two source columns more). Naming 7 columns
    was refused with "name any extra columns there", naming 9 with "the rows have 7 fields": no spec loaded it. Now
    one rule: name as many columns as the longest row has fields."""
    path = write(tmp_path / "train.tsv", "news\t4.0\tA man plays.\tA man is playing.\n"
                                         "news\t1.5\tA dog runs.\tThe cat sleeps.\tsrc a\tsrc b\n")  # fmt: skip
    seven = ["genre", "score", "sentence1", "sentence2"]
    with pytest.raises(DataError) as info:
        load_table(str(path), text_column=["sentence1", "sentence2"], label_column="score", field="data.train",
                   columns=seven)  # fmt: skip
    assert info.value.problems == [("data.columns", "names 4 columns (genre, score, sentence1, sentence2) but the rows "
                                                    "of train.tsv have at most 6 fields: name each of them, in order")]
    table = load_table(str(path), text_column=["sentence1", "sentence2"], label_column="score", field="data.train",
                       columns=[*seven, "source1", "source2"])  # fmt: skip
    assert table.labels == ["4.0", "1.5"] and table.texts[1].startswith("A dog runs.")
    with pytest.raises(DataError) as info:
        load_table(str(path), text_column="sentence1", label_column="score", field="data.train",
                   columns=[*seven, "a", "b", "c"])  # fmt: skip
    assert info.value.problems == [("data.columns", "names 7 columns (genre, score, sentence1, sentence2, a, b, c) but "
                                                    "the rows of train.tsv have at most 6 fields: name each of them, "
                                                    "in order")]  # fmt: skip


def test_a_text_over_the_csv_modules_field_limit_does_not_stop_the_count(tmp_path: Path) -> None:
    """A 160 KB text in row 2 ended the count at row 1's 3 fields (the csv module refuses fields over 128 KB), so
    naming 5 columns was refused and naming 3 told to name the extra columns."""
    path = write(tmp_path / "x.csv", "a,1,b\n" + "x," + "y" * 160_000 + ",c,d,e\np,q,r,s,t\n")
    table = load_table(str(path), text_column="t", label_column="l", field="data.train",
                       columns=["l", "t", "c", "d", "e"])  # fmt: skip
    assert len(table.texts) == 3 and len(table.texts[1]) == 160_000


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


# -- downstream: cleaning, fingerprint and cache see the joined text ---------------------------------------


def _split_in_two(path: Path, out: Path, *, moved: bool = False) -> Path:
    """The TREC file as a headerless label,title,body CSV: each question cut in two after its first words."""
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        rows = [(r["label"], r["text"]) for r in csv.DictReader(fh)]
    if moved:  # the first question again, cut elsewhere: the same text once joined, so a duplicate
        rows.append(rows[0])
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        for i, (label, text) in enumerate(rows):
            words = text.split(" ")
            cut = 1 if moved and i == len(rows) - 1 else 2
            writer.writerow((label, " ".join(words[:cut]), " ".join(words[cut:])))
    return out


def test_joined_text_is_the_text_for_cleaning_fingerprint_and_cache(
    labelled_csvs: tuple[Path, Path], tiny_bert: Path, tmp_path: Path
) -> None:
    from datamodules import prepare_classification_data

    cache = tmp_path / "cache"
    common = {"label_column": "label", "val_fraction": 0.25, "seed": 0, "max_length": 32, "cache_dir": cache}
    train, val = labelled_csvs
    base = prepare_classification_data(
        train_source=str(train), validation_source=str(val), text_column="text", tokenizer_name_or_path=str(tiny_bert),
        **common,
    )  # fmt: skip
    halves = {
        "train_source": str(_split_in_two(train, tmp_path / "train3.csv", moved=True)),
        "validation_source": str(_split_in_two(val, tmp_path / "val3.csv")),
        "columns": ["label", "title", "body"],
        "text_column": ["title", "body"],
        "tokenizer_name_or_path": str(tiny_bert),
    }
    joined = prepare_classification_data(**halves, **common)
    assert joined.report["cleaning"]["train"]["duplicates"] == base.report["cleaning"]["train"]["duplicates"] + 1
    assert joined.report["cleaning"]["train"]["rows_in"] == base.report["cleaning"]["train"]["rows_in"] + 1
    assert joined.fingerprint == base.fingerprint and joined.report["cache"] == "hit"  # the same texts once joined
    other = prepare_classification_data(**halves, text_separator=" | ", **common)
    assert other.fingerprint != base.fingerprint and other.report["cache"] == "miss"
    assert other.report["num_train"] == base.report["num_train"] + 1  # cut elsewhere, no longer the same text


def test_max_length_above_the_tokenizers_limit_is_refused_before_tokenizing(
    labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    from datamodules import prepare_classification_data
    from sweep.encoders import resolve_encoder

    minilm = resolve_encoder("minilm")  # its tokenizer says model_max_length 512
    with pytest.raises(DataError) as info:
        prepare_classification_data(
            train_source=str(labelled_csvs[0]), validation_source=str(labelled_csvs[1]), text_column="text",
            label_column="label", val_fraction=0.25, seed=0, tokenizer_name_or_path=minilm, max_length=1024,
            cache_dir=tmp_path / "cache",
        )  # fmt: skip
    assert info.value.problems == [
        (
            "model.max_length",
            f"1024 is above the limit of {minilm} (512 tokens, its tokenizer's model_max_length): "
            "set model.max_length to 512 or less",
        )
    ]
    assert not (tmp_path / "cache").exists()
