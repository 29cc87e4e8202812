"""prepare_classification_data end to end (quickstart tickets, tiny BERT tokenizer), its cache, and the data module."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_csv
from transformers import AutoTokenizer

import datamodules.preparation as preparation
from datamodules import DataError, PreparedData, TextClassificationDataModule, prepare_classification_data

ENGLISH = [
    "the cat sat on the mat",
    "good movie",
    "great film",
    "bad service",
    "awful order",
    "fine refund",
    "the film was good",
    "the order was bad",
    "great great film",
    "awful awful service",
]


def prepare(
    train: Path | str, validation: Path | str | None, cache_dir: Path, tokenizer: Path, **kwargs: Any
) -> PreparedData:
    """prepare_classification_data with test defaults (val_fraction 0.25, max_length 64)."""
    options: dict[str, Any] = {
        "text_column": "text",
        "label_column": "label",
        "val_fraction": 0.25,
        "seed": 0,
        "max_length": 64,
    }
    options.update(kwargs)
    return prepare_classification_data(
        train_source=str(train),
        validation_source=None if validation is None else str(validation),
        tokenizer_name_or_path=str(tokenizer),
        cache_dir=cache_dir,
        **options,
    )


def read_rows(path: Path) -> list[tuple[str, str]]:
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        return [(row["text"], row["label"]) for row in csv.DictReader(fh)]


def count_tokenize_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = preparation.tokenize_split

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(preparation, "tokenize_split", counting)
    return calls


# -- prepare_classification_data --------------------------------------------------------------------------


def test_given_validation(labelled_csvs: tuple[Path, Path], tiny_bert: Path, tmp_path: Path) -> None:
    train_csv, val_csv = labelled_csvs
    lines: list[str] = []
    data = prepare(train_csv, val_csv, tmp_path / "cache", tiny_bert, log=lines.append)
    train_rows, val_rows = read_rows(train_csv), read_rows(val_csv)

    assert data.label_names == sorted({label for _, label in train_rows})
    assert len(data.label_names) == 4
    assert set(data.train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels", "length"}
    assert data.report["cleaning"]["train"]["rows_out"] == len(train_rows) == 120
    assert data.report["overlap"]["train_val_overlap"] == 0
    assert len(data.train) == data.report["num_train"] == 120
    assert len(data.validation) == data.report["num_validation"] == 40
    assert [data.label_names[i] for i in data.train["labels"]] == [label for _, label in train_rows]
    assert [data.label_names[i] for i in data.validation["labels"]] == [label for _, label in val_rows]
    assert data.validation_texts == [text for text, _ in val_rows]  # the cleaned texts, in row order

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    for i in (0, 57, 119):
        expected = tokenizer(train_rows[i][0], truncation=True, max_length=64)["input_ids"]
        assert data.train[i]["input_ids"] == expected
        assert data.train[i]["length"] == len(expected)
    assert data.pad_token_id == tokenizer.pad_token_id
    assert len(data.fingerprint) == 64 and int(data.fingerprint, 16) >= 0

    report = data.report
    assert json.loads(json.dumps(report)) == report
    assert report["split"] == "given"
    assert report["train"] == str(train_csv) and report["validation"] == str(val_csv)
    assert report["class_distribution"]["validation"] == {label: 10 for label in data.label_names}
    assert report["class_distribution"]["train"] == {label: 30 for label in data.label_names}
    assert report["label_names"] == data.label_names and report["max_length"] == 64
    assert report["truncated"] == {"train": 0, "validation": 0}
    assert report["warnings"] == []
    assert lines[:2] == [f"loaded 120 rows from {train_csv}", f"loaded 40 rows from {val_csv}"]
    assert lines[2] == "tokenized 120 + 40 texts (cache miss)"


def test_stratified_split_without_validation(labelled_csvs: tuple[Path, Path], tiny_bert: Path, tmp_path: Path) -> None:
    data = prepare(labelled_csvs[0], None, tmp_path / "cache", tiny_bert, val_fraction=0.25, seed=7)
    assert len(data.train) == 90 and len(data.validation) == 30
    val_counts = data.report["class_distribution"]["validation"]
    assert sorted(val_counts.values()) == [7, 7, 8, 8]
    assert data.report["split"] == "stratified from train, val_fraction=0.25, seed=7"
    assert data.report["validation"] is None and data.report["cleaning"]["validation"] is None
    # The validation texts follow the split's row order: row i was encoded from validation_texts[i].
    by_text = dict(read_rows(labelled_csvs[0]))
    assert len(data.validation_texts) == 30
    assert [by_text[t] for t in data.validation_texts] == [data.label_names[i] for i in data.validation["labels"]]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    encoded = tokenizer(data.validation_texts, truncation=True, max_length=64)["input_ids"]
    assert encoded == data.validation["input_ids"]


def test_second_call_loads_from_cache_without_tokenizing(
    labelled_csvs: tuple[Path, Path], tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_tokenize_calls(monkeypatch)
    cache = tmp_path / "cache"
    first = prepare(*labelled_csvs, cache, tiny_bert, max_length=10)
    assert calls == [120, 40]
    lines: list[str] = []
    second = prepare(*labelled_csvs, cache, tiny_bert, max_length=10, log=lines.append)
    assert calls == [120, 40]  # no new tokenization
    assert lines[-1] == f"cache hit: {cache / first.fingerprint}"
    assert second.fingerprint == first.fingerprint
    assert second.train.to_dict() == first.train.to_dict()
    assert second.validation.to_dict() == first.validation.to_dict()
    assert second.validation_texts == first.validation_texts and len(second.validation_texts) == 40
    assert first.report["cache"] == "miss" and second.report["cache"] == "hit"
    assert second.report["truncated"] == first.report["truncated"]
    assert second.report["warnings"] == first.report["warnings"]
    assert [p.name for p in cache.iterdir()] == [first.fingerprint]  # no temp dirs left behind
    entry = sorted(p.name for p in (cache / first.fingerprint).iterdir())
    assert entry == ["report.json", "train", "validation"]


def test_cache_key_changes_with_max_length_and_data(
    labelled_csvs: tuple[Path, Path], tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_tokenize_calls(monkeypatch)
    cache = tmp_path / "cache"
    base = prepare(*labelled_csvs, cache, tiny_bert).fingerprint
    shorter = prepare(*labelled_csvs, cache, tiny_bert, max_length=16).fingerprint
    rows = read_rows(labelled_csvs[0])
    write_csv(labelled_csvs[0], rows[:-1])
    fewer = prepare(*labelled_csvs, cache, tiny_bert).fingerprint
    assert len({base, shorter, fewer}) == 3
    assert len(calls) == 6
    assert len(list(cache.iterdir())) == 3


def test_broken_cache_entry_is_rebuilt(labelled_csvs: tuple[Path, Path], tiny_bert: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = prepare(*labelled_csvs, cache, tiny_bert)
    (cache / first.fingerprint / "report.json").unlink()
    again = prepare(*labelled_csvs, cache, tiny_bert)
    assert again.report["cache"] == "miss"
    assert (cache / first.fingerprint / "report.json").is_file()
    assert again.train.to_dict() == first.train.to_dict()


def test_truncated_texts_are_counted(labelled_csvs: tuple[Path, Path], tiny_bert: Path, tmp_path: Path) -> None:
    data = prepare(*labelled_csvs, tmp_path / "cache", tiny_bert, max_length=12)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    expected = {
        name: sum(len(tokenizer(text)["input_ids"]) > 12 for text, _ in read_rows(path))
        for name, path in zip(("train", "validation"), labelled_csvs, strict=True)
    }
    assert 0 < expected["train"] < 120 and 0 < expected["validation"] < 40
    assert data.report["truncated"] == expected
    assert max(data.train["length"]) == 12
    assert f"{expected['train']} train texts longer than max_length=12 tokens were truncated" in data.report["warnings"]
    assert (
        f"{expected['validation']} validation texts longer than max_length=12 tokens were truncated"
        in data.report["warnings"]
    )


def test_cleaning_and_overlap_issues_become_warnings(tiny_bert: Path, tmp_path: Path) -> None:
    train_rows = [(text, "pos" if i % 2 else "neg") for i, text in enumerate(ENGLISH)]
    train_rows += [train_rows[0], train_rows[1], train_rows[1]]  # 3 exact duplicates
    train_rows += [("good  film", "pos"), ("good film", "neg"), ("bad film", "pos"), ("bad film", "neg")]
    train_rows += [("", "pos"), ("great service", "")]
    val_rows = [(ENGLISH[2], "neg"), (ENGLISH[3], "neg"), ("the cat", "neg"), ("the mat", "pos")]  # [3]: pos in train
    train = write_csv(tmp_path / "train.csv", train_rows)
    val = write_csv(tmp_path / "val.csv", val_rows)
    data = prepare(train, val, tmp_path / "cache", tiny_bert)
    assert data.report["warnings"] == [
        f"train: dropped 1 row with a missing text (row {len(ENGLISH) + 8})",  # rows named (a user could not find it)
        f"train: dropped 1 row with a missing label (row {len(ENGLISH) + 9})",
        "train: dropped 3 duplicate rows (the same text, after normalising spaces and Unicode, and label)",
        "train: 2 texts appear with conflicting labels; kept none of them (4 rows)",
        "train: 2 training texts also in validation were dropped (1 of them has another label in validation: "
        "validation's label is the one scored; check which is right)",
    ]
    assert data.report["overlap"] == {"train_val_overlap": 2, "overlap_examples": [ENGLISH[2], ENGLISH[3]],
                                      "overlap_relabelled": 1}  # fmt: skip
    assert len(data.train) == len(ENGLISH) - 2
    assert data.report["cleaning"]["train"]["conflicting_texts"] == [
        {"text": "bad film", "labels": {"neg": 1, "pos": 1}},
        {"text": "good film", "labels": {"neg": 1, "pos": 1}},
    ]


def test_a_class_with_too_few_training_rows_is_warned_of(tiny_bert: Path, tmp_path: Path) -> None:
    """With a validation file, a class with one training example trained and was scored without a word."""
    train_rows = [(text, "pos" if i % 2 else "neg") for i, text in enumerate(ENGLISH)] + [("a lone one", "odd")]
    val_rows = [("the cat", "neg"), ("the mat", "pos"), ("an odd one", "odd")]
    data = prepare(write_csv(tmp_path / "train.csv", train_rows), write_csv(tmp_path / "val.csv", val_rows),
                   tmp_path / "cache", tiny_bert)  # fmt: skip
    assert "1 class has fewer than 3 training rows, too few to learn it from: odd (1)" in data.report["warnings"]


def test_problems_of_both_tables_are_raised_together(tiny_bert: Path, tmp_path: Path) -> None:
    val = write_csv(tmp_path / "val.csv", [("good", "pos")], header=("sentence", "label"))
    with pytest.raises(DataError) as info:
        prepare(tmp_path / "missing.csv", val, tmp_path / "cache", tiny_bert)
    fields = [field for field, _ in info.value.problems]
    assert fields == ["data.train", "data.text_column"]
    assert str(tmp_path / "missing.csv") in info.value.problems[0][1]
    assert "in val.csv (columns: sentence, label)" in info.value.problems[1][1]


def test_a_single_class_is_named(tiny_bert: Path, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", [(text, "pos") for text in ENGLISH])
    with pytest.raises(DataError) as info:
        prepare(train, None, tmp_path / "cache", tiny_bert)
    assert info.value.problems == [
        ("data.train", "training data has 1 class ('pos'); classification needs at least 2: check data.label_column"),
    ]


def test_overlap_that_empties_a_class_is_explained(tiny_bert: Path, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", [("good movie", "pos"), ("bad service", "neg"), ("great film", "mid")])
    val = write_csv(tmp_path / "val.csv", [("fine refund", "pos"), ("awful order", "neg"), ("great film", "mid")])
    with pytest.raises(DataError) as info:
        prepare(train, val, tmp_path / "cache", tiny_bert)
    assert info.value.problems == [
        (
            "data.validation",
            "class 'mid' has 1 row in validation but none in training, so no model can "
            "predict it: add training rows for it or remove it from validation (note: 1 training row whose text "
            "is also in validation was dropped first)",
        ),
    ]


def test_no_usable_rows_after_cleaning(tiny_bert: Path, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", [("  ", "pos"), ("good", ""), ("bad", " ")])
    with pytest.raises(DataError) as info:
        prepare(train, None, tmp_path / "cache", tiny_bert)
    [(field, message)] = info.value.problems
    assert field == "data.train"
    assert message == (f"no usable rows in {train} after cleaning (3 rows in; dropped 1 empty text, 2 missing label)")
    # the columns swapped (SST-2's 0/1 as the text, its sentences as labels): every "text" has many labels
    swapped = write_csv(tmp_path / "swapped.csv", [(str(i % 2), text) for i, text in enumerate(ENGLISH)])
    with pytest.raises(DataError) as info:
        prepare(swapped, None, tmp_path / "cache", tiny_bert)
    [(field, message)] = info.value.problems
    assert message.endswith("are data.text_column and data.label_column swapped?"), message


def test_class_too_small_for_stratified_split(tiny_bert: Path, tmp_path: Path) -> None:
    rows = [(text, "a") for text in ENGLISH[:5]] + [(text, "b") for text in ENGLISH[5:]] + [("cat", "c")]
    with pytest.raises(DataError) as info:
        prepare(write_csv(tmp_path / "t.csv", rows), None, tmp_path / "cache", tiny_bert, val_fraction=0.3)
    [(field, message)] = info.value.problems
    assert field == "data.train" and message.startswith("class 'c' has only 1 row")


# -- TextClassificationDataModule -------------------------------------------------------------------------


@pytest.fixture()
def tickets(labelled_csvs: tuple[Path, Path], tiny_bert: Path, tmp_path: Path) -> PreparedData:
    return prepare(*labelled_csvs, tmp_path / "cache", tiny_bert)


def test_batches_are_padded_to_the_longest_row_in_each_batch(tickets: PreparedData) -> None:
    dm = TextClassificationDataModule(
        tickets.train,
        tickets.validation,
        pad_token_id=tickets.pad_token_id,
        batch_size=4,
        eval_batch_size=8,
        group_by_length=False,
    )
    lengths = tickets.validation["length"]
    widths = []
    for b, batch in enumerate(dm.val_dataloader()):
        assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "row"}
        assert all(t.dtype == torch.long for t in batch.values())
        assert batch["row"].tolist() == list(range(b * 8, min((b + 1) * 8, 40)))
        rows = lengths[b * 8 : (b + 1) * 8]
        assert batch["input_ids"].shape == (len(rows), max(rows))
        assert batch["attention_mask"].sum(dim=1).tolist() == rows
        padding = batch["attention_mask"] == 0
        assert bool((batch["input_ids"][padding] == tickets.pad_token_id).all())
        assert bool((batch["token_type_ids"][padding] == 0).all())
        assert batch["labels"].tolist() == tickets.validation["labels"][b * 8 : (b + 1) * 8]
        widths.append(batch["input_ids"].shape[1])
    assert len(widths) == 5 and len(set(widths)) > 1


def test_padding_uses_the_given_pad_id(tickets: PreparedData) -> None:
    dm = TextClassificationDataModule(
        tickets.train, tickets.validation, pad_token_id=99, batch_size=40, group_by_length=False
    )
    batch = next(iter(dm.val_dataloader()))
    padding = batch["attention_mask"] == 0
    assert bool(padding.any()) and bool((batch["input_ids"][padding] == 99).all())
    assert batch["input_ids"][0, : tickets.validation["length"][0]].tolist() == tickets.validation["input_ids"][0]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_validation_batches_name_each_rows_index_training_batches_do_not(
    tickets: PreparedData, group_by_length: bool
) -> None:
    dm = TextClassificationDataModule(
        tickets.train, tickets.validation, pad_token_id=tickets.pad_token_id, batch_size=8, eval_batch_size=8,
        group_by_length=group_by_length,
    )  # fmt: skip
    served = []
    for batch in dm.val_dataloader():
        for i, row in enumerate(batch["row"].tolist()):
            width = tickets.validation["length"][row]
            assert batch["input_ids"][i, :width].tolist() == tickets.validation["input_ids"][row]
            assert batch["labels"][i].item() == tickets.validation["labels"][row]
            served.append(row)
    assert sorted(served) == list(range(40))
    assert (served != list(range(40))) == group_by_length  # length order differs from row order
    assert all("row" not in batch for batch in dm.train_dataloader())


def test_training_order_is_shuffled_by_seed_and_covers_every_row(tickets: PreparedData) -> None:
    def first_epoch(seed: int) -> list[int]:
        dm = TextClassificationDataModule(
            tickets.train, tickets.validation, pad_token_id=tickets.pad_token_id, batch_size=16, seed=seed
        )
        return [row for batch in dm.train_dataloader() for row in batch["input_ids"][:, 1].tolist()]

    order = first_epoch(0)
    assert first_epoch(0) == order
    assert first_epoch(1) != order
    in_dataset_order = [ids[1] for ids in tickets.train["input_ids"]]
    assert order != in_dataset_order
    assert Counter(order) == Counter(in_dataset_order)


def test_eval_batch_size_defaults_to_at_least_64(tickets: PreparedData) -> None:
    def eval_size(**kwargs: Any) -> int | None:
        dm = TextClassificationDataModule(tickets.train, tickets.validation, pad_token_id=0, **kwargs)
        sizes = {len(batch) for batch in dm.val_dataloader().batch_sampler}  # type: ignore[union-attr]
        assert max(sizes) == min(dm.eval_batch_size, len(tickets.validation))
        return dm.eval_batch_size

    assert eval_size(batch_size=8) == 64
    assert eval_size(batch_size=100) == 100
    assert eval_size(batch_size=8, eval_batch_size=5) == 5
    dm = TextClassificationDataModule(tickets.train, tickets.validation, pad_token_id=0, batch_size=8)
    assert {len(b) for b in dm.train_dataloader().batch_sampler} <= set(range(1, 9))  # type: ignore[union-attr]
    assert pickle.loads(pickle.dumps(dm.collate)).pad_token_id == 0  # workers can receive it


def test_datamodule_drives_a_real_trainer(tickets: PreparedData, tiny_bert: Path) -> None:
    import pytorch_lightning as pl
    from transformers import AutoModelForSequenceClassification

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(tiny_bert), num_labels=len(tickets.label_names)
            )
            self.model.train()
            self.losses: list[float] = []

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            loss = self.model(**batch).loss
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
            inputs = {key: value for key, value in batch.items() if key != "row"}  # the row index is not an input
            self.losses.append(self.model(**inputs).loss.item())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    probe = Probe()
    dm = TextClassificationDataModule(
        tickets.train, tickets.validation, pad_token_id=tickets.pad_token_id, batch_size=8
    )
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(probe, datamodule=dm)
    assert trainer.global_step == 3
    assert len(probe.losses) == 4 and all(0 < loss < 10 for loss in probe.losses)


def test_one_conflicting_text_is_said_in_the_singular() -> None:
    from datamodules.report import cleaning_warnings

    report = {"missing_text": 0, "empty_text": 0, "missing_label": 0, "duplicates": 0, "conflicting_texts_total": 1,
              "conflicting_rows": 2}  # fmt: skip
    assert cleaning_warnings("train", report) == [
        "train: 1 text appears with conflicting labels; kept none of them (2 rows)"
    ]
