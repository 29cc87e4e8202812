"""Token classification data (task: token-classification): read tagged sentences, clean, split, then encode them
with each word's tag on its first sub-token (the rest -100), sentences longer than max_length split into windows at
word boundaries (cached). Returns the same `PreparedData` the classification tasks do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import AutoTokenizer

from datamodules.encoding import CACHE_FORMAT, load_cached, save_cache, tokenizer_identity
from datamodules.errors import DataError
from datamodules.preparation import PreparedData, tokenizer_limit
from datamodules.report import overlap_warnings
from datamodules.tagged import (
    CleanSentences,
    TaggedFile,
    clean_sentences,
    entity_counts,
    entity_types,
    read_tagged,
    tag_names,
    tag_problems,
    unseen_type_problem,
)
from datamodules.text_classification import IGNORE_INDEX

Log = Callable[[str], None]
TASK = "token-classification"
SENTENCE = "sentence"  # validation column: the sentence each row (window) belongs to, in row order
MAX_OVERLAP_EXAMPLES = 10


@dataclass(frozen=True)
class SentenceSplits:
    """Cleaned train / validation sentences (tokens and IOB2 tags), and how they were split."""

    train_tokens: list[list[str]]
    train_tags: list[list[str]]
    val_tokens: list[list[str]]
    val_tags: list[list[str]]
    split: str
    overlap: dict[str, Any]
    train_origin: list[int] = dataclasses.field(default_factory=list)  # each training sentence's cleaned train index


def load_tagged_sources(
    train_source: str, validation_source: str | None, *, fmt: str | None, tokens_key: str, tags_key: str
) -> tuple[TaggedFile, TaggedFile | None]:
    """Read train and (if given) validation, raising one DataError with the problems of both (tags included)."""
    problems: list[tuple[str, str]] = []
    files: dict[str, TaggedFile] = {}
    for field, source in (("data.train", train_source), ("data.validation", validation_source)):
        if source is None:
            continue
        try:
            files[field] = read_tagged(source, field=field, fmt=fmt, tokens_key=tokens_key, tags_key=tags_key)
        except DataError as err:
            problems += err.problems
            continue
        problems += tag_problems(files[field], field)
    if problems:
        raise DataError(problems)
    return files["data.train"], files.get("data.validation")


def split_sentences(
    train: CleanSentences, validation: CleanSentences | None, *, val_fraction: float, seed: int
) -> SentenceSplits:
    """The given validation sentences, or a seeded random `val_fraction` of train; then leakage removal: training
    sentences whose tokens are also a validation sentence are dropped from train."""
    if validation is None:
        n = len(train.tokens)
        n_val = min(n - 1, max(1, round(n * val_fraction)))
        if n < 2:
            raise DataError([("data.train", f"{n} sentence after cleaning: a validation split needs 2 or more")])
        order = np.random.default_rng(seed).permutation(n)
        val_rows, train_rows = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
        tr_tokens, tr_tags = [train.tokens[i] for i in train_rows], [train.tags[i] for i in train_rows]
        va_tokens, va_tags = [train.tokens[i] for i in val_rows], [train.tags[i] for i in val_rows]
        split = f"random sentences from train, val_fraction={val_fraction}, seed={seed}"
    else:
        tr_tokens, tr_tags, va_tokens, va_tags = train.tokens, train.tags, validation.tokens, validation.tags
        train_rows = list(range(len(tr_tokens)))
        split = "given"
    in_val = {tuple(tokens) for tokens in va_tokens}
    keep = [i for i, tokens in enumerate(tr_tokens) if tuple(tokens) not in in_val]
    dropped = list(dict.fromkeys(" ".join(tokens) for tokens in tr_tokens if tuple(tokens) in in_val))
    overlap = {"train_val_overlap": len(tr_tokens) - len(keep), "overlap_examples": dropped[:MAX_OVERLAP_EXAMPLES]}
    if not keep:
        raise DataError([("data.train", "every training sentence is also in validation: nothing is left to train on")])
    return SentenceSplits(
        [tr_tokens[i] for i in keep], [tr_tags[i] for i in keep], va_tokens, va_tags, split, overlap,
        train_origin=[train_rows[i] for i in keep],
    )


def token_fingerprint(
    *, tokenizer_id: dict[str, str], max_length: int, label_names: Sequence[str], splits: SentenceSplits
) -> str:
    """Hex sha256 of everything the encoded sentences depend on (the task is in it: no cache is shared with text)."""
    digest = hashlib.sha256()
    meta = {"format": CACHE_FORMAT, "task": TASK, "tokenizer": tokenizer_id, "max_length": max_length,
            "label_names": list(label_names), "windows": 1}  # fmt: skip
    digest.update(json.dumps(meta, sort_keys=True).encode("utf-8"))
    for name, tokens, tags in (("train", splits.train_tokens, splits.train_tags),
                               ("validation", splits.val_tokens, splits.val_tags)):  # fmt: skip
        digest.update(f"\n#{name}:{len(tokens)}\n".encode())
        for sentence, sentence_tags in zip(tokens, tags, strict=True):
            digest.update(json.dumps([sentence, sentence_tags], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


# -- encoding -----------------------------------------------------------------------------------------------


def word_windows(counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive word ranges `[start, end)` whose sub-tokens fit `budget`, greedily; every word is in exactly one.

    A word longer than `budget` alone is a window of its own (its first sub-token, which carries its tag, is kept;
    the tokenizer cuts the rest).
    """
    windows: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, count in enumerate(counts):
        if i > start and used + count > budget:
            windows.append((start, i))
            start, used = i, 0
        used += count
    if counts:
        windows.append((start, len(counts)))
    return windows


