"""TREC-6 question types: a single-label classification study."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Any

DESCRIPTION = "TREC-6 (train_5500.label): 1,200 train / 400 validation questions, seeded, stratified by class"
N_TRAIN, N_VALIDATION = 1200, 400


def _rows(shared: Path) -> list[tuple[str, str]]:
    """(question, coarse class) from TREC's `COARSE:fine question` lines (latin-1 bytes in a few lines)."""
    rows = []
    for line in (shared / "trec" / "train_5500.label").read_bytes().decode("latin-1").splitlines():
        label, _, text = line.partition(" ")
        rows.append((text.strip(), label.split(":")[0]))
    return rows


def _split(rows: list[tuple[str, str]], seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    rng = random.Random(seed)
    unique = list(dict.fromkeys(rows))
    rng.shuffle(unique)
    total = N_TRAIN + N_VALIDATION
    counts = Counter(label for _, label in unique)
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in unique:
        by_label.setdefault(row[1], []).append(row)
    train, validation = [], []
    for label, members in sorted(by_label.items()):
        take = max(2, round(total * counts[label] / len(unique)))
        n_val = max(1, round(take * N_VALIDATION / total))
        validation += members[:n_val]
        train += members[n_val:take]
    return train, validation


def _write(path: Path, rows: list[tuple[str, str]]) -> str:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def build(work: Path, shared: Path) -> dict[str, Any]:
    train, validation = _split(_rows(shared), seed=0)
    return {
        "name": "bench-text-classification",
        "storage": f"sqlite:///{work / 'sweeps.db'}",
        "checkpoint_dir": str(work / "checkpoints"),
        "data": {
            "train": _write(work / "train.csv", train),
            "validation": _write(work / "validation.csv", validation),
            "cache_dir": str(work / "cache"),
        },
        "model": {"encoder": "minilm", "max_length": 64},
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
    """Macro-F1 of always predicting the training majority class."""
    from sklearn.metrics import f1_score

    train = list(csv.DictReader((work / "train.csv").open(encoding="utf-8")))
    validation = list(csv.DictReader((work / "validation.csv").open(encoding="utf-8")))
    majority = Counter(r["label"] for r in train).most_common(1)[0][0]
    truth = [r["label"] for r in validation]
    return "majority class", float(f1_score(truth, [majority] * len(truth), average="macro"))
