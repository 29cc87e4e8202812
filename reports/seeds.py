"""Seed-robust selection: configurations re-trained with new seeds (`sweep reevaluate`), ranked by the mean of
their runs (the original trial counts as one seed), next to their single-seed value.

`collect_seed_ranking` is pure: plain trial records in, plain rows out (no Optuna study, no torch), so status,
the report and export rank configurations the same way; `seed_blocks` is the report's section.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from record import TrialRecord, maximizes, read_trial
from reports.blocks import Block, NoteBlock, Score, TableBlock, format_value

_PENDING = (TrialState.RUNNING, TrialState.WAITING)

SEED_NOTE = ("Each re-evaluated configuration is one of the study's best search trials re-trained with new seeds "
             "(`sweep reevaluate`); its mean and sample standard deviation are over its completed runs, the original "
             "trial counted as one seed. Configurations are ranked by mean (a smaller spread, then the earlier trial, "
             "first on ties); the single-seed value is the original trial's.")


@dataclass(frozen=True)
class SeedRun:
    """One completed run of a configuration."""

    number: int
    value: float
    seed: int | None


@dataclass(frozen=True)
class ConfigurationSeeds:
    """A re-evaluated configuration: its original trial, its completed runs and their spread."""

    configuration: int  # the number of its original (search) trial
    params: dict[str, Any]
    single: float | None  # the original trial's value (its single-seed result); None if it did not complete
    runs: list[SeedRun]  # completed runs with a finite value, original included, by trial number
    pending: int  # re-evaluation runs queued or running
    mean: float
    std: float | None  # sample standard deviation; None with a single run
    best_run: SeedRun  # the run with the best value (the earlier run on ties)

    @property
    def spread(self) -> str:
        """`0.8120 ± 0.0060`, or the one value."""
        return f"{self.mean:.4f}" + (f" ± {self.std:.4f}" if self.std is not None else "")


@dataclass(frozen=True)
class SeedRanking:
    """Re-evaluated configurations, best mean first, and the study's best single run."""

    rows: list[ConfigurationSeeds]
    maximize: bool
    best_single: SeedRun | None  # the best completed run of the whole study
    best_single_configuration: int | None
    search_best: SeedRun | None = None  # the search's own best run (re-evaluation runs left out): what it picked


    @property
    def winner(self) -> ConfigurationSeeds | None:
        return self.rows[0] if self.rows else None

    @property
    def changed(self) -> bool:
        """Whether the best configuration by mean is not the one the search picked (its best single run)."""
        picked = self.search_best.number if self.search_best is not None else self.best_single_configuration
        return self.winner is not None and self.winner.configuration != picked


def _finite(record: TrialRecord) -> bool:
    return record.state == TrialState.COMPLETE and record.value is not None and math.isfinite(record.value)


def _best(runs: Sequence[SeedRun], maximize: bool) -> SeedRun:
    sign = -1.0 if maximize else 1.0
    return min(runs, key=lambda r: (sign * r.value, r.number))


def collect_seed_ranking(trials: Sequence[TrialRecord], *, maximize: bool = True) -> SeedRanking:
    """Group each re-evaluated configuration's runs and rank the configurations by mean (direction-aware)."""
    by_number = {t.number: t for t in trials}
    groups: dict[int, list[TrialRecord]] = {t.reevaluates: [] for t in trials if t.reevaluates is not None}
    for record in sorted(trials, key=lambda t: t.number):
        if record.configuration in groups:
            groups[record.configuration].append(record)
    rows = []
    for configuration, members in groups.items():
        runs = [SeedRun(r.number, float(r.value), r.seed) for r in members if _finite(r) and r.value is not None]
        if not runs:
            continue
        values = [r.value for r in runs]
        original = by_number.get(configuration)
        rows.append(ConfigurationSeeds(
            configuration=configuration,
            params=dict(original.params if original is not None else members[0].params),
            single=original.value if original is not None and _finite(original) else None,
            runs=runs,
            pending=sum(r.reevaluates is not None and r.state in _PENDING for r in members),
            mean=statistics.fmean(values),
            std=statistics.stdev(values) if len(values) > 1 else None,
            best_run=_best(runs, maximize),
        ))  # fmt: skip
    sign = -1.0 if maximize else 1.0
    rows.sort(key=lambda c: (sign * round(c.mean, 12), c.std if c.std is not None else math.inf, c.configuration))
    completed = [SeedRun(t.number, float(t.value), t.seed) for t in trials if _finite(t) and t.value is not None]
    best = _best(completed, maximize) if completed else None
    searched = [r for r in completed if by_number[r.number].reevaluates is None]
    return SeedRanking(rows, maximize, best, by_number[best.number].configuration if best is not None else None,
                       _best(searched, maximize) if searched else None)  # fmt: skip


