"""The task table: which data module and which LightningModule (encoder + head) a trial of each task trains.

The composition root's one place that knows every task: the objective asks it for the two objects, so a new task
adds an entry here (its head in `models/`, its batching in `datamodules/`), not a branch in the training loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl

from datamodules import PreparedData, TextClassificationDataModule
from datamodules.token_preparation import SENTENCE
from models import MultiLabelClassifier, SequenceClassifier, TokenClassifier
from models.regressor import SequenceRegressor
from sweep.space import Hyperparameters


@dataclass(frozen=True)
class Batching:
    """How a trial batches its data: plain values from the trial's hyperparameters and the study's settings."""

    batch_size: int
    eval_batch_size: int
    seed: int
    group_by_length: bool


@dataclass(frozen=True)
class Head:
    """What a trial's module is built from: the encoder, the task's labels and the trial's hyperparameters."""

    encoder: str
    label_names: list[str]
    hp: Hyperparameters
    class_weights: list[float] | None
    score_mean: float | None = None  # task: regression: the training scores' mean (the head's output starts there)
    metric: str = "f1_macro"  # the objective's metric (multi-label tunes its decision threshold for it)
    threshold: str = "global"  # task multi-label: one decision threshold, or one per label
    # Each label's share of the training targets (multi-label: of rows; token classification: of tagged words): the
    # head's output bias starts at those frequencies. None: the head starts at 0.
    label_priors: list[float] | None = None
    # validation row -> the example it belongs to, where one example may span several rows (token classification:
    # a sentence longer than max_length is split into windows); None: each row is an example
    validation_groups: list[int] | None = None
    lr_schedule: str = "linear"  # trainer.lr_schedule: the learning rate after the warm-up
    positive_label: str | None = None  # objective.positive_label: the class whose F1 is f1_binary
    pooling: str = "cls"  # model.pooling as the study resolved it: how a sequence head reads the token states


def validation_groups(data: PreparedData) -> list[int] | None:
    """The sentence of each validation row, when the prepared data has several rows per sentence (token tasks)."""
    if SENTENCE not in data.validation.column_names:
        return None
    return [int(s) for s in data.validation[SENTENCE]]


def _data_module(data: PreparedData, batching: Batching, *, label_kind: str) -> pl.LightningDataModule:
    return TextClassificationDataModule(
        data.train,
        data.validation,
        pad_token_id=data.pad_token_id,
        batch_size=batching.batch_size,
        eval_batch_size=batching.eval_batch_size,
        seed=batching.seed,
        group_by_length=batching.group_by_length,
        label_kind=label_kind,
    )


def _common(head: Head) -> dict[str, Any]:
    """The constructor arguments every head takes: encoder, labels and the trial's optimisation settings."""
    return {
        "encoder_name_or_path": head.encoder,
        "label_names": head.label_names,
        "learning_rate": head.hp.learning_rate,
        "weight_decay": head.hp.weight_decay,
        "warmup_ratio": head.hp.warmup_ratio,
        "dropout": head.hp.dropout,
        "lr_schedule": head.lr_schedule,
    }


def _sequence_classifier(head: Head) -> pl.LightningModule:
    return SequenceClassifier(
        **_common(head), label_smoothing=head.hp.label_smoothing, class_weights=head.class_weights,
        positive_label=head.positive_label, pooling=head.pooling,
    )


def _sequence_regressor(head: Head) -> pl.LightningModule:
    return SequenceRegressor(**_common(head), score_mean=head.score_mean or 0.0, pooling=head.pooling)


def _multilabel_classifier(head: Head) -> pl.LightningModule:
    return MultiLabelClassifier(
        **_common(head),
        label_smoothing=head.hp.label_smoothing,
        average="macro" if head.metric == "f1_macro" else "micro",
        threshold_mode=head.threshold,
        label_priors=head.label_priors,
        pooling=head.pooling,
    )


def _token_classifier(head: Head) -> pl.LightningModule:
    return TokenClassifier(
        **_common(head),
        label_smoothing=head.hp.label_smoothing,
        validation_sentences=head.validation_groups,
        label_priors=head.label_priors,
    )


# task -> (data module factory, module factory). Every module keeps `model` (the transformers model export saves)
# and `history` (one record per validation run: epoch, step, epochs_trained, the scalar `val_*` metrics, and the
# task's bulky parts such as per_class, kept for the best evaluation only).
DATA_MODULES: dict[str, Callable[[PreparedData, Batching], pl.LightningDataModule]] = {
    "text-classification": functools.partial(_data_module, label_kind="class"),
    "text-pair": functools.partial(_data_module, label_kind="class"),
    "regression": functools.partial(_data_module, label_kind="score"),
    "multi-label": functools.partial(_data_module, label_kind="multi-hot"),
    "token-classification": functools.partial(_data_module, label_kind="tokens"),
}
MODULES: dict[str, Callable[[Head], pl.LightningModule]] = {
    "text-classification": _sequence_classifier,
    "text-pair": _sequence_classifier,
    "regression": _sequence_regressor,
    "multi-label": _multilabel_classifier,
    "token-classification": _token_classifier,
}


def build_datamodule(task: str, data: PreparedData, batching: Batching) -> pl.LightningDataModule:
    return DATA_MODULES[task](data, batching)


def build_module(task: str, head: Head) -> pl.LightningModule:
    return MODULES[task](head)