def first_subtoken_labels(word_ids: Sequence[int | None], tag_ids: Sequence[int]) -> list[int]:
    """Each word's tag id on its first sub-token; later sub-tokens and special tokens get IGNORE_INDEX."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else tag_ids[word])
        previous = word
    return labels


def encode_sentences(
    tokenizer: Any, tokens: Sequence[Sequence[str]], tag_ids: Sequence[Sequence[int]], *, max_length: int
) -> tuple[dict[str, list[Any]], dict[str, int]]:
    """Rows (one per window) of input_ids, attention_mask, (token_type_ids), labels, length and sentence index.

    Words the tokenizer turns into no sub-token at all (control or zero-width characters) are encoded as its unknown
    token, so every word keeps its tag. Also returns counts: `sentences_split` (sentences longer than max_length),
    `rows`, `words_cut` (single words longer than a window), `unknown_words`.
    """
    words = [list(sentence) for sentence in tokens]
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    plain = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    stats = {"sentences_split": 0, "rows": 0, "words_cut": 0, "unknown_words": 0}
    pieces: list[tuple[int, list[str], list[int]]] = []
    for s, sentence in enumerate(words):
        counts = [0] * len(sentence)
        for word in plain.word_ids(s):
            if word is not None:
                counts[word] += 1
        for w, count in enumerate(counts):
            if count == 0:
                sentence[w] = tokenizer.unk_token
                counts[w] = 1
                stats["unknown_words"] += 1
        windows = word_windows(counts, budget)
        stats["sentences_split"] += len(windows) > 1
        stats["words_cut"] += sum(1 for a, b in windows if b - a == 1 and counts[a] > budget)
        pieces += [(s, sentence[a:b], list(tag_ids[s][a:b])) for a, b in windows]
    encoded = tokenizer([p[1] for p in pieces], is_split_into_words=True, truncation=True, max_length=max_length)
    columns: dict[str, list[Any]] = {key: list(encoded[key]) for key in encoded}
    columns["labels"] = []
    for i, (_, window, window_tags) in enumerate(pieces):
        labels = first_subtoken_labels(encoded.word_ids(i), window_tags)
        if sum(label != IGNORE_INDEX for label in labels) != len(window):
            raise RuntimeError(f"{len(window)} words but {sum(la != IGNORE_INDEX for la in labels)} labelled tokens")
        columns["labels"].append(labels)
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    columns[SENTENCE] = [p[0] for p in pieces]
    stats["rows"] = len(pieces)
    return columns, stats


def window_warnings(windows: dict[str, dict[str, int]], max_length: int) -> list[str]:
    """One line per split with sentences split into windows, words cut or words encoded as unknown."""
    lines = []
    for split, counts in windows.items():
        if counts.get("sentences_split"):
            n = counts["sentences_split"]
            lines.append(f"{split}: {n} {'sentence' if n == 1 else 'sentences'} longer than max_length={max_length} "
                         f"tokens {'was' if n == 1 else 'were'} split into windows ({counts['rows']} rows for "
                         f"{counts['sentences']} sentences)")
        if counts.get("words_cut"):
            n = counts["words_cut"]
            lines.append(f"{split}: {n} single {'word' if n == 1 else 'words'} longer than max_length={max_length} "
                         f"tokens {'keeps' if n == 1 else 'keep'} only {'its' if n == 1 else 'their'} first sub-tokens "
                         f"({'its' if n == 1 else 'their'} tag is kept)")
        if counts.get("unknown_words"):
            n = counts["unknown_words"]
            lines.append(f"{split}: {n} {'word' if n == 1 else 'words'} the tokenizer makes nothing of (control or "
                         f"zero-width characters) {'was' if n == 1 else 'were'} encoded as its unknown token")
    return lines


def encode_splits_cached(
    tokenizer: Any, splits: SentenceSplits, *, label_names: Sequence[str], max_length: int, directory: Path,
    report: dict[str, Any], say: Log,
) -> dict[str, datasets.Dataset]:  # fmt: skip
    """Encoded splits from the cache at `directory`, encoding and caching them on a miss; adds `windows`, `cache` and
    window warnings to `report` (in place)."""
    cached = load_cached(directory)
    if cached is not None:
        report.update(windows=cached[1]["windows"], cache="hit")
        say(f"cache hit: {directory}")
    else:
        ids = {name: i for i, name in enumerate(label_names)}
        encoded, windows = {}, {}
        for name, tokens, tags in (("train", splits.train_tokens, splits.train_tags),
                                   ("validation", splits.val_tokens, splits.val_tags)):  # fmt: skip
            columns, stats = encode_sentences(
                tokenizer, tokens, [[ids[t] for t in sentence] for sentence in tags], max_length=max_length
            )
            encoded[name] = datasets.Dataset.from_dict(columns)
            windows[name] = {"sentences": len(tokens), **stats}
        say(f"tokenized {len(splits.train_tokens)} + {len(splits.val_tokens)} sentences (cache miss)")
        report.update(windows=windows, cache="miss")
        save_cache(directory, encoded, report)
        cached = load_cached(directory)  # serve the memory-mapped copy, as a cache hit would
        if cached is None:
            raise OSError(f"could not read back the data cache just written to {directory}")
    report["warnings"] += window_warnings(report["windows"], max_length)
    return cached[0]


# -- the entry point ----------------------------------------------------------------------------------------


def tag_cleaning_warnings(split: str, report: dict[str, Any]) -> list[str]:
    """One line per kind of change cleaning made to a split's sentences or tags."""
    lines = []
    if report["empty_text"]:
        n = report["empty_text"]
        lines.append(f"{split}: dropped {n} empty {'sentence' if n == 1 else 'sentences'}")
    if report["duplicates"]:
        n = report["duplicates"]
        lines.append(f"{split}: dropped {n} duplicate {'sentence' if n == 1 else 'sentences'} (the same tokens, after "
                     "normalising, and tags)")
    if report["invalid_transitions"]:
        lines.append(f"{split}: {report['invalid_transitions']} entities began with I- in an IOB2 file (after O or "
                     "another type): read as B-")
    elif report["tags_rewritten"]:
        lines.append(f"{split}: IOB1 tags: {report['tags_rewritten']} entity-initial I- tags rewritten as B- (IOB2)")
    return lines


