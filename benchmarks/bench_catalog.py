"""What a worker without a study name pays to find work, as the store fills with studies.

Such a worker (`sweep worker --storage URL`, a service's workers) asks every few seconds which study to join. It
used to build every study's full summary for that (`sweep.catalog.list_studies`: each study's trials read, for the
best value and the workers); it now reads only the studies' attributes and the trials counted per study and state
(`sweep.catalog.study_progress`, two queries). `list_studies` still serves the studies page and `sweep status`.

The store is filled with finished sweep studies of `--trials` trials each (parameters, intermediate values and the
trial record's attributes, as `sweep run` leaves them), in steps up to each `--studies` count; at each step both reads
run `--repeats` times alternately, the median kept, and their answers are checked to agree.

    python benchmarks/bench_catalog.py --studies 50 100 200 --trials 20

Writes CATALOG.md and CATALOG.json (or --results). The store (--storage, default a SQLite file under --work) is reused
by a later run: studies already there count towards the steps.
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

FIELDS = ("state", "finished", "budget", "running", "queued", "priority", "submitted_at")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_catalog.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--studies", type=int, nargs="+", default=[50, 100, 200],
                        help="store sizes to measure at, in studies (ascending; default 50 100 200)")
    parser.add_argument("--trials", type=int, default=20, help="trials per study (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed reads of each kind per size (default 3)")
    parser.add_argument("--storage", default=None, help="store URL (default: a SQLite file under --work)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "catalog")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "catalog" / "CATALOG.md")
    args = parser.parse_args(list(argv))
    problems = [f"--{name} must be >= 1, got {getattr(args, name)}" for name in ("trials", "repeats")
                if getattr(args, name) < 1]  # fmt: skip
    if any(n < 1 for n in args.studies) or list(args.studies) != sorted(args.studies):
        problems.append(f"--studies must be ascending counts >= 1, got {' '.join(map(str, args.studies))}")
    if problems:
        parser.error("; ".join(problems))
    from sweep.store_checks import safe_url

    # the command and the store as written down: a password in --storage never reaches the results
    shown = [safe_url(item) if "://" in item else item for item in argv]
    args.command = shlex.join(["python", "benchmarks/bench_catalog.py", *shown])
    args.work, args.results = args.work.resolve(), args.results.resolve()
    if args.storage is None:
        args.work.mkdir(parents=True, exist_ok=True)
        args.storage = f"sqlite:///{args.work / 'catalog.db'}"
    return args


def fill(url: str, count: int, trials: int) -> float:
    """Finished sweep studies `bench-00000`, ... up to `count` in the store; seconds spent adding the missing ones."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    from record import StudyRecord, study_attrs, trial_attrs
    from sweep.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    distributions = {"learning_rate": FloatDistribution(1e-5, 1e-4, log=True),
                     "batch_size": CategoricalDistribution([16, 32]), "epochs": IntDistribution(1, 3)}  # fmt: skip
    present = {s.study_name for s in storage.get_all_studies()}
    started = time.perf_counter()
    for i in range(count):
        name = f"bench-{i:05d}"
        if name in present:
            continue
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        record = StudyRecord(spec={"name": name}, data_fingerprint="f" * 8, metric="f1_macro", budget=trials,
                             submitted_at=float(i))  # fmt: skip
        for key, value in study_attrs(record).items():
            study.set_user_attr(key, value)
        for j in range(trials):
            pruned = j % 3 == 2
            params = {"learning_rate": 1e-5 * (1 + j % 9), "batch_size": 16 if j % 2 else 32, "epochs": 1 + j % 3}
            steps = {1: 0.3, 2: 0.5} if pruned else {1: 0.3, 2: 0.5, 3: 0.6, 6: 0.7, 9: 0.7 + j / 1000}
            study.add_trial(create_trial(
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=None if pruned else 0.7 + j / 1000, params=params, distributions=distributions,
                intermediate_values=steps,
                user_attrs=trial_attrs(best_epoch=params["epochs"], epochs_run=float(params["epochs"]),
                                       seed=j, worker=f"host-{j % 4}:{1000 + j}"),
            ))  # fmt: skip
    storage.engine.dispose()
    return time.perf_counter() - started


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    answer = call()
    return time.perf_counter() - started, answer


