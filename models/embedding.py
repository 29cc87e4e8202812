"""Sentence embeddings from a frozen pretrained encoder: the mean of its last hidden states over the real tokens
(the attention mask), as sentence-transformers pools all-MiniLM-L6-v2; and word embeddings, its last hidden state at
each word's first sub-token (token classification)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from transformers import AutoModel

from models.classifier import quiet_transformers
from models.entities import IGNORE_INDEX
from models.modeling_mean_pooling import mean_pool  # the fine-tuned head's own: one definition of the mean

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_encoder(encoder_name_or_path: str) -> torch.nn.Module:
    """The pretrained encoder without any head, in eval mode."""
    with quiet_transformers():
        model = AutoModel.from_pretrained(encoder_name_or_path)
    return model.eval()


@torch.inference_mode()
def embed_batches(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """One mean-pooled embedding per row, batches in the order given (float32, rows x hidden width).

    Batches hold `input_ids` and `attention_mask` (and `token_type_ids` where the tokenizer makes them); other keys
    are ignored. `on_batch(rows)` is called after each batch.
    """
    device = next(model.parameters()).device
    out = []
    for batch in batches:
        inputs = {k: batch[k].to(device) for k in ENCODER_INPUTS if k in batch}
        hidden = model(**inputs).last_hidden_state
        out.append(mean_pool(hidden, inputs["attention_mask"]).float().cpu().numpy())
        if on_batch is not None:
            on_batch(len(hidden))
    width = getattr(getattr(model, "config", None), "hidden_size", 0)
    return np.concatenate(out) if out else np.zeros((0, width), dtype=np.float32)


@torch.inference_mode()
def embed_words(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Contextual word embeddings: for each row, the last hidden state at each of its labelled sub-tokens (a word's
    first sub-token; `labels` is IGNORE_INDEX elsewhere), in order (float32, words x hidden width per row).

    Batches hold the encoder inputs and `labels` (one tag id or IGNORE_INDEX per sub-token, as token classification
    batches them). `on_batch(rows)` is called after each batch.
    """
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    for batch in batches:
        inputs = {k: batch[k].to(device) for k in ENCODER_INPUTS if k in batch}
        hidden = model(**inputs).last_hidden_state.float().cpu()
        words = batch["labels"] != IGNORE_INDEX
        out.extend(hidden[i][words[i]].numpy() for i in range(len(hidden)))
        if on_batch is not None:
            on_batch(len(hidden))
    return out
