"""LightningModules for fine-tuning pretrained text encoders, and their metrics.

The names that pull in torch, transformers or Lightning are imported on first use, so
`from models.hyperparameters import HYPERPARAMETER_RULES` (used by the spec) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.classifier import SequenceClassifier, linear_warmup_decay, parameter_groups, quiet_transformers
    from models.metrics import classification_metrics
    from models.multilabel import MultiLabelClassifier
    from models.token_classifier import TokenClassifier

_LAZY = {
    "SequenceClassifier": "models.classifier",
    "linear_warmup_decay": "models.classifier",
    "parameter_groups": "models.classifier",
    "quiet_transformers": "models.classifier",
    "classification_metrics": "models.metrics",
    "MultiLabelClassifier": "models.multilabel",
    "TokenClassifier": "models.token_classifier",
}

__all__ = [
    "MultiLabelClassifier",
    "SequenceClassifier",
    "TokenClassifier",
    "classification_metrics",
    "linear_warmup_decay",
    "parameter_groups",
    "quiet_transformers",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
