"""Pruning quality of a finished benchmark: would a pruned configuration have finished in the top 3?

For each study of a benchmark run (one per seed), every configuration the pruner stopped is trained again to
completion, once, outside the timed run: through sweep's own trial training (`sweep.objective.train_trial`, the
function every trial runs), with the same prepared data (its fingerprint checked against the trial's), the same seed
and the same hyperparameters, and the pruning callback asked never to prune. One completed trial is rerun the same way
first, and its F1 curve compared with the stored one: the rerun is a reproduction, not a new sample.

It then reports, per seed:
- false prunes: pruned configurations whose full run would have finished in the top 3 (by the study's metric, best
  evaluation, earlier trial first on ties);
- the Spearman rank correlation, across all configurations, between the F1 at each evaluation point (1/3 and 2/3 of
  the first epoch, end of epoch 1, 2, ...) and the configuration's final (best) F1.
Issue #12's target: a configuration that would have finished in the top 3 is pruned in at most one of three seeds.

    python benchmarks/bench_pruning.py                           # the studies of benchmarks/results.json
    python benchmarks/bench_pruning.py work/seed0/ours/spec.yaml ...   # or the spec of each study

Writes pruning.json and PRUNING.md beside results.json (or into --out). `pruning_section(pruning.json)` returns the
Markdown section for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOP = 3
TARGET_SEEDS = 1  # at most this many seeds may prune a top-3 configuration
REPRODUCTION_TOLERANCE = 1e-3  # F1 difference still counted as numerical noise (one validation example is larger)


# ---------------------------------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Configuration:
    """One trial's configuration with its full F1 curve: as recorded when it completed, rerun when it was pruned."""

    number: int
    state: str  # "complete" or "pruned"
    params: dict[str, Any]
    curve: dict[int, float]  # Optuna step -> validation metric
    pruned_at: int | None = None  # the step at which the pruner stopped it

    def final(self, maximize: bool) -> float:
        """The configuration's score as a trial: its best evaluation."""
        return max(self.curve.values()) if maximize else min(self.curve.values())


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None for fewer than 3 pairs or a constant side."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def point_label(step: int, steps_per_epoch: int) -> str:
    """`1/3 of epoch 1`, `end of epoch 2`: where an Optuna step's evaluation ran."""
    epoch, within = (step - 1) // steps_per_epoch + 1, (step - 1) % steps_per_epoch + 1
    return f"end of epoch {epoch}" if within == steps_per_epoch else f"{within}/{steps_per_epoch} of epoch {epoch}"


def analyse(configurations: Sequence[Configuration], *, maximize: bool, steps_per_epoch: int, top: int = TOP
            ) -> dict[str, Any]:  # fmt: skip
    """False prunes (pruned configurations in the top `top` by their full run) and, per evaluation point, the rank
    correlation between the F1 there and the final F1, over the configurations that reach that point."""
    sign = 1.0 if maximize else -1.0
    ranking = sorted(configurations, key=lambda c: (-sign * c.final(maximize), c.number))
    rank = {c.number: i + 1 for i, c in enumerate(ranking)}
    cutoff = ranking[min(top, len(ranking)) - 1].final(maximize) if ranking else None
    rows = [
        {
            "number": c.number,
            "state": c.state,
            "params": c.params,
            "pruned_at": c.pruned_at,
            "pruned_at_point": point_label(c.pruned_at, steps_per_epoch) if c.pruned_at else None,
            "value_at_pruning": c.curve.get(c.pruned_at) if c.pruned_at else None,
            "final": c.final(maximize),
            "rank": rank[c.number],
            "in_top": rank[c.number] <= top,
            # How far a pruned configuration's final score is from the last top place (positive: inside it).
            "margin_to_top": sign * (c.final(maximize) - cutoff) if c.pruned_at and cutoff is not None else None,
            "curve": {str(k): v for k, v in sorted(c.curve.items())},
        }
        for c in sorted(configurations, key=lambda c: c.number)
    ]
    points = []
    for step in sorted({s for c in configurations for s in c.curve}):
        reached = [c for c in configurations if step in c.curve]
        points.append({
            "step": step,
            "point": point_label(step, steps_per_epoch),
            "configurations": len(reached),
            "spearman": spearman([c.curve[step] for c in reached], [c.final(maximize) for c in reached]),
        })  # fmt: skip
    false = [r["number"] for r in rows if r["state"] == "pruned" and r["in_top"]]
    return {
        "top": top,
        "configurations": rows,
        "pruned": sum(r["state"] == "pruned" for r in rows),
        "false_prunes": false,
        "correlations": points,
    }


