"""load_table: local files of every supported format, the hub path (monkeypatched), and every error."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pytest

from datamodules import DataError, RawTable, load_table


def load(path: Path | str, text: str = "text", label: str = "label", field: str = "data.train") -> RawTable:
    return load_table(str(path), text_column=text, label_column=label, field=field)


def problems_of(path: Path | str, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(DataError) as info:
        load(path, **kwargs)
    return info.value.problems


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# -- DataError --------------------------------------------------------------------------------------------


def test_data_error_joins_field_and_message_lines_and_pickles() -> None:
    err = DataError([("data.train", "file not found: /x.csv"), ("data.label_column", "no such column 'y'")])
    assert str(err) == "data.train: file not found: /x.csv\ndata.label_column: no such column 'y'"
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert again.problems == err.problems and str(again) == str(err)


# -- reading ----------------------------------------------------------------------------------------------


def test_csv_empty_cells_are_missing_but_na_text_stays_and_labels_are_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", 'text,label,extra\nNA,pos ,x\n,neg,y\nhello,,z\n"a, b",neg,w\n')
    table = load(path)
    assert table.texts == ["NA", None, "hello", "a, b"]
    assert table.labels == ["pos", "neg", None, "neg"]
    assert table.columns == ["text", "label", "extra"]
    assert table.source == str(path)


def test_csv_with_utf8_bom_and_crlf_line_ends(tmp_path: Path) -> None:
    path = write(tmp_path / "excel.csv", "\ufefftext,label\r\ncafé,1\r\n".encode())
    table = load(path)
    assert table.columns == ["text", "label"]
    assert table.texts == ["café"] and table.labels == ["1"]


def test_tsv_is_read_without_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", 'sentence\tlabel\nhe said "hi\t1\nplain\t0\n')
    table = load(path, text="sentence")
    assert table.texts == ['he said "hi', "plain"]
    assert table.labels == ["1", "0"]


@pytest.mark.real_data("sst2/dev.tsv")
def test_real_sst2_dev_tsv_loads_with_int_labels_as_strings(shared_data: Path) -> None:
    table = load(shared_data / "sst2" / "dev.tsv", text="sentence")
    assert len(table.texts) == 872
    assert table.labels.count("0") == 428 and table.labels.count("1") == 444
    assert table.texts[0] == "it 's a charming and often affecting journey . "
    assert all(isinstance(t, str) and t for t in table.texts)


def test_jsonl_keeps_values_and_stringifies_int_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path / "train.jsonl", '{"text": "a", "label": 1}\n\n{"text": null, "label": 0}\n{"text": 5, "note": "x"}\n'
    )
    table = load(path)
    assert table.texts == ["a", None, 5]
    assert table.labels == ["1", "0", None]
    assert table.columns == ["text", "label", "note"]


def test_json_file_may_be_lines_or_a_list(tmp_path: Path) -> None:
    lines = load(write(tmp_path / "a.json", '{"text": "x", "label": "p"}\n{"text": "y", "label": "q"}\n'))
    listed = load(write(tmp_path / "b.json", '[{"text": "x", "label": "p"}, {"text": "y", "label": "q"}]'))
    assert lines.texts == listed.texts == ["x", "y"]
    assert lines.labels == listed.labels == ["p", "q"]


def test_parquet_int_labels_and_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    pd.DataFrame({"text": ["a", "b", None], "label": [1.0, None, 0.0]}).to_parquet(path)
    table = load(path)
    assert table.texts == ["a", "b", None]
    assert table.labels == ["1", None, "0"]


# -- errors -----------------------------------------------------------------------------------------------


def test_missing_file_names_field_and_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    [(field, message)] = problems_of("nope/train.csv", field="data.validation")
    assert field == "data.validation"
    assert message.startswith(f"file not found: {tmp_path / 'nope' / 'train.csv'} (give a .csv, .tsv, .jsonl")
    assert "hub:<dataset>" in message


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    [(field, message)] = problems_of(tmp_path)
    assert field == "data.train" and "is a directory" in message and str(tmp_path) in message


@pytest.mark.parametrize("name", ["train.txt", "SMSSpamCollection", "train.xlsx"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    [(field, message)] = problems_of(write(tmp_path / name, "text,label\na,b\n"))
    assert field == "data.train"
    assert name in message and ".csv, .tsv, .jsonl or .parquet" in message


@pytest.mark.parametrize("name", ["train.csv", "train.tsv", "train.jsonl", "train.parquet"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    [(field, message)] = problems_of(write(tmp_path / name, "  \n"))
    assert field == "data.train" and message.startswith(f"{name} is empty")
    assert ("header line" in message) == name.endswith((".csv", ".tsv"))  # JSON lines and Parquet have none


def test_header_without_rows(tmp_path: Path) -> None:
    [(field, message)] = problems_of(write(tmp_path / "train.csv", "text,label\n"))
    assert (field, message) == ("data.train", "train.csv has a header (text, label) but no rows")


def test_non_utf8_file_says_where_and_what_to_do(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\nok,1\ncafé,1\n".encode("latin-1"))
    [(field, message)] = problems_of(path)
    assert field == "data.train"
    assert "train.csv is not valid UTF-8" in message
    assert "byte 0xe9 at offset 19 (line 3)" in message and "save it as UTF-8" in message


def test_utf16_file_is_recognised(tmp_path: Path) -> None:
    [(_, message)] = problems_of(write(tmp_path / "train.csv", "text,label\nx,1\n".encode("utf-16")))
    assert "looks like UTF-16" in message and "save it as UTF-8" in message


@pytest.mark.parametrize(
    ("name", "content", "looks", "fix"),
    [
        ("train.csv", "text\tlabel\na\tb\n", "looks tab-separated (header 'text\\tlabel')", "to .tsv"),
        ("train.csv", "text;label\na;b\n", "looks semicolon-separated (header 'text;label')", "with commas"),
        ("train.tsv", "text,label\na,b\n", "looks comma-separated (header 'text,label')", "to .csv"),
        ("train.tsv", "text;label\na;b\n", "looks semicolon-separated (header 'text;label')", "with tabs"),
    ],
)
def test_wrong_delimiter(tmp_path: Path, name: str, content: str, looks: str, fix: str) -> None:
    [(field, message)] = problems_of(write(tmp_path / name, content))
    assert field == "data.train"
    assert message.startswith(f"{name} {looks}: ") and fix in message


def test_a_tab_separated_file_whose_texts_hold_commas_is_told_apart(tmp_path: Path) -> None:
    """The SMS Spam Collection (`label<TAB>text`, no header) uploaded as raw.csv: its first line holds commas too, so
    the header rule saw nothing and pandas' "Expected 2 fields" came with a hint about quoting commas."""
    lines = ["ham\tGo until jurong point, crazy.. Available only in bugis n great world la e buffet...",
             "ham\tOk lar... Joking wif u oni...", "spam\tFree entry in 2 a wkly comp to win FA Cup final tkts, 21st",
             "ham\tU dun say so early hor... U c already then say...", "ham\tNah I think he goes to usf, he lives"]
    [(field, message)] = problems_of(write(tmp_path / "raw.csv", "\n".join(lines) + "\n"))
    assert field == "data.train"
    assert message.startswith("raw.csv looks tab-separated (each of its first lines has the same number of tabs; ")
    assert message.endswith("rename it to .tsv (or link it under a .tsv name)")
    # a CSV whose quoted texts hold a tab each is still read as a CSV
    rows = ['"a\tb, c",x', '"d\te",y', '"f,g,h\ti",x', '"j\tk",y']
    assert load(write(tmp_path / "quoted.csv", "text,label\n" + "\n".join(rows) + "\n")).labels == ["x", "y", "x", "y"]


