"""SICK-E entailment as a text-pair study (sentence A, sentence B -> ENTAILMENT / NEUTRAL / CONTRADICTION)."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Any

DESCRIPTION = "SICK-E (SICK.txt): 1,000 TRAIN pairs / 400 TRIAL pairs, seeded samples; accuracy"
N_TRAIN, N_VALIDATION = 1000, 400


def _rows(shared: Path, split: str, n: int, seed: int) -> list[tuple[str, str, str]]:
    """`n` seeded (sentence_A, sentence_B, entailment_label) rows of one SemEval split (CRLF, TAB, no quoting)."""
    with (shared / "sick" / "SICK.txt").open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if r["SemEval_set"] == split]
    chosen = random.Random(seed).sample(rows, min(n, len(rows)))
    return [(r["sentence_A"], r["sentence_B"], r["entailment_label"]) for r in chosen]


def _write(path: Path, rows: list[tuple[str, str, str]]) -> str:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence_A", "sentence_B", "label"])
        writer.writerows(rows)
    return str(path)


def build(work: Path, shared: Path) -> dict[str, Any]:
    return {
        "name": "bench-text-pair",
        "task": "text-pair",
        "storage": f"sqlite:///{work / 'sweeps.db'}",
        "checkpoint_dir": str(work / "checkpoints"),
        "data": {
            "train": _write(work / "train.csv", _rows(shared, "TRAIN", N_TRAIN, seed=0)),
            "validation": _write(work / "validation.csv", _rows(shared, "TRIAL", N_VALIDATION, seed=0)),
            "text_column": "sentence_A",
            "text_pair_column": "sentence_B",
            "cache_dir": str(work / "cache"),
        },
        "model": {"encoder": "minilm", "max_length": 64},
        "objective": {"metric": "accuracy"},
        "search": {
            "n_trials": 4,
            "seed": 0,
            "space": {
                "learning_rate": {"low": 3e-5, "high": 2e-4, "log": True},
                "batch_size": [16, 32],
                "epochs": 2,
            },
        },
    }


def baseline(work: Path) -> tuple[str, float]:
    """Accuracy of always predicting the training majority label."""
    train = list(csv.DictReader((work / "train.csv").open(encoding="utf-8")))
    validation = list(csv.DictReader((work / "validation.csv").open(encoding="utf-8")))
    majority = Counter(r["label"] for r in train).most_common(1)[0][0]
    return "majority label", sum(r["label"] == majority for r in validation) / len(validation)
