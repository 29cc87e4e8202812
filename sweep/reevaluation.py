"""`sweep reevaluate`: re-train a study's K best configurations with S new seeds each, as trials of the same study.

Fine-tuning results swing by several points with the seed alone (Dodge et al. 2020; Mosbach et al. 2021), so the
single best trial is often a lucky seed. Each re-evaluation run is queued with Optuna's `enqueue_trial`: the
configuration's parameters, and in its record the trial it re-evaluates and the seed it must train with. Any worker
runs it (`sweep worker`, `sweep run`, this command); a killed one is retried like any trial, keeping both (Optuna's
retry copies the record). The objective trains it with that seed and never prunes it. The study's budget grows by
the runs queued, so the budget rules count them; running the command again queues only what is missing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from rich.console import Console

from record import LIVE, maximizes, ranked, read_study, read_trial, reevaluation_attrs, write_budget
from sweep.checkpoints import is_kept
from sweep.errors import SweepError
from sweep.internals import budget_lock
from sweep.joining import join
from sweep.progress import stderr_console
from sweep.runner import RunResult, finished_run, open_study, trial_settings, work
from sweep.storage import TAKEN_STATES, load_study, safe_url, sqlite_writer_lock
from sweep.worker import budget

SEED_STRIDE = 1000  # new seeds: the original's seed + 1000, + 2000, ... (apart from the search's seed + trial number)


@dataclass(frozen=True)
class Planned:
    """One re-evaluation run to queue."""

    configuration: int  # the number of the trial it re-evaluates
    seed: int
    params: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """The configurations to re-evaluate (best first), the runs they already have, and the runs to queue."""

    configurations: list[int]
    existing: dict[int, list[int]] = field(default_factory=dict)  # configuration -> seeds of runs finished or to come
    new: list[Planned] = field(default_factory=list)


def new_seeds(original: int, used: set[int], count: int) -> list[int]:
    """`count` seeds for a configuration: `original + 1000 i` for i = 1, 2, ..., skipping every seed it already
    used (deterministic: the same study gives the same seeds)."""
    seeds: list[int] = []
    step = 1
    while len(seeds) < count:
        candidate = original + SEED_STRIDE * step
        if candidate not in used:
            seeds.append(candidate)
        step += 1
    return seeds


def plan_reevaluations(
    trials: Sequence[FrozenTrial], *, top: int, seeds: int, maximize: bool, search_seed: int
) -> Plan:
    """The `top` best search trials (the study's one ranking; re-evaluation runs are not configurations of their
    own) and, for each, the runs that bring it to `seeds` re-evaluation seeds besides its original run.

    A run counts when it finished or still will (complete, pruned, running, queued); a failed run without a retry
    does not, and its seed is not used again."""
    records = {t.number: read_trial(t) for t in trials}
    search = [t for t in trials if records[t.number].reevaluates is None]
    plan = Plan(configurations=[t.number for t in ranked(search, maximize=maximize)[:top]])
    by_number = {t.number: t for t in trials}
    for number in plan.configurations:
        own = records[number].seed
        original = own if isinstance(own, int) else search_seed + number
        runs = [t for t in trials if records[t.number].reevaluates == number]
        used = {original} | {s for t in runs if isinstance(s := records[t.number].seed, int)}
        live = sorted({s for t in runs if t.state in LIVE and isinstance(s := records[t.number].seed, int)})
        plan.existing[number] = live
        fresh = new_seeds(original, used, max(seeds - len(live), 0))
        plan.new.extend(Planned(number, seed, dict(by_number[number].params)) for seed in fresh)
    return plan


def plan_lines(plan: Plan, study: optuna.Study, root: Path | None) -> list[str]:
    """What the plan does per configuration, and the configurations whose original run keeps no checkpoint."""
    lines = []
    metric = read_study(study).metric or "value"
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in plan.configurations:
        queued = [p.seed for p in plan.new if p.configuration == number]
        have = plan.existing.get(number, [])
        parts = []
        if have:
            parts.append(f"has {len(have)} re-evaluation run{'s' if len(have) != 1 else ''} (seeds "
                         f"{', '.join(map(str, have))})")
        parts.append(f"queued seeds {', '.join(map(str, queued))}" if queued else "nothing to add")
        lines.append(f"re-evaluate trial {number} ({metric} {by_number[number].value:.4f}): {'; '.join(parts)}")
    bare = [n for n in plan.configurations if not is_kept(study, by_number[n], root)]
    if bare:
        many = len(bare) > 1
        lines.append(f"note: trial{'s' if many else ''} {', '.join(map(str, bare))} "
                     f"{'keep' if many else 'keeps'} no checkpoint (search.keep_checkpoints): if "
                     f"{'one of them stays its' if many else 'it stays its'} configuration's best run, `sweep export "
                     "--by mean` cannot export it (its re-evaluation runs keep theirs)")
    return lines


def _check_input(top: int, seeds: int) -> None:
    problems = [(f"--{flag}", f"must be >= 1, got {value}") for flag, value in (("top", top), ("seeds", seeds))
                if value < 1]  # fmt: skip
    if problems:
        raise SweepError(problems)


def reevaluate_study(
    name: str,
    url: str,
    *,
    top: int,
    seeds: int,
    spec_path: str | Path | None = None,
    checkpoints: Path | None = None,
    console: Console | None = None,
) -> tuple[RunResult, Plan]:
    """Queue the missing re-evaluation runs of the `top` best configurations, raise the budget by as many, and run
    the study's queued trials in this process (as `sweep worker` would). Bad input writes nothing."""
    console = console or stderr_console()
    started = time.perf_counter()
    _check_input(top, seeds)
    current = load_study(name, url)  # read-only: a missing study or a newer record is refused here
    if not read_study(current).created_by_sweep:
        raise SweepError([("study", f"study {name!r} in {safe_url(url)} was not created by `sweep run`: `sweep "
                                    "reevaluate` re-trains the configurations of sweep's own studies")])
    search = [t for t in current.get_trials(deepcopy=False) if read_trial(t).reevaluates is None]
    if not ranked(search, maximize=maximizes(current)):
        raise SweepError([("study", f"study {name!r} has no completed trial to re-evaluate yet (run `sweep run` "
                                    "first)")])
    joined = join(name, url, spec_path=spec_path, checkpoints=checkpoints, console=console)
    study, spec = joined.study, joined.spec
    with sqlite_writer_lock(url):
        open_study(study, url, spec.search.n_trials, console, f"re-evaluating study [bold]{name}[/] in {safe_url(url)}")
        with budget_lock(study):  # two `reevaluate` at once: the second sees the first's runs, queues none twice
            plan = plan_reevaluations(study.get_trials(deepcopy=False), top=top, seeds=seeds,
                                      maximize=maximizes(study), search_seed=spec.search.seed)  # fmt: skip
            for run in plan.new:
                study.enqueue_trial(run.params, user_attrs=reevaluation_attrs(of=run.configuration, seed=run.seed))
            # The budget counts finished trials: it grows by the runs queued, and leaves room for every queued run.
            target = max(budget(study, spec.search.n_trials) + len(plan.new),
                         len(study.get_trials(deepcopy=False, states=TAKEN_STATES)))
            write_budget(study.set_user_attr, target)
        if len(plan.configurations) < top:
            console.print(f"--top {top}: the study has {len(plan.configurations)} completed search "
                          f"configuration{'s' if len(plan.configurations) != 1 else ''}, re-evaluating "
                          f"{'it' if len(plan.configurations) == 1 else 'all of them'}", highlight=False)  # fmt: skip
        for line in plan_lines(plan, study, checkpoints.resolve() if checkpoints else None):
            console.print(line, highlight=False)
        console.print(f"queued {len(plan.new)} re-evaluation run{'s' if len(plan.new) != 1 else ''}; the study's "
                      f"budget is {target} finished trials", highlight=False)
        settings = trial_settings(spec, joined.data, joined.encoder, joined.checkpoint_root,
                                  pooling=joined.record.pooling_as_trained)
        loop = work(study, spec, joined.data, settings, console, url)
    return finished_run(study, url, True, started, loop), plan