def judge(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Issue #12's target across seeds: a top-3 configuration pruned in at most one of the three seeds."""
    seeds_with = [r["label"] for r in runs if r["analysis"]["false_prunes"]]
    met = len(seeds_with) <= TARGET_SEEDS
    note = "" if len(runs) >= 3 else f" (judged on {len(runs)} seed{'s' * (len(runs) != 1)}; the target needs three)"
    return {
        "seeds": len(runs),
        "seeds_with_false_prunes": seeds_with,
        "met": met,
        "text": f"a top-{TOP} configuration pruned in {len(seeds_with)} of {len(runs)} seeds (target: at most "
        f"{TARGET_SEEDS} of 3): {'met' if met else 'not met'}{note}",
    }


# ---------------------------------------------------------------------------------------------------- reruns


def configurations(study: Any, rerun: Callable[[Any], dict[int, float]]) -> tuple[list[Configuration], list[int]]:
    """The study's complete and pruned search trials as configurations (pruned ones rerun with `rerun(record)`),
    and the numbers of the trials left out (failed, running, re-evaluation runs)."""
    from optuna.trial import TrialState

    from record import read_trial

    found, left_out = [], []
    for trial in study.get_trials(deepcopy=False):
        record = read_trial(trial)
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or record.reevaluates is not None:
            left_out.append(trial.number)
            continue
        pruned = trial.state == TrialState.PRUNED
        curve = rerun(record) if pruned else dict(trial.intermediate_values)
        steps = sorted(trial.intermediate_values)
        found.append(Configuration(number=trial.number, state="pruned" if pruned else "complete",
                                   params=dict(trial.params), curve={int(k): float(v) for k, v in curve.items()},
                                   pruned_at=steps[-1] if pruned and steps else None))  # fmt: skip
    return found, left_out


class Rerunner:
    """Trains a recorded trial's configuration to completion through `sweep.objective.train_trial`, with the study's
    prepared data and settings (no checkpoints), its seed and hyperparameters; returns the curve by Optuna step."""

    def __init__(self, spec_path: Path, threads: int | None):
        import torch
        from rich.console import Console

        from record import read_study
        from sweep.encoders import resolve_encoder
        from sweep.lifecycle import quiet_libraries, with_past_defaults
        from sweep.runner import prepare_data, trial_settings
        from sweep.spec import load_spec
        from sweep.storage import load_study
        from sweep.store_checks import choose_storage

        spec, base = load_spec(spec_path)
        self.url = choose_storage(None, spec.storage)[0]
        self.study = load_study(spec.name, self.url)
        self.study_record = read_study(self.study)
        # a study made under earlier defaults (two evaluations inside epoch 1, ...) is rerun as it ran, as a re-run
        # of its spec file would continue it
        spec, _ = with_past_defaults(self.study_record, spec)
        quiet_libraries()
        if threads or spec.trainer.num_threads:
            torch.set_num_threads(threads or spec.trainer.num_threads or 1)
        encoder = resolve_encoder(spec.model.encoder, base, max_length=spec.model.max_length)
        self.data = prepare_data(spec, base, encoder, Console(stderr=True, quiet=True))
        if self.study_record.data_fingerprint and self.data.fingerprint != self.study_record.data_fingerprint:
            raise SystemExit(f"{spec_path}: the data now prepared differs from the study's (fingerprint "
                             f"{self.data.fingerprint} vs {self.study_record.data_fingerprint}): cannot rerun its "
                             "trials")
        root = Path(self.study_record.checkpoint_dir or spec_path.parent / "checkpoints")
        settings = trial_settings(spec, self.data, encoder, root, pooling=self.study_record.pooling_as_trained)
        self.settings = replace(settings, checkpoint_root=None, tokenizer_dir=None)  # reruns keep no weights
        self.spec = spec
        self.seconds = 0.0

    def __call__(self, record: Any) -> dict[int, float]:
        from sweep.callbacks import EvaluationSchedule, PruningCallback
        from sweep.objective import train_trial
        from sweep.space import Hyperparameters

        if record.seed is None or not record.hyperparameters:
            raise SystemExit(f"trial {record.number} has no recorded seed or hyperparameters: cannot rerun it")
        if record.data_fingerprint and record.data_fingerprint != self.data.fingerprint:
            raise SystemExit(f"trial {record.number} trained on other data (fingerprint {record.data_fingerprint})")
        curve: dict[int, float] = {}
        schedule = EvaluationSchedule(self.settings.first_epoch_evals)
        collect = PruningCallback(f"val_{self.settings.metric}", report=lambda v, s: curve.__setitem__(s, v),
                                  should_prune=lambda: False, schedule=schedule)  # fmt: skip
        started = time.perf_counter()
        train_trial(Hyperparameters(**record.hyperparameters), self.data, self.settings, seed=int(record.seed),
                    callbacks=[schedule, collect])  # fmt: skip
        self.seconds += time.perf_counter() - started
        log(f"{self.spec.name}: trial {record.number} rerun to completion: {len(curve)} evaluations, best "
            f"{max(curve.values()):.4f}")
        return curve


def reproduction_check(study: Any, rerun: Rerunner) -> dict[str, Any] | None:
    """Rerun the cheapest completed trial and compare its curve with the stored one (None: no completed trial)."""
    from optuna.trial import TrialState

    from record import read_trial

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if read_trial(t).reevaluates is None]  # fmt: skip
    if not complete:
        return None
    trial = min(complete, key=lambda t: (len(t.intermediate_values), -int(t.params.get("batch_size", 0)), t.number))
    curve = rerun(read_trial(trial))
    stored = {int(k): float(v) for k, v in trial.intermediate_values.items()}
    diffs = [abs(curve[s] - v) for s, v in stored.items() if s in curve]
    diff = max(diffs) if diffs else math.inf
    same_steps = sorted(curve) == sorted(stored)
    return {"trial": trial.number, "steps": len(stored), "same_steps": same_steps, "max_abs_difference": diff,
            "reproduced": same_steps and diff <= REPRODUCTION_TOLERANCE}  # fmt: skip


