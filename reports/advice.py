"""What to try next, from plain data: searched ranges the best trials sit at the edge of, and budgets too small.

Pure functions over the spec's `search.space` dump (a range `{low, high, log, step}`, a list of choices, or a
fixed value per parameter) and the searched values of the best completed trials, best first. No Optuna, no
plotting: `sweep status` and the report both print these lines.

"At the edge", decided here once:
- a float range: within `EDGE_SHARE` (5 %) of its width from an end; for a `log: true` range, of its width in
  log space (2.9e-4 in [5e-5, 3e-4] is 98 % of the way up in log space: at the top);
- an int range (`low` and `high` both integers): the end value itself (the last value its `step` reaches);
- a list of choices: only a list of at least `MIN_ORDERED_CHOICES` (3) distinct numbers, whose smallest and
  largest values are its edges, whatever order they are listed in. With 2 choices every value is an edge, and a
  list holding anything but numbers has no order, so neither is ever called an edge.
A parameter is reported when the best trial is at an edge, or when most of the top `TOP` (3) trials are at the
same edge.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from models.hyperparameters import HYPERPARAMETER_LIMITS, Limit

EDGE_SHARE = 0.05
MIN_ORDERED_CHOICES = 3
TOP = 3
TRIALS_PER_PARAM = 2  # fewer completed trials than this many per searched parameter: the budget looks too small
# Random trials Optuna's model-based samplers draw before their model takes over (their `n_startup_trials`
# default, which sweep's make_sampler keeps; tests/test_reports_advice.py checks it against Optuna).
STARTUP_TRIALS = {"tpe": 10, "gp": 10}
RULES = (f"A parameter is listed when the best trial, or most of the top {TOP}, sits at an edge of its searched "
         f"range: within {EDGE_SHARE:.0%} of its width from an end (in log space for a log range), the end value "
         f"itself for an integer range, the smallest or largest of a list of {MIN_ORDERED_CHOICES} or more numbers. "
         f"The budget looks too small below {TRIALS_PER_PARAM} completed trials per searched parameter.")

Side = Literal["top", "bottom"]
EDGES: tuple[Side, Side] = ("top", "bottom")


# A suggestion never leaves the values the model accepts (the one statement of them, torch-free).
LIMITS: Mapping[str, Limit] = HYPERPARAMETER_LIMITS


@dataclass(frozen=True)
class Range:
    """A searched numeric range; `last` is the highest value its step reaches (`high` without a step)."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    is_int: bool = False

    @property
    def last(self) -> float:
        if self.step is None:
            return self.high
        return self.low + math.floor((self.high - self.low) / self.step + 1e-9) * self.step


@dataclass(frozen=True)
class Choices:
    """A searched list of choices (more than one value)."""

    values: list[Any]

    @property
    def ordered(self) -> list[float] | None:
        """The distinct values, ascending, when the list is numeric and long enough to have edges; else None."""
        if not all(_is_number(v) for v in self.values):
            return None
        distinct = sorted(set(self.values))
        return distinct if len(distinct) >= MIN_ORDERED_CHOICES else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def searched_space(space: Mapping[str, Any] | None) -> dict[str, Range | Choices]:
    """The searched parameters of a `search.space` dump: ranges, and lists of more than one choice.

    Fixed values are left out, and so is anything this code cannot read (a store written by other code).
    """
    out: dict[str, Range | Choices] = {}
    for name, value in (space or {}).items():
        if isinstance(value, Mapping) and _is_number(value.get("low")) and _is_number(value.get("high")):
            low, high, given = value["low"], value["high"], value.get("step")
            step = given if isinstance(given, int | float) and _is_number(given) and given > 0 else None
            is_int = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
            log = value.get("log") is True and low > 0
            out[str(name)] = Range(low=low, high=high, log=log, step=step, is_int=is_int)
        elif isinstance(value, list) and len(value) > 1:
            out[str(name)] = Choices(values=list(value))
    return out


