"""Tokenizing cleaned splits once, and the on-disk cache keyed by tokenizer, max_length and data."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets

from datamodules.texts import Text

CACHE_FORMAT = 1
SPLITS = ("train", "validation")


def tokenizer_identity(tokenizer: Any) -> dict[str, str]:
    """What makes two tokenizers encode alike: class, vocabulary and (fast) pipeline, not their path."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pipeline = backend.to_str() if backend is not None else ""
    return {
        "name": os.path.basename(str(tokenizer.name_or_path).rstrip("/\\")),
        "class": type(tokenizer).__name__,
        "vocab_sha256": hashlib.sha256(vocab.encode("utf-8")).hexdigest(),
        "pipeline_sha256": hashlib.sha256(pipeline.encode("utf-8")).hexdigest(),
        "truncation_side": str(getattr(tokenizer, "truncation_side", "right")),
    }


def data_fingerprint(
    *,
    tokenizer_id: dict[str, str],
    max_length: int,
    splits: dict[str, tuple[Sequence[Text], Sequence[str]]],
    label_names: Sequence[str],
    text_pair: bool = False,
) -> str:
    """Hex sha256 of everything the encoded splits depend on (a pair's both texts, and that it is a pair)."""
    digest = hashlib.sha256()
    meta: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "tokenizer": tokenizer_id,
        "max_length": max_length,
        "label_names": list(label_names),
    }
    if text_pair:  # left out for single texts, so their fingerprints (and caches) stay as they were
        meta["task"] = "text-pair"
    digest.update(json.dumps(meta, sort_keys=True).encode("utf-8"))
    for name in sorted(splits):
        texts, labels = splits[name]
        digest.update(f"\n#{name}:{len(texts)}\n".encode())
        for text, label in zip(texts, labels, strict=True):
            digest.update(json.dumps([text, label], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide `datasets` progress bars for the duration, restoring the caller's setting afterwards."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def tokenize_split(
    tokenizer: Any, texts: Sequence[Text], label_ids: Sequence[Any], *, max_length: int, fingerprint: str
) -> tuple[datasets.Dataset, int]:
    """Encode texts (truncated to max_length, unpadded) with labels and token counts; also count truncations.

    Pairs `(text, text_pair)` are encoded as the tokenizer encodes a pair (`[CLS] a [SEP] b [SEP]` for BERT,
    with token_type_ids 0 then 1) and truncated `longest_first`: tokens come off the longer text first, so
    neither text is lost whole. Columns: input_ids, attention_mask, (token_type_ids), labels, length.
    """
    pairs = bool(texts) and isinstance(texts[0], tuple)
    columns = ["text", "text_pair"] if pairs else ["text"]

    def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        inputs = [batch[c] for c in columns]
        encoded = tokenizer(*inputs, truncation="longest_first", max_length=max_length)
        ids = encoded["input_ids"]
        # A text was cut only if it fills max_length; re-encode just those to see their full length.
        at_max = [i for i, seq in enumerate(ids) if len(seq) >= max_length]
        truncated = [False] * len(ids)
        if at_max:
            some = [[values[i] for i in at_max] for values in inputs]
            full = tokenizer(*some, truncation=False, verbose=False)["input_ids"]
            for i, seq in zip(at_max, full, strict=True):
                truncated[i] = len(seq) > max_length
        return {**dict(encoded), "length": [len(seq) for seq in ids], "truncated": truncated}

    if pairs:
        table_columns: dict[str, list[Any]] = {"text": [t[0] for t in texts], "text_pair": [t[1] for t in texts]}
    else:
        table_columns = {"text": list(texts)}
    table = datasets.Dataset.from_dict({**table_columns, "labels": list(label_ids)})
    with quiet_progress():
        encoded = table.map(encode, batched=True, batch_size=1000, remove_columns=columns, new_fingerprint=fingerprint)
    n_truncated = sum(encoded["truncated"])
    return encoded.remove_columns("truncated"), int(n_truncated)


def load_cached(directory: Path) -> tuple[dict[str, datasets.Dataset], dict[str, Any]] | None:
    """The cached splits and report at `directory`, or None if absent or unreadable."""
    if not (directory / "report.json").is_file():
        return None
    try:
        with quiet_progress():
            splits = {name: datasets.load_from_disk(str(directory / name)) for name in SPLITS}
        report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return splits, report


def save_cache(directory: Path, splits: dict[str, datasets.Dataset], report: dict[str, Any]) -> None:
    """Write splits + report.json into a temp dir beside `directory`, then move it into place atomically.

    If another process put a complete cache there first, keep theirs (same key, same content).
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with quiet_progress():
            for name, dataset in splits.items():
                dataset.save_to_disk(str(tmp / name))
        (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        if directory.exists() and load_cached(directory) is None:
            shutil.rmtree(directory, ignore_errors=True)  # a broken earlier cache: replace it
        try:
            os.replace(tmp, directory)
        except OSError:
            if load_cached(directory) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
