"""Does `torch.compile` make sweep's trials faster on this machine? A lever of issue #12, measured before it is built.

A trial trains a fresh copy of the encoder for one to three epochs, so a compiled model pays its compilation inside
the trial. Per seed this script trains one epoch of one configuration with bench_limit.py's bare PyTorch loop (the
same data module's batches, model class, AdamW and schedule as a sweep trial; no Lightning, no Optuna) four times,
one after the other in one process: eager, compiled (`torch.compile(model, dynamic=True)`: the batches' lengths
vary, and a graph per length would recompile all the time), compiled again on a fresh model (what the second trial
of a study would pay, with the process's compiled code already there), eager again. Each run's clock starts before
its first batch, so a compiled run's time includes compiling.

    python benchmarks/bench_compile.py                     # TREC-6, 1,000 examples, MiniLM, bf16, seeds 0 1 2
    python benchmarks/bench_compile.py --precision 32-true --results /tmp/compile.md

Writes COMPILE.md and COMPILE.json beside it (or --results). Run it on an otherwise idle machine.
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

from bench_limit import bare_loop_parser, checked_args, prepared, run_bare, run_facts, write_results  # noqa: E402
from bench_trainer import log, quiet_hugging_face  # noqa: E402

RUNS = ("eager", "compiled", "compiled again", "eager again")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = bare_loop_parser("bench_compile.py", __doc__, "compile", "COMPILE.md", batch_size=16, learning_rate=1e-4,
                              batch_help="(default 16: the warm start's batch)", precision="bf16-mixed")  # fmt: skip
    parser.add_argument(
        "--backend", default="inductor", help="torch.compile backend (default inductor; `eager` only traces: tests)"
    )
    return checked_args(parser, argv, "bench_compile.py", ("train_size", "val_size", "batch_size"))


def seed_summary(runs: dict[str, dict[str, float]]) -> dict[str, float]:
    """Against eager (the mean of its two runs): each compiled run's time for the epoch as a share of eager's, and
    the first compiled run's extra seconds over the second (its compilation, roughly)."""
    eager = statistics.fmean([runs["eager"]["seconds"], runs["eager again"]["seconds"]])
    return {
        "eager_seconds": eager,
        "compiled_share": runs["compiled"]["seconds"] / eager,
        "compiled_again_share": runs["compiled again"]["seconds"] / eager,
        "compile_seconds": runs["compiled"]["seconds"] - runs["compiled again"]["seconds"],
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        "# torch.compile against eager, one epoch per run",
        "",
        f"Command: `{results['command']}` · {results['machine'].get('cpu', '?')} · torch threads "
        f"{results['threads']} · torch {results['machine'].get('torch', '?')} · {results['machine'].get('date', '')} · "
        f"{results['dataset']} {results['train_size']} examples · batch {results['batch_size']} · "
        f"{results['precision']} · backend {results['backend']} · bench_limit.py's bare loop, length-grouped batches.",
        "",
        "Time for one epoch (s; a compiled run includes compiling), in the order run; the share is the time against "
        "the mean of the two eager runs (below 1: faster).",
        "",
        "| seed | eager | compiled (first model) | compiled again (fresh model) | eager again | compiled share | "
        "compiled-again share | compilation (s, first − again) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        s = run["summary"]
        seconds = " | ".join(f"{run['runs'][name]['seconds']:.1f}" for name in RUNS)
        lines.append(
            f"| {run['seed']} | {seconds} | {s['compiled_share']:.2f} | {s['compiled_again_share']:.2f} | "
            f"{s['compile_seconds']:.1f} |"
        )
    shares = [run["summary"]["compiled_again_share"] for run in results["runs"]]
    firsts = [run["summary"]["compiled_share"] for run in results["runs"]]
    lines += [
        "",
        f"Compiled-again share across seeds: mean {statistics.fmean(shares):.2f} (min {min(shares):.2f}, max "
        f"{max(shares):.2f}); with the compilation (the study's first trial): mean {statistics.fmean(firsts):.2f}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = args.precision == "bf16-mixed"
    results_runs = []
    with quiet_hugging_face():
        for seed in args.seeds:
            data, encoder = prepared(args, seed)
            torch._dynamo.reset()  # each seed's first compiled run compiles from nothing
            runs: dict[str, dict[str, float]] = {}
            for name in RUNS:
                log(f"compile: seed {seed}: {name}")
                backend = args.backend if name.startswith("compiled") else None
                runs[name] = run_bare(args, data, encoder, seed, compile_backend=backend, bf16=bf16)
                log(f"compile: seed {seed}: {name}: {runs[name]['seconds']:.1f} s")
            results_runs.append({"seed": seed, "runs": runs, "summary": seed_summary(runs)})
    results = {**run_facts(args), "precision": args.precision, "backend": args.backend, "runs": results_runs}
    write_results(args.results, results, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
