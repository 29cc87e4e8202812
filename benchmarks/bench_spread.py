"""How far apart are two training runs of one configuration? The peer's best configuration, several training seeds.

Issue #12 judges "best F1 reached" and "time to reach the peer's best F1" against the peer's single best trial, with
ties within one validation example. Whether a miss by a few examples says anything about the search depends on how
much the F1 of one configuration moves between training seeds. Here, per benchmark seed (its data split), the
configuration of the Trainer's best trial in `results.json` is trained `--repeats` times on each side with training
seeds seed, seed + 1, ...:

- ours: a sweep study whose space is that one configuration (no pruner, no warm start, no checkpoints kept beyond
  sweep's default), so trial k trains with seed + k as every sweep study does;
- the peer: `Trainer.train()` with the TrainingArguments of the peer at its best (`bench_trainer.peer_arguments`),
  one evaluation per epoch, `seed` + k.

Each run's F1 is reported three ways: as its tool scores a trial (ours: best evaluation, inside the first epoch too;
the peer: its last evaluation, what `hyperparameter_search` returns), at the end of the last epoch, and the best
epoch end. F1 only: the times are not the point here (they are in RESULTS.md).

    python benchmarks/bench_spread.py --seeds 0 1 --repeats 4
    python benchmarks/bench_spread.py --render benchmarks/spread/SPREAD.json     # the Markdown again, no training

Writes benchmarks/spread/SPREAD.md and SPREAD.json (`--out`). About 85 s per repeat and seed in fp32 here.
"""

from __future__ import annotations

import argparse
import json
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