def run_one(spec_path: Path, threads: int | None, check: bool) -> dict[str, Any]:
    from record import maximizes

    rerun = Rerunner(spec_path, threads)
    study = rerun.study
    reproduction = reproduction_check(study, rerun) if check else None
    if reproduction is not None and not reproduction["reproduced"]:
        log(f"warning: trial {reproduction['trial']} rerun differs from its record by "
            f"{reproduction['max_abs_difference']:.2e}: the reruns are not exact reproductions")
    found, left_out = configurations(study, rerun)
    analysis = analyse(found, maximize=maximizes(study), steps_per_epoch=rerun.study_record.steps_per_epoch)
    return {
        "label": f"seed {rerun.spec.search.seed}",
        "seed": rerun.spec.search.seed,
        "spec": str(spec_path),
        "study": rerun.spec.name,
        "storage": rerun.url,
        "metric": rerun.study_record.metric,
        "steps_per_epoch": rerun.study_record.steps_per_epoch,
        "reproduction": reproduction,
        "left_out": left_out,
        "rerun_seconds": round(rerun.seconds, 1),
        "analysis": analysis,
    }


# ---------------------------------------------------------------------------------------------------- report


def fmt(value: float | None, pattern: str, none: str = "—") -> str:
    return none if value is None else pattern.format(value)


def pruning_section(path: Path | str) -> list[str]:
    """The Markdown lines of the pruning-quality section, from a pruning.json (for RESULTS.md or PRUNING.md)."""
    results = json.loads(Path(path).read_text(encoding="utf-8"))
    runs = results["runs"]
    lines = [
        "## Pruning quality",
        "",
        f"Every pruned configuration was trained again to completion, outside the timed run, with its trial's data, "
        f"seed and hyperparameters (through `sweep.objective.train_trial`). False prunes: pruned configurations whose "
        f"full run finishes in the top {TOP}. Target (issue #12): {results['target']['text']}.",
        "",
        "| seed | configurations | pruned | false prunes (trial: rank, final, margin to the top) "
        "| reproduction check |",
        "|---|---:|---:|---|---|",
    ]
    for run in runs:
        a = run["analysis"]
        rows = {r["number"]: r for r in a["configurations"]}
        false = "; ".join(f"{n}: rank {rows[n]['rank']}, {rows[n]['final']:.4f}, {rows[n]['margin_to_top']:+.4f}"
                          for n in a["false_prunes"]) or "none"  # fmt: skip
        lines.append(f"| {run['label']} | {len(a['configurations'])} | {a['pruned']} | {false} | "
                     f"{reproduction_text(run['reproduction'])} |")  # fmt: skip
    lines += ["", "Spearman rank correlation between the F1 at each evaluation point and the final (best) F1, over the "
              "configurations that reach it (their number in brackets; — below 3 or when one side is constant):", ""]
    points = sorted({(p["step"], p["point"]) for run in runs for p in run["analysis"]["correlations"]})
    lines += ["| evaluation point | " + " | ".join(run["label"] for run in runs) + " |",
              "|---|" + "---:|" * len(runs)]  # fmt: skip
    for step, point in points:
        cells = []
        for run in runs:
            found = next((p for p in run["analysis"]["correlations"] if p["step"] == step), None)
            cells.append(f"{fmt(found['spearman'], '{:+.2f}')} ({found['configurations']})" if found else "")
        lines.append(f"| {point} | " + " | ".join(cells) + " |")
    for run in runs:
        a = run["analysis"]
        lines += ["", f"### {run['label']}: every configuration (pruned ones rerun to completion)", "",
                  "| trial | state | learning rate | batch | epochs | pruned at | F1 there | final F1 | rank |",
                  "|---:|---|---:|---:|---:|---|---:|---:|---:|"]  # fmt: skip
        for r in sorted(a["configurations"], key=lambda r: r["rank"]):
            p = r["params"]
            lr = p.get("learning_rate")
            lines.append(
                f"| {r['number']} | {r['state']} | {fmt(lr, '{:.2e}', '?')} | {p.get('batch_size', '?')} | "
                f"{p.get('epochs', '?')} | {r['pruned_at_point'] or ''} | {fmt(r['value_at_pruning'], '{:.4f}', '')} "
                f"| {r['final']:.4f} | {r['rank']}{' (top)' if r['in_top'] else ''} |"
            )
    return lines


