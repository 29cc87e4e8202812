"""An example text for each most-confused label pair: the model names the rows it got wrong (by their index in the
validation split, whatever order they were served in), a pure function picks one text per pair, the report shows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from record import StudyRecord, read_trial, trial_attrs, write_study
from reports.blocks import TableBlock
from reports.classes import MAX_PAIRS, confused_pairs
from sweep.confusions import MAX_EXAMPLE_PAIRS, confused_examples

LABELS = ["a", "b", "c"]


# --- the pure function ------------------------------------------------------------------------------------------


def test_one_example_per_pair_ranked_as_the_report_ranks_them() -> None:
    texts = [f"text {i}" for i in range(10)]
    label_ids = [0, 1, 1, 1, 0, 0, 0, 2, 2, 1]
    # b -> a twice (rows 3 and 1, listed out of order), then a tie of one row each: c -> a is half of c's rows,
    # a -> b a quarter of a's, so c -> a comes first; a row predicted as its own label is no confusion.
    misclassified = [[3, 0], [7, 0], [1, 0], [4, 1], [8, 2]]
    examples = confused_examples(misclassified, texts=texts, label_ids=label_ids, label_names=LABELS)
    assert examples == [
        {"given": "b", "predicted": "a", "text": "text 1"},  # the pair's first row in the split
        {"given": "c", "predicted": "a", "text": "text 7"},
        {"given": "a", "predicted": "b", "text": "text 4"},
    ]
    matrix = [[3, 1, 0], [2, 2, 0], [1, 0, 1]]  # what the evaluation's confusion matrix says
    ranked = [(p.given, p.predicted) for p in confused_pairs(matrix, LABELS)]
    assert [(e["given"], e["predicted"]) for e in examples] == ranked


def test_texts_are_cut_and_the_pairs_bounded() -> None:
    names = [f"intent_{i:02d}" for i in range(30)]
    label_ids = [i for i in range(30) for _ in range(3)]  # 3 rows per class
    texts = [f"row {row} " + "word " * 100 for row in range(90)]
    # every class confuses one row with the next class; class 0 confuses two: the biggest pair comes first
    misclassified = [[3 * i, (i + 1) % 30] for i in range(30)] + [[1, 1]]
    examples = confused_examples(misclassified, texts=texts, label_ids=label_ids, label_names=names)
    assert len(examples) == MAX_EXAMPLE_PAIRS == 20 and MAX_EXAMPLE_PAIRS >= MAX_PAIRS
    assert examples[0] == {"given": "intent_00", "predicted": "intent_01", "text": texts[0][:159] + "…"}
    assert [e["given"] for e in examples[1:]] == names[1:20]  # ties: label order
    assert all(len(e["text"]) == 160 for e in examples)
    assert len(json.dumps(examples)) < MAX_EXAMPLE_PAIRS * 240  # what each trial stores stays small (under 5 kB)
    short = confused_examples(misclassified, texts=texts, label_ids=label_ids, label_names=names, limit=3,
                              max_chars=12)  # fmt: skip
    assert [e["text"] for e in short] == ["row 0 word …", "row 3 word …", "row 6 word …"]


def test_no_rows_known_or_entries_that_name_nothing_give_no_example() -> None:
    texts, label_ids = ["x", "y", "z"], [0, 1, 2]
    assert confused_examples(None, texts=texts, label_ids=label_ids, label_names=LABELS) == []
    assert confused_examples([], texts=texts, label_ids=label_ids, label_names=LABELS) == []
    bad = [[7, 0], [0, 5], [1, 1], [-1, 0]]  # no such row, no such label, no confusion, no such row
    assert confused_examples(bad, texts=texts, label_ids=label_ids, label_names=LABELS) == []
    twice = [[0, 1], [0, 2]]  # one row cannot be wrong twice: its first entry counts
    assert confused_examples(twice, texts=texts, label_ids=label_ids, label_names=LABELS) == [
        {"given": "a", "predicted": "b", "text": "x"}]
    assert confused_examples([[0, 1]], texts=texts[:2], label_ids=label_ids, label_names=LABELS) == []


# --- the record and the report ----------------------------------------------------------------------------------


def test_the_report_shows_the_best_trials_examples() -> None:
    import optuna

    from reports import build_report

    study = optuna.create_study(study_name="intents", direction="maximize")
    write_study(study.set_user_attr, StudyRecord(label_names=LABELS, metric="f1_macro"))
    matrix = [[3, 1, 0], [2, 2, 0], [1, 0, 1]]
    examples = [{"given": "b", "predicted": "a", "text": "where is my <b>parcel</b>"},
                {"given": "a", "predicted": "b", "text": "refund please"}]  # none for c -> a
    for value, stored in ((0.9, examples), (0.5, [{"given": "b", "predicted": "a", "text": "not the best trial"}])):
        study.add_trial(create_trial(value=value, params={"lr": 0.1}, distributions={"lr": FloatDistribution(0, 1)},
                                     user_attrs=trial_attrs(per_class={"a": {"f1": 0.7}}, confusion_matrix=matrix,
                                                            confused_examples=stored)))  # fmt: skip
    assert read_trial(study.trials[0]).confused_examples == examples
    (section,) = [s for s in build_report([study]) if s.title == "Best trial: per class"]
    pairs = section.tables[1]
    assert isinstance(pairs, TableBlock) and pairs.columns[-1] == "example text"
    assert pairs.rows == [["b → a", 2, "50.0%", "where is my <b>parcel</b>"], ["c → a", 1, "50.0%", "-"],
                          ["a → b", 1, "25.0%", "refund please"]]  # fmt: skip


def test_a_store_without_examples_reads_as_none_and_malformed_entries_are_dropped() -> None:
    old = create_trial(value=0.5, user_attrs=trial_attrs(confusion_matrix=[[1, 0], [1, 0]]))
    assert read_trial(old).confused_examples == []
    odd = [{"given": "a", "predicted": "b", "text": "ok", "extra": 1}, {"given": "a", "predicted": "b"}, "text"]
    assert read_trial(create_trial(value=0.5, user_attrs=trial_attrs(confused_examples=odd))).confused_examples == [
        {"given": "a", "predicted": "b", "text": "ok"}]
    assert read_trial(create_trial(value=0.5, user_attrs=trial_attrs(confused_examples="?"))).confused_examples == []


# --- the model: rows by their index in the split, served in length order ------------------------------------------


@pytest.fixture()
def one_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_model_names_wrong_rows_by_their_index_in_the_split(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, one_thread: None
) -> None:
    import pytorch_lightning as pl
    import torch

    from datamodules import TextClassificationDataModule, prepare_classification_data
    from models import SequenceClassifier

    data = prepare_classification_data(
        train_source=str(labelled_csvs[0]), validation_source=str(labelled_csvs[1]), text_column="text",
        label_column="label", val_fraction=0.1, seed=0, tokenizer_name_or_path=str(tiny_bert), max_length=32,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    dm = TextClassificationDataModule(data.train, data.validation, pad_token_id=data.pad_token_id, batch_size=8,
                                      eval_batch_size=8)  # fmt: skip
    served = [row for batch in dm.val_dataloader() for row in batch["row"].tolist()]
    assert sorted(served) == list(range(40)) and served != list(range(40))  # 5 batches, shortest rows first
    pl.seed_everything(0, verbose=False)
    module = SequenceClassifier(encoder_name_or_path=str(tiny_bert), label_names=data.label_names, learning_rate=3e-3)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    (record,) = module.history

    module.eval()  # each row alone, in split order, unpadded
    with torch.no_grad():
        preds = [int(module({k: torch.tensor([data.validation[i][k]]) for k in ("input_ids", "attention_mask",
                                                                               "token_type_ids")}).argmax())
                 for i in range(40)]  # fmt: skip
    given = data.validation["labels"]
    expected = [[i, p] for i, p in enumerate(preds) if p != given[i]]
    assert 0 < len(expected) < 40
    assert record["misclassified"] == expected
    off_diagonal = sum(c for i, row in enumerate(record["confusion_matrix"]) for j, c in enumerate(row) if i != j)
    assert off_diagonal == len(expected)