def measure(url: str, repeats: int) -> dict[str, Any]:
    """Median seconds of `list_studies` (in a fresh process: every study read; and again at once, nothing changed:
    the studies page's next poll) and `study_progress`, alternating, and whether all three agree."""
    from sweep.catalog import forget_summaries, list_studies, study_progress

    full: list[float] = []
    again: list[float] = []
    light: list[float] = []
    agree = True
    for _ in range(repeats):
        forget_summaries()
        seconds, summaries = timed(lambda: list_studies(url))
        full.append(seconds)
        seconds, repeated = timed(lambda: list_studies(url))
        again.append(seconds)
        seconds, progress = timed(lambda: study_progress(url))
        light.append(seconds)
        shown = {s.name: tuple(getattr(s, f) for f in FIELDS) for s in summaries}
        agree &= repeated == summaries and shown == {p.name: tuple(getattr(p, f) for f in FIELDS) for p in progress}
    return {"list_studies_s": statistics.median(full), "list_studies_again_s": statistics.median(again),
            "study_progress_s": statistics.median(light), "list_studies_all_s": full,
            "list_studies_again_all_s": again, "study_progress_all_s": light, "agree": agree,
            "studies": len(summaries)}  # fmt: skip


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# A worker's look for work as the store fills: `list_studies` against `study_progress`",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cpus']} usable cores, optuna {machine['optuna']}; "
        f"{results['date']}; store "
        f"{results['storage']} ({results['dialect']}); {results['trials']} trials per study; the median of "
        f"{results['repeats']} reads of each kind per size, alternating.",
        "",
        "`list_studies` first reads every study's trials (a fresh process: `sweep status`, the service's first "
        "page); read again at once, nothing changed (the studies page's next poll), it reads no trial of a study "
        "whose trial counts and record are unchanged (none runs a trial here).",
        "",
        "| studies | trials in the store | `list_studies` (s) | `list_studies` again (s) | `study_progress` (s) "
        "| list / progress | same answer |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in results["steps"]:
        ratio = step["list_studies_s"] / step["study_progress_s"] if step["study_progress_s"] else float("inf")
        again = step.get("list_studies_again_s")
        lines.append(f"| {step['studies']} | {step['studies'] * results['trials']} | {step['list_studies_s']:.3f} | "
                     f"{'-' if again is None else f'{again:.3f}'} | "
                     f"{step['study_progress_s']:.3f} | {ratio:.0f}x | {'yes' if step['agree'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from bench_trainer import log, machine_facts

    args = parse_args(sys.argv[1:] if argv is None else argv)
    from sqlalchemy.engine import make_url

    from sweep.store_checks import safe_url

    results: dict[str, Any] = {
        "command": args.command, "storage": safe_url(args.storage),
        "dialect": make_url(args.storage).get_backend_name(),
        "trials": args.trials, "repeats": args.repeats, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_facts(), "steps": [],
    }  # fmt: skip
    for count in args.studies:
        seconds = fill(args.storage, count, args.trials)
        log(f"{count} studies in the store ({seconds:.0f} s to add the missing ones); timing both reads")
        step = measure(args.storage, args.repeats)
        results["steps"].append(step)
        log(f"{step['studies']} studies: list_studies {step['list_studies_s']:.3f} s (again "
            f"{step['list_studies_again_s']:.3f} s), study_progress "
            f"{step['study_progress_s']:.3f} s, same answer: {step['agree']}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    args.results.write_text(render(results), encoding="utf-8")
    log(f"wrote {args.results}")
    return 0 if all(step["agree"] for step in results["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
