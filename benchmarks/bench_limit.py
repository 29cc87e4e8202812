"""The limit for sweep's training throughput: a bare PyTorch loop over the same batches of the same encoder.

For each seed, one epoch of one configuration is trained by each side `--repeats` times (default 3), side by side in
one process, the side that goes first alternating from one round to the next: by sweep (`sweep.objective.train_trial`:
Lightning, our callbacks and the trial's evaluation at the end of the epoch, whose time is not counted) and by a
plain loop (no Lightning, no Optuna): the same data module's training batches (same seed, length grouping, padding),
the same model class and initial weights, AdamW (fused, the same parameter groups) and the same warmup-then-decay
schedule, `forward -> backward -> step -> zero_grad`.
Both clocks include fetching the batches. Throughput is training examples per second; each side's value on a seed is
the median of its rounds (one epoch of 1,000 examples is about 10 s, and single rounds varied by up to 20%); the
share is ours / bare.

With `--sides ours bare trainer`, a third side trains the same epoch as the fair run's peer does
(`transformers.Trainer`, bench_trainer.py's TrainingArguments: its own length-grouped sampler and padding collator,
no evaluation, no saving), on the same tokenised rows; its clock runs from the Trainer's on_train_begin to
on_train_end. Its batches differ from ours (another sampler), so each side's padded tokens per epoch are counted and
tokens/s reported beside examples/s. The first side rotates from one round to the next.

Every side trains with freed memory kept in the process (`--freed-memory keep`, sweep's default
`trainer.keep_freed_memory`, set once before any side runs); `--freed-memory return` leaves glibc's thresholds.
bench_allocator.py compares the two in fresh processes.

    python benchmarks/bench_limit.py                      # TREC-6, 1,000 examples, MiniLM, seeds 0 1 2
    python benchmarks/bench_limit.py --batch-size 16 --results /tmp/limit.md
    python benchmarks/bench_limit.py --sides ours bare trainer --precision bf16-mixed --batch-size 16

Writes LIMIT.md and LIMIT.json beside it (or --results). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_trainer import (  # noqa: E402
    DATASETS,
    EVAL_BATCH_SIZE,
    default_encoder,
    log,
    machine_facts,
    peer_arguments,
    quiet_hugging_face,
    read_rows,
    stratified_split,
    unique_rows,
    write_csv,
)

SIDES = ("ours", "bare", "trainer")
HEADS = {"cls": "the architecture's own (first token, BERT's pooler)", "mean": "mean of the token states"}
SIDE_NAMES = {"ours": "sweep", "bare": "bare loop", "trainer": "Trainer"}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bare_loop_parser("bench_limit.py", __doc__, "limit", "LIMIT.md", batch_size=32, learning_rate=5e-5,
                              precision="32-true")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every side per seed (default 3): medians")
    parser.add_argument(
        "--pooling", choices=("auto", "cls", "mean"), default="auto",
        help="the head ours and the bare loop train (sweep's model.pooling; default auto: mean for a "
        "sentence-transformers encoder such as the default, as a study trains it). The Trainer side keeps "
        "AutoModelForSequenceClassification, as the fair run's peer",
    )  # fmt: skip
    parser.add_argument(
        "--sides", nargs="+", choices=SIDES, default=["ours", "bare"],
        help="what trains the epoch (default: ours bare); trainer: transformers.Trainer as the fair run's peer",
    )  # fmt: skip
    parser.add_argument(
        "--freed-memory", choices=("keep", "return"), default="keep",
        help="keep (sweep's default trainer.keep_freed_memory): freed buffers stay in this process for every side; "
             "return: glibc's own thresholds (the process starts that way and cannot go back once kept)",
    )  # fmt: skip
    args = checked_args(parser, argv, "bench_limit.py", ("train_size", "val_size", "batch_size", "repeats"))
    args.sides = list(dict.fromkeys(args.sides))
    if "ours" not in args.sides or "bare" not in args.sides:
        parser.error(f"--sides must include ours and bare (the share is ours / bare), got {' '.join(args.sides)}")
    return args


def bare_loop_parser(
    script: str, doc: str | None, work: str, results: str, *, batch_size: int, learning_rate: float,
    batch_help: str | None = None, precision: str,
) -> argparse.ArgumentParser:  # fmt: skip
    """The options every bare-loop measurement shares (bench_limit.py, bench_compile.py): data, encoder, the one
    configuration it trains, seeds, threads, and where it works and writes."""
    parser = argparse.ArgumentParser(prog=script, description=(doc or "").split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="trec")
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=200)
    parser.add_argument("--encoder", help="Hugging Face model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    parser.add_argument("--learning-rate", type=float, default=learning_rate)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--precision", choices=("32-true", "bf16-mixed"), default=precision,
        help=f"bf16-mixed: CPU bf16 autocast, as the fair run's sides in bf16 (default {precision})",
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / work)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / results)
    return parser


def checked_args(
    parser: argparse.ArgumentParser, argv: Sequence[str], script: str, positive: Sequence[str]
) -> argparse.Namespace:
    """Parse `argv`: every option named in `positive` >= 1 and the dataset's file present (else the parser's error,
    exit code 2); the command that reproduces the run in `args.command`."""
    args = parser.parse_args(list(argv))
    problems = [f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}" for name in positive
                if getattr(args, name) < 1]  # fmt: skip
    if not DATASETS[args.dataset].is_file():
        problems.append(f"no dataset file {DATASETS[args.dataset]} (set SWEEP_SHARED_DATA)")
    if problems:
        parser.error("; ".join(problems))
    args.command = shlex.join(["python", f"benchmarks/{script}", *argv])
    args.work, args.results = args.work.resolve(), args.results.resolve()  # the specs it writes name absolute paths
    return args


def prepared(args: argparse.Namespace, seed: int) -> Any:
    """The seed's data subset, cleaned and tokenised by sweep (as a study would), and the encoder."""
    import yaml
    from rich.console import Console

    from sweep.encoders import resolve_encoder
    from sweep.runner import prepare_data
    from sweep.spec import load_spec

    folder = args.work / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = unique_rows(read_rows(args.dataset, DATASETS[args.dataset]))
    train, val = stratified_split(rows, args.train_size, args.val_size, seed)
    spec = {
        "name": f"limit-{seed}",
        "data": {"train": str(write_csv(folder / "train.csv", train)),
                 "validation": str(write_csv(folder / "val.csv", val)), "cache_dir": str(folder / "cache")},
        "model": {"encoder": args.encoder or default_encoder(), "max_length": args.max_length},
        "search": {"seed": seed},
    }  # fmt: skip
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    loaded, base = load_spec(folder / "spec.yaml")
    encoder = resolve_encoder(loaded.model.encoder, base, max_length=loaded.model.max_length)
    return prepare_data(loaded, base, encoder, Console(stderr=True, quiet=True)), encoder


