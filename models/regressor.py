"""Sequence regression: a pretrained encoder with transformers' one-output head (problem_type "regression"),
trained with mean squared error on the raw scores."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from models.classifier import ROW_INDEX, EncoderHead, load_pretrained_classifier, schedule_problems
from models.hyperparameters import hyperparameter_problems
from models.regression_metrics import regression_metrics, scatter_points


def output_layer(model: nn.Module) -> nn.Linear:
    """The head's last linear layer with one output (BERT's `classifier`, RoBERTa's `classifier.out_proj`, ...)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no linear layer with one output to predict a score")
    return layers[-1]


def load_pretrained_regressor(
    encoder_name_or_path: str, label_name: str, dropout: float | None = None, score_mean: float = 0.0,
    pooling: str = "cls",
) -> PreTrainedModel:
    """A pretrained encoder plus its architecture's sequence-classification head with one output, marked
    `problem_type: regression`: its saved config makes `pipeline("text-classification")` return the raw score
    (no sigmoid), and its id2label is `{0: label_name}`.

    The new head's bias starts at `score_mean`, so the model starts by predicting the training mean: an optimizer
    moves a bias by about the learning rate per step, so from 0 it would spend the whole run (and the encoder's
    gradients) reaching scores such as STS-B's mean 2.7 before it learns which pairs score higher.
    """
    model = load_pretrained_classifier(encoder_name_or_path, [label_name], dropout, pooling=pooling)
    model.config.problem_type = "regression"
    layer = output_layer(model)
    if layer.bias is not None:
        with torch.no_grad():
            layer.bias.fill_(score_mean)
    return model


class SequenceRegressor(EncoderHead):
    """Fine-tunes `AutoModelForSequenceClassification` with one output on float scores (MSE, in float32).

    The targets are not standardised: the head learns the scores' own scale (its bias starts at `score_mean`, the
    training mean), so the exported model predicts scores as they are in the data, with no transform to undo.
    `self.model` is the plain transformers model (export with `save_pretrained`).
    After each validation run (not the sanity check) one record is appended to `self.history`: `epoch`, `step`,
    `epochs_trained`, `val_loss` (MSE), `val_pearson`, `val_spearman`, `val_rmse`, `val_mae`, `val_mse`,
    `train_loss`, and `scatter`: `[[true, predicted], ...]` (rows in validation order; a seeded sample of 2000 when
    there are more).
    """

    def __init__(
        self,
        *,
        encoder_name_or_path: str,
        label_names: list[str],
        learning_rate: float,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.0,
        dropout: float | None = None,
        score_mean: float = 0.0,
        lr_schedule: str = "linear",
        pooling: str = "cls",
    ) -> None:
        super().__init__()
        problems = [] if len(label_names) == 1 else [f"label_names: one score name is needed, got {list(label_names)}"]
        problems += hyperparameter_problems(learning_rate=learning_rate, weight_decay=weight_decay,
                                            warmup_ratio=warmup_ratio, dropout=dropout)  # fmt: skip
        problems += schedule_problems(lr_schedule)
        if problems:
            raise ValueError("; ".join(problems))
        self.save_hyperparameters()
        self.label_names = list(label_names)
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.lr_schedule = lr_schedule
        self.model = load_pretrained_regressor(
            encoder_name_or_path, self.label_names[0], dropout, score_mean, pooling=pooling
        )
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodules' modes (dropout on)
        self._inputs = frozenset(inspect.signature(self.model.forward).parameters) - {"labels"}
        self.history: list[dict[str, Any]] = []
        self._train_loss_total: torch.Tensor | None = None
        self._train_examples = 0
        self._val_preds: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._val_rows: list[torch.Tensor] = []

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One predicted score per row (float32); only the model inputs are passed on."""
        inputs = {key: value for key, value in batch.items() if key in self._inputs}
        return self.model(**inputs).logits.float().squeeze(-1)

    @staticmethod
    def compute_loss(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error in float32."""
        return F.mse_loss(preds.float(), targets.float())

    def on_train_epoch_start(self) -> None:
        self._train_loss_total = None
        self._train_examples = 0

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        labels = batch["labels"]
        loss = self.compute_loss(self(batch), labels)
        size = labels.size(0)
        weighted = loss.detach() * size
        self._train_loss_total = weighted if self._train_loss_total is None else self._train_loss_total + weighted
        self._train_examples += size
        return loss

    def on_validation_epoch_start(self) -> None:
        self._clear_validation_state()

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._val_preds.append(self(batch).detach())
        self._val_targets.append(batch["labels"].detach().float())
        if ROW_INDEX in batch:
            self._val_rows.append(batch[ROW_INDEX].detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_preds:
            return
        preds = torch.cat(self._val_preds).cpu().numpy()
        targets = torch.cat(self._val_targets).cpu().numpy()
        if len(self._val_rows) == len(self._val_preds):
            order = torch.cat(self._val_rows).cpu().numpy().argsort(kind="stable")
            preds, targets = preds[order], targets[order]
        self._clear_validation_state()
        metrics = regression_metrics(preds, targets)
        scalars = {"val_loss": metrics["mse"], **{f"val_{k}": v for k, v in metrics.items()}}
        self.log_dict(scalars, prog_bar=False)
        if self.trainer.sanity_checking:
            return
        record = self.evaluation_record(scalars)
        if self._train_loss_total is not None and self._train_examples:
            record["train_loss"] = float(self._train_loss_total) / self._train_examples
        record["scatter"] = scatter_points(targets, preds)
        self.history.append(record)

    def _clear_validation_state(self) -> None:
        self._val_preds.clear()
        self._val_targets.clear()
        self._val_rows.clear()

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Predicted scores (float32)."""
        return self(batch)
