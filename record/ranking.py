"""The one ranking of trials: direction-aware, NaN/inf-safe, the earlier trial first on ties.

Status, export, the checkpoint top-k rule, reports and the benchmark all rank through here, so "the best trial"
means the same thing everywhere. A configuration re-evaluated with new seeds (`sweep reevaluate`) groups its
original trial and its re-evaluation runs; its best run is the best of that group by the same ranking.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from record.trial import read_trial

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts towards a study's budget


class _Directed(Protocol):
    @property
    def directions(self) -> list[StudyDirection]: ...

    def get_trials(self, deepcopy: bool = ..., states: tuple[TrialState, ...] | None = ...) -> list[FrozenTrial]: ...


def maximizes(study: _Directed) -> bool:
    """True unless the study minimises its (first) objective."""
    return study.directions[0] != StudyDirection.MINIMIZE


def _finite_value(trial: FrozenTrial) -> float | None:
    values = trial.values
    if values is None or len(values) != 1 or not math.isfinite(values[0]):
        return None
    return float(values[0])


def ranked(trials: Iterable[FrozenTrial], *, maximize: bool = True) -> list[FrozenTrial]:
    """COMPLETE trials with a finite value, best first; on equal values the earlier trial comes first."""
    sign = -1.0 if maximize else 1.0
    scored = [(v, t) for t in trials if t.state == TrialState.COMPLETE and (v := _finite_value(t)) is not None]
    return [t for v, t in sorted(scored, key=lambda pair: (sign * pair[0], pair[1].number))]


def best_trial(study: _Directed) -> FrozenTrial | None:
    """The study's best COMPLETE trial with a finite value, or None."""
    order = ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), maximize=maximizes(study))
    return order[0] if order else None


def top_bar(study: _Directed, keep: int) -> float | None:
    """The value a trial has to beat to rank in the study's top `keep` now: the k-th best complete value, or None
    when fewer than `keep` trials completed (any finite value enters). It only rises as trials complete, so a value
    that does not beat it now never will."""
    order = ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), maximize=maximizes(study))
    return _finite_value(order[keep - 1]) if keep > 0 and len(order) >= keep else None


def beats(value: float, bar: float | None, *, maximize: bool) -> bool:
    """Whether `value` ranks above `bar` (`top_bar`'s answer; None: anything finite does). A tie does not: the
    earlier trial wins ties."""
    if not math.isfinite(value):
        return False
    return bar is None or (value > bar if maximize else value < bar)


def enters_top(study: _Directed, value: float, keep: int) -> bool:
    """Whether a new trial's value would rank in the study's top `keep` (a tie with the k-th does not: the earlier
    trial wins ties)."""
    return keep > 0 and beats(value, top_bar(study, keep), maximize=maximizes(study))


def reported_value(trial: FrozenTrial, *, maximize: bool = True) -> float | None:
    """A trial's value; for a trial without one (pruned, running), its best finite reported evaluation."""
    value = _finite_value(trial) if trial.state == TrialState.COMPLETE else None
    if value is not None:
        return value
    reported = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
    if not reported:
        return None
    return float(max(reported) if maximize else min(reported))


LIVE = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)  # a run that has finished or still will


def reevaluated(trials: Iterable[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    """Each configuration with re-evaluation runs (any state): its original trial's number -> its runs, the original
    first (when the study still holds it), then by trial number."""
    listed = sorted(trials, key=lambda t: t.number)
    records = [read_trial(t) for t in listed]
    groups: dict[int, list[FrozenTrial]] = {r.reevaluates: [] for r in records if r.reevaluates is not None}
    for trial, record in zip(listed, records, strict=True):
        if record.configuration in groups:
            groups[record.configuration].append(trial)
    return groups


def seed_leaders(trials: Iterable[FrozenTrial], *, maximize: bool = True) -> dict[int, FrozenTrial]:
    """The best completed run of each re-evaluated configuration (what `sweep export --by mean` may export)."""
    leaders = {}
    for configuration, runs in reevaluated(trials).items():
        order = ranked(runs, maximize=maximize)
        if order:
            leaders[configuration] = order[0]
    return leaders


def leads_configuration(study: _Directed, configuration: int, value: float) -> bool:
    """Whether a new run of `configuration` with `value` would be its best run (a tie keeps the earlier run)."""
    if not math.isfinite(value):
        return False
    maximize = maximizes(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    group = [t for t in trials if read_trial(t).configuration == configuration]
    order = ranked(group, maximize=maximize)
    if not order:
        return True
    best = _finite_value(order[0])
    assert best is not None
    return value > best if maximize else value < best


def reevaluation_runs(trials: Iterable[FrozenTrial]) -> int:
    """Re-evaluation runs that finished or still will: one per (configuration, seed), a retry counted once."""
    tags = set()
    for trial in trials:
        record = read_trial(trial)
        if record.reevaluates is not None and trial.state in LIVE:
            tags.add((record.reevaluates, record.seed))
    return len(tags)
