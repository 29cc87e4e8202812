"""Sequence classification over the mean of an encoder's token states: the head a sentence-transformers encoder
(all-MiniLM-L6-v2, all-mpnet-base-v2, ...) was trained for, where the architecture's own head reads one token.

This file is also the custom code of every model sweep exports with mean pooling: `save_pretrained` copies it beside
the weights, so the folder loads with `pipeline(..., trust_remote_code=True)` or
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` where sweep is not installed.
It imports torch and transformers only, and works with transformers 4.45 and later. Its config has a model type of its
own, so loading without `trust_remote_code=True` fails with transformers' error instead of silently building the
encoder's architecture with a random head.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_MAPPING


class MeanPoolingConfig(PretrainedConfig):
    """The encoder's own config (`encoder_config`, as its `to_dict()`) plus the head's labels and dropout."""

    model_type = "sweep-mean-pooling"

    def __init__(
        self, encoder_config: dict[str, Any] | None = None, classifier_dropout: float | None = None, **kwargs: Any
    ) -> None:
        self.encoder_config = dict(encoder_config or {})
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)

    def encoder(self) -> PretrainedConfig:
        """The encoder's config as its own class (BertConfig, MPNetConfig, ...)."""
        if "model_type" not in self.encoder_config:
            raise ValueError("encoder_config: the encoder's config (with its model_type) is missing")
        # without the dtype it was saved in: the encoder is built in the dtype the model is loaded in (from_pretrained's
        # dtype=torch.bfloat16 sets the default while it builds), the same as the head's
        body = {k: v for k, v in self.encoder_config.items() if k not in ("dtype", "torch_dtype")}
        return AutoConfig.for_model(**body)


def without_pooler(config: PretrainedConfig) -> dict[str, Any]:
    """`add_pooling_layer=False` where the encoder's class builds a pooler (BERT, RoBERTa, MPNet, ...): unused here."""
    if type(config) not in MODEL_MAPPING:
        return {}  # AutoModel says itself that it has no model for this config
    model_class: Any = MODEL_MAPPING[type(config)]
    takes = inspect.signature(model_class).parameters  # its constructor's
    return {"add_pooling_layer": False} if "add_pooling_layer" in takes else {}


def _encoder_dropout(config: PretrainedConfig) -> float:
    for name in ("hidden_dropout_prob", "dropout", "hidden_dropout"):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):  # noqa: UP038 - Python 3.9 too
            return float(value)
    return 0.1


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of each row's token states over its attention mask (padding left out)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class MeanPoolingForSequenceClassification(PreTrainedModel):
    """The encoder, the mean of its last hidden states over the attention mask, dropout, one linear layer."""

    config_class = MeanPoolingConfig
    base_model_prefix = "encoder"

    def __init__(self, config: MeanPoolingConfig, encoder: PreTrainedModel | None = None) -> None:
        """`encoder`: the pretrained encoder, already loaded (sweep's training); None: one built from the config, whose
        weights `from_pretrained` then reads from the folder (an export)."""
        super().__init__(config)
        encoder_config = config.encoder()
        self.encoder = encoder if encoder is not None else AutoModel.from_config(
            encoder_config, **without_pooler(encoder_config)
        )  # fmt: skip
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(_encoder_dropout(encoder_config) if dropout is None else dropout)
        self.classifier = nn.Linear(encoder_config.hidden_size, config.num_labels or 2)
        self._encoder_inputs = frozenset(inspect.signature(self.encoder.forward).parameters)
        self.post_init()  # transformers' bookkeeping (tied weights, ...) and the head's initial weights

    def _init_head(self, std: float) -> None:
        self.classifier.weight.data.normal_(mean=0.0, std=std)
        self.classifier.bias.data.zero_()

    def _init_weights(self, module: nn.Module) -> None:
        # the encoder initialises its own modules; only the head is this class's (from_pretrained calls this for
        # weights the folder lacks)
        if module is getattr(self, "classifier", None):
            self._init_head(getattr(self.config.encoder(), "initializer_range", 0.02))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids, **kwargs}
        # what this encoder takes (DistilBERT and MPNet take no token_type_ids)
        inputs = {k: v for k, v in given.items() if v is not None and k in self._encoder_inputs}
        hidden = self.encoder(**inputs).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """As transformers' sequence classification heads compute it, by the config's problem_type."""
        problem = self.config.problem_type
        if problem is None:
            whole = labels.dtype in (torch.long, torch.int)
            problem = "regression" if self.config.num_labels == 1 else (
                "single_label_classification" if whole else "multi_label_classification"
            )  # fmt: skip
        if problem == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
        if problem == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))


# save_pretrained writes auto_map entries naming this file, and copies it beside the weights
MeanPoolingConfig.register_for_auto_class()
MeanPoolingForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
# where this file runs, the auto classes (and the text-classification pipeline's model check) know the pair
AutoConfig.register(MeanPoolingConfig.model_type, MeanPoolingConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MeanPoolingConfig, MeanPoolingForSequenceClassification, exist_ok=True)
