"""Plain facts about a study's trials, read through the study record: states, durations, hyperparameters, time
saved by pruning."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from record import (
    FINISHED,
    maximizes,
    ranked,
    read_study,
    read_trial,
    reevaluation_runs,
    reported_value,
    trial_seconds,
)
from reports.advice import (
    TOP,
    advice_lines,
    collapsed_side_of,
    collapsed_trials_advice,
    learning_advice,
    model_learning_warning,
    score_learning_advice,
    seed_flip_advice,
)

# The scores a best trial is summed up by (report, `sweep status`), whichever of them its task records.
HEADLINE_METRICS = ("val_f1_binary", "val_accuracy", "val_f1_macro", "val_f1_micro", "val_precision_micro",
                    "val_recall_micro", "val_f1_weighted",
                    "val_spearman", "val_pearson", "val_rmse", "val_mae", "val_mse", "val_loss")


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline scores a trial recorded, in order; a regression's loss is its MSE, named once as `mse` (the card's
    name), not a second time as `loss`."""
    return {k: metrics[k] for k in HEADLINE_METRICS if k in metrics and not (k == "val_loss" and "val_mse" in metrics)
            and not (k in SAME_AS_ACCURACY and "val_accuracy" in metrics)}


# One label per row: micro precision and recall are the accuracy again (said once)
SAME_AS_ACCURACY = ("val_precision_micro", "val_recall_micro")

STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


def metric_name(study: optuna.Study) -> str:
    """The study's metric as views name it (`f1_macro`, `f1_binary of 'spam'`, ...), or `value` when the study does not
    say."""
    return read_study(study).metric_label or "value"


def is_single_objective(study: optuna.Study) -> bool:
    """True for studies with one objective (the only kind these reports explain)."""
    return len(study.directions) == 1


