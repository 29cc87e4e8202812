"""Ours against the Trainer at its best, repeated in alternating order within each seed: is either side faster by
more than the swing between runs of the same code on the same data?

Single fair runs on this project's VM put our per-trial training throughput at 0.84 to 1.30 of the Trainer's for the
same seed and code, depending on the sitting and on which side ran first. Here every seed runs R rounds of both
sides in one process (bench_trainer.py's functions: the same data, encoder, space, sampler seed, budget, pruner
warm-up, freed-memory setting and peer flags), the order alternating round by round (ours first, then the peer
first, ...: with two rounds ours, peer, peer, ours), so a drift of the machine over the session weighs on both sides
alike. Each round is one pair of whole studies; a side is called faster only where its ratio is beyond 1 in every
round of every seed.

    python benchmarks/bench_repeat.py --precision bf16-mixed --warm-start --rounds 2

Writes benchmarks/repeat/REPEAT.md and REPEAT.json (`--results`). Run it on an otherwise idle machine (about
3 minutes per round and seed here).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_limit import write_results  # noqa: E402

# (measure in bench_trainer.summarize, label, format, whether a larger value is better for the side)
MEASURES = (
    ("train_throughput", "training throughput (examples / s of training)", "{:.1f}", True),
    ("wall_s", "wall time (s)", "{:.1f}", False),
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_repeat.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default 0 1 2)")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs per seed, order alternating (default 2)")
    parser.add_argument("--trials", type=int, default=8, help="trials per study (default 8, as bench_trainer.py)")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), help="as bench_trainer.py")
    parser.add_argument("--warm-start", action="store_true", help="our search.warm_start: true, as bench_trainer.py")
    parser.add_argument("--prune-after-epochs", type=float, help="as bench_trainer.py (default: sweep's, 1.0)")
    parser.add_argument(
        "--peer-eval", choices=("epoch", "steps"), default="epoch",
        help="when the Trainer evaluates (default epoch: the Trainer at its best in every fair run so far)",
    )  # fmt: skip
    parser.add_argument("--encoder", help="Hugging Face model folder (default: the packaged all-MiniLM-L6-v2)")
    for option in ("--train-size", "--val-size", "--max-classes", "--max-length"):
        parser.add_argument(option, type=int, help="as bench_trainer.py (default: its default)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "repeat")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "repeat" / "REPEAT.md")
    args = parser.parse_args(list(argv))
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    args.command = shlex.join(["python", "benchmarks/bench_repeat.py", *argv])
    args.work, args.results = args.work.resolve(), args.results.resolve()
    return args


def round_order(round_index: int) -> tuple[str, str]:
    """Ours first in even rounds, the peer first in odd ones (two rounds: ours, peer, peer, ours)."""
    return ("ours", "peer") if round_index % 2 == 0 else ("peer", "ours")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import bench_trainer as bench

    options = ["--peers", "trainer", "--peer-eval", args.peer_eval, "--trials", str(args.trials),
               "--seeds", *map(str, args.seeds), "--work", str(args.work), "--results", str(args.results)]  # fmt: skip
    options += [] if args.precision is None else ["--precision", args.precision]
    options += ["--warm-start"] if args.warm_start else []
    options += [] if args.prune_after_epochs is None else ["--prune-after-epochs", f"{args.prune_after_epochs:g}"]
    for option in ("encoder", "train_size", "val_size", "max_classes", "max_length"):
        value = getattr(args, option)
        options += [] if value is None else [f"--{option.replace('_', '-')}", str(value)]
    cfg = bench.parse_args(options)
    import optuna

    from sweep.memory import keep_freed_memory

    keep_freed_memory()  # process-wide, before either side (bench_trainer.py's default, --freed-memory keep)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bench.warm_up(cfg.encoder)
    (peer_run,) = bench.peer_runs(cfg)
    seeds = []
    for seed in cfg.seeds:
        files = bench.prepare_files(cfg, seed)
        tie = 1.0 / sum(files.val_counts.values())
        rounds = []
        for index in range(args.rounds):
            order = round_order(index)
            raw: dict[str, dict[str, Any]] = {}
            for side in order:
                run_dir = bench.fresh(cfg.work / f"seed{seed}" / f"round{index}" / side)
                bench.log(f"seed {seed} round {index + 1}/{args.rounds}: {side} starts")
                if side == "ours":
                    raw[side] = bench.run_ours(cfg, files, seed, run_dir)
                else:
                    raw[side] = bench.run_peer(cfg, files, peer_run, seed, run_dir)
                bench.log(f"seed {seed} round {index + 1}: {side} done in {raw[side]['wall']:.1f} s")
            summary = bench.summarize(seed, list(order), raw["peer"], raw["ours"], tie)
            rounds.append({
                "order": list(order),
                "measures": {name: summary["measures"][name] for name, *_ in MEASURES},
                "best_f1": summary["measures"]["best_f1"],
                "trials": summary["trials"],
                "overhead_share": summary["our_split_totals"]["overhead_share"],
            })  # fmt: skip
            ratio = summary["measures"]["train_throughput"]["ratio"]
            bench.log(f"seed {seed} round {index + 1}: throughput ours/peer {bench.fmt(ratio, '{:.2f}', '—')}")
        seeds.append({"seed": seed, "rounds": rounds})
    results = {"command": args.command, "machine": bench.machine_facts(), "peer": f"trainer ({peer_run.name})",
               "precision": bench.precision(cfg), "rounds": args.rounds, "seeds": seeds,
               "verdict": verdicts(seeds)}  # fmt: skip
    write_results(args.results, results, render)
    return 0


def verdicts(seeds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per measure: every round's ours/peer ratio, their median and range, and which side (if any) is ahead in all."""
    out = {}
    for name, _label, _pattern, larger_better in MEASURES:
        ratios = [r["measures"][name]["ratio"] for entry in seeds for r in entry["rounds"]]
        present = [x for x in ratios if x is not None]
        if not present or len(present) < len(ratios):
            ahead = "undecided"
        elif all(x > 1 for x in present):
            ahead = "ours" if larger_better else "peer"
        elif all(x < 1 for x in present):
            ahead = "peer" if larger_better else "ours"
        else:
            ahead = "neither"
        out[name] = {"ratios": ratios, "median": statistics.median(present) if present else None,
                     "min": min(present, default=None), "max": max(present, default=None),
                     "ahead_in_every_round": ahead}  # fmt: skip
    return out


