"""task: text-pair: the spec key, pair cleaning and tokenisation, a study end to end, and the export via `pipeline`."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import yaml
from conftest import quickstart_subset, split_per_class
from sklearn.metrics import f1_score

from datamodules import DataError, clean_examples, load_table, prepare_classification_data, remove_overlap
from datamodules.encoding import data_fingerprint, tokenize_split
from datamodules.loading import text_like
from record import read_study, study_from_attrs
from sweep.errors import SweepError
from sweep.spec import parse_spec

BASE = {"name": "pairs", "data": {"train": "train.csv"}}
PAIR = {"name": "pairs", "task": "text-pair", "data": {"train": "train.csv", "text_pair_column": "text_b"}}


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(SweepError) as info:
        parse_spec(data)
    return dict(info.value.problems)


# -- spec ---------------------------------------------------------------------------------------------------


def test_task_defaults_to_text_classification_and_leaves_old_specs_as_they_were() -> None:
    old = parse_spec(BASE)
    explicit = parse_spec({**BASE, "task": "text-classification"})
    assert old.task == explicit.task == "text-classification"
    assert old.fingerprint() == explicit.fingerprint()
    # Neither the stored spec nor its data section gains a key an old study did not have.
    dump = explicit.model_dump(mode="json")
    assert "task" not in dump and "text_pair_column" not in dump["data"]


def test_text_pair_spec_is_its_own_study() -> None:
    spec = parse_spec(PAIR)
    assert spec.task == "text-pair" and spec.data.text_pair_column == "text_b"
    assert spec.model_dump(mode="json")["task"] == "text-pair"
    other = parse_spec({**PAIR, "data": {**PAIR["data"], "text_pair_column": "hypothesis"}})
    assert len({spec.fingerprint(), other.fingerprint(), parse_spec(BASE).fingerprint()}) == 3


def test_tasks_not_built_yet_and_unknown_tasks_are_refused_by_name() -> None:
    from sweep.taskspec import TASKS

    available = ", ".join(TASKS)
    assert available.startswith("text-classification, text-pair")
    assert problems_of({**BASE, "task": "nli"}) == {
        "task": f"unknown task 'nli' (available: {available}); did you mean 'text-pair'?"
    }
    assert problems_of({**BASE, "task": "summarization"}) == {"task": f"unknown task 'summarization' (available: "
                                                                      f"{available})"}  # fmt: skip


def test_pair_column_is_required_for_text_pair_and_refused_otherwise() -> None:
    missing = problems_of({**PAIR, "data": {"train": "train.csv"}})
    assert missing == {"data.text_pair_column": "required for task: text-pair: name the column of the second text"}
    extra = problems_of({**BASE, "data": {**BASE["data"], "text_pair_column": "text_b"}})
    assert extra["data.text_pair_column"].startswith("applies only to task: text-pair or regression (this spec")
    # Reported together with the spec's other problems, not instead of them.
    both = problems_of({**PAIR, "data": {"train": "train.csv"}, "search": {"n_trials": "many"}})
    assert set(both) == {"search.n_trials", "data.text_pair_column"}


def test_pair_column_must_be_one_of_data_columns() -> None:
    data = {"train": "t.csv", "columns": ["label", "a", "b"], "text_column": "a", "text_pair_column": "c"}
    assert problems_of({**PAIR, "data": data}) == {
        "data.text_pair_column": "'c' is not one of data.columns (label, a, b)"
    }


def test_an_old_study_record_reads_as_text_classification() -> None:
    assert study_from_attrs({"spec": {"name": "x"}}).task == "text-classification"
    assert study_from_attrs({"task": "text-pair"}).task == "text-pair"


# -- data ---------------------------------------------------------------------------------------------------


def test_only_unread_free_text_columns_read_like_a_second_text() -> None:
    texts = [f"my order {i} never arrived at the door" for i in range(20)]
    assert text_like([f"where is parcel number {i} now" for i in range(20)], texts)  # a second sentence
    assert not text_like([str(i) for i in range(20)], texts)  # ids
    assert not text_like(["billing", "refund"] * 10, texts)  # labels
    assert not text_like(["2026-12-04 10:00"] * 20, texts)  # timestamps: two words, one value
    assert not text_like([" ".join(["word"] * 80)] * 20, texts)  # one long document per row: another kind of text
    assert not text_like([f"a b c {i}" for i in range(10)] + [None] * 10, texts)  # mostly missing


def test_cleaning_treats_the_pair_as_the_example() -> None:
    texts = [
        ("a man  sings", "a person sings"),  # normalised; kept
        ("a man sings", "a person sings"),  # the same pair after normalising: a duplicate
        ("a man sings", "nobody sings"),  # same first text, another pair: kept
        (None, "x"),  # missing side
        ("y", " "),  # empty side
        ("a dog runs", "a cat runs"),  # conflicting labels for one pair: both rows go
        ("a dog runs", "a cat runs"),
    ]
    labels = ["ENT", "ENT", "CON", "NEU", "NEU", "NEU", "CON"]
    result = clean_examples(texts, labels)
    assert result.texts == [("a man sings", "a person sings"), ("a man sings", "nobody sings")]
    assert result.labels == ["ENT", "CON"]
    report = result.report
    assert (report["missing_text"], report["empty_text"], report["duplicates"], report["conflicting_rows"]) == (
        1,
        1,
        1,
        2,
    )
    assert report["normalized"] == 1 and report["rows_out"] == 2  # "a man  sings" (the blank " " side was dropped)
    assert report["conflicting_texts"] == [{"text": "a dog runs ||| a cat runs", "labels": {"CON": 1, "NEU": 1}}]


def test_overlap_is_by_pair() -> None:
    train = [("a", "b"), ("a", "c"), ("b", "a")]
    kept, labels, report = remove_overlap(train, ["x", "y", "z"], [("a", "b")])
    assert kept == [("a", "c"), ("b", "a")] and labels == ["y", "z"]
    assert report == {"train_val_overlap": 1, "overlap_examples": ["a ||| b"]}


def test_load_table_reads_both_columns_and_names_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("premise,hypothesis,label\nthe cat sat,a cat sits,ENT\n", encoding="utf-8")
    table = load_table(str(path), text_column="premise", text_pair_column="hypothesis", label_column="label",
                       field="data.train")  # fmt: skip
    assert table.texts == [("the cat sat", "a cat sits")]
    with pytest.raises(DataError) as info:
        load_table(str(path), text_column="premise", text_pair_column="hypothsis", label_column="label",
                   field="data.train")  # fmt: skip
    assert info.value.problems == [
        (
            "data.text_pair_column",
            "no such column 'hypothsis' in pairs.csv (columns: premise, hypothesis, label); did you mean 'hypothesis'?",
        )
    ]
    # a column another field uses is no suggestion ('sentence2' missing was told to be 'sentence1', the first text)
    path.write_text("sentence1,label\nthe cat sat,ENT\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_table(str(path), text_column="sentence1", text_pair_column="sentence2", label_column="label",
                   field="data.train")  # fmt: skip
    assert info.value.problems == [
        ("data.text_pair_column", "no such column 'sentence2' in pairs.csv (columns: sentence1, label)")]


def test_pairs_are_tokenised_as_pairs_and_truncation_is_counted(tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    long = " ".join(["order"] * 20)
    encoded, truncated = tokenize_split(
        tokenizer, [("the cat sat", "on the mat"), (long, "refund")], [0, 1], max_length=12, fingerprint="t"
    )
    first = encoded[0]
    assert first["input_ids"] == tokenizer("the cat sat", "on the mat")["input_ids"]
    assert first["token_type_ids"] == [0] * 5 + [1] * 4  # [CLS] the cat sat [SEP] | on the mat [SEP]
    second = encoded[1]
    assert len(second["input_ids"]) == 12 and 1 in second["token_type_ids"]  # longest_first kept the short text
    assert truncated == 1


def test_fingerprint_covers_the_pair_and_the_task() -> None:
    ident = {"name": "t"}

    def fp(texts: list, *, pair: bool) -> str:
        splits = {"train": (texts, ["a"] * len(texts)), "validation": (texts, ["a"] * len(texts))}
        return data_fingerprint(tokenizer_id=ident, max_length=8, splits=splits, label_names=["a"], text_pair=pair)

    assert fp([("x", "y")], pair=True) != fp([("x", "z")], pair=True)  # the second text is in the key
    assert fp([("x", "y")], pair=True) != fp(["x y"], pair=False)
    # Single texts keep the key they had before pairs existed (no task in it): their caches and studies stay valid.
    assert fp(["x"], pair=False) == data_fingerprint(
        tokenizer_id=ident, max_length=8, splits={"train": (["x"], ["a"]), "validation": (["x"], ["a"])},
        label_names=["a"],
    )  # fmt: skip


def pair_rows(seed: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """Train (90) and validation (30) pairs of quickstart tickets of one class, labelled with that class (3 classes):
    a pair task the tiny model learns in a few epochs."""
    train, val = split_per_class(quickstart_subset(40, seed=seed, n_classes=3), 10)
    rng = random.Random(seed)

    def pairs(rows: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
        return [(text, rng.choice([t for t, lab in rows if lab == label]), label) for text, label in rows]

    return pairs(train), pairs(val)


def write_pairs(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["premise", "hypothesis", "label"])
        writer.writerows(rows)
    return path


def test_prepared_pairs_have_both_segments_and_their_own_cache(tmp_path: Path, tiny_bert: Path) -> None:
    train = write_pairs(tmp_path / "train.csv", pair_rows(seed=1)[0])
    common = dict(train_source=str(train), validation_source=None, text_column="premise", label_column="label",
                  val_fraction=0.25, seed=0, tokenizer_name_or_path=str(tiny_bert), max_length=64,
                  cache_dir=tmp_path / "cache")  # fmt: skip
    pairs = prepare_classification_data(**common, text_pair_column="hypothesis")  # type: ignore[arg-type]
    short = prepare_classification_data(**{**common, "max_length": 8}, text_pair_column="hypothesis")  # type: ignore[arg-type]
    assert short.report["truncated"]["train"] > 0
    assert any(
        w.endswith("train pairs longer than max_length=8 tokens were truncated") for w in short.report["warnings"]
    )
    single = prepare_classification_data(**common)  # type: ignore[arg-type]
    assert pairs.fingerprint != single.fingerprint
    assert all(1 in row for row in pairs.train["token_type_ids"])
    assert not any(1 in row for row in single.train["token_type_ids"])
    assert pairs.report["text_pair"] is True and "text_pair" not in single.report
    forgotten = "column 'hypothesis' holds texts like data.text_column 'premise' and is not read: if each example"
    assert [w for w in single.report["warnings"] if forgotten in w] == [
        f"train.csv: {forgotten} is a pair of texts, set data.text_pair_column: hypothesis and task: text-pair"
    ]
    assert not any("is not read" in w for w in pairs.report["warnings"])
    assert all(" ||| " in text for text in pairs.validation_texts)
    assert len(list((tmp_path / "cache").iterdir())) == 3


# -- a study, end to end, and its export --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_study(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    from sweep.runner import run_study

    root = tmp_path_factory.mktemp("pair-study")
    train, val = pair_rows(seed=2)
    write_pairs(root / "train.csv", train)
    write_pairs(root / "val.csv", val)
    spec = {
        "name": "pair-tiny",
        "task": "text-pair",
        "storage": f"sqlite:///{root / 'sweeps.db'}",
        "data": {"train": "train.csv", "validation": "val.csv", "text_column": "premise",
                 "text_pair_column": "hypothesis", "cache_dir": str(root / "cache")},
        "model": {"encoder": str(tiny_bert), "max_length": 64},
        "objective": {"metric": "f1_macro"},
        "search": {"n_trials": 2, "sampler": "random", "pruner": "none", "seed": 0,
                   "space": {"learning_rate": {"low": 5e-4, "high": 5e-3, "log": True}, "batch_size": 8,
                             "epochs": 8}},
    }  # fmt: skip
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = run_study(root / "spec.yaml")
    assert not result.resumed
    return root


def test_run_study_on_pairs_records_the_task(pair_study: Path) -> None:
    from optuna.trial import TrialState

    from sweep.storage import load_study

    study = load_study("pair-tiny", f"sqlite:///{pair_study / 'sweeps.db'}")
    record = read_study(study)
    assert record.task == "text-pair" and record.spec["task"] == "text-pair"
    assert record.label_names == ["account", "billing", "product"] and record.data_report["text_pair"] is True
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2


def test_export_of_a_pair_study_loads_with_pipeline_and_reproduces_the_metric(pair_study: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    from sweep.export import export_trial
    from sweep.storage import load_study

    study = load_study("pair-tiny", f"sqlite:///{pair_study / 'sweeps.db'}")
    out, trial = export_trial(study, tmp_path / "model")
    with (pair_study / "val.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    classify = pipeline("text-classification", model=str(out), device=-1)
    inputs = [{"text": r["premise"], "text_pair": r["hypothesis"]} for r in rows]
    predicted = [p["label"] for p in classify(inputs, truncation=True, max_length=64)]
    assert len(set(predicted)) > 1  # a model that learned something: not one label for every pair
    assert f1_score([r["label"] for r in rows], predicted, average="macro") == pytest.approx(trial.value, abs=1e-6)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert 'classify({"text": "first text", "text_pair": "second text"}' in card
    assert json.loads((out / "sweep.json").read_text(encoding="utf-8"))["task"] == "text-pair"


def test_a_store_written_before_tasks_reads_as_text_classification(tmp_path: Path) -> None:
    import shutil

    from sweep.storage import load_study

    copy = shutil.copy(Path(__file__).parent / "fixtures" / "store-main-34edfc5.db", tmp_path / "old.db")
    record = read_study(load_study("legacy-main", f"sqlite:///{copy}"))
    assert record.task == "text-classification"
    assert parse_spec(record.spec).task == "text-classification"


def test_the_data_section_says_its_rows_are_pairs() -> None:
    from reports.blocks import NoteBlock
    from reports.data import PAIR_NOTE, data_blocks

    def notes(report: dict) -> list[str]:
        return [b.text for b in data_blocks(report) if isinstance(b, NoteBlock)]

    assert PAIR_NOTE in notes({"text_pair": True, "num_train": 3})
    assert PAIR_NOTE not in notes({"num_train": 3})
