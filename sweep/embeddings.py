"""Frozen-encoder embeddings of a study's training examples, computed once per (encoder, data fingerprint) and cached
on disk beside the tokenised data (`<cache_dir>/embeddings/`): one per example (mean-pooled), or one per word (token
classification: the word's first sub-token, a `-words` file)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from datamodules import PreparedData

EMBED_BATCH = 64


def encoder_identity(encoder: str) -> str:
    """What makes two encoders embed alike: a local folder's config and weight files (name, size, mtime), else its
    hub name."""
    folder = Path(encoder)
    facts: dict[str, object] = {"encoder": encoder}
    if folder.is_dir():
        facts = {"config": (folder / "config.json").read_text(encoding="utf-8") if (folder / "config.json").is_file()
                 else ""}  # fmt: skip
        for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            stat = path.stat()
            facts[path.name] = [stat.st_size, int(stat.st_mtime)]
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()


def embedding_cache_path(cache_dir: Path, encoder: str, fingerprint: str, kind: str = "") -> Path:
    """Where the embeddings of data `fingerprint` by `encoder` are kept (`kind`: "words" for word embeddings)."""
    suffix = f"-{kind}" if kind else ""
    return cache_dir / "embeddings" / f"{fingerprint[:32]}-{encoder_identity(encoder)[:16]}{suffix}.npy"


def _save(path: Path, embeddings: np.ndarray) -> None:
    """Write to a temporary file beside `path`, then rename it into place (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.npy")
    try:
        np.save(tmp, embeddings)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load(path: Path, rows: int) -> np.ndarray | None:
    try:
        embeddings = np.load(path)
    except (OSError, ValueError):
        return None
    return embeddings if embeddings.ndim == 2 and len(embeddings) == rows else None


def train_embeddings(
    data: PreparedData,
    encoder: str,
    cache_dir: Path,
    *,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, bool]:
    """Mean-pooled embeddings of every training example (row i = `data.train[i]`) and whether the cache had them.

    `on_start(rows)` is called before embedding (on a cache miss), `on_batch(rows)` after each batch.
    """
    path = embedding_cache_path(cache_dir, encoder, data.fingerprint)
    cached = _load(path, len(data.train)) if path.is_file() else None
    if cached is not None:
        return cached, True
    from datamodules.text_classification import EncodedExamples, PaddingCollator
    from models.embedding import embed_batches, load_encoder

    examples = EncodedExamples(data.train)
    lengths = np.array([len(ids) for ids in examples.sequences["input_ids"]])
    order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
    collate = PaddingCollator(data.pad_token_id)
    batches = (collate([examples[int(i)] for i in order[s : s + EMBED_BATCH]])
               for s in range(0, len(order), EMBED_BATCH))  # fmt: skip
    if on_start is not None:
        on_start(len(order))
    pooled = embed_batches(load_encoder(encoder), batches, on_batch=on_batch)
    embeddings = np.empty_like(pooled)
    embeddings[order] = pooled
    _save(path, embeddings)
    return embeddings, False


def train_word_embeddings(
    data: PreparedData,
    encoder: str,
    cache_dir: Path,
    *,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, bool]:
    """Contextual embeddings of every training word (token classification), and whether the cache had them.

    One row per word, in the order of `data.train`'s rows and their words (the sub-tokens whose label is not
    IGNORE_INDEX, i.e. each word's first sub-token): the frozen encoder's last hidden state there, each row embedded
    in its own context (a window of a long sentence sees only its window, as a fine-tuned model does).
    `on_start(rows)` is called before embedding (on a cache miss), `on_batch(rows)` after each batch.
    """
    from datamodules.text_classification import IGNORE_INDEX

    words = sum(sum(1 for tag in row if tag != IGNORE_INDEX) for row in data.train["labels"])
    path = embedding_cache_path(cache_dir, encoder, data.fingerprint, kind="words")
    cached = _load(path, words) if path.is_file() else None
    if cached is not None:
        return cached, True
    from datamodules.text_classification import EncodedExamples, PaddingCollator
    from models.embedding import embed_words, load_encoder

    examples = EncodedExamples(data.train)
    lengths = np.array([len(ids) for ids in examples.sequences["input_ids"]])
    order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
    collate = PaddingCollator(data.pad_token_id, "tokens")
    batches = (collate([examples[int(i)] for i in order[s : s + EMBED_BATCH]])
               for s in range(0, len(order), EMBED_BATCH))  # fmt: skip
    if on_start is not None:
        on_start(len(order))
    rows = embed_words(load_encoder(encoder), batches, on_batch=on_batch)
    by_row: list[np.ndarray] = [np.zeros(0)] * len(rows)
    for position, row in enumerate(order):
        by_row[int(row)] = rows[position]
    embeddings = np.concatenate(by_row) if by_row else np.zeros((0, 0), dtype=np.float32)
    _save(path, embeddings)
    return embeddings, False
