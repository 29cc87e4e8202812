"""One small MiniLM study per task, one after the other: the figure each reaches and the time it takes.

    .venv/bin/python benchmarks/bench_tasks.py                      # every task; writes TASKS.md + tasks.json here
    .venv/bin/python benchmarks/bench_tasks.py --tasks regression   # some tasks (results merged into the files)

Each study is built by `benchmarks/task_studies/<module>.py` (data subset + spec) and run through
`sweep.runner.run_study`, as `sweep run` would; its best trial is read back through the study record. Run it on
an otherwise idle machine: other processes on the cores distort every time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("SWEEP_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path[:0] = [str(ROOT), str(HERE)]

from task_studies import STUDIES  # noqa: E402  (benchmarks/ is not a package: its folder is put on the path)


def log(message: str) -> None:
    print(f"[bench-tasks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    tasks = [task for task, _ in STUDIES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=tasks, default=tasks, metavar="TASK",
                        help=f"tasks to run ({', '.join(tasks)}; default all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/sweep-bench-tasks"),
                        help="scratch folder for data subsets, stores and checkpoints (emptied per task)")
    parser.add_argument("--results", type=Path, default=HERE,
                        help="folder for TASKS.md and tasks.json (default: benchmarks/)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared datasets folder")
    return parser.parse_args(argv)


def run_task(task: str, module_name: str, work: Path, shared: Path) -> dict[str, Any]:
    """Build the task's study, run it, and read back its best trial, trial counts and timings."""
    import yaml

    from record import FINISHED, best_trial, read_study, read_trial
    from sweep.runner import run_study

    module = importlib.import_module(f"task_studies.{module_name}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spec = module.build(work, shared)
    path = work / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    log(f"{task}: {module.DESCRIPTION}")
    started = time.perf_counter()
    result = run_study(path)
    seconds = time.perf_counter() - started
    study = result.study
    best = best_trial(study)
    trials = study.get_trials(deepcopy=False)
    records = [read_trial(t) for t in trials]
    train_seconds = sum(r.timings.train for r in records if r.timings)
    examples = sum(r.timings.train_examples for r in records if r.timings)
    baseline = module.baseline(work) if hasattr(module, "baseline") else None
    metric = read_study(study).metric
    outcome = {
        "task": task,
        "description": module.DESCRIPTION,
        "metric": metric,
        "best_value": None if best is None else best.value,
        "best_trial": None if best is None else best.number,
        "best_hyperparameters": None if best is None else read_trial(best).all_hyperparameters,
        "best_epoch": None if best is None else read_trial(best).best_epoch,
        "baseline": None if baseline is None else {"name": baseline[0], "value": baseline[1]},
        "trials": len(trials),
        "finished": sum(t.state in FINISHED for t in trials),
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "wall_seconds": round(seconds, 1),
        "train_examples_per_second": round(examples / train_seconds, 1) if train_seconds else None,
        "spec": spec,
    }
    shown = "none" if best is None else f"{best.value:.4f}"
    log(f"{task}: best {metric} {shown} in {seconds:.0f} s")
    return outcome


def machine() -> dict[str, Any]:
    import optuna
    import pytorch_lightning
    import torch
    import transformers

    return {
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "optuna": optuna.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
    }


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def write_results(results: dict[str, dict[str, Any]], facts: dict[str, Any], folder: Path, command: str) -> None:
    """tasks.json (every number) and TASKS.md (a table, the command, the machine), in STUDIES order."""
    ordered = [results[task] for task, _ in STUDIES if task in results]
    (folder / "tasks.json").write_text(json.dumps({"machine": facts, "studies": ordered}, indent=2) + "\n")
    rows = [
        "| task | data | metric | best | trivial baseline | trials (complete / pruned) | wall time | train ex/s |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for r in ordered:
        base = r["baseline"]
        baseline = "-" if base is None else f"{_value(base['value'])} ({base['name']})"
        rows.append(
            f"| {r['task']} | {r['description']} | {r['metric']} | **{_value(r['best_value'])}** | {baseline} | "
            f"{r['trials']} ({r['complete']} / {r['pruned']}) | {r['wall_seconds']:.0f} s | "
            f"{r['train_examples_per_second'] or '-'} |"
        )
    best = [
        f"- {r['task']}: trial {r['best_trial']}, best epoch {r['best_epoch']}, "
        + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in sorted((r["best_hyperparameters"] or {}).items()))
        for r in ordered
    ]
    text = f"""# One small study per task (MiniLM, this machine)

Measured {facts['date']} on {facts['cpus']} CPU cores{f", GPU {facts['gpu']}" if facts['gpu'] else ""} (torch
{facts['torch']}, transformers {facts['transformers']}, optuna {facts['optuna']}, Lightning
{facts['pytorch_lightning']}), one study after the other on an otherwise idle machine:

```bash
{command}
```

Each study is `sweep run` on the spec its `benchmarks/task_studies/<task>.py` writes (the spec is in `tasks.json`):
the packaged all-MiniLM-L6-v2, TPE over the learning rate (and the batch size where the spec searches it), sweep's
default median pruner, best-epoch scoring. Wall time is the whole `run_study` (data preparation and tokenising,
model loads, training, validation, checkpoints). One seed: these figures show what a small study of each task
reaches and costs on a laptop-class CPU; they are not a comparison with another tool.

{chr(10).join(rows)}

Best trials:

{chr(10).join(best)}
"""
    (folder / "TASKS.md").write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.data.is_dir():
        print(f"error: {args.data}: the shared datasets folder is missing (set SWEEP_SHARED_DATA)", file=sys.stderr)
        return 2
    previous = args.results / "tasks.json"
    results: dict[str, dict[str, Any]] = {}
    if previous.is_file():  # a partial run replaces only the tasks it ran
        results = {r["task"]: r for r in json.loads(previous.read_text())["studies"]}
    modules = dict(STUDIES)
    for task in args.tasks:
        results[task] = run_task(task, modules[task], args.work / task, args.data)
    facts = {**machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    command = ".venv/bin/python benchmarks/bench_tasks.py" + (
        "" if set(args.tasks) == set(modules) else " --tasks " + " ".join(args.tasks)
    )
    write_results(results, facts, args.results, command)
    log(f"wrote {args.results / 'TASKS.md'} and {args.results / 'tasks.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
