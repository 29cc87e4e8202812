"""Checkpoint writes into the default folder artifact store, side by side in one process: a Hugging Face folder
written by save_pretrained and packed into a tar (the first checkpoint of a model class, and every one before
2026-12-03), against the tar with the weights streamed into it from the tensors (`sweep.checkpoints.checkpoint_members`:
written to disk once, no serialised copy in memory, read back from the disk). MiniLM (22.7M parameters, about 90 MB
of weights) with a 6-class head, as the fair runs; each write is timed around `ArtifactCheckpoints.save`, the ways
alternate, and the store keeps the newest three checkpoints (`search.keep_checkpoints`' default), removing older ones
as a study would. `--gap S` waits S seconds before each write, as a study's trials do (seconds of training apart):
memory a virtual machine freed is then often handed back to the host and costs again when it is written, which
back-to-back writes never show.

    python benchmarks/bench_checkpoint.py --saves 8 --gap 10 --results benchmarks/checkpoint/CHECKPOINT.md

Writes CHECKPOINT.md and CHECKPOINT.json. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_limit import write_results  # noqa: E402
from bench_trainer import default_encoder, log, machine_facts, quiet_hugging_face  # noqa: E402

WAYS = ("folder", "stream")
PARTS = ("pack_members", "verify_member")  # writing the tar (with its SHA-256); reading the weights back


def _timed(function: Any, seconds: list[float]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    return timed


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_checkpoint.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--encoder", help="Hugging Face model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--saves", type=int, default=12, help="checkpoints written each way (default 12)")
    parser.add_argument("--gap", type=float, default=10.0, help="seconds idle before each write (default 10)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "checkpoint")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "checkpoint" / "CHECKPOINT.md")
    args = parser.parse_args(list(argv))
    if args.saves < 1 or args.gap < 0:
        parser.error(f"--saves must be >= 1 and --gap >= 0, got {args.saves} and {args.gap:g}")
    args.command = shlex.join(["python", "benchmarks/bench_checkpoint.py", *argv])
    args.work, args.results = args.work.resolve(), args.results.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import shutil

    import optuna

    import sweep.checkpoints as checkpoints
    from models.classifier import load_pretrained_classifier
    from sweep.memory import keep_freed_memory

    keep_freed_memory()  # as a worker with sweep's defaults
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    encoder = args.encoder or default_encoder()
    shutil.rmtree(args.work, ignore_errors=True)
    with quiet_hugging_face():
        model = load_pretrained_classifier(encoder, [f"class{i}" for i in range(6)], 0.1)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        tokenizer_dir = checkpoints.save_tokenizer_once(encoder, args.work / "root")
        store = checkpoints.ArtifactCheckpoints({"store": "filesystem", "path": str(args.work / "store")})
        study = optuna.create_study(study_name="bench-checkpoint")
        seconds: dict[str, list[float]] = {way: [] for way in WAYS}
        parts: dict[str, list[float]] = {part: [] for part in PARTS}
        real = {part: getattr(checkpoints, part) for part in PARTS}
        for part in PARTS:  # the streamed write's parts, timed where sweep.checkpoints calls them
            setattr(checkpoints, part, _timed(real[part], parts[part]))
        try:
            write_checkpoints(args, store, model, state, tokenizer_dir, study, seconds)
        finally:
            for part, function in real.items():
                setattr(checkpoints, part, function)
    results: dict[str, Any] = {
        "command": args.command, "machine": machine_facts(), "saves": args.saves, "gap": args.gap,
        "seconds": seconds, "parts": parts,
        "median": {way: statistics.median(values) for way, values in seconds.items()},
    }  # fmt: skip
    results["ratio"] = results["median"]["stream"] / results["median"]["folder"]
    write_results(args.results, results, render)
    return 0


def write_checkpoints(
    args: argparse.Namespace, store: Any, model: Any, state: dict[str, Any], tokenizer_dir: Path, study: Any,
    seconds: dict[str, list[float]],
) -> None:  # fmt: skip
    """Write the checkpoints, the ways alternating, each timed; the store keeps the newest three."""
    import torch

    import sweep.checkpoints as checkpoints

    kept: list[str] = []
    for i in range(args.saves * len(WAYS)):
        way = WAYS[(i + i // len(WAYS)) % len(WAYS)]  # folder, stream, stream, folder, folder, stream, ...
        if way == "folder":
            checkpoints._WEIGHT_KEYS.clear()  # as the first checkpoint of a process
        time.sleep(args.gap)
        trial = study.ask()
        with torch.no_grad():
            state["classifier.bias"].add_(0.001)  # another trial's weights
        started = time.perf_counter()
        artifact, _ = store.save(model, state, tokenizer_dir, f"trial-{trial.number:05d}", trial)
        seconds[way].append(time.perf_counter() - started)
        kept.append(artifact)
        if len(kept) > 3:  # the store keeps the top three; a study removes the rest
            store.store.remove(kept.pop(0))
        log(f"checkpoint {i + 1}/{args.saves * len(WAYS)}: {way} {seconds[way][-1]:.3f} s")


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Checkpoint writes: a save_pretrained folder packed, against a tar with the weights streamed into it",
        "",
        f"Command: `{results['command']}` · {results['machine'].get('cpu', '?')} · {results['saves']} writes each way, "
        f"alternating, {results.get('gap', 0):g} s apart, into the folder artifact store, the newest three kept.",
        "",
        "| way | median (s) | min–max (s) | every write (s) |",
        "|---|---:|---:|---|",
    ]
    for way, values in results["seconds"].items():
        lines.append(f"| {way} | {results['median'][way]:.3f} | {min(values):.3f}–{max(values):.3f} | "
                     + ", ".join(f"{v:.2f}" for v in values) + " |")  # fmt: skip
    lines += ["", f"Stream / folder (medians): {results['ratio']:.2f}.", ""]
    if results.get("parts"):
        lines += ["Parts of each streamed write: writing the tar (90 MB of new file pages and its SHA-256) "
                  + ", ".join(f"{v:.2f}" for v in results["parts"]["pack_members"]) + " s; reading the weights back "
                  "from the disk and comparing " + ", ".join(f"{v:.2f}" for v in results["parts"]["verify_member"])
                  + " s.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
