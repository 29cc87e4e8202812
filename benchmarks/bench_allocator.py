"""What `trainer.keep_freed_memory` buys: bench_limit.py's one-epoch sides, each run in a fresh process with freed
memory kept in the process (`--freed-memory keep`) or returned to the kernel (glibc's thresholds), side by side.

The setting is process-wide and cannot be undone, so every measurement is a fresh `bench_limit.py` process. For each
seed, `--processes` processes per setting run alternately (keep first on even seeds, return first on odd ones), each
training every side `--repeats` rounds; a side's throughput per setting is the median over all its rounds on that
seed, and the gain is keep / return. Every side gets the setting the same way (the Trainer side too: an expert user
would preload jemalloc or tcmalloc, which keep freed memory by themselves), so it is not a lead over the peer.

    python benchmarks/bench_allocator.py --precision bf16-mixed --batch-size 16 --learning-rate 1e-4

Writes ALLOCATOR.md and ALLOCATOR.json (or --results) and each process's LIMIT files under --work. Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_limit import SIDE_NAMES, SIDES, spread, write_results  # noqa: E402
from bench_trainer import log, machine_facts  # noqa: E402

SETTINGS = ("keep", "return")


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the rest, passed to every bench_limit.py process (its own checks apply)."""
    parser = argparse.ArgumentParser(prog="bench_allocator.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--processes", type=int, default=2, help="fresh processes per setting and seed (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of every side in each process (default 2)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "allocator")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "allocator" / "ALLOCATOR.md")
    args, rest = parser.parse_known_args(list(argv))
    problems = [f"--{name} must be >= 1, got {getattr(args, name)}" for name in ("processes", "repeats")
                if getattr(args, name) < 1]  # fmt: skip
    problems += [f"{option} is set by bench_allocator.py itself" for option in ("--freed-memory", "--results")
                 if any(item.split("=")[0] == option for item in rest)]  # fmt: skip
    if problems:
        parser.error("; ".join(problems))
    args.command = shlex.join(["python", "benchmarks/bench_allocator.py", *argv])
    args.work, args.results = args.work.resolve(), args.results.resolve()
    return args, rest


def run_process(args: argparse.Namespace, rest: list[str], seed: int, setting: str, index: int) -> dict[str, Any]:
    """One fresh bench_limit.py process: its LIMIT.json."""
    results = args.work / f"seed{seed}" / f"{setting}-{index}" / "LIMIT.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_limit.py"), *rest, "--seeds", str(seed),
               "--repeats", str(args.repeats), "--sides", *args.sides, "--freed-memory", setting,
               "--work", str(args.work / "data"), "--results", str(results)]  # fmt: skip
    log(f"allocator: seed {seed}: {setting} (process {index + 1}/{args.processes})")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench_allocator.py: bench_limit.py failed (exit {done.returncode}): "
                         f"{shlex.join(command)}\n{done.stderr[-3000:]}")  # fmt: skip
    loaded: dict[str, Any] = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    return loaded


def measure_seed(args: argparse.Namespace, rest: list[str], seed: int) -> dict[str, Any]:
    order = SETTINGS if seed % 2 == 0 else SETTINGS[::-1]
    processes: dict[str, list[dict[str, Any]]] = {setting: [] for setting in SETTINGS}
    for index in range(args.processes):
        for setting in order:
            processes[setting].append(run_process(args, rest, seed, setting, index))
    entry: dict[str, Any] = {"seed": seed, "order": list(order)}
    for setting, runs in processes.items():
        rounds = {side: [value for run in runs for value in run["runs"][0][side]["throughputs"]] for side in args.sides}
        entry[setting] = {
            "throughput": {side: statistics.median_low(values) for side, values in rounds.items()},
            "rounds": rounds,
            "max_rss_mb": max(run["max_rss_mb"] for run in runs),
        }
    entry["gain"] = {side: entry["keep"]["throughput"][side] / entry["return"]["throughput"][side]
                     for side in args.sides}  # fmt: skip
    log(f"allocator: seed {seed}: keep / return " + ", ".join(f"{side} {gain:.2f}" for side, gain in
                                                              entry["gain"].items()))  # fmt: skip
    return entry


def render(results: dict[str, Any]) -> str:
    sides = results["sides"]
    lines = [
        "# Freed memory kept in the process against glibc's thresholds (`trainer.keep_freed_memory`)",
        "",
        f"Command: `{results['command']}` · {results['machine'].get('cpu', '?')} · {results['processes']} fresh "
        f"process(es) per setting and seed, {results['repeats']} round(s) of every side in each; examples/s as the "
        "median of all rounds (min–max); gain = keep / return.",
        "",
        "| seed | first | " + " | ".join(f"{SIDE_NAMES[s]} keep | {SIDE_NAMES[s]} return | gain" for s in sides)
        + " | peak memory keep / return (MiB) |",
        "|---|---|" + "---|---|---|" * len(sides) + "---|",
    ]

    def cell(entry: dict[str, Any], side: str) -> str:
        every = entry["rounds"][side]
        return f"{entry['throughput'][side]:.1f} ({min(every):.1f}–{max(every):.1f})"

    for run in results["runs"]:
        row = f"| {run['seed']} | {run['order'][0]} | " + " | ".join(
            f"{cell(run['keep'], s)} | {cell(run['return'], s)} | {run['gain'][s]:.2f}" for s in sides)
        lines.append(row + f" | {run['keep']['max_rss_mb']:.0f} / {run['return']['max_rss_mb']:.0f} |")
    lines += ["", "Gain across seeds: " + "; ".join(
        f"{SIDE_NAMES[s]} mean {g['mean']:.2f} (min {g['min']:.2f}, max {g['max']:.2f})"
        for s, g in results["gain"].items()) + ".", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    runs = [measure_seed(args, rest, seed) for seed in args.seeds]
    results = {
        "command": args.command, "machine": machine_facts(), "processes": args.processes, "repeats": args.repeats,
        "sides": args.sides, "passed_on": rest, "runs": runs,
        "gain": {side: spread([run["gain"][side] for run in runs]) for side in args.sides},
    }  # fmt: skip
    write_results(args.results, results, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