def winner_line(ranking: SeedRanking) -> str | None:
    """Which configuration is best by mean, and whether that differs from the one the search picked (its best run
    before any re-evaluation); the study's best single run where a re-evaluation run holds it."""
    winner, best = ranking.winner, ranking.best_single
    if winner is None or best is None:
        return None
    picked = ranking.search_best
    if picked is None:  # no search trial completed (its runs all re-evaluations): no pick of the search to name
        return f"by mean over {len(winner.runs)} seeds the best configuration is trial {winner.configuration}'s " \
               f"({winner.spread}; best single run {best.value:.4f}, trial {best.number})"
    n = len(winner.runs)
    pending = sum(c.pending for c in ranking.rows)
    tail = f" ({pending} re-evaluation run{'s' if pending != 1 else ''} still queued or running)" if pending else ""
    head = f"by mean over {n} seed{'s' if n != 1 else ''} the best configuration is"
    lead = f"; best single run {best.value:.4f}, trial {best.number}" if best.number != picked.number else ""
    if not ranking.changed:
        return (f"{head} still trial {winner.configuration}'s, the search's pick ({winner.spread}; its run "
                f"{picked.value:.4f}{lead}){tail}")
    single = next((c for c in ranking.rows if c.configuration == picked.number), None)
    over = f"mean {single.spread} over {len(single.runs)} seeds" if single is not None else "not re-evaluated"
    return (f"{head} trial {winner.configuration}'s ({winner.spread}), not trial {picked.number}'s, the search's pick "
            f"(its run {picked.value:.4f}; {over}{lead}){tail}")


SEED_COLUMNS = ["rank", "configuration (trial)", "seeds", "mean", "std", "single-seed value", "best run",
                "parameters"]


def seed_rows(ranking: SeedRanking) -> list[list[Any]]:
    """The ranking as table rows (`SEED_COLUMNS`)."""
    return [[i, c.configuration, len(c.runs) if not c.pending else f"{len(c.runs)} (+{c.pending} queued)",
             Score(c.mean), Score(c.std) if c.std is not None else None,
             Score(c.single) if c.single is not None else None,
             f"trial {c.best_run.number}: {c.best_run.value:.4f}",
             ", ".join(f"{k}={format_value(v)}" for k, v in c.params.items())]  # as the trials table gives them
            for i, c in enumerate(ranking.rows, 1)]


def seed_blocks(study: optuna.Study) -> list[Block]:
    """The report's "Seed-robust selection" section: the ranking by mean as a table, and whether the winner changed
    (empty when no configuration was re-evaluated)."""
    ranking = collect_seed_ranking([read_trial(t) for t in study.get_trials(deepcopy=False)],
                                   maximize=maximizes(study))  # fmt: skip
    if not ranking.rows:
        return []
    line = winner_line(ranking)
    blocks: list[Block] = [NoteBlock(line[0].upper() + line[1:] + ".")] if line else []
    blocks += [TableBlock(columns=SEED_COLUMNS, rows=seed_rows(ranking),
                          caption="Configurations by mean over seeds (best first)"), NoteBlock(SEED_NOTE)]
    return blocks
