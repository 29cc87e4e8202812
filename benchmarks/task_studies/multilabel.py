"""Benchmark study of task: multi-label: MiniLM on an NLU++ banking subset (JSON folds -> JSON lines with intent lists).

NLU++ marks "no intent" by leaving out the `intents` key; sweep refuses a row without labels, so the subset leaves
those rows out (as the learning check does), and drops from validation the intents no training row has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DESCRIPTION = (
    "NLU++ banking multi-label intents, MiniLM: folds 0-7 train (780 rows), 16-18 validation (301), 48 intents"
)
TRAIN_FOLDS = range(0, 8)
VALIDATION_FOLDS = range(16, 19)


def nlupp_rows(shared: Path, folds: range, domain: str = "banking") -> list[dict[str, Any]]:
    """`{"text", "intents"}` rows of the given folds, leaving out rows without an intent, and keeping one row per text
    (a text repeated with other intents is left out whole), so the rows are what sweep's cleaning keeps."""
    rows: dict[str, list[str] | None] = {}
    for fold in folds:
        for example in json.loads((shared / "nlupp" / domain / f"fold{fold}.json").read_text(encoding="utf-8")):
            if example.get("intents"):
                intents = sorted(set(example["intents"]))
                text = " ".join(example["text"].split())
                rows[text] = intents if rows.get(text, intents) == intents else None
    return [{"text": text, "intents": intents} for text, intents in rows.items() if intents]


def write_subset(
    work: Path, shared: Path, train_folds: range = TRAIN_FOLDS, validation_folds: range = VALIDATION_FOLDS
) -> tuple[Path, Path]:
    """Write train.jsonl and validation.jsonl into `work`; validation keeps only intents seen in train."""
    train = nlupp_rows(shared, train_folds)
    seen = {intent for row in train for intent in row["intents"]}
    validation = []
    for row in nlupp_rows(shared, validation_folds):
        kept = [i for i in row["intents"] if i in seen]
        if kept:
            validation.append({"text": row["text"], "intents": kept})
    work.mkdir(parents=True, exist_ok=True)
    paths = work / "train.jsonl", work / "validation.jsonl"
    for path, rows in zip(paths, (train, validation), strict=True):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return paths


def build(work: Path, shared: Path) -> dict[str, Any]:
    """The data subset in `work` and the spec of a small MiniLM study (4 trials, 3 epochs, micro-F1)."""
    train, validation = write_subset(work, shared)
    return {
        "name": "bench-multilabel-nlupp",
        "task": "multi-label",
        "storage": f"sqlite:///{work / 'sweeps.db'}",
        "checkpoint_dir": str(work / "checkpoints"),
        "data": {"train": str(train), "validation": str(validation), "label_column": "intents",
                 "cache_dir": str(work / "cache")},
        "model": {"encoder": "minilm", "max_length": 64},
        "objective": {"metric": "f1_micro"},
        "search": {"n_trials": 4, "sampler": "tpe", "pruner": "median", "seed": 0, "keep_checkpoints": 1,
                   "space": {"learning_rate": {"low": 1e-4, "high": 5e-4, "log": True}, "batch_size": 16,
                             "epochs": 3}},
    }  # fmt: skip


def baseline(work: Path) -> tuple[str, float]:
    """Micro-F1 of predicting the two most frequent training intents for every validation row."""
    from collections import Counter

    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    rows = {name: [json.loads(line) for line in (work / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
            for name in ("train", "validation")}  # fmt: skip
    top = [i for i, _ in Counter(i for r in rows["train"] for i in r["intents"]).most_common(2)]
    binarize = MultiLabelBinarizer().fit([r["intents"] for r in rows["train"]])
    gold = binarize.transform([r["intents"] for r in rows["validation"]])
    guess = binarize.transform([top] * len(rows["validation"]))
    return "two most frequent intents", float(f1_score(gold, guess, average="micro", zero_division=0))
