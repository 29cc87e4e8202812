"""Spec validation: every problem at once, each naming the field, the rule and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import SweepError
from sweep.spec import RangeParam, check_paths, load_spec, parse_spec

GOOD = {
    "name": "trec-minilm",
    "storage": "sqlite:///sweeps.db",
    "data": {
        "train": "data/train.csv",
        "validation": "data/val.csv",
        "text_column": "text",
        "label_column": "label",
        "val_fraction": 0.1,
    },
    "model": {"encoder": "minilm", "max_length": 128},
    "objective": {"metric": "f1_macro"},
    "search": {
        "n_trials": 20,
        "sampler": "tpe",
        "pruner": "median",
        "seed": 0,
        "space": {
            "learning_rate": {"low": 1.0e-5, "high": 1.0e-4, "log": True},
            "batch_size": [16, 32],
            "epochs": {"low": 2, "high": 4},
            "weight_decay": {"low": 0.0, "high": 0.1},
            "warmup_ratio": {"low": 0.0, "high": 0.1},
        },
    },
}


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(SweepError) as info:
        parse_spec(data)
    return dict(info.value.problems)


def test_issue_example_parses() -> None:
    spec = parse_spec(GOOD)
    space = spec.search.space
    assert isinstance(space.learning_rate, RangeParam) and space.learning_rate.log
    assert isinstance(space.epochs, RangeParam) and space.epochs.is_int
    assert isinstance(space.weight_decay, RangeParam) and not space.weight_decay.is_int
    assert space.batch_size == [16, 32]
    assert space.dropout == 0.1  # left out: fixed default


def test_every_problem_reported_at_once() -> None:
    bad = {
        "name": "x",
        "colour": "red",
        "data": {"train": "a.csv", "lable": "y"},
        "search": {
            "sampler": "annealing",
            "pruner": "never",
            "space": {
                "learning_rate": {"low": 1e-3, "high": 1e-5},
                "weight_decay": {"low": 0.0, "high": 0.1, "log": True},
                "batch_size": [],
                "momentum": 0.9,
            },
        },
    }
    problems = problems_of(bad)
    assert "unknown key" in problems["colour"]
    assert "unknown key" in problems["data.lable"] and "label_column" in problems["data.lable"]
    assert problems["data.lable"].endswith("; did you mean 'label_column'?")
    assert "did you mean" not in problems["colour"]  # nothing close among the top-level keys
    assert "'annealing'" in problems["search.sampler"] and "'tpe'" in problems["search.sampler"]
    assert "'never'" in problems["search.pruner"]
    assert problems["search.space.learning_rate"] == "low <= high must hold, got low=0.001, high=1e-05"
    assert "log: true needs low > 0, got low=0.0" in problems["search.space.weight_decay"]
    assert "empty list of choices" in problems["search.space.batch_size"]
    assert "unknown key" in problems["search.space.momentum"] and "learning_rate" in problems["search.space.momentum"]
    assert len(problems) == 8


def test_types_and_rules() -> None:
    bad = {
        "name": "x",
        "data": {"train": "a.csv", "val_fraction": 1.5},
        "model": {"max_length": "long"},
        "search": {"n_trials": 0, "space": {"epochs": {"low": 1.5, "high": 3}, "batch_size": [16, -1], "dropout": "x"}},
    }
    problems = problems_of(bad)
    assert "1.5" in problems["data.val_fraction"]
    assert "'long'" in problems["model.max_length"]
    assert "0" in problems["search.n_trials"]
    assert "an integer in [1, 1000]" in problems["search.space.epochs"]
    assert "-1" in problems["search.space.batch_size"]
    assert "'x'" in problems["search.space.dropout"]


def test_values_no_fine_tuning_means_are_refused_as_typos() -> None:
    """A service user's epochs: 100000 held the team's one worker for days; a learning rate range up to 1e9
    "completed" at chance, and the advice said to raise it."""
    space = {"epochs": 100000, "learning_rate": {"low": 1, "high": 1.0e9, "log": True}, "batch_size": [100000000]}
    problems = problems_of({"name": "x", "data": {"train": "a.csv"}, "search": {"space": space}})
    assert problems["search.space.epochs"] == "must be an integer in [1, 1000], got 100000"
    assert problems["search.space.learning_rate"] == "must be in (0, 1], got 1000000000.0"
    assert problems["search.space.batch_size"] == "must be an integer in [1, 65536], got 100000000"


def test_missing_required_and_non_mapping() -> None:
    problems = problems_of({"data": {}})
    assert problems["name"] == "required key is missing"
    assert problems["data.train"] == "required key is missing"
    with pytest.raises(SweepError, match="must be a mapping"):
        parse_spec(["a", "b"])


def test_grid_needs_finite_space() -> None:
    data = {**GOOD, "search": {**GOOD["search"], "sampler": "grid"}}
    problems = problems_of(data)
    assert "learning_rate" in problems["search"] and "step" in problems["search"]


def test_fingerprint_ignores_budget_and_storage() -> None:
    a = parse_spec(GOOD)
    b = parse_spec({**GOOD, "storage": "sqlite:///other.db", "search": {**GOOD["search"], "n_trials": 50}})
    c = parse_spec({**GOOD, "model": {"encoder": "minilm", "max_length": 64}})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


def test_load_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ndata:\n  train: [a.csv\n")
    with pytest.raises(SweepError) as info:
        load_spec(broken)
    assert str(info.value) == f"{broken}: line 4, column 1: malformed YAML: expected ',' or ']', but got '<stream end>'"
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SweepError, match="UTF-8"):
        load_spec(latin)


def test_check_paths_resolves_against_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\n")
    (tmp_path / "data" / "notes.txt").write_text("x")
    spec = parse_spec({"name": "x", "data": {"train": "data/train.csv", "validation": "data/missing.csv"}})
    problems = dict(check_paths(spec, tmp_path))
    assert problems == {"data.validation": f"file not found: {tmp_path / 'data' / 'missing.csv'}"}
    spec = parse_spec({"name": "x", "data": {"train": "data/notes.txt", "validation": "hub:trec"}})
    assert "unsupported file type '.txt'" in dict(check_paths(spec, tmp_path))["data.train"]
    # SICK.txt is a TSV: the message says so, and how to link it
    (tmp_path / "data" / "SICK.txt").write_text("pair_ID\tsentence_A\tlabel\r\n1\ta b\tX\r\n2\tc, d\tY\r\n3\te\tZ")
    spec = parse_spec({"name": "x", "data": {"train": "data/SICK.txt"}})
    assert dict(check_paths(spec, tmp_path))["data.train"].endswith(
        "; it looks tab-separated: link it under a .tsv name (ln -s SICK.txt SICK.tsv) or copy it to one")
    (tmp_path / "data" / "SMSSpamCollection").write_text("ham\thello\n")  # as the SMS spam corpus ships
    spec = parse_spec({"name": "x", "data": {"train": "data/SMSSpamCollection"}})
    assert "give it one with an extension, e.g. a link (ln -s FILE train.tsv" in dict(check_paths(spec, tmp_path))[
        "data.train"
    ]
    with pytest.raises(SweepError, match=r"data.format: must be one of 'conll' or 'jsonl', got 'tsv' \(the format of "
                                         r"task: token-classification's files; a table is read by its suffix"):
        parse_spec({"name": "x", "data": {"train": "t.csv", "format": "tsv"}})
    (tmp_path / "data" / "wnut.conll").write_text("word\tO\n")
    spec = parse_spec({"name": "x", "data": {"train": "data/wnut.conll"}})  # task: forgotten
    assert dict(check_paths(spec, tmp_path))["data.train"].endswith(
        "; a .conll file holds tagged words: set task: token-classification"
    )


def test_schema_and_file_problems_reported_together(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\ncolour: red\ndata: {train: missing.csv}\nsearch: {space: {epochs: {low: 3, high: 1}}}\n")
    with pytest.raises(SweepError) as info:
        load_spec(spec)
    problems = dict(info.value.problems)
    assert set(problems) == {"colour", "search.space.epochs", "data.train"}
    assert problems["data.train"] == f"file not found: {tmp_path / 'missing.csv'}"


def test_study_name_rule_is_said_in_words() -> None:
    problems = problems_of({**GOOD, "name": "team/study"})
    assert problems == {
        "name": "'team/study' may contain only letters, digits, '_', '.' and '-', starting with a letter or digit "
        "(it names the study in the store and its checkpoint folder)"
    }


def test_fingerprint_of_a_spec_without_the_new_data_keys_is_unchanged() -> None:
    # Values computed by main before data.columns and data.text_separator existed: those studies still resume. They
    # also ran without a pruning warm-up and with two evaluations inside epoch 1 (the defaults then; now 1.0 and 0):
    # the spec that names those values has their fingerprint (a spec file that leaves the keys out continues them with
    # the stored values, tests/test_prune_after.py).
    old = {**GOOD, "search": {**GOOD["search"], "prune_after_epochs": 0, "first_epoch_evals": 2}}
    assert parse_spec(old).fingerprint() == "4ffe5178114e6552" != parse_spec(GOOD).fingerprint()
    assert parse_spec({**old, "data": {**GOOD["data"], "text_column": "sentence"}}).fingerprint() == "58baac6bff57cabf"
    explicit = {**GOOD["data"], "text_separator": " ", "columns": None}
    assert parse_spec({**old, "data": explicit}).fingerprint() == "4ffe5178114e6552"
    for changed in ({"text_separator": ". "}, {"text_column": ["text"]}, {"columns": ["text", "label"]}):
        assert parse_spec({**old, "data": {**GOOD["data"], **changed}}).fingerprint() != "4ffe5178114e6552"
    # The stored spec too: a study's spec diff never lists keys its spec did not have (data.text_separator).
    dumped = parse_spec({**GOOD, "data": explicit}).model_dump(mode="json")["data"]
    assert set(dumped) == {"train", "validation", "text_column", "label_column", "val_fraction", "cache_dir"}


def test_fingerprint_of_the_study_in_a_store_written_by_main_is_unchanged(tmp_path: Path) -> None:
    import shutil

    from record import read_study
    from sweep.storage import load_study

    copy = shutil.copy(Path(__file__).parent / "fixtures" / "store-main-34edfc5.db", tmp_path / "old.db")
    record = read_study(load_study("legacy-main", f"sqlite:///{copy}"))
    assert parse_spec(record.spec_as_it_ran).fingerprint() == record.spec_fingerprint


def test_text_column_may_list_several_columns() -> None:
    spec = parse_spec({**GOOD, "data": {**GOOD["data"], "text_column": ["title", "body"], "text_separator": ". "}})
    assert spec.data.text_column == ["title", "body"] and spec.data.text_separator == ". "
    assert parse_spec(GOOD).data.text_separator == " "
    for bad, message in (
        ([], "must be a column name or a list of column names (joined by data.text_separator), got []"),
        (["a", "a"], "names 'a' more than once"),
        (5, "must be a column name or a list of column names (joined by data.text_separator), got 5"),
    ):
        assert problems_of({**GOOD, "data": {**GOOD["data"], "text_column": bad}}) == {"data.text_column": message}


def test_columns_are_for_headerless_csv_and_tsv_and_must_name_the_text_and_label() -> None:
    data = {"train": "ag_news/train.csv", "validation": "ag_news/test.csv", "columns": ["label", "title", "body"]}
    spec = parse_spec({"name": "ag", "data": {**data, "text_column": ["title", "body"]}})
    assert spec.data.columns == ["label", "title", "body"]
    problems = problems_of({"name": "ag", "data": {**data, "text_column": ["title", "text"], "label_column": "class"}})
    assert problems == {
        "data.text_column": "'text' is not one of data.columns (label, title, body)",
        "data.label_column": "'class' is not one of data.columns (label, title, body)",
    }
    problems = problems_of({"name": "ag", "data": {**data, "validation": "hub:ag_news"}})
    assert problems == {"data.columns": "applies only to .csv and .tsv files without a header row, not hub:ag_news"}
    assert "more than once" in problems_of({"name": "ag", "data": {**data, "columns": ["a", "a"]}})["data.columns"]


def test_schema_problem_and_missing_column_reported_together(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\na,b\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nsearch: {n_trials: many}\ndata: {train: train.csv, label_column: lable}\n")
    with pytest.raises(SweepError) as info:
        load_spec(spec)
    assert info.value.problems == [
        ("search.n_trials", "Input should be a valid integer, unable to parse string as an integer, got 'many'"),
        ("data.label_column", "no such column 'lable' in train.csv (columns: text, label); did you mean 'label'?"),
    ]


def test_schema_problem_and_headerless_file_reported_together(tmp_path: Path) -> None:
    rows = '"3","Wall St. Bears Claw Back Into the Black","Reuters - Short-sellers"\n"4","Carlyle","Reuters"\n'
    (tmp_path / "train.csv").write_text(rows)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: team/x\ndata: {train: train.csv, text_column: [title, description]}\n")
    with pytest.raises(SweepError) as info:
        load_spec(spec)
    problems = dict(info.value.problems)
    assert set(problems) == {"name", "data.train"}
    assert problems["data.train"].endswith("give its 3 columns with data.columns: [label, title, description]")


def test_an_invalid_data_section_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\na,b\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\ndata: {train: train.csv, label_column: lable, val_fraction: 2}\n")
    with pytest.raises(SweepError) as info:
        load_spec(spec)
    assert [where for where, _ in info.value.problems] == ["data.val_fraction"]  # the column waits for a valid section


def test_each_task_optimises_its_own_default_metric_and_refuses_another_tasks_metric() -> None:
    from sweep.taskspec import TASK_METRICS, default_metric, direction, metric_problem

    assert default_metric("text-classification") == "f1_macro"
    assert default_metric("regression") == "spearman" and direction("rmse") == "minimize"
    assert direction("f1_micro") == "maximize"
    assert metric_problem("regression", "f1_macro") == (
        "'f1_macro' is not a metric of task: regression (choose one of spearman, pearson, rmse)"
    )
    assert all(metric_problem(task, metric) is None for task, metrics in TASK_METRICS.items() for metric in metrics)
    spec = parse_spec({"name": "s", "data": {"train": "t.csv"}, "objective": {"metric": "accuracy"}})
    assert spec.objective.metric == "accuracy"
    with pytest.raises(SweepError, match="objective.metric: 'rmse' is not a metric of task: text-classification"):
        parse_spec({"name": "s", "data": {"train": "t.csv"}, "objective": {"metric": "rmse"}})


def test_a_symlink_is_read_by_its_own_name(tmp_path: Path) -> None:
    """STS-B ships tab-separated files named .csv, read-only: a link named .tsv is how a user reads them as TSV
    (its target's name decided the format, so the link changed nothing)."""
    from datamodules import load_table
    from sweep.dataspec import resolve_data_path

    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "sts-train.csv"
    target.write_text("text\tlabel\na b, c\tx\nd e, f\ty\n", encoding="utf-8")
    (tmp_path / "train.tsv").symlink_to(target)
    path = resolve_data_path("train.tsv", tmp_path)
    assert path == str(tmp_path / "train.tsv")
    table = load_table(path, text_column="text", label_column="label", field="data.train")
    assert table.texts == ["a b, c", "d e, f"] and table.labels == ["x", "y"]
    assert resolve_data_path("data/../train.tsv", tmp_path) == str(tmp_path / "train.tsv")  # still normalised


def test_keys_that_would_do_nothing_are_refused_in_a_spec_file_but_not_in_a_stored_spec() -> None:
    """A stored spec spells out every default and ran once already: a worker rebuilding it is not refused."""
    body = {"name": "s", "data": {"train": "t.csv", "validation": "v.csv", "val_fraction": 0.2}}
    with pytest.raises(SweepError) as err:
        parse_spec(body)
    assert err.value.problems == [("data.val_fraction", "0.2 would split data.train, and data.validation names the "
                                   "validation file: remove it (or remove data.validation to split data.train)")]
    assert parse_spec(body, stored=True).data.val_fraction == 0.2
    dumped = parse_spec({"name": "s", "data": {"train": "t.csv", "validation": "v.csv"}}).model_dump(mode="json")
    assert dumped["data"]["val_fraction"] == 0.1 and parse_spec(dumped).data.validation == "v.csv"  # the default passes
    conll = {"name": "s", "task": "token-classification", "data": {"train": "t.txt", "format": "conll",
                                                                    "label_column": "ner"}}  # fmt: skip
    with pytest.raises(SweepError, match="data.label_column"):
        parse_spec(conll)
    jsonl = {**conll, "data": {"train": "t.jsonl", "label_column": "ner"}}
    assert parse_spec(jsonl).data.label_column == "ner"


def test_a_trainer_argument_name_gets_the_key_that_means_the_same_here() -> None:
    with pytest.raises(SweepError) as err:
        parse_spec({"name": "s", "data": {"train": "t.csv"},
                    "search": {"space": {"per_device_train_batch_size": 16, "num_train_epochs": 3}}})  # fmt: skip
    text = str(err.value)
    assert "search.space.per_device_train_batch_size: unknown key" in text and "did you mean 'batch_size'?" in text
    assert "did you mean 'epochs'?" in text
    with pytest.raises(SweepError) as err:
        parse_spec({"name": "s", "data": {"train": "t.csv"},
                    "trainer": {"gradient_accumulation_steps": 4, "max_grad_norm": 1.0}})  # fmt: skip
    text = str(err.value)
    assert "did you mean 'accumulate_grad_batches'?" in text and "did you mean 'gradient_clip_val'?" in text
    with pytest.raises(SweepError) as err:
        parse_spec({"name": "s", "data": {"train": "t.csv"},
                    "search": {"space": {"gradient_accumulation_steps": [1, 2]}}})  # fmt: skip
    assert "that is trainer.accumulate_grad_batches here, one value for the whole study" in str(err.value)
    with pytest.raises(SweepError) as err:
        parse_spec({"name": "s", "data": {"train": "t.csv"}, "search": {"space": {"lr_schedule": ["linear", "cosine"],
                    "early_stopping_patience": [2, 3]}}})  # fmt: skip
    assert "search.space.lr_schedule: unknown key" in str(err.value) and "that is trainer.lr_schedule here" in str(
        err.value) and "that is trainer.early_stopping_patience here" in str(err.value)  # fmt: skip



@pytest.mark.parametrize("given", [{"accumulate_grad_batches": True}, {"accumulate_grad_batches": "3"},
                                   {"accumulate_grad_batches": 2.0}, {"gradient_clip_val": True}])  # fmt: skip
def test_trainer_numbers_are_not_read_from_booleans_strings_or_whole_floats(given: dict[str, object]) -> None:
    (key,) = given
    with pytest.raises(SweepError) as err:
        parse_spec({"name": "s", "data": {"train": "t.csv"}, "trainer": given})
    assert err.value.lines()[0].startswith(f"spec: trainer.{key}: Input should be a valid")


def test_a_numeric_positive_label_means_the_label_as_the_files_give_it() -> None:
    """0/1 labels are read as the texts "0" and "1": `positive_label: 1` (a YAML number) names "1"."""
    spec = parse_spec({**GOOD, "objective": {"metric": "f1_binary", "positive_label": 1}})
    assert spec.objective.positive_label == "1"
    assert "positive_label" not in parse_spec(GOOD).model_dump()["objective"]  # unset: older studies' specs unchanged
    assert parse_spec({**GOOD, "objective": {"metric": "f1_binary", "positive_label": 1.0}}).objective.positive_label \
        == "1"
    assert parse_spec({**GOOD, "objective": {"metric": "f1_binary", "positive_label": " spam "}}).objective \
        .positive_label == "spam"  # as cleaning strips labels
    with pytest.raises(SweepError, match='objective.positive_label: YAML read True as a boolean: quote the label'):
        parse_spec({**GOOD, "objective": {"metric": "f1_binary", "positive_label": True}})


def test_the_budget_cap_is_for_new_input_a_stored_spec_with_more_still_reads() -> None:
    """A study stored before the cap (or with a budget raised past it) must still load for its workers."""
    big = {**GOOD, "search": {**GOOD["search"], "n_trials": 20000}}
    with pytest.raises(SweepError, match=r"search.n_trials: must be at most 10,000 .*, got 20,000"):
        parse_spec(big)
    assert parse_spec(big, stored=True).search.n_trials == 20000


@pytest.mark.parametrize("empty", ["", " ", float("nan")])
def test_a_positive_label_that_names_no_class_is_refused(empty: object) -> None:
    """`positive_label: " "` passed every check and three trials failed on a metric never logged."""
    with pytest.raises(SweepError, match="objective.positive_label: .* names no class"):
        parse_spec({**GOOD, "objective": {"metric": "f1_binary", "positive_label": empty}})


@pytest.mark.parametrize("budget", ["20000", 20000.0])
def test_the_budget_cap_holds_for_a_budget_written_as_text_or_a_float(budget: object) -> None:
    with pytest.raises(SweepError, match="search.n_trials: must be at most 10,000"):
        parse_spec({**GOOD, "search": {**GOOD["search"], "n_trials": budget}})