def completed(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials with a finite value, by trial number."""
    return sorted(ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))), key=lambda t: t.number)


def search_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials the search drew: without the re-evaluation runs of `sweep reevaluate` (configurations already
    drawn, re-trained with new seeds)."""
    return [t for t in trials if read_trial(t).reevaluates is None]


def completed_values(study: optuna.Study) -> list[float]:
    """The values of the completed trials the search drew (re-evaluation runs left out: they are not draws)."""
    return [float(t.values[0]) for t in search_trials(completed(study))]


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The `k` best completed search trials, best first (the study record's one ranking; a re-evaluation run is not
    a configuration of its own)."""
    trials = search_trials(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return ranked(trials, maximize=maximizes(study))[:k]


def _dict_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def study_advice(study: optuna.Study) -> list[str]:
    """What to try next (`reports.advice`): searched ranges the best trials sit at the edge of, a small budget."""
    record = read_study(study)
    search = record.spec.get("search")
    search = search if isinstance(search, dict) else {}
    trials = study.get_trials(deepcopy=False)
    drawn = search_trials(trials)  # re-evaluation runs are no draws of the search, and `--n-trials` leaves them out
    extra = reevaluation_runs(trials)
    budget = record.budget - extra if record.budget is not None else search.get("n_trials")
    leaders = top_trials(study, TOP)
    best = read_trial(leaders[0]) if leaders and leaders[0].state == TrialState.COMPLETE else None
    learning = learning_advice(
        value=best.value if best is not None else None, metric=record.metric, maximize=maximizes(study),
        confusion=best.confusion_matrix if best is not None else None, label_names=record.label_names,
        weighted=(record.spec.get("model") or {}).get("class_weights") == "balanced", task=record.task,
        per_class=best.per_class, rows=_validation_rows(record),
    ) if best is not None else []  # fmt: skip
    if record.task == "regression":
        rmses = [r for t in completed(study) if isinstance(r := read_trial(t).metrics.get("val_rmse"), int | float)]
        learning += score_learning_advice(rmses, _dict_of(record.data_report.get("label_distribution")), record.metric)
    if learning:  # nothing learned: which ranges the (meaningless) leaders sit at says nothing
        return learning
    collapsed, learned = learning_split(study, record)
    lines = advice_lines(record.search_space or None, [t.params for t in leaders],
                         completed=len(search_trials(completed(study))),
                         finished=sum(t.state in FINISHED for t in drawn), budget=budget,
                         sampler=search.get("sampler"), reevaluated=extra > 0,
                         best_epochs=[read_trial(t).best_epoch for t in leaders],
                         collapsed_side=collapsed_side_of(collapsed, learned), study=study.study_name)  # fmt: skip
    return (collapsed_trials_advice(collapsed, learned, task=record.task, metric=record.metric)
            + seed_flip_advice(seed_flips(study, record)) + lines)


def learning_split(study: optuna.Study, record: Any) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """The search's complete trials that learned nothing (number, params; `reports.advice.model_learning_warning`)
    and the params of those that learned."""
    collapsed: list[tuple[int, dict[str, Any]]] = []
    learned: list[dict[str, Any]] = []
    for trial in search_trials(completed(study)):
        if _learned_nothing(study, record, trial):
            collapsed.append((trial.number, dict(trial.params)))
        else:
            learned.append(dict(trial.params))
    return collapsed, learned


def _learned_nothing(study: optuna.Study, record: Any, trial: FrozenTrial) -> bool:
    stored = read_trial(trial)
    rmse = stored.metrics.get("val_rmse")
    return model_learning_warning(value=trial.value, metric=record.metric, maximize=maximizes(study),
                                  confusion=stored.confusion_matrix, label_names=record.label_names,
                                  rmse=rmse if isinstance(rmse, int | float) else None,
                                  distribution=_dict_of(record.data_report.get("label_distribution")),
                                  task=record.task, per_class=stored.per_class,
                                  rows=_validation_rows(record)) is not None  # fmt: skip


def _validation_rows(record: Any) -> int | None:
    rows = record.data_report.get("num_validation")
    return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else None


def seed_flips(study: optuna.Study, record: Any) -> list[tuple[int, int, bool]]:
    """The re-evaluation runs (`sweep reevaluate`) that learned nothing where the trial whose settings they re-train
    learned, or learned where it did not: (run, trial, whether the run learned nothing)."""
    trials = {t.number: t for t in completed(study)}
    flips = []
    for run in trials.values():
        of = read_trial(run).reevaluates
        original = trials.get(of) if of is not None else None
        if original is None or read_trial(original).reevaluates is not None:
            continue
        run_nothing = _learned_nothing(study, record, run)
        if run_nothing != _learned_nothing(study, record, original):
            flips.append((run.number, original.number, run_nothing))
    return flips


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state, every state listed (`complete`, `pruned`, `failed`, `running`, `waiting`)."""
    counts = dict.fromkeys(STATE_NAMES.values(), 0)
    for trial in study.get_trials(deepcopy=False):
        counts[STATE_NAMES[trial.state]] += 1
    return counts


def hyperparameters(trial: FrozenTrial) -> dict[str, Any]:
    """Every hyperparameter of a trial: the recorded `hyperparameters` attr, with the searched params over it."""
    return read_trial(trial).all_hyperparameters


def planned_epochs(trial: FrozenTrial) -> int | None:
    """The number of epochs the trial was set to run, if known."""
    return read_trial(trial).planned_epochs


def epochs_run(trial: FrozenTrial) -> float | None:
    """Epochs the trial ran (0.33 when pruned a third into its first epoch): `epochs_run`, else
    `pruned_at_epoch`, else its number of reported evaluations."""
    record = read_trial(trial)
    for value in (record.epochs_run, record.pruned_at_epoch):
        if value is not None and value > 0:
            return value
    return len(trial.intermediate_values) or None


def searched_params(trials: Iterable[FrozenTrial]) -> list[str]:
    """Names of the searched parameters, in the order trials first suggested them."""
    return list(dict.fromkeys(name for t in trials for name in t.params))


def varying_params(trials: Sequence[FrozenTrial], names: Sequence[str]) -> list[str]:
    """The names among `names` that take at least two distinct values over `trials`."""
    return [n for n in names if len({repr(t.params[n]) for t in trials if n in t.params}) >= 2]


@dataclass(frozen=True)
class ComputeTime:
    """Summed wall time of the finished trials."""

    seconds: float
    trials: int


def compute_time(study: optuna.Study) -> ComputeTime:
    """Sum of the durations of the trials that finished (complete, pruned or failed)."""
    durations = [trial_seconds(t) for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    known = [d for d in durations if d is not None]
    return ComputeTime(seconds=float(sum(known)), trials=len(known))


# The overhead's parts (record.Timings.overhead_parts), as they are named on screen.
OVERHEAD_PARTS = {
    "train_loop": "training loop around its steps",
    "evaluation_loop": "metrics, best-weights copy and pruner around validation",
    "model_load": "model load",
    "data": "data module",
    "checkpoint": "checkpoint writes",
    "other": "set-up, tear-down and storage",
}


@dataclass(frozen=True)
class TimeSplit:
    """Where the finished trials' wall time went, summed over the trials whose timings carry the split."""

    total: float
    train_steps: float
    validation_forward: float
    overhead: float
    parts: dict[str, float]  # the overhead's parts, keys of OVERHEAD_PARTS
    trials: int

    @property
    def overhead_share(self) -> float:
        return self.overhead / self.total if self.total > 0 else 0.0


def time_split(study: optuna.Study) -> TimeSplit | None:
    """Training steps, validation forward passes and overhead over the finished trials (None: no trial measured
    them, e.g. a study recorded before the split)."""
    measured = [t for t in (read_trial(trial).timings for trial in study.get_trials(deepcopy=False, states=FINISHED))
                if t is not None and t.overhead_parts() is not None]  # fmt: skip
    if not measured:
        return None
    parts = dict.fromkeys(OVERHEAD_PARTS, 0.0)
    for timings in measured:
        for key, value in (timings.overhead_parts() or {}).items():
            parts[key] += value
    return TimeSplit(
        total=sum(t.total for t in measured),
        train_steps=sum(t.train_steps or 0.0 for t in measured),
        validation_forward=sum(t.validation_forward or 0.0 for t in measured),
        overhead=sum(t.overhead or 0.0 for t in measured),
        parts=parts,
        trials=len(measured),
    )


def describe_time_split(split: TimeSplit) -> str:
    """`81% training steps, 9% validation forward passes, 10% overhead (4% training loop around its steps, ...)`: the
    overhead's parts of at least 0.5% of the time, largest first."""
    def share(seconds: float) -> str:  # one decimal everywhere: whole percents shown beside 2.2% did not add up
        return f"{seconds / split.total:.1%}" if split.total > 0 else "0.0%"

    parts = sorted(((v, OVERHEAD_PARTS[k]) for k, v in split.parts.items() if split.total and v / split.total >= 0.005),
                   reverse=True)  # fmt: skip
    # semicolons between the parts (one part's name has commas); what is left under 0.5% each is "the rest", so the
    # parts add up to the overhead
    rest = split.overhead - sum(v for v, _ in parts)
    named = [f"{share(v)} {name}" for v, name in parts] + ([f"{share(rest)} the rest"] if parts and
                                                            split.total and rest / split.total >= 0.0005 else [])
    detail = f" ({'; '.join(named)})" if parts else ""
    return (f"{share(split.train_steps)} training steps, {share(split.validation_forward)} validation forward passes, "
            f"{share(split.overhead)} overhead{detail}")  # fmt: skip


@dataclass(frozen=True)
class PruningSavings:
    """Estimated training time pruning saved, and the pruned trials it could not be estimated for."""

    seconds: float
    epochs: float
    estimated: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)


def pruning_savings(study: optuna.Study) -> PruningSavings:
    """Per pruned trial: (planned epochs - epochs run) x (its duration / epochs run), summed."""
    seconds, epochs, estimated, unknown = 0.0, 0.0, [], []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        planned, ran, took = planned_epochs(trial), epochs_run(trial), trial_seconds(trial)
        if planned is None or ran is None or took is None:
            unknown.append(trial.number)
            continue
        left = max(planned - ran, 0)
        seconds += left * took / ran
        epochs += left
        estimated.append(trial.number)
    return PruningSavings(seconds=seconds, epochs=epochs, estimated=estimated, unknown=unknown)


def pruned_value(trial: FrozenTrial, maximize: bool = True) -> float | None:
    """A pruned trial's best reported value before it was stopped, or None."""
    return reported_value(trial, maximize=maximize)


def format_seconds(seconds: float) -> str:
    """`12.3 s`, `4 min 05 s`, `2 h 03 min`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


