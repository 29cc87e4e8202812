"""Sequence classification: a pretrained encoder with the head transformers defines for it, our own loss."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel
from transformers.utils import logging as hf_logging

from models.hyperparameters import hyperparameter_problems

from .metrics import classification_metrics

logger = logging.getLogger(__name__)

# A batch key naming each row's index in the validation split (the data module sends it with validation batches);
# never fed to the encoder. With it, each validation record lists the rows the model got wrong.
ROW_INDEX = "row"
NO_DECAY_SUFFIXES = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
# Where each family of configs keeps the dropout in front of its classification head.
CLASSIFIER_DROPOUT_ATTRIBUTES = ("classifier_dropout", "seq_classif_dropout")
# How a sequence head reads the encoder's token states: `cls`, the architecture's own head (transformers'
# *ForSequenceClassification: the first token, through BERT's pooler where it has one); `mean`, their mean over the
# attention mask, as sentence-transformers encoders were trained to be read (`models.modeling_mean_pooling`).
POOLINGS = ("cls", "mean")


def parameter_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """Split trainable parameters into an AdamW group with `weight_decay` and one without.

    Biases and normalisation weights (names ending in `bias`, `LayerNorm.weight`, `layer_norm.weight`
    or `norm.weight`) get no decay. Frozen parameters are left out; empty groups are dropped.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        exempt = any(name == suffix or name.endswith("." + suffix) for suffix in NO_DECAY_SUFFIXES)
        (no_decay if exempt else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


# What the learning rate does after the warm-up (transformers' lr_scheduler_type names): falls linearly to 0, follows
# half a cosine to 0, or stays at its peak.
LR_SCHEDULES = ("linear", "cosine", "constant")


def warmup_then(step: int, warmup_steps: int, total_steps: int, schedule: str = "linear") -> float:
    """Learning-rate factor: 0 → 1 linearly over `warmup_steps`, then `schedule` (one of LR_SCHEDULES) down from 1
    (to 0 at `total_steps` for linear and cosine; constant stays at 1)."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule: must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"0 <= warmup_steps <= total_steps must hold, got warmup_steps={warmup_steps}, "
            f"total_steps={total_steps}"
        )
    if step < warmup_steps:
        return step / warmup_steps
    if schedule == "linear":
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: 0 → 1 linearly over `warmup_steps`, then 1 → 0 linearly at `total_steps`."""
    return warmup_then(step, warmup_steps, total_steps, "linear")


def warmup_then_decay(
    module: pl.LightningModule, learning_rate: float, weight_decay: float, warmup_ratio: float,
    schedule: str = "linear",
) -> OptimizerLRSchedulerConfig:  # fmt: skip
    """Every head's optimizer: AdamW (no decay on biases/norms) with linear warmup, then the learning rate over the
    trainer's remaining steps as `schedule` says (linear decay by default), stepped per batch."""
    # The fused kernel updates all parameters in one pass: about 1.8x faster steps for MiniLM on 2 CPU cores.
    optimizer = torch.optim.AdamW(
        parameter_groups(module.named_parameters(), weight_decay), lr=learning_rate, fused=True
    )
    total = module.trainer.estimated_stepping_batches
    if not math.isfinite(total) or total < 1:
        raise ValueError(
            f"the learning-rate schedule needs a finite number of steps; set max_epochs or max_steps "
            f"(estimated_stepping_batches={total})"
        )
    total_steps = int(total)
    # warm-up steps rounded up, as transformers' TrainingArguments.get_warmup_steps counts them (so a warmup_ratio
    # means the same number of steps here as in a Trainer run a user compares with)
    factor = functools.partial(
        warmup_then, warmup_steps=min(total_steps, math.ceil(total_steps * warmup_ratio)), total_steps=total_steps,
        schedule=schedule,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' info/warning logs and progress bars for a block, then restore them."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _report_loading(model: PreTrainedModel, info: Mapping[str, Any], source: str, prefix: str | None = None) -> None:
    """Warn about loading problems other than the expected freshly initialised classification head: encoder weights
    are those under `prefix` (default: the model's base model prefix; "" for a bare encoder, all of whose are)."""
    prefix = f"{model.base_model_prefix}." if prefix is None else prefix
    encoder_missing = sorted(key for key in info.get("missing_keys", ()) if key.startswith(prefix))
    if encoder_missing:
        logger.warning(
            "%s: %d encoder weights are not in the checkpoint and start random: %s",
            source,
            len(encoder_missing),
            ", ".join(encoder_missing),
        )
    for kind in ("mismatched_keys", "error_msgs"):
        if info.get(kind):
            logger.warning("%s: %s while loading: %s", source, kind, info[kind])


def load_pretrained_classifier(
    encoder_name_or_path: str,
    label_names: Sequence[str],
    dropout: float | None = None,
    *,
    auto_class: Any = AutoModelForSequenceClassification,
    dropout_attributes: Sequence[str] = CLASSIFIER_DROPOUT_ATTRIBUTES,
    pooling: str = "cls",
) -> PreTrainedModel:
    """Load a pretrained encoder plus its architecture's head of `auto_class` (sequence classification by default;
    new weights), with id2label / label2id from `label_names`.

    `dropout`, when given, becomes the config's head dropout (the first of `dropout_attributes` the config has); an
    encoder whose config has no such setting raises ValueError rather than silently ignoring it. `pooling` (one of
    POOLINGS): `cls`, the architecture's own head; `mean`, a linear layer over the mean of the token states
    (`models.modeling_mean_pooling`, sequence classification only).
    """
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling == "mean":
        if auto_class is not AutoModelForSequenceClassification:
            raise ValueError("pooling: mean makes one prediction per text, for sequence classification only")
        return load_mean_pooling_classifier(encoder_name_or_path, id2label, label2id, dropout)
    with quiet_transformers():
        config = AutoConfig.from_pretrained(
            encoder_name_or_path, num_labels=len(label_names), id2label=id2label, label2id=label2id
        )
        if dropout is not None:
            attribute = next((a for a in dropout_attributes if hasattr(config, a)), None)
            if attribute is None:
                raise ValueError(
                    f"dropout: {type(config).__name__} of {encoder_name_or_path!r} has no classifier dropout "
                    f"setting (looked for {', '.join(dropout_attributes)}); leave dropout unset"
                )
            setattr(config, attribute, dropout)
        model, info = auto_class.from_pretrained(
            encoder_name_or_path, config=config, output_loading_info=True
        )
    _report_loading(model, info, encoder_name_or_path)
    return model


def load_mean_pooling_classifier(
    encoder_name_or_path: str, id2label: dict[int, str], label2id: dict[str, int], dropout: float | None
) -> PreTrainedModel:
    """The pretrained encoder (without its pooler) under a new linear layer over the mean of its token states."""
    from transformers import AutoModel

    from models.modeling_mean_pooling import (
        MeanPoolingConfig,
        MeanPoolingForSequenceClassification,
        without_pooler,
    )

    with quiet_transformers():
        encoder_config = AutoConfig.from_pretrained(encoder_name_or_path)
        config = MeanPoolingConfig(
            encoder_config=encoder_config.to_dict(), classifier_dropout=dropout, num_labels=len(id2label),
            id2label=id2label, label2id=label2id,
        )  # fmt: skip
        encoder, info = AutoModel.from_pretrained(
            encoder_name_or_path, config=encoder_config, output_loading_info=True, **without_pooler(encoder_config)
        )
        # around the loaded encoder: building one from the config first would initialise 22M+ weights at random only
        # to replace them (0.2 s per trial for MiniLM on a 2-core CPU)
        model = MeanPoolingForSequenceClassification(config, encoder=encoder)
    _report_loading(encoder, info, encoder_name_or_path, prefix="")
    return model


def misclassified_rows(rows: np.ndarray, preds: np.ndarray, targets: np.ndarray) -> list[list[int]]:
    """`[[row, predicted label id], ...]` for every row whose prediction differs from its target, by row index."""
    wrong = np.flatnonzero(preds != targets)
    order = wrong[np.argsort(rows[wrong], kind="stable")]
    return [[int(rows[i]), int(preds[i])] for i in order]


def schedule_problems(lr_schedule: str) -> list[str]:
    return [] if lr_schedule in LR_SCHEDULES else [
        f"lr_schedule: must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}"]


def _check_arguments(
    label_names: Sequence[str],
    learning_rate: float,
    weight_decay: float,
    warmup_ratio: float,
    label_smoothing: float,
    class_weights: Sequence[float] | None,
    dropout: float | None,
    lr_schedule: str = "linear",
) -> None:
    """Raise one ValueError listing every invalid constructor argument."""
    problems = schedule_problems(lr_schedule)
    if len(label_names) < 2:
        problems.append(f"label_names: at least 2 labels are needed, got {list(label_names)}")
    if len(set(label_names)) != len(label_names):
        problems.append(f"label_names: must be unique, got {list(label_names)}")
    problems += hyperparameter_problems(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        label_smoothing=label_smoothing,
        dropout=dropout,
    )
    if class_weights is not None:
        if len(class_weights) != len(label_names):
            problems.append(
                f"class_weights: one weight per label is needed ({len(label_names)}), "
                f"got {len(class_weights)}"
            )
        if any(not (math.isfinite(w) and w >= 0) for w in class_weights) or not sum(class_weights) > 0:
            problems.append(f"class_weights: must be finite, >= 0 and not all 0, got {list(class_weights)}")
    if problems:
        raise ValueError("; ".join(problems))


def epochs_trained(trainer: pl.Trainer) -> float | None:
    """Training done so far in epochs, counted in batches (1/3 after a third of the first epoch, exact at epoch
    ends); optimizer steps would undercount when several batches are accumulated into one. None: no batch count."""
    n = trainer.num_training_batches
    if not n or not math.isfinite(n):
        return None
    done = trainer.fit_loop.epoch_loop.batch_progress.current.completed  # this epoch's, validation runs after it
    return round(trainer.current_epoch + done / n, 4)


class EncoderHead(pl.LightningModule):
    """What every head shares: its optimizer and schedule, the history kept in checkpoints, and the common start of
    each validation record. A subclass sets `learning_rate`, `weight_decay`, `warmup_ratio` and `history` (and
    `lr_schedule` where not linear)."""

    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    lr_schedule: str = "linear"
    history: list[dict[str, Any]]

    def evaluation_record(self, scalars: Mapping[str, float]) -> dict[str, Any]:
        """`epoch` (0-based) in which this validation ran, optimizer `step`, `epochs_trained` (fractional inside an
        epoch) and the validation scalars: the start of a history record."""
        trained = epochs_trained(self.trainer)
        return {"epoch": self.current_epoch, "step": self.global_step, "epochs_trained": trained, **scalars}

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """AdamW (no decay on biases/norms) with linear warmup then linear decay, stepped per batch."""
        return warmup_then_decay(self, self.learning_rate, self.weight_decay, self.warmup_ratio, self.lr_schedule)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sweep_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("sweep_history", []))


class SequenceClassifier(EncoderHead):
    """Fine-tunes `AutoModelForSequenceClassification` with weighted, label-smoothed cross-entropy.

    `self.model` is the plain transformers model (export with `self.model.save_pretrained`).
    After each validation run (not the sanity check) one record is appended to `self.history`: `epoch` (0-based)
    in which it ran, optimizer `step`, `epochs_trained` (fractional inside an epoch) and the validation metrics,
    with `per_class` and `confusion_matrix`; when every validation batch carried `ROW_INDEX`, also `misclassified`:
    `[[row, predicted label id], ...]` for each row predicted wrongly, by row index.
    """

    class_weights: torch.Tensor | None

    def __init__(
        self,
        *,
        encoder_name_or_path: str,
        label_names: list[str],
        learning_rate: float,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.0,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        dropout: float | None = None,
        lr_schedule: str = "linear",
        positive_label: str | None = None,
        pooling: str = "cls",
    ) -> None:
        super().__init__()
        _check_arguments(
            label_names, learning_rate, weight_decay, warmup_ratio, label_smoothing, class_weights, dropout, lr_schedule
        )
        if positive_label is not None and positive_label not in label_names:
            raise ValueError(f"positive_label {positive_label!r} is not one of the labels {list(label_names)}")
        self.save_hyperparameters()
        self.label_names = list(label_names)
        # the class whose own scores are logged as val_*_binary (objective.metric: f1_binary); None: not logged
        self.positive = None if positive_label is None else self.label_names.index(positive_label)
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.lr_schedule = lr_schedule
        self.label_smoothing = label_smoothing
        self.model = load_pretrained_classifier(encoder_name_or_path, self.label_names, dropout, pooling=pooling)
        # from_pretrained returns the model in eval mode, and Lightning (>= 2.2) keeps each submodule's
        # mode when fit starts: without this, dropout would stay off for the whole training run.
        self.model.train()
        # The batch keys the encoder takes, from its own signature (DistilBERT takes no token_type_ids): the
        # datamodule names the columns it makes, and extra keys (labels, row indices) never reach the encoder.
        self._inputs = frozenset(inspect.signature(self.model.forward).parameters) - {"labels"}
        weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights)
        self.history: list[dict[str, Any]] = []
        self._train_loss_total: torch.Tensor | None = None
        self._train_examples = 0
        self._val_preds: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._val_rows: list[torch.Tensor] = []
        self._val_loss_sums: list[torch.Tensor] = []
        self._val_loss_weights: list[torch.Tensor] = []

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits for a batch; only the model inputs are passed on (never `labels`)."""
        inputs = {key: value for key, value in batch.items() if key in self._inputs}
        return self.model(**inputs).logits

    def compute_loss(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Cross-entropy with the class weights and label smoothing, computed in float32."""
        weight = None if self.class_weights is None else self.class_weights.float()
        return F.cross_entropy(
            logits.float(), labels, weight=weight, label_smoothing=self.label_smoothing, reduction=reduction
        )

    def _loss_denominator(self, labels: torch.Tensor) -> torch.Tensor:
        """What `reduction="mean"` divides the summed loss by: the targets' total class weight."""
        if self.class_weights is None:
            return torch.tensor(float(labels.numel()), device=labels.device)
        return self.class_weights.float()[labels].sum()

    def on_train_epoch_start(self) -> None:
        self._train_loss_total = None
        self._train_examples = 0

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        labels = batch["labels"]
        loss = self.compute_loss(self(batch), labels)
        size = labels.size(0)
        weighted = loss.detach() * size
        self._train_loss_total = (
            weighted if self._train_loss_total is None else self._train_loss_total + weighted
        )
        self._train_examples += size
        return loss

    def on_validation_epoch_start(self) -> None:
        self._clear_validation_state()

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        labels = batch["labels"]
        logits = self(batch)
        self._val_loss_sums.append(self.compute_loss(logits, labels, reduction="sum").detach())
        self._val_loss_weights.append(self._loss_denominator(labels))
        self._val_preds.append(logits.argmax(dim=-1).detach())
        self._val_targets.append(labels.detach())
        if ROW_INDEX in batch:
            self._val_rows.append(batch[ROW_INDEX].detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_preds:
            return
        preds = torch.cat(self._val_preds).cpu().numpy()
        targets = torch.cat(self._val_targets).cpu().numpy()
        val_loss = torch.stack(self._val_loss_sums).sum() / torch.stack(self._val_loss_weights).sum()
        metrics = classification_metrics(preds, targets, self.label_names, getattr(self, "positive", None))
        scalars = {"val_loss": float(val_loss)}
        scalars.update({f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        self.log_dict(scalars, prog_bar=False)
        rows = torch.cat(self._val_rows).cpu().numpy() if len(self._val_rows) == len(self._val_preds) else None
        self._clear_validation_state()
        if self.trainer.sanity_checking:
            return
        record = self.evaluation_record(scalars)
        if self._train_loss_total is not None and self._train_examples:
            record["train_loss"] = float(self._train_loss_total) / self._train_examples
        record["per_class"] = metrics["per_class"]
        record["confusion_matrix"] = metrics["confusion_matrix"]
        if rows is not None:
            record["misclassified"] = misclassified_rows(rows, preds, targets)
        self.history.append(record)

    def _clear_validation_state(self) -> None:
        self._val_preds.clear()
        self._val_targets.clear()
        self._val_rows.clear()
        self._val_loss_sums.clear()
        self._val_loss_weights.clear()

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Class probabilities (softmax over the logits, float32)."""
        return torch.softmax(self(batch).float(), dim=-1)