def hyperparameters(args: argparse.Namespace) -> Any:
    from sweep.space import Hyperparameters

    return Hyperparameters(learning_rate=args.learning_rate, batch_size=args.batch_size, epochs=1, weight_decay=0.01,
                           warmup_ratio=0.06, label_smoothing=0.0, dropout=0.1)  # fmt: skip


def run_ours(args: argparse.Namespace, data: Any, encoder: str, seed: int) -> dict[str, float]:
    """One epoch through sweep's own trial training; the epoch-end evaluation's time is left out."""
    from sweep.objective import TrialSettings, train_trial
    from sweep.spec import SpaceSpec

    settings = TrialSettings(encoder=encoder, space=SpaceSpec(), metric="f1_macro", seed=seed, class_weights=None,
                             accelerator="cpu", precision=args.precision, eval_batch_size=64, group_by_length=True,
                             first_epoch_evals=0, keep_freed_memory=args.freed_memory == "keep",
                             pooling=head_of(args, encoder))  # fmt: skip
    _, timing, setup = train_trial(hyperparameters(args), data, settings, seed=seed, callbacks=[])
    seconds = timing.train_seconds()
    return {"seconds": seconds, "examples": timing.train_examples, "throughput": timing.train_examples / seconds,
            "validation_seconds": timing.seconds["validation"], "model_load": setup["model_load"]}  # fmt: skip


def head_of(args: argparse.Namespace, encoder: str) -> str:
    """`cls` or `mean`: `--pooling` as a study of `encoder` resolves it (`cls` where the option is absent: a caller
    such as bench_compile.py measures the architecture's own head)."""
    from sweep.encoders import resolve_pooling

    return resolve_pooling(getattr(args, "pooling", "cls"), encoder)[0]


def run_bare(
    args: argparse.Namespace, data: Any, encoder: str, seed: int, *, compile_backend: str | None = None,
    bf16: bool = False,
) -> dict[str, float]:  # fmt: skip
    """One epoch of a plain PyTorch loop over the same data module's batches; with `compile_backend`, the model
    through `torch.compile(dynamic=True)` first (bench_compile.py), with `bf16`, under CPU bf16 autocast."""
    import contextlib
    import functools

    import pytorch_lightning as pl
    import torch

    from models.classifier import linear_warmup_decay, load_pretrained_classifier, parameter_groups
    from sweep.tasks import Batching, build_datamodule

    pl.seed_everything(seed, workers=True, verbose=False)
    module = build_datamodule("text-classification", data, Batching(args.batch_size, 64, seed, True))
    # the same head as ours (sweep's loader builds it; the loop around it is plain PyTorch)
    model = load_pretrained_classifier(encoder, list(data.label_names), pooling=head_of(args, encoder))
    model.train()
    forward = torch.compile(model, dynamic=True, backend=compile_backend) if compile_backend else model
    loader = module.train_dataloader()
    total = len(loader)
    optimizer = torch.optim.AdamW(parameter_groups(model.named_parameters(), 0.01), lr=args.learning_rate, fused=True)
    schedule = functools.partial(linear_warmup_decay, warmup_steps=int(0.06 * total), total_steps=total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    examples = 0
    started = time.perf_counter()
    for batch in loader:
        batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        examples += int(batch["labels"].shape[0])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "examples": examples, "throughput": examples / seconds}