def build_token_report(
    splits: SentenceSplits, *, train_clean: CleanSentences, val_clean: CleanSentences | None, types: list[str],
    label_names: list[str], train_source: str, validation_source: str | None, max_length: int,
) -> dict[str, Any]:  # fmt: skip
    """The JSON-serialisable data report of a token classification dataset (windows are added after encoding)."""
    warnings = tag_cleaning_warnings("train", train_clean.report)
    if val_clean is not None:
        warnings += tag_cleaning_warnings("validation", val_clean.report)
    warnings += overlap_warnings(splits.overlap, kind="sentence")
    return {
        "task": TASK,
        "train": train_source,
        "validation": validation_source,
        "cleaning": {"train": train_clean.report, "validation": val_clean.report if val_clean else None},
        "split": splits.split,
        "overlap": splits.overlap,
        # entities per type (the "classes" of this task); label_names are the tags
        "class_distribution": {"train": entity_counts(splits.train_tags, types),
                               "validation": entity_counts(splits.val_tags, types)},
        "entity_types": types,
        "max_length": max_length,
        "label_names": label_names,
        "num_train": len(splits.train_tokens),
        "num_validation": len(splits.val_tokens),
        "tokens": {"train": sum(map(len, splits.train_tokens)), "validation": sum(map(len, splits.val_tokens))},
        "warnings": warnings,
    }  # fmt: skip


