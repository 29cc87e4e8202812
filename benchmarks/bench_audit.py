"""Annotation audit benchmark: does `sweep audit` find labels we flipped on purpose, and how fast?

    .venv/bin/python benchmarks/bench_audit.py                                  # embeddings, seeds 0 1 2 + clean data
    .venv/bin/python benchmarks/bench_audit.py --methods finetune --seeds 0 --epochs 2
    .venv/bin/python benchmarks/bench_audit.py --methods ensemble --epochs 2 --no-clean   # + its fine-tuned part
    .venv/bin/python benchmarks/bench_audit.py --methods ensemble --epochs 2 --seeds      # the unmodified data only

Data: TREC-6 (`trec/train_5500.label` from ../shared/data, or SWEEP_SHARED_DATA): the official training file with
texts seen twice or with two labels left out (so cleaning drops nothing and a CSV row is a subset row), shuffled
with seed 0; the first 2,000 questions are the audited training file, the next 300 the validation file. For each
seed, 5% of the training labels (100) are flipped to another class drawn uniformly (numpy seed = the seed), and
`sweep.audit.run_audit` (what `sweep audit` runs) audits it with each method. A flagged row is a true positive when
it is a flipped one. Also audited: the unmodified subset (what the audit raises on the data as published).

Writes `audit.json` (every measurement) and the measured part of `AUDIT.md` beside this script; the text below the
marker line in AUDIT.md (a reader's notes) is kept. Run it on an otherwise idle machine: times depend on the cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("SWEEP_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))  # bench_notes beside this script, also when loaded from elsewhere
FLIP_SHARE = 0.05


def log(message: str) -> None:
    print(f"[bench-audit {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=["embeddings", "finetune", "ensemble"], default=["embeddings"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2],
                        help="label-flip seeds (none: only the unmodified data)")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=300)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="finetune: epochs per fold")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="finetune: learning rate")
    parser.add_argument("--no-clean", action="store_true", help="skip the audit of the unmodified subset")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared datasets folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/sweep-bench-audit"), help="scratch folder")
    parser.add_argument("--results", type=Path, default=HERE, help="folder for AUDIT.md and audit.json")
    parser.add_argument("--render", action="store_true", help="only rewrite AUDIT.md from audit.json")
    return parser.parse_args(argv)


def read_trec(path: Path) -> list[tuple[str, str]]:
    """(question, coarse label) per line of TREC's `COARSE:fine question` format."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            label, question = line.split(" ", 1)
            rows.append((" ".join(question.split()), label.split(":", 1)[0]))
    return rows


def subset(rows: list[tuple[str, str]], train_size: int, val_size: int) -> tuple[list[tuple[str, str]], ...]:
    """Questions seen once with one label, shuffled with seed 0: the first `train_size`, then `val_size` more."""
    count = Counter(text for text, _ in rows)
    unique = [row for row in rows if count[row[0]] == 1]
    order = np.random.default_rng(0).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    return shuffled[:train_size], shuffled[train_size : train_size + val_size]


