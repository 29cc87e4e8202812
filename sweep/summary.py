"""Study results on screen: one line per finished trial, a table of trials, the best trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Group
from rich.table import Table
from rich.text import Text

from record import TrialRecord, best_trial, maximizes, read_study, read_trial, reported_value, trial_seconds
from reports.blocks import format_value
from reports.seeds import SEED_COLUMNS, collect_seed_ranking, seed_rows, winner_line
from reports.trials import describe_time_split, headline_metrics, study_advice, time_split
from sweep.artifacts import describe
from sweep.checkpoints import disk_usage, is_kept

_STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan", "WAITING": "dim"}


def format_params(params: dict[str, Any], sep: str = ", ") -> str:
    return sep.join(f"{k}={format_value(v)}" for k, v in params.items())


def _seconds(trial: FrozenTrial) -> str:
    seconds = trial_seconds(trial) if trial.datetime_complete is not None else None  # a running trial: "-"
    return f"{seconds:.1f}s" if seconds is not None else "-"


def trial_value(study: optuna.Study, trial: FrozenTrial) -> float | None:
    """The trial's value; for a pruned trial, its best validation value before it was stopped."""
    return reported_value(trial, maximize=maximizes(study))


def trial_line(study: optuna.Study, trial: FrozenTrial, metric: str) -> str:
    """One line for a trial that just ended, with the best so far."""
    state = trial.state.name
    value = trial_value(study, trial)
    record = read_trial(trial)
    parts = [f"trial {trial.number} {state}"]
    if record.reevaluates is not None:
        parts.append(reevaluation_note(record.reevaluates, record.seed))
    if record.retry_of is not None:
        parts.append(f"retry of trial {record.retry_of}")
    if record.warm_start is not None:
        parts.append("warm start")
    if value is not None:
        epoch = f" (best epoch {best_epoch_text(record)})" if record.best_epoch else ""
        before = " before it failed" if state == "FAIL" else ""  # not a result: the best evaluation it reached
        parts.append(f"{metric} {value:.4f}{epoch}{before}")
    if trial.params:
        parts.append(format_params(trial.params))
    parts.append(_seconds(trial))
    if state == "FAIL":
        parts.append(record.failure or "failed")
    best = best_trial(study)
    if best is not None:
        parts.append(f"best so far: trial {best.number} {best.value:.4f}")
    return " · ".join(parts)


def best_epoch_text(record: TrialRecord) -> str:
    """Where the trial's best evaluation was, of its planned epochs: "2/3", or "0.67/4" for one inside epoch 1
    (a trial pruned two thirds into its first epoch has not finished epoch 1)."""
    return f"{record.best_at}/{record.planned_epochs}"


def trials_table(study: optuna.Study) -> Table:
    metric = read_study(study).metric or "value"
    table = Table(title=f"study {study.study_name}", title_justify="left")
    for column in ("#", "state", metric, "best epoch", "checkpoint", "parameters", "duration"):
        table.add_column(
            column,
            justify="right" if column in ("#", metric, "best epoch", "duration") else "left",
            overflow="fold",
            min_width=len(column) if column != "parameters" else 24,
        )
    for trial in study.get_trials(deepcopy=False):
        value = trial_value(study, trial)
        record = read_trial(trial)
        note = record.failure if trial.state == TrialState.FAIL else None
        if record.reevaluates is not None:
            note = reevaluation_note(record.reevaluates, record.seed) + (f"; {note}" if note else "")
        if record.warm_start is not None:
            note = "warm start" + (f"; {note}" if note else "")
        table.add_row(
            str(trial.number),
            Text(trial.state.name, style=_STATE_STYLE.get(trial.state.name, "")),
            "-" if value is None else f"({value:.4f})" if trial.state == TrialState.FAIL else f"{value:.4f}",
            best_epoch_text(record) if record.best_epoch else "-",
            checkpoint_state(study, trial),
            Text(format_params(trial.params, sep="\n") + (f"\n[{note}]" if note else "")),
            _seconds(trial),
        )
    return table


def reevaluation_note(configuration: int, seed: int | None) -> str:
    """How a re-evaluation run is marked: not a new configuration, trial N's with another seed."""
    return f"re-evaluates trial {configuration}, seed {seed if seed is not None else '?'}"


def seeds_table(study: optuna.Study) -> Group | None:
    """Re-evaluated configurations ranked by mean ± std over their seeds, and whether the winner changed; None
    when no configuration was re-evaluated."""
    ranking = collect_seed_ranking([read_trial(t) for t in study.get_trials(deepcopy=False)],
                                   maximize=maximizes(study))  # fmt: skip
    if not ranking.rows:
        return None
    table = Table(title="configurations by mean over seeds (sweep reevaluate)", title_justify="left")
    for column in SEED_COLUMNS:
        table.add_column(column, justify="left" if column == "parameters" else "right", overflow="fold")
    for row in seed_rows(ranking):
        table.add_row(*("-" if v is None else format_value(v) if isinstance(v, float) else str(v) for v in row))
    line = winner_line(ranking)
    return Group(table, *([Text.assemble(("seeds: ", "bold"), line)] if line else []))


