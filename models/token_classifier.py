"""Token classification (NER): a pretrained encoder with the token-classification head transformers defines for it,
trained on each word's first sub-token, scored by entity-level F1 (seqeval) on the validation sentences."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification, PreTrainedModel

from models.classifier import (
    ROW_INDEX,
    EncoderHead,
    _check_arguments,
    load_pretrained_classifier,
)
from models.entities import IGNORE_INDEX, entity_metrics, word_tags

# Where configs keep the dropout in front of a token-classification head (BERT, RoBERTa, ELECTRA, ...).
TOKEN_DROPOUT_ATTRIBUTES = ("classifier_dropout",)


def load_pretrained_token_classifier(
    encoder_name_or_path: str, label_names: Sequence[str], dropout: float | None = None
) -> PreTrainedModel:
    """Load a pretrained encoder plus its architecture's token-classification head (new weights), with id2label.

    `dropout`, when given, becomes the config's classifier dropout; an encoder whose config has no such setting
    raises ValueError rather than silently ignoring it.
    """
    return load_pretrained_classifier(encoder_name_or_path, label_names, dropout,
                                      auto_class=AutoModelForTokenClassification,
                                      dropout_attributes=TOKEN_DROPOUT_ATTRIBUTES)  # fmt: skip


def start_at_tag_frequencies(model: torch.nn.Module, priors: Sequence[float]) -> None:
    """Set the head's output bias to the log of each tag's share of the training words, so the untrained model's
    softmax already gives every tag its training frequency. From a zero bias (every tag equally likely, while most
    words are O) the first hundreds of steps go to learning that O is common, and the model sits at the all-O
    tagger's entity F1 of 0 meanwhile; started there, the gradients go to the words from the first step."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == len(priors)]
    if not layers or layers[-1].bias is None or any(not 0.0 <= p <= 1.0 for p in priors):
        raise ValueError(f"label_priors: one frequency in [0, 1] per tag and an output layer with a bias are needed, "
                         f"got {list(priors)} for {type(model).__name__}")
    with torch.no_grad():
        layers[-1].bias.copy_(torch.tensor(priors, dtype=torch.float32).clamp_min(1e-4).log())


class TokenClassifier(EncoderHead):
    """Fine-tunes `AutoModelForTokenClassification` with label-smoothed cross-entropy over labelled sub-tokens.

    Labels are tag ids on each word's first sub-token and IGNORE_INDEX (-100) elsewhere. `self.model` is the plain
    transformers model (its `save_pretrained` folder loads with `pipeline("token-classification")`). After each
    validation run one record is appended to `self.history`: `epoch`, `step`, `epochs_trained`, `val_loss`,
    `val_f1_micro`, `val_precision_micro`, `val_recall_micro`, `val_f1_macro` (entity level, seqeval) and
    `per_class` (per entity type). `validation_sentences[row]` names the sentence of each validation row (a long
    sentence comes as several windows, consecutive rows); the rows of a sentence are joined before scoring.
    """

    def __init__(
        self,
        *,
        encoder_name_or_path: str,
        label_names: list[str],
        learning_rate: float,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.0,
        label_smoothing: float = 0.0,
        dropout: float | None = None,
        validation_sentences: list[int] | None = None,
        label_priors: list[float] | None = None,
        lr_schedule: str = "linear",
    ) -> None:
        super().__init__()
        _check_arguments(
            label_names, learning_rate, weight_decay, warmup_ratio, label_smoothing, None, dropout, lr_schedule
        )
        self.save_hyperparameters(ignore=["validation_sentences"])
        self.label_names = list(label_names)
        self.entity_types = sorted({name[2:] for name in self.label_names if name[:2] in ("B-", "I-")})
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.lr_schedule = lr_schedule
        self.label_smoothing = label_smoothing
        self.validation_sentences = validation_sentences
        self.model = load_pretrained_token_classifier(encoder_name_or_path, self.label_names, dropout)
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes (dropout would be off)
        if label_priors is not None:
            start_at_tag_frequencies(self.model, label_priors)
        self._inputs = frozenset(inspect.signature(self.model.forward).parameters) - {"labels"}
        self.history: list[dict[str, Any]] = []
        self._train_loss_sum = 0.0
        self._train_tokens = 0
        self._val_rows: list[int] = []
        self._val_labels: list[list[int]] = []
        self._val_preds: list[list[int]] = []
        self._val_loss_sum = 0.0
        self._val_tokens = 0

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits (batch, tokens, labels); only the model inputs are passed on (never `labels` or row indices)."""
        inputs = {key: value for key, value in batch.items() if key in self._inputs}
        return self.model(**inputs).logits

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy over the labelled sub-tokens (IGNORE_INDEX skipped), with label smoothing, in float32."""
        return F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX,
            label_smoothing=self.label_smoothing, reduction=reduction,
        )  # fmt: skip

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum, self._train_tokens = 0.0, 0

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        labels = batch["labels"]
        loss = self.compute_loss(self(batch), labels)
        tokens = int((labels != IGNORE_INDEX).sum())
        self._train_loss_sum += float(loss.detach()) * tokens
        self._train_tokens += tokens
        return loss

    def on_validation_epoch_start(self) -> None:
        self._clear_validation_state()

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        labels = batch["labels"]
        logits = self(batch)
        self._val_loss_sum += float(self.compute_loss(logits, labels, reduction="sum"))
        self._val_tokens += int((labels != IGNORE_INDEX).sum())
        preds = logits.argmax(dim=-1).cpu().tolist()
        gold = labels.cpu().tolist()
        rows = batch[ROW_INDEX].cpu().tolist() if ROW_INDEX in batch else None
        for i, (row_labels, row_preds) in enumerate(zip(gold, preds, strict=True)):
            self._val_rows.append(rows[i] if rows is not None else len(self._val_rows))
            self._val_labels.append(row_labels)
            self._val_preds.append(row_preds)

    def on_validation_epoch_end(self) -> None:
        if not self._val_rows:
            return
        sentences = self.validation_sentences
        true_tags, pred_tags = word_tags(self._val_rows, self._val_labels, self._val_preds, self.label_names,
                                         sentences if sentences is not None and self._rows_known() else None)
        metrics = entity_metrics(true_tags, pred_tags, self.entity_types)
        scalars = {"val_loss": self._val_loss_sum / max(1, self._val_tokens)}
        scalars.update({f"val_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        self.log_dict(scalars, prog_bar=False)
        self._clear_validation_state()
        if self.trainer.sanity_checking:
            return
        record = self.evaluation_record(scalars)
        if self._train_tokens:
            record["train_loss"] = self._train_loss_sum / self._train_tokens
        record["per_class"] = metrics["per_class"]
        self.history.append(record)

    def _rows_known(self) -> bool:
        """Whether every validation row index names a row of `validation_sentences`."""
        sentences = self.validation_sentences or []
        return all(0 <= row < len(sentences) for row in self._val_rows)

    def _clear_validation_state(self) -> None:
        self._val_rows, self._val_labels, self._val_preds = [], [], []
        self._val_loss_sum, self._val_tokens = 0.0, 0

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Tag probabilities per token (softmax over the logits, float32)."""
        return torch.softmax(self(batch).float(), dim=-1)
