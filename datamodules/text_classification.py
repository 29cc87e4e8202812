"""LightningDataModule over encoded splits, with dynamic per-batch padding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

# Batch keys, in order; token_type_ids only when the tokenizer made them.
SEQUENCE_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
# Validation batches also carry each row's index in the split (rows are served in length order): the model reports
# which rows it got wrong by this index. Models feed only their input keys to the encoder, so the key is harmless.
ROW_INDEX = "row"
Example = dict[str, Any]
# What a row's `labels` hold, per task: a class id; a float score (regression); a multi-hot vector of 0/1 floats
# (multi-label); one tag id per token (token classification, padded with IGNORE_INDEX, which the loss skips).
LABEL_KINDS = ("class", "score", "multi-hot", "tokens")
IGNORE_INDEX = -100


class EncodedExamples(Dataset[Example]):
    """Encoded rows held as plain Python lists (converted once), indexable by the DataLoader.

    With `row_index`, each row also carries its index in `dataset` under `ROW_INDEX`.
    """

    def __init__(self, dataset: datasets.Dataset, *, row_index: bool = False):
        self.columns = [c for c in SEQUENCE_COLUMNS if c in dataset.column_names]
        if "input_ids" not in self.columns or "labels" not in dataset.column_names:
            raise ValueError(f"encoded dataset needs input_ids and labels, got {dataset.column_names}")
        data = dataset.select_columns([*self.columns, "labels"]).to_dict()
        self.sequences: dict[str, list[list[int]]] = {c: data[c] for c in self.columns}
        self.labels: list[Any] = list(data["labels"])
        self.row_index = row_index

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Example:
        row: Example = {c: self.sequences[c][index] for c in self.columns}
        row["labels"] = self.labels[index]
        if self.row_index:
            row[ROW_INDEX] = index
        return row


class PaddingCollator:
    """Pads each batch to its longest sequence: input_ids with pad_token_id, the other columns with 0.

    Labels (and row indices, where the rows carry them) become one tensor each, as `label_kind` says (see
    LABEL_KINDS): class ids and row indices long, scores and multi-hot vectors float, per-token tag ids a long
    matrix padded with IGNORE_INDEX.
    """

    def __init__(self, pad_token_id: int, label_kind: str = "class"):
        if label_kind not in LABEL_KINDS:
            raise ValueError(f"label_kind must be one of {', '.join(LABEL_KINDS)}, got {label_kind!r}")
        self.pad_token_id = pad_token_id
        self.label_kind = label_kind

    def __call__(self, rows: Sequence[Example]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        batch: dict[str, torch.Tensor] = {}
        for column in SEQUENCE_COLUMNS:
            if column not in rows[0]:
                continue
            fill = self.pad_token_id if column == "input_ids" else 0
            padded = np.full((len(rows), width), fill, dtype=np.int64)
            for i, row in enumerate(rows):
                values = row[column]
                padded[i, : len(values)] = values
            batch[column] = torch.from_numpy(padded)
        batch["labels"] = self._labels([row["labels"] for row in rows], width)
        if ROW_INDEX in rows[0]:
            batch[ROW_INDEX] = torch.tensor([row[ROW_INDEX] for row in rows], dtype=torch.long)
        return batch

    def _labels(self, labels: list[Any], width: int) -> torch.Tensor:
        if self.label_kind == "tokens":
            padded = np.full((len(labels), width), IGNORE_INDEX, dtype=np.int64)
            for i, tags in enumerate(labels):
                padded[i, : len(tags)] = tags
            return torch.from_numpy(padded)
        dtype = torch.long if self.label_kind == "class" else torch.float32
        return torch.tensor(labels, dtype=dtype)


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of rows of similar length, so dynamic padding pads little.

    Each epoch: shuffle all rows, cut them into groups of `batch_size * group_batches`, sort each group by
    length, cut it into batches, and shuffle the batches. Seeded: the same seed gives the same epochs.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int, group_batches: int = 32):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.group = batch_size * group_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Any:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        batches: list[list[int]] = []
        for start in range(0, len(order), self.group):
            chunk = order[start : start + self.group]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        for index in rng.permutation(len(batches)):
            yield batches[index]


class TextClassificationDataModule(pl.LightningDataModule):
    """Train / validation loaders over encoded splits (from `prepare_classification_data`)."""

    def __init__(
        self,
        train: datasets.Dataset,
        validation: datasets.Dataset,
        *,
        pad_token_id: int,
        batch_size: int,
        eval_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        group_by_length: bool = True,
        label_kind: str = "class",
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters(ignore=["train", "validation"])
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 64)
        self.seed = seed
        self.num_workers = num_workers
        self.group_by_length = group_by_length
        self.collate = PaddingCollator(pad_token_id, label_kind)
        self.train_examples = EncodedExamples(train)
        self.val_examples = EncodedExamples(validation, row_index=True)

    def _loader(self, examples: EncodedExamples, batch_size: int, shuffle: bool) -> DataLoader[Example]:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            examples,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[Example]:
        """Shuffled with a seeded generator; by default in batches of similar length (less padding)."""
        if not self.group_by_length:
            return self._loader(self.train_examples, self.batch_size, shuffle=True)
        lengths = [len(ids) for ids in self.train_examples.sequences["input_ids"]]
        return self._batched(self.train_examples, LengthGroupedBatches(lengths, self.batch_size, seed=self.seed))

    def val_dataloader(self) -> DataLoader[Example]:
        """`eval_batch_size` rows per batch; by default shortest rows first (metrics do not depend on order).

        Each batch carries the rows' indices in the validation split under `ROW_INDEX`.
        """
        if not self.group_by_length:
            return self._loader(self.val_examples, self.eval_batch_size, shuffle=False)
        lengths = np.array([len(ids) for ids in self.val_examples.sequences["input_ids"]])
        order = np.argsort(lengths, kind="stable").tolist()
        batches = [order[i : i + self.eval_batch_size] for i in range(0, len(order), self.eval_batch_size)]
        return self._batched(self.val_examples, batches)

    def _batched(self, examples: EncodedExamples, batches: Any) -> DataLoader[Example]:
        return DataLoader(
            examples,
            batch_sampler=batches,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