def render(results: dict[str, Any]) -> str:
    from bench_trainer import fmt

    lines = [
        "# Ours against the Trainer at its best, repeated in alternating order",
        "",
        f"Command: `{results['command']}` · {results['machine'].get('cpu', '?')} · {results['machine']['date']} · "
        f"peer: {results['peer']} · precision {results['precision']} · {results['rounds']} rounds per seed, each a "
        "whole study per side in one process, the order alternating round by round.",
        "",
        "| seed | round | order | " + " | ".join(f"{label}: ours | peer | ours/peer" for _, label, *_ in MEASURES)
        + " | best F1 ours / peer | our overhead share |",
        "|---:|---:|---|" + "---:|---:|---:|" * len(MEASURES) + "---|---:|",
    ]
    for entry in results["seeds"]:
        for index, r in enumerate(entry["rounds"], start=1):
            cells = []
            for name, _label, pattern, _ in MEASURES:
                m = r["measures"][name]
                cells += [fmt(m["ours"], pattern, "—"), fmt(m["peer"], pattern, "—"), fmt(m["ratio"], "{:.2f}", "—")]
            f1 = r["best_f1"]
            lines.append(f"| {entry['seed']} | {index} | {', '.join(r['order'])} | {' | '.join(cells)} | "
                         f"{fmt(f1['ours'], '{:.4f}', '—')} / {fmt(f1['peer'], '{:.4f}', '—')} | "
                         f"{fmt(r['overhead_share'], '{:.1%}', '—')} |")  # fmt: skip
    lines += ["", "| measure | ours / peer, every round | median | min–max | ahead in every round |",
              "|---|---|---:|---|---|"]
    for name, label, *_ in MEASURES:
        v = results["verdict"][name]
        every = ", ".join(fmt(x, "{:.2f}", "—") for x in v["ratios"])
        low, high = fmt(v["min"], "{:.2f}", "—"), fmt(v["max"], "{:.2f}", "—")
        lines.append(f"| {label} | {every} | {fmt(v['median'], '{:.2f}', '—')} | {low}–{high} | "
                     f"{v['ahead_in_every_round']} |")  # fmt: skip
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