def test_missing_columns_are_all_reported_with_existing_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\na,b\n")
    problems = problems_of(path, text="sentence", label="lable")
    assert problems == [
        ("data.text_column", "no such column 'sentence' in train.csv (columns: text, label)"),
        ("data.label_column", "no such column 'lable' in train.csv (columns: text, label); did you mean 'label'?"),
    ]


def test_column_differing_only_in_case_is_suggested(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path / "train.csv", "Text,Label\na,b\n"))
    assert [f for f, _ in problems] == ["data.text_column", "data.label_column"]
    assert problems[0][1].endswith("did you mean 'Text'?")
    assert problems[1][1].endswith("did you mean 'Label'?")


def test_text_and_label_column_must_differ(tmp_path: Path) -> None:
    [(field, message)] = problems_of(write(tmp_path / "train.csv", "text,label\na,b\n"), label="text")
    assert field == "data.label_column" and "same column as data.text_column ('text')" in message


def test_rows_with_an_extra_field_name_the_line(tmp_path: Path) -> None:
    [(field, message)] = problems_of(write(tmp_path / "train.csv", "text,label\na,pos\nhi, there,neg\n"))
    assert field == "data.train"
    assert "cannot parse train.csv: Expected 2 fields in line 3, saw 3" in message
    assert "double quotes" in message


