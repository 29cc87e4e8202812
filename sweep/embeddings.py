"""Frozen-encoder embeddings of a study's training examples, computed once per (encoder, data fingerprint) and cached
on disk beside the tokenised data (`<cache_dir>/embeddings/`)."""

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


def embedding_cache_path(cache_dir: Path, encoder: str, fingerprint: str) -> Path:
    """Where the embeddings of data `fingerprint` by `encoder` are kept."""
    return cache_dir / "embeddings" / f"{fingerprint[:32]}-{encoder_identity(encoder)[:16]}.npy"


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