def prepare_token_data(
    *,
    train_source: str,
    validation_source: str | None,
    tokens_key: str,
    tags_key: str,
    fmt: str | None,
    val_fraction: float,
    seed: int,
    tokenizer_name_or_path: str,
    max_length: int,
    cache_dir: Path,
    log: Log | None = None,
    check_fingerprint: Callable[[str], None] | None = None,
) -> PreparedData:
    """Read, clean, split and encode tagged sentences (cached); label names are O then B-/I- of each training type.

    Raises DataError (every problem of both files at once) for unreadable files, tags that are not IOB, a JSON line
    whose tag list is longer or shorter than its tokens, training data without entities, validation entity types
    training never has, and a tokenizer without word alignment. `check_fingerprint` is called with the data
    fingerprint before anything is encoded or cached (it may raise to stop there).
    """
    say: Log = log or (lambda _line: None)
    train_file, val_file = load_tagged_sources(
        train_source, validation_source, fmt=fmt, tokens_key=tokens_key, tags_key=tags_key
    )
    for file in (train_file, val_file):
        if file is not None:
            say(f"loaded {len(file.sentences)} sentences from {file.source}")
    train_clean = clean_sentences(train_file)
    val_clean = clean_sentences(val_file) if val_file is not None else None
    types = entity_types(train_clean.tags)
    problems = []
    if not types:
        problems.append(("data.train", f"{train_file.name} has no entity tags (every tag is O): token "
                                       "classification needs B-<type> / I-<type> tags to learn from"))
    if val_file is not None and types and (unseen := unseen_type_problem(val_file, types, "data.validation")):
        problems.append(unseen)
    if problems:
        raise DataError(problems)
    splits = split_sentences(train_clean, val_clean, val_fraction=val_fraction, seed=seed)
    label_names = tag_names(types)

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path)
    limit = tokenizer_limit(tokenizer)
    problems = []
    if limit is not None and max_length > limit:
        problems.append(("model.max_length", f"{max_length} is above the limit of {tokenizer_name_or_path} ({limit} "
                                             f"tokens, its tokenizer's model_max_length): set it to {limit} or less"))
    if not getattr(tokenizer, "is_fast", False):
        problems.append(("model.encoder", f"{tokenizer_name_or_path!r} has no fast tokenizer: token classification "
                                          "needs one (it maps sub-tokens back to words)"))
    if problems:
        raise DataError(problems)
    fingerprint = token_fingerprint(tokenizer_id=tokenizer_identity(tokenizer), max_length=max_length,
                                    label_names=label_names, splits=splits)  # fmt: skip
    if check_fingerprint is not None:
        check_fingerprint(fingerprint)
    report = build_token_report(
        splits, train_clean=train_clean, val_clean=val_clean, types=types, label_names=label_names,
        train_source=train_source, validation_source=validation_source, max_length=max_length,
    )  # fmt: skip
    report["tokenizer"] = tokenizer_name_or_path
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        pad_token_id = 0
        report["warnings"].append("the tokenizer has no pad or eos token: padding with id 0")
    encoded = encode_splits_cached(tokenizer, splits, label_names=label_names, max_length=max_length,
                                   directory=Path(cache_dir) / fingerprint, report=report, say=say)  # fmt: skip
    validation = encoded["validation"]
    # row i of validation is a window of sentence validation[SENTENCE][i]: its text is the window's words
    texts = [" ".join(splits.val_tokens[s]) for s in validation[SENTENCE]]
    # Row i of train is a window of training sentence s = train[SENTENCE][i]: it names that sentence's index among
    # the training file's sentences, its words and each word's line in the file (the annotation audit's rows).
    sentences = [int(s) for s in encoded["train"][SENTENCE]]
    file_rows = [train_clean.rows[splits.train_origin[s]] for s in sentences]
    return PreparedData(
        train=encoded["train"],
        validation=validation,
        label_names=label_names,
        report=report,
        fingerprint=fingerprint,
        pad_token_id=int(pad_token_id),
        validation_texts=texts,
        train_texts=[" ".join(splits.train_tokens[s]) for s in sentences],
        train_rows=file_rows,
        train_words=[splits.train_tokens[s] for s in sentences],
        train_lines=[train_file.sentences[row].lines for row in file_rows],
    )