def padded_tokens(args: argparse.Namespace, data: Any, seed: int) -> int:
    """Tokens (padding included) in one training epoch of the data module's batches: what ours and the bare loop
    train in their first epoch (the same seeded length grouping)."""
    from sweep.tasks import Batching, build_datamodule

    module = build_datamodule("text-classification", data, Batching(args.batch_size, EVAL_BATCH_SIZE, seed, True))
    return sum(int(batch["input_ids"].numel()) for batch in module.train_dataloader())


def run_trainer(args: argparse.Namespace, data: Any, encoder: str, seed: int, *, bf16: bool) -> dict[str, float]:
    """One epoch through `transformers.Trainer` with the fair run's peer settings (bench_trainer.py): its own
    length-grouped sampler and padding collator over the same tokenised rows, no evaluation, no saving. The clock
    runs from on_train_begin to on_train_end; the collator counts the padded tokens it hands out."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainerCallback,
    )

    tokenizer = AutoTokenizer.from_pretrained(encoder)
    pad = DataCollatorWithPadding(tokenizer)
    tokens = {"padded": 0, "examples": 0}

    def collate(rows: list[dict[str, Any]]) -> Any:
        batch = pad(rows)
        tokens["padded"] += int(batch["input_ids"].numel())
        tokens["examples"] += len(rows)
        return batch

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, *_: Any, **__: Any) -> None:
            clock["begin"] = time.perf_counter()

        def on_train_end(self, *_: Any, **__: Any) -> None:
            clock["end"] = time.perf_counter()

    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids", "labels", "length")
               if c in data.train.column_names]  # fmt: skip
    training = peer_arguments(args.work / "trainer-out", seed, bf16, eval_strategy="no",
                              per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate,
                              num_train_epochs=1)  # fmt: skip
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=len(data.label_names))
    trainer = Trainer(model=model, args=training, train_dataset=data.train.select_columns(columns),
                      processing_class=tokenizer, data_collator=collate, callbacks=[Clock()])  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    seconds = clock["end"] - clock["begin"]
    return {"seconds": seconds, "examples": tokens["examples"], "throughput": tokens["examples"] / seconds,
            "padded_tokens": tokens["padded"], "tokens_per_second": tokens["padded"] / seconds}  # fmt: skip


def median_round(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """The round with the median throughput (the lower middle one for an even count), with every round's value."""
    ranked = sorted(rounds, key=lambda run: run["throughput"])
    return {**ranked[(len(ranked) - 1) // 2], "throughputs": [run["throughput"] for run in rounds]}


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def render(results: dict[str, Any]) -> str:
    sides = results.get("sides", ["ours", "bare"])
    tokens = "trainer" in sides  # the sides' batches differ: tokens/s beside examples/s
    command = results["command"]
    if "freed_memory" not in results and "--freed-memory" not in command:  # a run from before the flag existed
        command += " --freed-memory return"  # it ran with glibc's thresholds; today's default keeps freed memory
    machine = results["machine"]
    where = f" · {machine['date']} · platform {machine.get('platform', '?')}" if machine.get("date") else ""
    lines = [
        "# Training throughput against the bare PyTorch loop",
        "",
        f"Command: `{command}`{where} · {results['machine'].get('cpu', '?')} · torch threads "
        f"{results['threads']} · {results['dataset']} {results['train_size']} examples · batch "
        f"{results['batch_size']}, one epoch, length-grouped batches, {results.get('precision', '32-true')}, head "
        f"{HEADS[results.get('pooling', 'cls')]} on ours and the bare loop"
        + {"keep": ", freed memory kept in the process for every side (`trainer.keep_freed_memory`)",
           "return": ", glibc's own malloc thresholds"}.get(results.get("freed_memory", "return"), "")
        + ".",  # fmt: skip
        "",
        f"Each side {results.get('repeats', 1)} round(s) per seed, the first side "
        f"{'rotating' if len(sides) > 2 else 'alternating'}; examples/s as the median of the rounds (min–max)"
        + ("; padded tokens/s of the same median round, and each side's padded tokens per epoch." if tokens else "."),
        "",
    ]
    header = ["seed", "rounds (first side of each)", *(f"{SIDE_NAMES[side]} (examples/s)" for side in sides)]
    if tokens:
        header += [f"{SIDE_NAMES[side]} (tokens/s)" for side in sides]
    header.append("share")
    if tokens:
        header += ["sweep / Trainer (examples/s)", "padded tokens per epoch (sweep, Trainer)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(side: dict[str, Any]) -> str:
        every = side.get("throughputs", [side["throughput"]])
        return f"{side['throughput']:.1f} ({min(every):.1f}–{max(every):.1f})" if len(every) > 1 else (
            f"{side['throughput']:.1f}")

    for run in results["runs"]:
        firsts = ", ".join(run.get("firsts", [run.get("first", "?")]))
        row = f"| {run['seed']} | {firsts} | " + " | ".join(cell(run[side]) for side in sides)
        if tokens:
            row += " | " + " | ".join(f"{run[side]['tokens_per_second']:.0f}" for side in sides)
        row += f" | {run['share']:.3f} |"
        if tokens:
            row += f" {run['versus_trainer']:.3f} | {run['ours']['padded_tokens']}, {run['trainer']['padded_tokens']} |"
        lines.append(row)
    share = results["share"]
    lines += ["", f"Share across seeds: mean {share['mean']:.3f} (min {share['min']:.3f}, max {share['max']:.3f}); "
                  "the target is 0.9 or more on every seed.", ""]  # fmt: skip
    if tokens:
        versus = results["versus_trainer"]
        lines += [f"sweep / Trainer (examples/s) across seeds: mean {versus['mean']:.3f} (min {versus['min']:.3f}, "
                  f"max {versus['max']:.3f}).", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sides = args.sides
    if args.freed_memory == "keep":  # before any side allocates: every side trains with it, in every round
        from sweep.memory import keep_freed_memory

        keep_freed_memory()
    bf16 = args.precision == "bf16-mixed"
    runs = []
    with quiet_hugging_face():
        for i, seed in enumerate(args.seeds):
            data, encoder = prepared(args, seed)
            rounds: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
            firsts = []
            for r in range(args.repeats):
                shift = (i + r) % len(sides)
                order = sides[shift:] + sides[:shift]
                firsts.append(order[0])
                for side in order:
                    log(f"limit: seed {seed}: round {r + 1}/{args.repeats}: {side}")
                    if side == "ours":
                        rounds[side].append(run_ours(args, data, encoder, seed))
                    elif side == "bare":
                        rounds[side].append(run_bare(args, data, encoder, seed, bf16=bf16))
                    else:
                        rounds[side].append(run_trainer(args, data, encoder, seed, bf16=bf16))
            measured = {side: median_round(runs_of) for side, runs_of in rounds.items()}
            share = measured["ours"]["throughput"] / measured["bare"]["throughput"]
            entry: dict[str, Any] = {"seed": seed, "firsts": firsts, **measured, "share": share}
            if "trainer" in sides:
                ours_tokens = padded_tokens(args, data, seed)  # ours and the bare loop train the same batches
                for side in ("ours", "bare"):
                    measured[side]["padded_tokens"] = ours_tokens
                    measured[side]["tokens_per_second"] = ours_tokens / measured[side]["seconds"]
                entry["versus_trainer"] = measured["ours"]["throughput"] / measured["trainer"]["throughput"]
            log(f"limit: seed {seed}: " + ", ".join(f"{side} {measured[side]['throughput']:.1f}/s" for side in sides)
                + f" (medians of {args.repeats}), share {share:.3f}")  # fmt: skip
            runs.append(entry)
    results: dict[str, Any] = {**run_facts(args), "precision": args.precision, "repeats": args.repeats,
                               "pooling": head_of(args, encoder),
                               "sides": sides, "freed_memory": args.freed_memory, "max_rss_mb": max_rss_mb(),
                               "runs": runs, "share": spread([r["share"] for r in runs])}  # fmt: skip
    if "trainer" in sides:
        results["versus_trainer"] = spread([r["versus_trainer"] for r in runs])
    write_results(args.results, results, render)
    return 0


def max_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_facts(args: argparse.Namespace) -> dict[str, Any]:
    """What every bare-loop measurement records about its run (bench_limit.py, bench_compile.py)."""
    import torch

    return {
        "command": args.command, "machine": machine_facts(), "threads": torch.get_num_threads(),
        "dataset": args.dataset, "train_size": args.train_size, "batch_size": args.batch_size,
    }  # fmt: skip


def write_results(path: Path, results: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> None:
    """The results as JSON beside the Markdown `path` and the Markdown itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    path.write_text(render(results), encoding="utf-8")
    log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