def test_every_row_with_an_extra_field_is_not_silently_shifted(tmp_path: Path) -> None:
    [(field, message)] = problems_of(write(tmp_path / "train.csv", "text,label\nhi, a,pos\nyo, b,neg\n"))
    assert field == "data.train"
    assert "more fields than its header has columns" in message


def test_bad_json_lines_are_listed(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n{oops\n')
    [(field, message)] = problems_of(path)
    assert field == "data.train"
    assert "cannot read train.jsonl as JSON lines" in message
    assert "line 2 is a JSON list, not an object" in message
    assert "line 3 is not valid JSON" in message


def test_corrupt_parquet(tmp_path: Path) -> None:
    [(field, message)] = problems_of(write(tmp_path / "train.parquet", b"PAR1 not really"))
    assert field == "data.train" and message.startswith("cannot read train.parquet as Parquet")


# -- hub --------------------------------------------------------------------------------------------------


@pytest.fixture()
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """datasets.load_dataset replaced by a recorder returning a small ClassLabel dataset."""
    calls: list[tuple[Any, ...]] = []
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )

    def load_dataset(name: str, config: str | None = None, *, split: str) -> datasets.Dataset:
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(
            {"sentence": ["good", "bad", None, "meh"], "label": [1, 0, 1, -1]}, features=features
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_source_maps_class_labels_to_names(fake_hub: list[tuple[Any, ...]]) -> None:
    table = load_table("hub:glue:sst2", text_column="sentence", label_column="label", field="data.train")
    assert fake_hub == [("glue", "sst2", "train")]
    assert table.texts == ["good", "bad", None, "meh"]
    assert table.labels == ["positive", "negative", "positive", None]  # -1 means unlabelled
    assert table.columns == ["sentence", "label"] and table.source == "hub:glue:sst2"


def test_hub_source_without_config_and_with_split(fake_hub: list[tuple[Any, ...]]) -> None:
    load_table(
        "hub:user/reviews", text_column="sentence", label_column="label", field="data.validation", split="validation"
    )
    load_table(
        "hub:imdb::test", text_column="sentence", label_column="label", field="data.validation", split="validation"
    )
    assert fake_hub == [("user/reviews", None, "validation"), ("imdb", None, "test")]


def test_hub_missing_column_names_the_source(fake_hub: list[tuple[Any, ...]]) -> None:
    with pytest.raises(DataError) as info:
        load_table("hub:glue:sst2", text_column="text", label_column="label", field="data.train")
    assert info.value.problems == [
        ("data.text_column", "no such column 'text' in hub:glue:sst2 (columns: sentence, label)"),
    ]


def test_hub_load_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        load_table("hub:glue:sst2", text_column="sentence", label_column="label", field="data.train")
    [(field, message)] = info.value.problems
    assert field == "data.train"
    assert message.startswith("could not load hub:glue:sst2 (split 'train') from the Hugging Face hub")
    assert "ConnectionError: Couldn't reach" in message


def test_hub_without_a_name(fake_hub: list[tuple[Any, ...]]) -> None:
    with pytest.raises(DataError) as info:
        load_table("hub:", text_column="sentence", label_column="label", field="data.train")
    assert info.value.problems[0][0] == "data.train" and "hub:<dataset>" in info.value.problems[0][1]
    assert fake_hub == []


def test_data_suffixes_are_the_formats_read() -> None:
    from datamodules import DATA_SUFFIXES, DELIMITERS
    from datamodules.loading import _READERS

    assert set(DATA_SUFFIXES) == set(_READERS) and set(DELIMITERS) <= set(DATA_SUFFIXES)


def test_a_header_naming_a_column_twice_is_refused_and_excels_blank_spare_columns_are_not(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path / "dup.csv", "text,label,text\na,b,c\n")) == [
        ("data.train", "dup.csv's header names 'text' twice (columns: text, label, text): give each column its own "
                       "name")]  # fmt: skip
    assert load(write(tmp_path / "spare.csv", "text,label,,\na,b,,\nc,d,,\n")).labels == ["b", "d"]


def test_rows_repeating_the_header_of_joined_files_are_refused_with_their_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "joined.tsv", "text\tlabel\na\tx\nb\ty\ntext\tlabel\nc\tx\n")
    assert problems_of(path) == [("data.train", "joined.tsv row 3 repeats the header (text, label): files joined "
                                                "with their header lines? delete that line")]  # fmt: skip


