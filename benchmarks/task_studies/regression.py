"""Benchmark study for task: regression: STS-B sentence-pair similarity (0-5) with MiniLM, scored by Spearman.

Trains on STS-B train only and validates on STS-B dev (never SICK, which shares sentences with STS-B).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

TRAIN_SIZE, VAL_SIZE, SEED = 600, 200, 0
DESCRIPTION = (f"STS-B sentence pairs -> similarity 0-5 (regression, Spearman): {TRAIN_SIZE} train pairs from "
               f"sts-train, {VAL_SIZE} validation pairs from sts-dev, MiniLM, 4 trials x 2 epochs")  # fmt: skip


def read_stsb(path: Path) -> dict[tuple[str, str], float]:
    """Distinct (sentence1, sentence2) -> score of an STS-B file: TAB-separated despite `.csv`, 7 or 9 fields,
    unbalanced quotes (so no quoting); fields 4-6 are score, sentence1, sentence2 (stsb/SOURCE.md)."""
    rows: dict[tuple[str, str], float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        rows.setdefault((" ".join(fields[5].split()), " ".join(fields[6].split())), float(fields[4]))
    return rows


def write_subset(source: Path, target: Path, n: int, seed: int) -> Path:
    """A seeded sample of `n` distinct pairs of `source` as a CSV with a header (sentence1, sentence2, score)."""
    rows = read_stsb(source)
    chosen = random.Random(seed).sample(sorted(rows), n)
    with target.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence1", "sentence2", "score"])
        writer.writerows((a, b, rows[(a, b)]) for a, b in chosen)
    return target


def build(work: Path, shared: Path) -> dict[str, Any]:
    """Write the STS-B subsets into `work` and return the spec of a small MiniLM regression study over them."""
    work.mkdir(parents=True, exist_ok=True)
    train = write_subset(shared / "stsb" / "sts-train.csv", work / "stsb_train.csv", TRAIN_SIZE, SEED)
    validation = write_subset(shared / "stsb" / "sts-dev.csv", work / "stsb_dev.csv", VAL_SIZE, SEED)
    return {
        "name": "task-regression-stsb",
        "task": "regression",
        "storage": f"sqlite:///{work / 'regression.db'}",
        "checkpoint_dir": str(work / "checkpoints"),
        "data": {
            "train": str(train),
            "validation": str(validation),
            "text_column": "sentence1",
            "text_pair_column": "sentence2",
            "label_column": "score",
            "cache_dir": str(work / "cache"),
        },
        "model": {"encoder": "minilm", "max_length": 64},
        "objective": {"metric": "spearman"},
        "search": {
            "n_trials": 4,
            "sampler": "tpe",
            "pruner": "median",
            "seed": SEED,
            "keep_checkpoints": 1,
            "space": {
                "learning_rate": {"low": 3e-5, "high": 2e-4, "log": True},
                "batch_size": 16,
                "epochs": 2,
                "warmup_ratio": 0.1,
            },
        },
    }


def baseline(work: Path) -> tuple[str, float]:
    """Spearman of lower-cased word overlap (Jaccard) of the two sentences against the gold score, on the same
    validation subset: a lexical floor without any model (0.653 on all of sts-dev, stsb/SOURCE.md). A constant
    prediction, the truly trivial one, has no Spearman at all (recorded as 0)."""
    import re

    from scipy.stats import spearmanr

    def words(text: str) -> set[str]:
        return set(re.findall(r"\w+", text.lower()))

    with (work / "stsb_dev.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    overlap = [len(words(r["sentence1"]) & words(r["sentence2"])) / max(1, len(words(r["sentence1"]) |
                                                                                words(r["sentence2"]))) for r in rows]
    return "word-overlap (Jaccard) Spearman", float(spearmanr(overlap, [float(r["score"]) for r in rows]).statistic)
