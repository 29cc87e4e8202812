"""Our side of bench_trainer.py alone, per seed, with one of our settings changed: a lever tried before a full run.

Same data per seed, encoder, space, trial budget and study spec as bench_trainer.py (its own functions), only our side
runs. It writes `ours.json` (per seed: wall time, best F1, per-trial states, values, evaluation times and the study
spec, which bench_pruning.py reruns from) and `OURS.md` beside it, with the same seed's numbers from an earlier full
run's results.json (`--against`) for reference: measured in another sitting, so they are not side-by-side ratios and
claim nothing about the peers.

    python benchmarks/bench_ours.py --first-epoch-evals 0 --out benchmarks/first_epoch_evals_0
    python benchmarks/bench_pruning.py benchmarks/first_epoch_evals_0/ours.json
    python benchmarks/bench_ours.py --precision bf16-mixed --out benchmarks/bf16
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def first_reach(trials: list[dict[str, Any]], level: float) -> float | None:
    """Seconds from the side's start until a complete trial's evaluation first reached `level`."""
    times = [e["time"] for t in trials if t["state"] == "COMPLETE" for e in t["evals"] if e["f1"] >= level]
    return min(times) if times else None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="bench_ours.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default 0 1 2)")
    parser.add_argument("--first-epoch-evals", type=int, help="our search.first_epoch_evals (a lever)")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), help="our trainer.precision (a lever)")
    parser.add_argument("--warm-start", action="store_true", help="our search.warm_start: true (a lever)")
    parser.add_argument(
        "--prune-after-epochs", type=float, help="our search.prune_after_epochs (a lever; default: sweep's, 1.0)"
    )
    parser.add_argument("--workers", type=int, help="sweep run --workers N: N trials at once (a lever)")
    parser.add_argument(
        "--freed-memory", choices=("keep", "return"), help="our trainer.keep_freed_memory: keep (sweep's default) or "
        "return (false; a lever)",
    )  # fmt: skip
    parser.add_argument("--keep-checkpoints", type=int, help="our search.keep_checkpoints (a lever; default: 3)")
    parser.add_argument("--trials", type=int, default=8, help="trials (default 8, as bench_trainer.py)")
    parser.add_argument("--out", type=Path, required=True, help="folder for ours.json and OURS.md")
    parser.add_argument(
        "--against", type=Path, default=ROOT / "benchmarks" / "results.json",
        help="an earlier bench_trainer.py results.json, for reference (default: benchmarks/results.json)",
    )  # fmt: skip
    args = parser.parse_args(args_list)
    if args.first_epoch_evals is not None and args.first_epoch_evals < 0:
        parser.error(f"--first-epoch-evals must be >= 0, got {args.first_epoch_evals}")
    against = json.loads(args.against.read_text(encoding="utf-8")) if args.against.is_file() else None
    for path in (ROOT, ROOT / "benchmarks"):  # sweep from this checkout, bench_trainer beside this script
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import bench_trainer as bench
    work = ROOT / "benchmarks" / "work" / f"ours-{args.out.resolve().name}"  # git-ignored, as bench_trainer's
    option = [] if args.first_epoch_evals is None else ["--first-epoch-evals", str(args.first_epoch_evals)]
    option += [] if args.precision is None else ["--precision", args.precision]
    option += ["--warm-start"] if args.warm_start else []
    option += [] if args.prune_after_epochs is None else ["--prune-after-epochs", f"{args.prune_after_epochs:g}"]
    option += [] if args.workers is None else ["--workers", str(args.workers)]
    option += [] if args.freed_memory is None else ["--freed-memory", args.freed_memory]
    option += [] if args.keep_checkpoints is None else ["--keep-checkpoints", str(args.keep_checkpoints)]
    cfg = bench.parse_args(["--seeds", *map(str, args.seeds), "--trials", str(args.trials), "--work", str(work),
                            "--results", str(args.out.resolve() / "OURS.md"), *option])  # fmt: skip
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bench.warm_up(cfg.encoder)
    seeds = []
    for seed in cfg.seeds:
        files = bench.prepare_files(cfg, seed)
        bench.log(f"seed {seed}: ours starts ({' '.join(option) or 'sweep defaults'})")
        raw = bench.run_ours(cfg, files, seed, bench.fresh(work / f"seed{seed}" / "ours"))
        bench.log(f"seed {seed}: ours done in {raw['wall']:.1f} s, best macro-F1 {raw['best_f1']:.4f}")
        seeds.append({"seed": seed, "ours": raw})
    command = shlex.join(["python", "benchmarks/bench_ours.py", *args_list])
    results = {"command": command, "machine": bench.machine_facts(),
               "config": {"first_epoch_evals": args.first_epoch_evals, "precision": args.precision,
                          "warm_start": args.warm_start, "prune_after_epochs": cfg.prune_after_epochs,
                          "workers": cfg.workers, "keep_checkpoints": cfg.keep_checkpoints,
                          "resolved_precision": bench.precision(cfg), "trials": args.trials, "seeds": list(cfg.seeds),
                          "work": str(work), "threads": cfg.threads, "command": command},
               "seeds": seeds}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ours.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    (args.out / "OURS.md").write_text(render(results, against), encoding="utf-8")
    bench.log(f"wrote {args.out / 'ours.json'} and {args.out / 'OURS.md'}")
    return 0


def render(results: dict[str, Any], against: dict[str, Any] | None) -> str:
    earlier = {e["seed"]: e for e in (against or {}).get("seeds", [])}
    lines = [
        "# Our side alone, one setting changed",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        f"Date {results['machine']['date']}; torch threads {results['machine']['torch_threads']}; "
        f"{results.get('config', {}).get('trials', '?')} trials per seed (the earlier run: "
        f"{(against or {}).get('config', {}).get('trials', '?')}). The earlier run's numbers (the same seed's data "
        "and space) come from another sitting: for reference, not side-by-side ratios.",
        "",
        "| seed | wall (s) | earlier run: ours (s) | best F1 | earlier: ours | complete / pruned | earlier: "
        "complete / pruned | time to the earlier peers' best F1 (s) | overhead (s): checkpoints, loops, other | "
        "overhead share | earlier: share |",
        "|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|",
    ]
    for entry in results["seeds"]:
        ours, old = entry["ours"], earlier.get(entry["seed"])
        states = [t["state"] for t in ours["trials"]]
        split = overhead(ours["trials"])
        parts = ", ".join(f"{split[k]:.2f}" for k in ("checkpoint", "loops", "other"))
        row = [str(entry["seed"]), f"{ours['wall']:.1f}", "—", f"{ours['best_f1']:.4f}", "—",
               f"{states.count('COMPLETE')} / {states.count('PRUNED')}", "—", "—",
               "—" if split["share"] is None else parts, _share(split), "—"]  # fmt: skip
        if old is not None:
            old_states = [t["state"] for t in old["ours"]["trials"]]
            row[2], row[4] = f"{old['ours']['wall']:.1f}", f"{old['ours']['best_f1']:.4f}"
            row[6] = f"{old_states.count('COMPLETE')} / {old_states.count('PRUNED')}"
            tie = 1.0 / old["data"]["val_size"]
            cells = []
            for kind, variants in old["peers"].items():
                best = max(run["best_f1"] for run in variants.values() if run.get("best_f1") is not None)
                reached = first_reach(ours["trials"], best - tie - 1e-12)
                cells.append(f"{kind} {best:.4f}: " + ("never" if reached is None else f"{reached:.1f}"))
            row[7] = "; ".join(cells)
            row[10] = _share(overhead(old["ours"]["trials"]))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Overhead as `RESULTS.md` counts it (bench_trainer.our_split): everything in a trial that is not a "
              "training step or a validation forward pass, as a share of the trials' time; its parts summed over the "
              "study's trials (loops: the training and evaluation loops around steps and forward passes)."]
    return "\n".join(lines) + "\n"


def _share(split: dict[str, float | None]) -> str:
    return "—" if split["share"] is None else f"{split['share']:.1%}"


def overhead(trials: list[dict[str, Any]]) -> dict[str, float | None]:
    """A study's overhead over its trials (seconds): checkpoints, the loops around steps and forward passes, the
    rest, and the whole as a share of the trials' time (None: no trial recorded its timings)."""
    if str(ROOT / "benchmarks") not in sys.path:  # bench_trainer beside this script (as main() arranges)
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_trainer as bench

    rows = bench.our_split([t for t in trials if t.get("timings")])
    total = sum(r["total"] for r in rows)
    spent = sum(r["overhead"] for r in rows)
    checkpoint = sum(r["checkpoint"] for r in rows)
    loops = sum(r["train_loop"] + r["evaluation_loop"] for r in rows)
    return {"checkpoint": checkpoint, "loops": loops, "other": spent - checkpoint - loops,
            "share": spent / total if total else None}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