def flip_labels(rows: list[tuple[str, str]], seed: int) -> tuple[list[tuple[str, str]], list[int]]:
    """5% of the rows with their label replaced by another class (uniform), and which rows."""
    rng = np.random.default_rng(seed)
    labels = sorted({label for _, label in rows})
    chosen = sorted(int(i) for i in rng.choice(len(rows), size=round(FLIP_SHARE * len(rows)), replace=False))
    out = list(rows)
    for i in chosen:
        text, label = out[i]
        out[i] = (text, str(rng.choice([other for other in labels if other != label])))
    return out, chosen


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def write_spec(folder: Path, args: argparse.Namespace) -> Path:
    import yaml

    spec = {
        "name": "audit-bench",
        "data": {"train": "train.csv", "validation": "val.csv", "cache_dir": str(args.work / "cache")},
        "model": {"encoder": "minilm", "max_length": 64},
        "search": {"space": {"learning_rate": args.learning_rate, "epochs": args.epochs, "batch_size": 32}},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def audit(
    folder: Path, args: argparse.Namespace, method: str, flipped: list[int] | None, tag: str = "clean"
) -> list[dict[str, Any]]:
    """Run the audit as `sweep audit` does; precision and recall against the flipped rows when there are some. An
    `ensemble` run also yields its fine-tuned component's row, ranked by the same cleanlab call (one fine-tuning
    for both rows; that row's time is the ensemble's)."""
    from rich.console import Console

    from sweep.audit import audit_rows, run_audit
    from sweep.label_issues import AUDIT_TASKS

    spec = write_spec(folder, args)
    out = folder / f"audit-{method}.csv"
    started = time.perf_counter()
    result = run_audit(spec, method=method, folds=args.folds, out=out,
                       storage_url=f"sqlite:///{folder / 'none.db'}", console=Console(stderr=True, quiet=True))
    seconds = time.perf_counter() - started
    for name, probs in result.components.items():  # kept, to compare cleanlab's options offline
        np.save(folder / f"probs-{name}-{tag}.npy", probs)
    outcomes = [outcome(method, [r.row for r in result.rows], result.record.accuracy, result.record.examples,
                        seconds, flipped)]  # fmt: skip
    if method == "ensemble":
        issues = AUDIT_TASKS["text-classification"].find(result.labels, result.components["finetune"], result.data)
        outcomes.append(outcome("finetune", [r.row for r in audit_rows(issues, result.data)], issues.accuracy,
                                issues.examples, None, flipped))  # fmt: skip
    for entry in outcomes:
        if entry["method"] != "embeddings":
            entry["hyperparameters"] = result.record.hyperparameters
    if flipped is None:
        outcomes[0]["top"] = [{"row": r.row, "text": r.text, "given": r.given, "suggested": r.suggested,
                               "quality": round(r.quality, 4)} for r in result.rows[:10]]  # fmt: skip
    for entry in outcomes:
        log(f"{entry['method']} {'clean' if flipped is None else 'flipped'}: {entry}")
    return outcomes


def outcome(
    method: str, rows: list[int], accuracy: float, examples: int, seconds: float | None, flipped: list[int] | None
) -> dict[str, Any]:
    """One row of the table: what was flagged (file rows, worst first) against the flipped rows."""
    entry: dict[str, Any] = {
        "method": method, "seconds": None if seconds is None else round(seconds, 1), "flagged": len(rows),
        "oof_accuracy": round(accuracy, 4), "examples": examples,
    }  # fmt: skip
    if flipped is not None:
        hits = set(rows) & set(flipped)
        top = set(rows[: len(flipped)])
        entry.update(
            precision=round(len(hits) / len(rows), 3) if rows else 0.0,
            recall=round(len(hits) / len(flipped), 3),
            precision_at_k=round(len(top & set(flipped)) / len(flipped), 3),  # k = the number flipped
        )
    return entry


def seconds(run: dict[str, Any]) -> str:
    return "in the ensemble's time" if run["seconds"] is None else f"{run['seconds']:.0f} s"


def markdown(results: dict[str, Any]) -> str:
    runs = results["flipped"] + results["clean"]
    commands = dict.fromkeys(f"`{r.get('command', results['command'])}` ({r.get('when', results['when'])})"
                             for r in runs)  # fmt: skip
    lines = [
        "# Annotation audit benchmark (TREC-6, labels flipped on purpose)",
        "",
        f"Measured on {results['machine']} with:",
        "",
        *[f"- {c}" for c in commands],
        "",
        f"Data: {results['data']}",
        "",
        "| method | seed | flagged | precision | recall | precision at k=100 | out-of-fold accuracy | time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["flipped"]:
        hp = run.get("hyperparameters") or {}
        method = run["method"] + (f" ({hp['epochs']} epochs, lr {hp['learning_rate']:g})" if hp else "")
        lines.append(f"| {method} | {run['seed']} | {run['flagged']} | {run['precision']:.3f} | "
                     f"{run['recall']:.3f} | {run['precision_at_k']:.3f} | {run['oof_accuracy']:.3f} | "
                     f"{seconds(run)} |")  # fmt: skip
    for run in results["clean"]:
        lines += ["", f"## What `{run['method']}` raises on the unmodified subset", "",
                  f"{run['flagged']} of {run['examples']} examples flagged (out-of-fold accuracy "
                  f"{run['oof_accuracy']:.3f}, {seconds(run)}). The ten worst:", "",
                  "| row | text | given | suggested | quality |", "|---:|---|---|---|---:|"]  # fmt: skip
        lines += [f"| {t['row']} | {t['text']} | {t['given']} | {t['suggested']} | {t['quality']:.4f} |"
                  for t in run["top"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    rows = read_trec(args.data / "trec" / "train_5500.label")
    train, val = subset(rows, args.train_size, args.val_size)
    folder = args.work / "data"
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(folder / "val.csv", val)
    if args.render:
        return render(args.results)
    flipped_runs, clean_runs = [], []
    for seed in args.seeds:
        noisy, flipped = flip_labels(train, seed)
        write_rows(folder / "train.csv", noisy)
        for method in args.methods:
            flipped_runs += [{"seed": seed, **run} for run in audit(folder, args, method, flipped, tag=f"seed{seed}")]
    if not args.no_clean:
        write_rows(folder / "train.csv", train)
        for method in args.methods:
            clean_runs += audit(folder, args, method, None)[:1]
    command = "python benchmarks/bench_audit.py " + " ".join(argv if argv is not None else sys.argv[1:])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for run in flipped_runs + clean_runs:
        run.update(command=command.strip(), when=when)
    results: dict[str, Any] = {
        "when": when,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}",
        "command": command.strip(),
        "data": f"TREC-6 train_5500.label, {len(train)} training questions (5% = {round(FLIP_SHARE * len(train))} "
                f"flipped per seed), {len(val)} validation questions; {args.folds} folds; encoder all-MiniLM-L6-v2 "
                "(max_length 64); finetune: batch 32, the epochs and learning rate given per row",
        "flipped": flipped_runs,
        "clean": clean_runs,
    }  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    previous = json.loads((args.results / "audit.json").read_text()) if (args.results / "audit.json").is_file() else {}
    runs: dict[str, list[dict[str, Any]]] = {"flipped": results["flipped"], "clean": results["clean"]}
    for key in runs:  # a run of some methods or seeds replaces those and keeps the others
        kept = [r for r in previous.get(key, []) if not any(
            r["method"] == n["method"] and r.get("seed") == n.get("seed") for n in runs[key])]  # fmt: skip
        results[key] = kept + runs[key]
    (args.results / "audit.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return render(args.results)


def render(folder: Path) -> int:
    """Rewrite the measured part of AUDIT.md from audit.json, keeping the notes below the marker line."""
    results = json.loads((folder / "audit.json").read_text(encoding="utf-8"))
    doc = folder / "AUDIT.md"
    from bench_notes import marker_for, write_keeping_notes

    write_keeping_notes(doc, markdown(results), marker_for("bench_audit.py"))
    log(f"wrote {doc} from {folder / 'audit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
