"""Multi-label classification: the encoder's sequence-classification head read as one sigmoid per label.

The head, the optimizer, the schedule and the history come from `SequenceClassifier`; this module changes the loss
(binary cross-entropy on multi-hot targets), the validation (sigmoid scores, a decision threshold tuned on them at
every evaluation) and the config (`problem_type: multi_label_classification`, so the exported folder's
`pipeline("text-classification", top_k=None)` returns a sigmoid score per label).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import torch
import torch.nn.functional as F
from torch import nn

from models.classifier import SequenceClassifier
from models.multilabel_metrics import AVERAGES, THRESHOLD_MODES, tuned_metrics

PROBLEM_TYPE: Final = "multi_label_classification"


def smoothed_targets(targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Multi-hot targets moved toward 0.5 by `label_smoothing` (1 -> 1 - s/2, 0 -> s/2)."""
    return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing


def start_at_priors(model: nn.Module, priors: list[float]) -> None:
    """Set the head's output bias to each label's log-odds in training, so the untrained model already scores every
    label at its training frequency. From a zero bias (every score 0.5) binary cross-entropy over many sparse labels
    first spends the run pushing every score down to those frequencies (the model then predicts label frequencies,
    not the texts); started there, the gradients go to telling the texts apart from the first step."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == len(priors)]
    if not layers or layers[-1].bias is None:
        raise ValueError(f"{type(model).__name__} has no output layer with a bias for {len(priors)} labels")
    clipped = torch.tensor(priors, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        layers[-1].bias.copy_(torch.log(clipped / (1 - clipped)))


class MultiLabelClassifier(SequenceClassifier):
    """Fine-tunes `AutoModelForSequenceClassification` with binary cross-entropy, one sigmoid per label.

    Each validation record (see `SequenceClassifier`) holds `threshold`, the global decision threshold that
    maximises `average` F1 on that evaluation's validation scores, the metrics at it (`val_f1_micro`, `val_f1_macro`,
    precision / recall, `val_exact_match`, and `val_f1_micro_at_0.5` at the untuned 0.5), `per_class` (per label),
    and with `threshold_mode="per-label"` also `thresholds` ({label: value}, each label's own best; the metrics then
    use those). Class weights are not taken: the objective tunes the threshold instead.
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
        lr_schedule: str = "linear",
        average: str = "micro",
        threshold_mode: str = "global",
        label_priors: list[float] | None = None,
        pooling: str = "cls",
    ) -> None:
        problems = []
        if average not in AVERAGES:
            problems.append(f"average: must be one of {', '.join(AVERAGES)}, got {average!r}")
        if threshold_mode not in THRESHOLD_MODES:
            problems.append(f"threshold_mode: must be one of {', '.join(THRESHOLD_MODES)}, got {threshold_mode!r}")
        if label_priors is not None and (
            len(label_priors) != len(label_names) or not all(0.0 <= p <= 1.0 for p in label_priors)
        ):
            problems.append(f"label_priors: one frequency in [0, 1] per label is needed, got {label_priors}")
        if problems:
            raise ValueError("; ".join(problems))
        super().__init__(
            encoder_name_or_path=encoder_name_or_path,
            label_names=label_names,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            warmup_ratio=warmup_ratio,
            label_smoothing=label_smoothing,
            dropout=dropout,
            lr_schedule=lr_schedule,
            pooling=pooling,
        )
        self.save_hyperparameters()
        self.average = average
        self.threshold_mode = threshold_mode
        self.model.config.problem_type = PROBLEM_TYPE
        if label_priors is not None:
            start_at_priors(self.model, label_priors)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Binary cross-entropy with logits over every (row, label), in float32; smoothed targets if asked."""
        targets = smoothed_targets(labels.float(), self.label_smoothing) if self.label_smoothing else labels.float()
        return F.binary_cross_entropy_with_logits(logits.float(), targets, reduction=reduction)

    def _loss_denominator(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float(labels.numel()), device=labels.device)

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        labels = batch["labels"]
        logits = self(batch)
        self._val_loss_sums.append(self.compute_loss(logits, labels, reduction="sum").detach())
        self._val_loss_weights.append(self._loss_denominator(labels))
        self._val_preds.append(torch.sigmoid(logits.float()).detach())  # scores, not decisions: tuned at epoch end
        self._val_targets.append(labels.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_preds:
            return
        scores = torch.cat(self._val_preds).cpu().numpy()
        targets = torch.cat(self._val_targets).cpu().numpy()
        val_loss = torch.stack(self._val_loss_sums).sum() / torch.stack(self._val_loss_weights).sum()
        metrics = tuned_metrics(scores, targets, self.label_names, average=self.average, mode=self.threshold_mode)
        scalars = {"val_loss": float(val_loss)}
        scalars.update({f"val_{k}": v for k, v in metrics.items() if isinstance(v, float) and k != "threshold"})
        self.log_dict(scalars, prog_bar=False)
        self._clear_validation_state()
        if self.trainer.sanity_checking:
            return
        record = {**self.evaluation_record(scalars), "threshold": metrics["threshold"]}
        if self._train_loss_total is not None and self._train_examples:
            record["train_loss"] = float(self._train_loss_total) / self._train_examples
        record["per_class"] = metrics["per_class"]
        if "thresholds" in metrics:
            record["thresholds"] = metrics["thresholds"]
        self.history.append(record)

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Per-label probabilities (sigmoid over the logits, float32)."""
        return torch.sigmoid(self(batch).float())
