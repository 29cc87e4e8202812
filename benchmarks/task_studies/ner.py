"""Benchmark study of task: token-classification: MiniLM on a WNUT-17 subset (CoNLL files, 6 entity types).

The subset is a seeded sample of whole sentences of the official training and dev files, written back as CoNLL
(`token<TAB>tag`, a blank line between sentences), which sweep reads as they are.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

DESCRIPTION = "WNUT-17 NER (6 entity types, entity F1): 500 train sentences, 200 dev sentences, seeded samples"
TRAIN, DEV = "wnut17/wnut17train.conll", "wnut17/emerging.dev.conll"
TRAIN_SIZE, DEV_SIZE = 500, 200


def conll_sentences(path: Path) -> list[list[str]]:
    """The sentences of a CoNLL file as lists of lines (whitespace-only lines separate sentences)."""
    sentences: list[list[str]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            sentences[-1].append(line)
        elif sentences[-1]:
            sentences.append([])
    return [s for s in sentences if s]


def write_sample(source: Path, target: Path, n: int, seed: int) -> Path:
    """`n` seeded sentences of `source`, in file order, written to `target` as CoNLL."""
    sentences = conll_sentences(source)
    chosen = sorted(random.Random(seed).sample(range(len(sentences)), n))
    target.write_text("".join("\n".join(sentences[i]) + "\n\n" for i in chosen), encoding="utf-8")
    return target


def build(work: Path, shared: Path) -> dict[str, Any]:
    """The data subset in `work` and the spec of a small MiniLM study (4 trials, 2 epochs, entity micro-F1)."""
    work.mkdir(parents=True, exist_ok=True)
    train = write_sample(shared / TRAIN, work / "train.conll", TRAIN_SIZE, seed=0)
    dev = write_sample(shared / DEV, work / "dev.conll", DEV_SIZE, seed=0)
    return {
        "name": "bench-ner-wnut17",
        "task": "token-classification",
        "storage": f"sqlite:///{work / 'sweeps.db'}",
        "checkpoint_dir": str(work / "checkpoints"),
        "data": {"train": str(train), "validation": str(dev), "cache_dir": str(work / "cache")},
        "model": {"encoder": "minilm", "max_length": 64},
        "objective": {"metric": "f1_micro"},
        "search": {"n_trials": 4, "sampler": "tpe", "pruner": "median", "seed": 0, "keep_checkpoints": 1,
                   "space": {"learning_rate": {"low": 1e-4, "high": 4e-4, "log": True}, "batch_size": 16,
                             "epochs": 2, "warmup_ratio": 0.1}},
    }  # fmt: skip


def baseline(work: Path) -> tuple[str, float]:
    """Entity F1 of tagging every word O (seqeval, as the study scores): no entity found, so 0."""
    from seqeval.metrics import f1_score

    gold = [[line.split()[-1] for line in sentence] for sentence in conll_sentences(work / "dev.conll")]
    return "all-O tagger", float(f1_score(gold, [["O"] * len(tags) for tags in gold]))