def edge_of(value: Any, param: Range | Choices) -> Side | None:
    """Which end of the searched range (or ordered choices) `value` sits at, if either."""
    if not _is_number(value):
        return None
    if isinstance(param, Choices):
        ordered = param.ordered
        if ordered is None or value not in ordered:
            return None
        return "top" if value == ordered[-1] else "bottom" if value == ordered[0] else None
    low, last = param.low, param.last
    if last <= low:
        return None
    if param.is_int:
        if (last - low) / (param.step or 1) < 2:  # two values, as a list of 2 choices: every value is an edge
            return None
        return "top" if value >= last else "bottom" if value <= low else None
    if param.log:
        if value <= 0:
            return None
        share = (math.log(value) - math.log(low)) / (math.log(last) - math.log(low))
    else:
        share = (value - low) / (last - low)
    return "top" if share >= 1 - EDGE_SHARE else "bottom" if share <= EDGE_SHARE else None


def format_number(value: float) -> str:
    """`2.9e-4`, `0.05`, `128`: short, and in the notation a YAML spec takes."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return str(int(value))
    text = f"{value:.3g}"
    if "e" not in text and (abs(value) >= 1e-3 or value == 0):
        return text
    mantissa, exponent = f"{value:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _beyond(edge: float, value: float, side: Side) -> bool:
    return value > edge if side == "top" else value < edge


def _rounded(value: float, edge: float, side: Side, limit: Limit) -> float:
    """`value` with as few significant digits (2 to 6) as keep it beyond `edge` and allowed."""
    for digits in range(2, 7):
        candidate = float(f"{value:.{digits - 1}e}")
        if _beyond(edge, candidate, side) and limit.allows(candidate):
            return candidate
    return value


def _bounded(edge: float, candidate: float, side: Side, limit: Limit) -> float | None:
    """`candidate`, or the nearest value past `edge` the limit allows; None when `edge` is already the limit."""
    if limit.allows(candidate):
        return candidate
    bound, included = (limit.high, limit.high_included) if side == "top" else (limit.low, limit.low_included)
    if bound is None or not _beyond(edge, bound, side):
        return None
    return bound if included else (edge + bound) / 2


def widened(param: Range | Choices, side: Side, limit: Limit | None = None) -> float | None:
    """A value to widen the range (or list) to on `side`, within `limit`; None when it cannot go further.

    Log ranges double (or halve) the end; linear ranges grow by half their width (int ranges by whole steps);
    ordered choices continue their own progression (x2 for 16, 32, 64; +0.1 for 0.1, 0.2, 0.3).
    """
    limit = limit or Limit()
    sign = 1 if side == "top" else -1
    if isinstance(param, Choices):
        ordered = param.ordered
        if ordered is None:
            return None
        edge, inner = (ordered[-1], ordered[-2]) if side == "top" else (ordered[0], ordered[1])
        ratios = [b / a for a, b in zip(ordered, ordered[1:], strict=False) if a > 0]
        geometric = len(ratios) == len(ordered) - 1 and max(ratios) <= 1.1 * min(ratios) and min(ratios) >= 1.5
        candidate = edge * (edge / inner) if geometric else edge + (edge - inner)
        is_int = all(isinstance(v, int) for v in ordered)
    else:
        edge = param.last if side == "top" else param.low
        width = param.last - param.low
        if param.log:
            candidate = edge * 2 if side == "top" else edge / 2
        elif param.is_int:
            step = param.step or 1
            candidate = edge + sign * step * max(1, math.ceil(width / 2 / step))
        else:
            candidate = edge + sign * width / 2
        is_int = param.is_int
    bounded = _bounded(edge, candidate, side, limit)
    if bounded is None:
        return None
    if is_int:
        rounded = math.ceil(bounded) if side == "top" else math.floor(bounded)
        return rounded if _beyond(edge, rounded, side) and limit.allows(rounded) else None
    return _rounded(bounded, edge, side, limit)


@dataclass(frozen=True)
class EdgeAdvice:
    """One searched parameter whose best values sit at an end of its range."""

    name: str
    param: Range | Choices
    side: Side
    best: Any
    best_at_edge: bool
    at_edge: int  # of the top trials, how many sit at this edge
    top: int  # how many top trials were looked at
    suggestion: float | None
    peaked_early: int = 0  # epochs: top trials at the top edge not counted, their best evaluation came earlier

    @property
    def edge(self) -> float:
        """The end of the range (or list) the advice is about."""
        if isinstance(self.param, Choices):
            ordered = self.param.ordered or [math.nan]
            return ordered[-1] if self.side == "top" else ordered[0]
        return self.param.last if self.side == "top" else self.param.low

    @property
    def text(self) -> str:
        top = self.side == "top"
        if isinstance(self.param, Choices):
            span = "[" + ", ".join(format_number(v) for v in self.param.ordered or []) + "]"
            place = f"the {'largest' if top else 'smallest'} of the choices {span}"
        else:
            place = f"at the {self.side} of [{format_number(self.param.low)}, {format_number(self.param.high)}]"
        if not self.best_at_edge:
            head = f"{self.name}: {self.at_edge} of the top {self.top} trials are {place} (the best has " \
                   f"{format_number(self.best)})"
        elif self.top == 1:
            head = f"{self.name}: best {format_number(self.best)} is {place} (the only completed trial)"
        else:
            head = f"{self.name}: best {format_number(self.best)} is {place} ({self.at_edge} of the top {self.top} " \
                   f"trials {'is' if self.at_edge == 1 else 'are'})"
        if self.peaked_early:
            their = "its" if self.peaked_early == 1 else "their"
            head += (f"; {self.peaked_early} more at the top peaked before {their} last epoch, which says nothing "
                     "for more epochs")
        if self.suggestion is None:
            return (f"{head}, as far as {self.name} may go: nothing to widen; fix it at {format_number(self.edge)} to "
                    "spend the trials on the other parameters")
        new_study = " in a new study (another spec name: a study keeps its space)"
        if isinstance(self.param, Choices):
            return (f"{head}: add a {'larger' if top else 'smaller'} choice, e.g. {format_number(self.suggestion)},"
                    f"{new_study}")
        return (f"{head}: widen the range {'upwards' if top else 'downwards'}, e.g. "
                f"{'high' if top else 'low'}: {format_number(self.suggestion)},{new_study}")


def range_edges(
    space: Mapping[str, Any] | None,
    ranked: Sequence[Mapping[str, Any]],
    *,
    top: int = TOP,
    limits: Mapping[str, Limit] = LIMITS,
    best_epochs: Sequence[int | None] | None = None,
) -> list[EdgeAdvice]:
    """The searched parameters whose best trial, or most of the `top` best trials, sit at an edge.

    `ranked` holds the searched values (Optuna's `trial.params`) of completed trials, best first; `best_epochs`
    (aligned with it) the epoch of each one's best evaluation. A trial is scored by its best evaluation, so its
    `epochs` sits at the top edge only when that evaluation came in its last epoch: a trial that peaked at epoch 2
    of 4 says nothing in favour of more epochs.
    """
    leaders = list(ranked[:top])
    if not leaders:
        return []
    peaks = list(best_epochs or [])[: len(leaders)]
    peaks += [None] * (len(leaders) - len(peaks))
    out = []
    for name, param in searched_space(space).items():
        best = leaders[0].get(name)
        sides = [edge_of(params.get(name), param) for params in leaders]
        early = 0
        if name == "epochs":
            counted = [None if side == "top" and _peaked_early(params.get(name), peak) else side
                       for side, params, peak in zip(sides, leaders, peaks, strict=True)]  # fmt: skip
            early = sum(1 for before, after in zip(sides, counted, strict=True) if before != after)
            sides = counted
        side = sides[0] or next((s for s in EDGES if sides.count(s) * 2 > len(leaders)), None)
        if side is None:
            continue
        out.append(EdgeAdvice(name=name, param=param, side=side, best=best, best_at_edge=sides[0] == side,
                              at_edge=sides.count(side), top=len(leaders),
                              suggestion=widened(param, side, limits.get(name, Limit())),
                              peaked_early=early if side == "top" else 0))
    return out


def _peaked_early(epochs: Any, best_epoch: int | None) -> bool:
    return isinstance(epochs, int | float) and best_epoch is not None and best_epoch < epochs


def nothing_searched_line(budget: int) -> str:
    """A study whose space gives every hyperparameter one value (a spec without `search.space` does): its trials
    differ only in their seed. Said where the budget advice goes, and by `sweep run` when it creates one."""
    return (f"space: nothing is searched (search.space gives every hyperparameter one value), so the {budget} trials "
            "train one configuration with different seeds; give ranges or lists under search.space to search (e.g. "
            "learning_rate: {low: 1e-5, high: 1e-4, log: true}), or keep it to see how the seed moves one "
            "configuration")


def budget_advice(
    space: Mapping[str, Any] | None, *, completed: int, finished: int, budget: int | None, sampler: str | None,
    reevaluated: bool = False, study: str | None = None,
) -> list[str]:
    """Lines saying when the study has (or will have) too few completed trials for the parameters it searches,
    and when its budget never lets a model-based sampler past its random start.

    `finished` counts complete and pruned trials (what the budget counts); `budget` is the study's `n_trials`;
    `study`: its name, for the command that raises the budget without the spec (a study submitted to the service
    has no spec file on the reader's side).
    """
    names = list(searched_space(space))
    lines: list[str] = []
    if not names:
        return [nothing_searched_line(budget)] if space and budget is not None and budget > 1 else []
    need = TRIALS_PER_PARAM * len(names)
    room = max(budget - finished, 0) if budget is not None else 0
    short = completed + room < need
    startup = STARTUP_TRIALS.get(sampler or "")
    random_only = startup is not None and budget is not None and budget <= startup
    # One `--n-trials` for both lines: enough finished trials for `need` completed, and past the random start.
    enough = max(budget or 0, finished) + need - completed - room if short else 0
    raise_to = max(enough, 2 * startup if random_only and startup is not None else 0)
    past_start = f" (it also takes {sampler} past its random start)" if raise_to > enough else ""
    spec_less = f" (or sweep resume {shlex.quote(study)} --n-trials {raise_to} without the spec)" if study else ""
    if short:
        aside = ", the search's; re-evaluation runs aside" if reevaluated else ""
        of_budget = f" (n_trials {budget}{aside})" if budget is not None else ""
        lines.append(
            f"budget: {completed} completed trial{'s' if completed != 1 else ''}{of_budget} for {len(names)} searched "
            f"parameter{'s' if len(names) != 1 else ''} ({', '.join(names)}): too few to tell which values work; aim "
            f"for at least {need} completed ({TRIALS_PER_PARAM} per searched parameter), e.g. sweep run SPEC "
            f"--n-trials {raise_to}{past_start}{spec_less}, or fix some parameters at one value"
        )
    if random_only:
        lines.append(
            f"sampler: {sampler} draws its first {startup} trials at random (Optuna's n_startup_trials), so a budget "
            f"of {budget} never uses its model: raise it, e.g. sweep run SPEC --n-trials {raise_to}{spec_less}"
        )
    return lines


def _one_class(confusion: Sequence[Sequence[int]] | None, label_names: Sequence[str]) -> tuple[str, float] | None:
    """(the class, its share of validation) where a confusion matrix predicts one class for every row, else None."""
    if confusion and label_names and len(confusion) == len(label_names) > 1:
        predicted = [sum(row[j] for row in confusion) for j in range(len(label_names))]
        used = [j for j, n in enumerate(predicted) if n]
        if len(used) == 1:
            return label_names[used[0]], predicted[used[0]] and confusion[used[0]][used[0]] / predicted[used[0]]
    return None


CORRELATIONS = ("pearson", "spearman")  # a regression objective blind to the scores' scale and offset


def _label_list(names: Sequence[str], shown: int = 6) -> str:
    listed = ", ".join(repr(n) for n in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def one_label_set(per_class: Mapping[str, Any] | None, rows: int | None) -> list[str] | None:
    """task: multi-label: the labels a model predicts for every validation row, where it predicts the same set for
    all of them (its head's bias alone: the tuned threshold makes even an untrained model score about 0.24 micro-F1,
    never 0), else None. From the stored per-label scores: every label with validation rows is found in all of them
    (recall 1, predicted on every row: precision = support / rows) or in none (recall 0); at least one is found."""
    if not per_class or not rows:
        return None
    always = []
    for name, scores in per_class.items():
        if not isinstance(scores, Mapping):
            return None
        found = [scores.get(key) for key in ("support", "recall", "precision")]
        if not all(_is_number(v) for v in found):
            return None
        support, recall, precision = (float(v) for v in found if v is not None)
        if not support:
            continue
        if recall >= 1.0 - 1e-9 and abs(precision - support / rows) < 1e-9:
            always.append(str(name))
        elif recall > 1e-9:
            return None
    return always or None


def _scores_nothing(value: float | None, metric: str | None, maximize: bool) -> bool:
    """An F1, accuracy, precision or recall of 0 (any task), or a correlation of 0 or less (regression: a constant
    prediction's correlation is stored as 0)."""
    measured = metric is not None and metric.startswith(("f1", "accuracy", "precision", "recall", *CORRELATIONS))
    return value is not None and maximize and measured and value <= 0.0


def judged_by_mean(metric: str | None) -> bool:
    """Whether a regression model's learning is judged against always predicting the training mean (an error
    objective: rmse, mae, mse) rather than by its correlation: a model ranking the rows well (Spearman 0.26) may still
    miss the mean's RMSE on scale or offset, which a correlation objective does not ask for."""
    return metric is None or not metric.startswith(CORRELATIONS)


def _mean_baseline(distribution: Mapping[str, Any]) -> float | None:
    """task: regression: the validation RMSE of always predicting the training scores' mean (from the stored mean and
    population std of both splits), or None where they are not recorded."""
    train, val = distribution.get("train"), distribution.get("validation")
    if not isinstance(train, Mapping) or not isinstance(val, Mapping):
        return None
    try:
        return math.sqrt(float(val["std"]) ** 2 + (float(val["mean"]) - float(train["mean"])) ** 2)
    except (KeyError, TypeError, ValueError):
        return None


# A class this much of the rows makes a model that predicts only it look half right: class weights are the usual fix.
IMBALANCED_SHARE = 0.6


def learning_advice(
    *, value: float | None, metric: str | None, maximize: bool, confusion: Sequence[Sequence[int]] | None,
    label_names: Sequence[str],
    weighted: bool = True,
    task: str | None = None,
    per_class: Mapping[str, Any] | None = None,
    rows: int | None = None,
) -> list[str]:
    """A line when even the best trial learned nothing: it predicts one class for every validation row (single-label
    tasks, from its confusion matrix), or it scores 0 on an F1 or accuracy (any task). Ranges and budgets are no
    help then: the training itself (learning rate, epochs) or the data is. `weighted`: whether the loss weighs the
    classes (model.class_weights: balanced); where not, and the class it settled on is most of validation, the
    line says to."""
    fix = "raise the learning rate or the epochs, or check the labels"
    if (one := _one_class(confusion, label_names)) is not None:
        if not weighted and one[1] >= IMBALANCED_SHARE:
            fix += (f"; {one[0]!r} is {one[1]:.0%} of the rows: model.class_weights: balanced weighs the rarer "
                    "classes up in the loss")
        return [f"learning: the best trial predicts {one[0]!r} for every validation row (its accuracy {one[1]:.3f} is "
                f"that class's share): no trial learned to tell the classes apart; {fix}"]
    if task == "multi-label" and (same := one_label_set(per_class, rows)) is not None:
        return [f"learning: the best trial predicts the same labels for every validation row ({_label_list(same)}): "
                f"no trial learned to tell the rows apart; {fix}"]
    if _scores_nothing(value, metric, maximize) and task == "token-classification":
        return [f"learning: every trial scored {value:g} entity {metric}: no trial found an entity yet; raise the "
                "learning rate or the epochs (entity scores often stay at 0 for the first epoch or two), or check the "
                "tags"]
    if _scores_nothing(value, metric, maximize):
        return [f"learning: every trial scored {value:g} {metric}: no trial learned anything yet; {fix}"]
    return []


def model_learning_warning(
    *, value: float | None, metric: str | None, maximize: bool, confusion: Sequence[Sequence[int]] | None,
    label_names: Sequence[str], rmse: float | None = None, distribution: Mapping[str, Any] | None = None,
    task: str | None = None, per_class: Mapping[str, Any] | None = None, rows: int | None = None,
) -> str | None:
    """What `sweep export` warns of, and the model card says, about the one model it writes (not the study: an export
    of `--trial N` says nothing of the others): it predicts one class for every row, scores 0, or (regression) is no
    better than always predicting the training mean. None where it learned something."""
    if (one := _one_class(confusion, label_names)) is not None:
        return (f"this model predicts {one[0]!r} for every validation row (its accuracy {one[1]:.3f} is that class's "
                "share): it did not learn to tell the classes apart")
    if task == "multi-label" and (same := one_label_set(per_class, rows)) is not None:
        return (f"this model predicts the same labels for every validation row ({_label_list(same)}): it did not "
                "learn to tell the rows apart")
    if _scores_nothing(value, metric, maximize) and task == "token-classification":
        return f"this model scores {value:g} entity {metric} on validation: it found no entity"
    if _scores_nothing(value, metric, maximize):
        return f"this model scores {value:g} {metric} on validation: it did not learn the task"
    baseline = _mean_baseline(distribution or {}) if judged_by_mean(metric) else None
    if rmse is not None and baseline is not None and rmse >= baseline:
        return (f"this model's validation RMSE, {rmse:.4g}, is no better than always predicting the training mean "
                f"({baseline:.4g}): it did not learn the scores")
    return None


# What "learned nothing" means, per task (`model_learning_warning`'s cases that apply to it).
NOTHING_LEARNED = {
    "text-classification": "one class for every row, or a score of 0",
    "text-pair": "one class for every row, or a score of 0",
    "token-classification": "no entity found",
    "multi-label": "the same labels for every row, or a score of 0",
    "regression": "no better than always predicting the training mean",
    "regression by correlation": "a correlation of 0 or less with the true scores",
}


def collapsed_trials_advice(
    collapsed: Sequence[tuple[int, Mapping[str, Any]]], learned: Sequence[Mapping[str, Any]], task: str | None = None,
    metric: str | None = None,
) -> list[str]:
    """A line when some complete trials learned nothing (`model_learning_warning` says so of their models) while
    others learned: `collapsed` is (trial number, params) of those, `learned` the params of the rest. Where every
    collapsed trial's learning rate lies above (or below) every learned one's, the range's end to move is named: a
    learning rate too high for the encoder is the usual cause (the model settles on one class), too low the other."""
    if not collapsed or not learned:
        return []
    numbers = [n for n, _ in collapsed]
    trials = f"trial {numbers[0]}" if len(numbers) == 1 else f"trials {', '.join(map(str, numbers))}"
    kind = "regression by correlation" if task == "regression" and not judged_by_mean(metric) else task or ""
    meaning = NOTHING_LEARNED.get(kind, "one class for every row, a score of 0, or no better than the mean")
    line = f"learning: {trials} learned nothing ({meaning}) " \
           f"while {len(learned)} {'other' if len(learned) == 1 else 'others'} did"
    side = collapsed_side_of(collapsed, learned)
    bad, good = _learning_rates(collapsed, learned) or ([], [])
    # another setting that parts the two groups as cleanly: the learning rate is the usual cause, not a proven one
    also = "".join(f"; {name} parts them too ({values})" for name, values in _also_parting(collapsed, learned))
    hedge = ", the usual cause, though these trials cannot tell which setting it was" if also else ""
    if side == "top":
        return [f"{line}: each trained at a learning rate of {format_number(min(bad))} or more, above every one "
                f"that learned (up to {format_number(max(good))}){also}: lower learning_rate's high end to about "
                f"{format_number(max(good))}{hedge}"]
    if side == "bottom":
        return [f"{line}: each trained at a learning rate of {format_number(max(bad))} or less, below every one "
                f"that learned (from {format_number(min(good))}){also}: raise learning_rate's low end, or the "
                f"epochs{hedge}"]
    return [f"{line}: their settings are in the trials table"]


def seed_flip_advice(flips: Sequence[tuple[int, int, bool]]) -> list[str]:
    """A line for the re-evaluation runs whose outcome contradicts their trial's (`reports.trials.seed_flips`):
    whether those settings learn depends on the training seed, which one run per configuration cannot show (a
    re-evaluation collapsed at the learning rate the line above called safe)."""
    if not flips:
        return []
    said = "; ".join(f"trial {run} re-trained trial {of}'s settings with another seed and "
                     + ("learned nothing, where trial " + str(of) + " learned" if nothing
                        else "learned, where trial " + str(of) + " learned nothing")
                     for run, of, nothing in flips)  # fmt: skip
    return [f"learning: {said}: whether these settings learn depends on the seed, and one run per configuration "
            "cannot tell which learning rates are safe; choose by the mean over seeds (sweep export --by mean)"]


def _also_parting(
    collapsed: Sequence[tuple[int, Mapping[str, Any]]], learned: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """The settings other than learning_rate that part the trials that learned nothing from those that learned as
    cleanly ("epochs 1 against 2"): a number whose values in one group all lie above (or below) the other's, a choice
    whose values the groups share none of. (name, the two groups' values)."""
    bad_params = [p for _, p in collapsed]
    names = sorted({n for p in [*bad_params, *learned] for n in p} - {"learning_rate"})
    parting = []
    for name in names:
        bad = {p.get(name) for p in bad_params}
        good = {p.get(name) for p in learned}
        if None in bad or None in good or bad & good:
            continue
        if all(_is_number(v) for v in bad | good):
            low, high = [float(v) for v in bad if v is not None], [float(v) for v in good if v is not None]
            if not (max(low) < min(high) or min(low) > max(high)):
                continue  # a weight decay inside the learned ones' range parts nothing
        parting.append((name, f"{_values_text(bad)} against {_values_text(good)}"))
    return parting


def _values_text(values: set[Any]) -> str:
    shown = sorted(values, key=lambda v: (not _is_number(v), v if _is_number(v) else str(v)))
    return ", ".join(format_number(v) if _is_number(v) else str(v) for v in shown)


def collapsed_side_of(
    collapsed: Sequence[tuple[int, Mapping[str, Any]]], learned: Sequence[Mapping[str, Any]]
) -> Side | None:
    """"top" where every trial that learned nothing trained at a learning rate clearly higher (by RATE_GAP) than every
    one that learned, "bottom" where clearly lower, else None: rates 1% apart (1.06e-4 against 1.07e-4, where batch
    16 learned and batch 32 did not) say nothing about the learning rate."""
    rates = _learning_rates(collapsed, learned)
    if rates is None:
        return None
    bad, good = rates
    return ("top" if min(bad) > max(good) * RATE_GAP else "bottom" if max(bad) * RATE_GAP < min(good)
            else None)  # fmt: skip


# How far apart (a factor) the learning rates of the trials that learned nothing and of those that learned must be
# for the advice to name the learning rate as the difference
RATE_GAP = 1.25


def _learning_rates(
    collapsed: Sequence[tuple[int, Mapping[str, Any]]], learned: Sequence[Mapping[str, Any]]
) -> tuple[list[float], list[float]] | None:
    """The learning rates of both groups, or None where a group is empty or a trial's is not a number."""
    bad = [p.get("learning_rate") for _, p in collapsed]
    good = [p.get("learning_rate") for p in learned]
    if not bad or not good or not all(_is_number(v) for v in bad + good):
        return None
    return [float(v) for v in bad if v is not None], [float(v) for v in good if v is not None]


def score_learning_advice(
    rmses: Sequence[float], distribution: Mapping[str, Any], metric: str | None = None
) -> list[str]:
    """task: regression with an error objective (`judged_by_mean`): a line when no trial's RMSE beats always predicting
    the training scores' mean (what that constant scores on validation follows from the stored mean and population std
    of both splits). A correlation objective's "nothing" is a correlation of 0 (`learning_advice`)."""
    baseline = _mean_baseline(distribution) if judged_by_mean(metric) else None
    if not rmses or baseline is None:
        return []
    best = min(rmses)
    if best < baseline:
        return []
    return [f"learning: the lowest RMSE of any trial, {best:.4g}, is no better than always predicting the training "
            f"mean ({baseline:.4g} on validation): no trial learned the scores yet; raise the learning rate or the "
            "epochs, or check the score column"]


def advice_lines(
    space: Mapping[str, Any] | None,
    ranked: Sequence[Mapping[str, Any]],
    *,
    completed: int,
    finished: int,
    budget: int | None,
    sampler: str | None,
    best_epochs: Sequence[int | None] | None = None,
    reevaluated: bool = False,
    collapsed_side: Side | None = None,
    study: str | None = None,
) -> list[str]:
    """Every piece of advice for one study, as sentences: range edges first, then the budget. `collapsed_side`:
    where trials that learned nothing sit in learning_rate's range (`collapsed_side_of`), so no line says to widen
    it that way."""
    edges = [a for a in range_edges(space, ranked, best_epochs=best_epochs)
             if not (a.name == "learning_rate" and a.side == collapsed_side)]  # fmt: skip
    return [a.text for a in edges] + budget_advice(
        space, completed=completed, finished=finished, budget=budget, sampler=sampler, reevaluated=reevaluated,
        study=study,
    )
