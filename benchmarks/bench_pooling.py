"""What the head's pooling does to a fine-tuned sentence-transformers encoder: `model.pooling` cls against mean.

For each seed (the fair benchmark's data split of that seed: TREC-6, 1,000 training / 500 validation questions), each
learning rate of `--learning-rates` trains one configuration (batch 16, `--epochs` epochs, weight decay 0.01, warm-up
0.06, sweep's default dropout) through sweep's own trial training (`sweep.objective.train_trial`, seeded with the
seed) twice: once with the architecture's own head (`pooling: cls`, what `AutoModelForSequenceClassification` and the
peers of bench_trainer.py train) and once over the mean of the token states (`pooling: mean`, sweep's default for a
sentence-transformers encoder such as the packaged all-MiniLM-L6-v2). The head that goes first alternates by seed.
Each run reports the validation macro-F1 at each epoch end, its best, and its training seconds (evaluations left
out): mean pooling adds no measurable compute, so the F1 is the point.

    python benchmarks/bench_pooling.py                          # seeds 0 1 2, learning rates 1e-4 3e-5 1e-5
    python benchmarks/bench_pooling.py --seeds 0 --learning-rates 1e-4 --results /tmp/pooling.md

Writes POOLING.md and POOLING.json beside it (or --results). About 40 s per run in fp32 on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_limit import bare_loop_parser, checked_args, prepared, run_facts, write_results  # noqa: E402
from bench_trainer import log, quiet_hugging_face  # noqa: E402

POOLINGS = ("cls", "mean")
HEADS = {"cls": "the architecture's head (cls)", "mean": "mean pooling"}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bare_loop_parser("bench_pooling.py", __doc__, "pooling", "POOLING.md", batch_size=16,
                              learning_rate=1e-4, precision="32-true")  # fmt: skip
    parser.set_defaults(val_size=500)  # the fair benchmark's validation split
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-4, 3e-5, 1e-5],
                        help="one configuration per learning rate (default 1e-4 3e-5 1e-5: the space's top, middle "
                             "and bottom)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3, the space's most)")
    args = checked_args(parser, argv, "bench_pooling.py", ("train_size", "val_size", "batch_size", "epochs"))
    if any(not 0 < lr < 1 for lr in args.learning_rates):
        parser.error(f"--learning-rates must each lie in (0, 1), got {' '.join(map(str, args.learning_rates))}")
    return args


def train(args: argparse.Namespace, data: Any, encoder: str, seed: int, learning_rate: float, pooling: str) -> dict:
    """One configuration through sweep's trial training: the F1 at each epoch end and the training seconds."""
    from sweep.objective import TrialSettings, train_trial
    from sweep.space import Hyperparameters
    from sweep.spec import DEFAULTS, SpaceSpec

    hp = Hyperparameters(learning_rate=learning_rate, batch_size=args.batch_size, epochs=args.epochs,
                         weight_decay=0.01, warmup_ratio=0.06, label_smoothing=0.0,
                         dropout=float(DEFAULTS["dropout"]))  # fmt: skip
    settings = TrialSettings(encoder=encoder, space=SpaceSpec(), metric="f1_macro", seed=seed, class_weights=None,
                             accelerator="cpu", precision=args.precision, eval_batch_size=64, group_by_length=True,
                             first_epoch_evals=0, pooling=pooling)  # fmt: skip
    module, timing, _ = train_trial(hp, data, settings, seed=seed, callbacks=[])
    f1 = [float(record["val_f1_macro"]) for record in module.history]
    return {"pooling": pooling, "learning_rate": learning_rate, "f1": f1, "best": max(f1),
            "train_seconds": timing.train_seconds()}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    runs = []
    with quiet_hugging_face():
        for i, seed in enumerate(args.seeds):
            data, encoder = prepared(args, seed)
            order = POOLINGS if i % 2 == 0 else POOLINGS[::-1]
            for learning_rate in args.learning_rates:
                for pooling in order:
                    run = {"seed": seed, **train(args, data, encoder, seed, learning_rate, pooling)}
                    log(f"pooling: seed {seed}, lr {learning_rate:g}, {pooling}: F1 "
                        + " / ".join(f"{v:.4f}" for v in run["f1"]) + f", {run['train_seconds']:.1f} s")  # fmt: skip
                    runs.append(run)
    results = {**run_facts(args), "precision": args.precision, "epochs": args.epochs, "val_size": args.val_size,
               "learning_rates": args.learning_rates, "runs": runs}  # fmt: skip
    write_results(args.results, results, render)
    return 0


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# The head's pooling: the architecture's head (cls) against mean pooling",
        "",
        f"Command: `{results['command']}` · {machine.get('date', '?')} · {machine.get('cpu', '?')} · torch threads "
        f"{results['threads']} · {results['dataset']} {results['train_size']} training / {results['val_size']} "
        f"validation examples (the fair benchmark's split of each seed) · batch {results['batch_size']}, "
        f"{results['epochs']} epochs, {results['precision']}, sweep's trial training seeded with the seed.",
        "",
        "| seed | learning rate | head | macro-F1 at each epoch end | best | training s |",
        "|---:|---:|---|---|---:|---:|",
    ]
    for run in results["runs"]:
        lines.append(f"| {run['seed']} | {run['learning_rate']:g} | {HEADS[run['pooling']]} | "
                     + " / ".join(f"{v:.4f}" for v in run["f1"])
                     + f" | {run['best']:.4f} | {run['train_seconds']:.1f} |")  # fmt: skip
    lines += ["", "Best macro-F1 across seeds, mean (min–max), and mean pooling's gain:", "",
              "| learning rate | the architecture's head (cls) | mean pooling | gain, mean (min–max) | training s, "
              "mean / cls |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for learning_rate in results["learning_rates"]:
        pairs: dict[int, dict[str, Any]] = {}
        for run in results["runs"]:
            if run["learning_rate"] == learning_rate:
                pairs.setdefault(run["seed"], {})[run["pooling"]] = run
        complete = [p for p in pairs.values() if set(p) == set(POOLINGS)]
        if not complete:
            continue
        cls = [p["cls"]["best"] for p in complete]
        mean = [p["mean"]["best"] for p in complete]
        gain = [m - c for m, c in zip(mean, cls, strict=True)]
        seconds = statistics.fmean(p["mean"]["train_seconds"] / p["cls"]["train_seconds"] for p in complete)
        lines.append(f"| {learning_rate:g} | {_spread(cls)} | {_spread(mean)} | {_spread(gain, signed=True)} | "
                     f"{seconds:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _spread(values: list[float], *, signed: bool = False) -> str:
    form = "+.4f" if signed else ".4f"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return format(mean, form)
    return f"{format(mean, form)} ({format(min(values), form)}–{format(max(values), form)})"


if __name__ == "__main__":
    sys.exit(main())