BASES = (
    ("scored", "as its tool scores a trial (ours: best evaluation; the peer: last evaluation)"),
    ("last", "end of the last epoch"),
    ("best_epoch_end", "best epoch end"),
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_spread.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results.json",
                        help="the benchmark run whose settings and peer's best configurations are used")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", help="benchmark seeds (default: every seed of --results)")
    parser.add_argument("--repeats", type=int, default=4, help="training seeds per side and seed (default 4)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "spread")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "spread" / "SPREAD.md")
    parser.add_argument("--render", type=Path, metavar="SPREAD.json",
                        help="only rewrite the Markdown beside this earlier run's JSON (no training)")  # fmt: skip
    args = parser.parse_args(list(argv))
    if args.render is not None:
        return args
    if args.repeats < 2:
        parser.error(f"--repeats must be at least 2 (a spread needs two runs), got {args.repeats}")
    if not args.results.is_file():
        parser.error(f"--results {args.results}: no such file (run bench_trainer.py first)")
    args.command = shlex.join(["python", "benchmarks/bench_spread.py", *argv])
    args.work, args.out = args.work.resolve(), args.out.resolve()
    return args


def peer_best(entry: dict[str, Any]) -> tuple[str, dict[str, Any], float]:
    """The Trainer's (Optuna's) best run of one seed: its variant, configuration and F1."""
    variants = entry["peers"]["trainer"]
    name = max(variants, key=lambda v: variants[v]["best_f1"] if variants[v]["best_f1"] is not None else -1.0)
    return name, dict(variants[name]["best_params"]), float(variants[name]["best_f1"])


def run_ours(cfg: Any, files: Any, seed: int, params: dict[str, Any], repeats: int, run_dir: Path) -> list[dict]:
    """One sweep study over the single configuration: trial k trains with seed + k."""
    from dataclasses import replace

    import bench_trainer as bench
    import yaml
    from rich.console import Console

    from record import read_study, read_trial
    from sweep.runner import run_study

    spec_path = bench.write_spec(replace(cfg, trials=repeats, warm_start=False), files, seed, run_dir)
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    spec["search"]["space"].update(learning_rate=float(params["learning_rate"]), batch_size=int(params["batch_size"]),
                                   epochs=int(params["epochs"]))  # fmt: skip
    spec["search"]["pruner"] = "none"
    spec["search"].pop("prune_after_epochs", None)  # a setting of the median pruner
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    study = run_study(spec_path, console=Console(stderr=True, quiet=True)).study
    per_epoch = read_study(study).steps_per_epoch
    runs = []
    for trial in sorted(study.trials, key=lambda t: t.number):
        record = read_trial(trial)
        values = {int(step): float(v) for step, v in trial.intermediate_values.items()}
        ends = [values[s] for s in sorted(values) if s % per_epoch == 0]
        runs.append({"training_seed": record.seed, "scored": trial.value, "last": ends[-1] if ends else None,
                     "best_epoch_end": max(ends, default=None), "epoch_ends": ends,
                     "evaluations": [values[s] for s in sorted(values)]})  # fmt: skip
        bench.log(f"seed {seed}: ours, training seed {record.seed}: {trial.value:.4f}")
    return runs


def run_peer(cfg: Any, files: Any, seed: int, params: dict[str, Any], repeats: int, run_dir: Path) -> list[dict]:
    """`Trainer.train()` per training seed, one evaluation per epoch, the peer's flags at its best."""
    import bench_trainer as bench

    with bench.quiet_hugging_face():
        return [_train_peer(cfg, files, seed + k, params, run_dir / f"run{k}") for k in range(repeats)]


def _train_peer(cfg: Any, files: Any, training_seed: int, params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    import bench_trainer as bench
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer

    prepared = bench.peer_data(cfg, files)
    args = bench.peer_arguments(
        run_dir, training_seed, bench.precision(cfg) == "bf16-mixed", eval_strategy="epoch",
        per_device_eval_batch_size=bench.EVAL_BATCH_SIZE, learning_rate=float(params["learning_rate"]),
        per_device_train_batch_size=int(params["batch_size"]), num_train_epochs=int(params["epochs"]),
    )  # fmt: skip
    trainer = Trainer(model_init=lambda _trial=None: prepared.model(cfg.encoder), args=args,
                      train_dataset=prepared.train, eval_dataset=prepared.validation,
                      processing_class=prepared.tokenizer, data_collator=DataCollatorWithPadding(prepared.tokenizer),
                      compute_metrics=prepared.macro_f1)  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    ends = [float(e["eval_f1_macro"]) for e in trainer.state.log_history if "eval_f1_macro" in e]
    bench.log(f"peer, training seed {training_seed}: {ends[-1]:.4f}")
    return {"training_seed": training_seed, "scored": ends[-1], "last": ends[-1], "best_epoch_end": max(ends),
            "epoch_ends": ends, "evaluations": ends}  # fmt: skip


def describe(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "sd": statistics.stdev(values)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render is not None:
        if not args.render.is_file():
            raise SystemExit(f"--render {args.render}: no such file")
        results = json.loads(args.render.read_text(encoding="utf-8"))
        write_results(args.render.with_suffix(".md"), results, render)
        return 0
    import bench_trainer as bench
    import optuna

    earlier = json.loads(args.results.read_text(encoding="utf-8"))
    command = shlex.split(earlier["config"]["command"])[2:]
    cfg = bench.as_it_ran(bench.parse_args([*command, "--work", str(args.work)]), earlier["config"])
    entries = {int(e["seed"]): e for e in earlier["seeds"]}
    seeds = args.seeds or sorted(entries)
    missing = [s for s in seeds if s not in entries]
    if missing:
        raise SystemExit(f"--seeds {' '.join(map(str, missing))}: not in {args.results} (it has "
                         f"{', '.join(map(str, sorted(entries)))})")  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.freed_memory == "keep":
        from sweep.memory import keep_freed_memory

        keep_freed_memory()
    bench.warm_up(cfg.encoder)
    started = time.time()
    out = []
    for seed in seeds:
        entry = entries[seed]
        variant, params, peer_f1 = peer_best(entry)
        files = bench.prepare_files(cfg, seed)
        tie = 1.0 / sum(files.val_counts.values())
        bench.log(f"seed {seed}: the Trainer's best configuration {bench.format_params(params)} ({peer_f1:.4f})")
        ours = run_ours(cfg, files, seed, params, args.repeats, bench.fresh(args.work / f"seed{seed}" / "ours"))
        peer = run_peer(cfg, files, seed, params, args.repeats, bench.fresh(args.work / f"seed{seed}" / "peer"))
        sides = {"ours": ours, "peer": peer}
        out.append({
            "seed": seed, "params": params, "peer_variant": variant, "peer_study_best": peer_f1,
            "ours_study_best": entry["ours"]["best_f1"], "one_example": tie, "runs": sides,
            "summary": {side: {basis: describe([r[basis] for r in runs]) for basis, _ in BASES}
                        for side, runs in sides.items()},
        })  # fmt: skip
    results = {"command": args.command, "from": str(args.results.relative_to(ROOT)) if args.results.is_relative_to(
        ROOT) else str(args.results), "machine": bench.machine_facts(), "precision": bench.precision(cfg),
        "repeats": args.repeats, "seconds": round(time.time() - started, 1), "seeds": out}  # fmt: skip
    write_results(args.out, results, render)
    return 0


def render(results: dict[str, Any]) -> str:
    lines = [
        "# One configuration, several training seeds: how far apart are two runs?",
        "",
        f"Command: `{results['command']}` · settings and configurations from `{results['from']}` · "
        f"{results['machine'].get('cpu', '?')} · {results['machine']['date']} · precision {results['precision']} · "
        f"{results['repeats']} training seeds per side and seed ({results['seconds']:.0f} s in all).",
        "",
        "Per benchmark seed (its data split), the configuration of the Trainer's best trial, trained with training "
        "seeds seed, seed + 1, ... on each side. Ours: a sweep study over that one configuration (trial k trains "
        "with seed + k, as in every study); the peer: `Trainer.train()` with the flags of the peer at its best, one "
        "evaluation per epoch.",
        "",
    ]
    for entry in results["seeds"]:
        tie = entry["one_example"]
        p = entry["params"]
        lines += [
            f"## Seed {entry['seed']}: learning rate {p['learning_rate']:.2e}, batch {p['batch_size']}, "
            f"{p['epochs']} epochs",
            "",
            f"The peer's best in the benchmark ({entry['peer_variant']}): {entry['peer_study_best']:.4f}; our "
            f"benchmark best (whatever its configuration): {entry['ours_study_best']:.4f}; one validation example "
            f"(the issue's tie unit, macro-F1 × validation size, not a count of predictions): {tie:.4f}.",
            "",
            "| side | F1 | " + " | ".join(f"seed {r['training_seed']}" for r in entry["runs"]["ours"])
            + " | mean | min | max | sd | max − min in validation examples |",
            "|---|---|" + "---:|" * (len(entry["runs"]["ours"]) + 5),
        ]
        for side in ("ours", "peer"):
            runs = entry["runs"][side]
            for basis, label in BASES:
                s = entry["summary"][side][basis]
                cells = " | ".join(f"{r[basis]:.4f}" for r in runs)
                lines.append(f"| {side} | {label} | {cells} | {s['mean']:.4f} | {s['min']:.4f} | {s['max']:.4f} | "
                             f"{s['sd']:.4f} | {(s['max'] - s['min']) / tie:.1f} |")  # fmt: skip
        ours, peer = entry["summary"]["ours"]["scored"], entry["summary"]["peer"]["scored"]
        reached = sum(r["scored"] >= entry["peer_study_best"] - tie for r in entry["runs"]["ours"])
        peer_reached = sum(r["scored"] >= entry["peer_study_best"] - tie for r in entry["runs"]["peer"])
        lines += [
            "",
            f"Mean as each tool scores a trial: ours − peer {ours['mean'] - peer['mean']:+.4f} "
            f"({(ours['mean'] - peer['mean']) / tie:+.1f} validation examples). Runs within one validation example "
            f"of the peer's benchmark best or above: ours {reached} of {len(entry['runs']['ours'])}, the peer "
            f"{peer_reached} of {len(entry['runs']['peer'])}.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