def test_a_json_list_or_object_where_one_text_or_label_belongs_is_refused_with_its_row(tmp_path: Path) -> None:
    path = write(tmp_path / "nested.jsonl", '{"text": "a", "label": ["billing"]}\n{"text": "b", "label": "x"}\n'
                                            '{"text": {"subject": "s", "body": "b"}, "label": "x"}\n'
                                            '{"text": "c", "label": ["x", "y"]}\n{"text": "d", "label": true}\n')
    assert problems_of(path) == [
        ("data.text_column", 'nested.jsonl row 3: \'text\' holds a JSON object ({"subject": "s", "body": "b"}), not '
                             "one value: to join several keys into one text, put them at the top level of each "
                             "object and name them: data.text_column: [subject, body]"),
        ("data.label_column", 'nested.jsonl row 1: \'label\' holds a JSON list (["billing"]), not one value (and 1 '
                              "more row): several labels per text are task: multi-label"),
    ]  # fmt: skip
    flat = write(tmp_path / "flat.jsonl", '{"text": "d", "label": true}\n{"text": "e", "label": false}\n')
    assert load(flat).labels == ["True", "False"]  # a JSON boolean is one label


def test_a_column_name_with_spaces_around_it_shows_quoted_with_how_to_write_it_in_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "excel.csv", " Text ,label\na,b\n")
    assert problems_of(path, text="Text") == [
        ("data.text_column", "no such column 'Text' in excel.csv (columns: ' Text ', label); did you mean ' Text '? "
                             '(in YAML, quoted: text_column: " Text ")')]  # fmt: skip


def test_a_json_list_with_a_stray_comma_is_called_a_list_and_the_line_before_is_suspected(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.json", '[\n{"text": "a", "label": "b"},\n]\n')
    ((field, message),) = problems_of(path)
    assert field == "data.train" and message.startswith("cannot read rows.json as a JSON list of objects (like [")
    assert message.endswith("line 3 (or just before it) is not valid JSON (Expecting value)")


def test_rows_nested_under_one_key_of_a_json_object_are_named(tmp_path: Path) -> None:
    rows = '[{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]'
    expected = [("data.train", "export.json holds one JSON object with its rows under 'data': give the rows "
                               "themselves, as a JSON list of objects or one object per line (JSON lines)")]
    assert problems_of(write(tmp_path / "export.json", '{"data": ' + rows + "}\n")) == expected
    pretty = '{\n  "version": 2,\n  "data": ' + rows.replace("}, {", "},\n    {") + "\n}\n"
    assert problems_of(write(tmp_path / "export.json", pretty)) == expected


def test_a_headerless_file_with_rows_of_several_lengths_is_named_as_headerless(tmp_path: Path) -> None:
    """STS-B's files have no header and 7 or 9 fields a row (the longer rows late): pandas failed on the first long
    row, and its "Expected 7 fields" came with a hint about tabs in texts, not the missing header."""
    rows = [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{i % 5}.000\tA man is playing a large flute {i}.\tA man plays."
            for i in range(30)]
    rows.append("main-forums\tdeft\t2014\t0031\t2.000\tA sentence with two more fields.\tAnother one.\tsrc1\tsrc2")
    [(field, message)] = problems_of(write(tmp_path / "sts.tsv", "\n".join(rows) + "\n"), text="s1", label="score")
    assert field == "data.train"
    assert message.startswith("sts.tsv looks like it has no header row (its first row reads as data: 'main-captions'")
    assert "its rows have up to 9 fields: give its 9 columns with data.columns: [...]" in message
