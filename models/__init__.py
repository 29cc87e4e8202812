"""LightningModules for fine-tuning pretrained text encoders, and their metrics."""

from .classifier import SequenceClassifier, linear_warmup_decay, parameter_groups
from .metrics import classification_metrics

__all__ = ["SequenceClassifier", "classification_metrics", "linear_warmup_decay", "parameter_groups"]