def checkpoint_state(study: optuna.Study, trial: FrozenTrial) -> str:
    """`kept` when the trial's best-epoch weights are on disk or in the artifact store, `deleted` when they were
    written and removed."""
    if is_kept(study, trial):
        return "kept"
    return "deleted" if read_trial(trial).checkpoint else "-"


def checkpoints_line(study: optuna.Study) -> str:
    record = read_study(study)
    root = record.checkpoint_dir
    if record.artifact_store is not None:
        trials = study.get_trials(deepcopy=False)
        kept_trials = [t for t in trials if is_kept(study, t)]
        artifacts = [t for t in kept_trials if read_trial(t).checkpoint_artifact]
        folders = f" (+{len(kept_trials) - len(artifacts)} in {root})" if len(kept_trials) > len(artifacts) else ""
        size = ""
        if record.artifact_store.get("store") == "filesystem":
            base = Path(record.artifact_store.get("path", "."))
            nbytes = sum((base / str(read_trial(t).checkpoint_artifact)).stat().st_size for t in artifacts)
            size = f", {nbytes / 1e6:.1f} MB"
        return f"checkpoints: {len(artifacts)} kept as artifacts{size} in {describe(record.artifact_store)}{folders}"
    if not root:
        return "checkpoints: none recorded for this study"
    kept = sum(is_kept(study, t) for t in study.get_trials(deepcopy=False))
    return f"checkpoints: {kept} kept, {disk_usage(Path(root)) / 1e6:.1f} MB in {root}"


def _trainer_line(spec: dict[str, Any]) -> str | None:
    """The stored spec's trainer settings that change what a trial learns, where set (see TrainerSpec)."""
    from pydantic import ValidationError

    from sweep.spec import TrainerSpec

    size = (spec.get("search") or {}).get("space", {}).get("batch_size")
    try:
        return TrainerSpec.model_validate(spec.get("trainer") or {}).learning_settings_line(size)
    except ValidationError:  # a spec stored by a later version: nothing said rather than a crash
        return None


def threshold_line(threshold: float | None, per_label: dict[str, float], metrics: dict[str, float]) -> str | None:
    """Task multi-label: the decision threshold(s) the best trial's scores were taken at (tuned on validation), and
    its micro-F1 at the untuned 0.5 for comparison; None for other tasks."""
    if threshold is None:
        return None
    untuned = metrics.get("val_f1_micro_at_0.5")
    at_half = f"; micro-F1 at 0.5: {untuned:.4f}" if isinstance(untuned, int | float) else ""
    if per_label:
        low, high = min(per_label.values()), max(per_label.values())
        return (f"decision thresholds: one per label, {low:.2f} to {high:.2f} (tuned on validation; labels absent "
                f"from it use {threshold:.2f}){at_half}")
    return f"decision threshold: {threshold:.2f} (tuned on validation){at_half}"


def best_summary(study: optuna.Study) -> Group | Text:
    """The best trial: value, epoch, every hyperparameter, headline metrics."""
    best = best_trial(study)
    counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    tally = ", ".join(f"{n} {name.lower()}" for name, n in counts.items() if n)
    if best is None:
        return Text(f"no completed trial yet ({tally or 'no trials'})")
    metric = read_study(study).metric_label or "value"
    record = read_trial(best)
    lines: list[Text | Group] = [
        Text.from_markup(
            f"[bold]best trial {best.number}[/]: validation {metric} = [bold]{best.value:.4f}[/] "
            f"at epoch {best_epoch_text(record) if record.best_epoch else '?'} ({tally})"
        ),
        Text("hyperparameters: " + format_params(record.hyperparameters or best.params)),
    ]
    if (trainer := _trainer_line(read_study(study).spec)) is not None:
        lines.append(Text(trainer))
    metrics = record.metrics
    headline = {k: v for k, v in headline_metrics(metrics).items() if k != "val_loss"}
    if headline:
        lines.append(Text("metrics: " + ", ".join(f"{k.removeprefix('val_')}={v:.4f}" for k, v in headline.items())))
    if (threshold := threshold_line(record.threshold, record.label_thresholds, metrics)) is not None:
        lines.append(Text(threshold))
    lines.append(Text(checkpoints_line(study)))
    split = time_split(study)
    if split is not None:
        lines.append(Text(f"trial time ({split.trials} finished trial{'' if split.trials == 1 else 's'}): "
                          f"{describe_time_split(split)}"))
    seeds = seeds_table(study)
    if seeds is not None:
        lines.append(seeds)
    lines += [Text.assemble(("next: ", "bold yellow"), line) for line in study_advice(study)]
    return Group(*lines)