def reproduction_text(check: dict[str, Any] | None) -> str:
    if check is None:
        return "not run"
    verdict = "reproduced" if check["reproduced"] else "NOT reproduced"
    steps = "" if check["same_steps"] else ", different evaluation points"
    return (f"trial {check['trial']} rerun: {verdict} (max F1 difference {check['max_abs_difference']:.1e} over "
            f"{check['steps']} evaluations{steps})")  # fmt: skip


def render(results: dict[str, Any], json_path: Path) -> str:
    return "\n".join(["# Pruning quality", "", "```bash", results["command"], "```", "",
                      *pruning_section(json_path)[2:], ""])  # fmt: skip


# ---------------------------------------------------------------------------------------------------- main


def log(message: str) -> None:
    print(f"[pruning {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def specs_of(results_json: Path) -> tuple[list[Path], int | None, dict[str, Any]]:
    """The study spec of our side on each seed of a bench_trainer results.json (`seeds`; the `repetitions` of a
    results.json from before issue #12), the torch threads it ran with, and the run's identity (its date and
    command), which bench_trainer.py checks before it puts pruning.json's section into that run's RESULTS.md."""
    results = json.loads(results_json.read_text(encoding="utf-8"))
    work = Path(results["config"]["work"])
    if "seeds" in results:
        specs = [Path(entry["ours"].get("spec") or work / f"seed{entry['seed']}" / "ours" / "spec.yaml")
                 for entry in results["seeds"]]  # fmt: skip
    else:
        specs = [Path(rep["ours"].get("spec") or work / f"rep{i}" / "spec.yaml")
                 for i, rep in enumerate(results["repetitions"], start=1)]  # fmt: skip
    benchmark = {"date": results.get("machine", {}).get("date"), "command": results["config"].get("command")}
    return specs, results["config"].get("threads"), benchmark


def main(argv: Sequence[str] | None = None) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="bench_pruning.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", type=Path,
                        help="a results.json of bench_trainer.py, or study specs (default benchmarks/results.json)")
    parser.add_argument("--out", type=Path, help="folder for pruning.json and PRUNING.md (default: beside the input)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the benchmark's)")
    parser.add_argument("--no-check", action="store_true", help="skip rerunning one completed trial to compare")
    args = parser.parse_args(args_list)
    inputs = args.inputs or [ROOT / "benchmarks" / "results.json"]
    threads = args.threads
    specs: list[Path] = []
    benchmarks: list[dict[str, Any]] = []
    for path in inputs:
        if not path.is_file():
            parser.error(f"no such file: {path}")
        if path.suffix == ".json":
            found, ran_with, benchmark = specs_of(path)
            specs += found
            benchmarks.append(benchmark)
            threads = threads or ran_with
        else:
            specs.append(path)
    missing = [str(s) for s in specs if not s.is_file()]
    if missing:
        parser.error(f"study specs not found (is the benchmark's work folder still there?): {', '.join(missing)}")
    out = args.out or inputs[0].parent
    runs = []
    for spec in specs:
        log(f"{spec}: rerunning the pruned configurations")
        runs.append(run_one(spec, threads, check=not args.no_check))
        a = runs[-1]["analysis"]
        log(f"{runs[-1]['label']}: {a['pruned']} pruned, false prunes {a['false_prunes'] or 'none'}")
    labels = [run["label"] for run in runs]
    for run in runs:  # a results.json from before issue #12 ran every repetition on seed 0: name the study too
        if labels.count(run["label"]) > 1:
            run["label"] = f"{run['label']} ({run['study']})"
    results: dict[str, Any] = {"command": shlex.join(["python", "benchmarks/bench_pruning.py", *args_list]),
               "runs": runs,
               "target": judge(runs)}  # fmt: skip
    if len(benchmarks) == 1:  # made from one benchmark run: bench_trainer.py renders it into that run's RESULTS.md
        results["benchmark"] = benchmarks[0]
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "pruning.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "PRUNING.md").write_text(render(results, json_path), encoding="utf-8")
    log(f"wrote {json_path} and {out / 'PRUNING.md'}: {results['target']['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
