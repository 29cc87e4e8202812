"""Hyperparameter importances by fANOVA and PED-ANOVA, side by side."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.figures import HEIGHT, PALETTE, plot_text
from reports.trials import completed, searched_params, varying_params

EVALUATORS = ("fANOVA", "PED-ANOVA")


@dataclass(frozen=True)
class ImportanceData:
    """Normalised importances per evaluator (params in a shared order), and evaluators that failed, with why."""

    params: list[str]
    importances: dict[str, dict[str, float]]
    errors: dict[str, str] = field(default_factory=dict)


def importance_problem(study: optuna.Study) -> str | None:
    """Why importances cannot be computed for this study, or None when they can."""
    trials = completed(study)
    if len(trials) < 2:
        return f"importance needs at least 2 completed trials; this study has {len(trials)}"
    names = searched_params(trials)
    if not names:
        return "importance needs at least 1 searched hyperparameter; the completed trials have none"
    if not varying_params(trials, names):
        return f"importance needs a searched hyperparameter that varies; every completed trial used the same " \
               f"{', '.join(names)}"
    if len({t.values[0] for t in trials}) < 2:
        return f"importance needs completed trials with different values; all {len(trials)} scored the same"
    return None


def _evaluator(name: str, seed: int) -> optuna.importance.BaseImportanceEvaluator:
    if name == "fANOVA":
        return optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return optuna.importance.PedAnovaImportanceEvaluator()


def _why(exc: Exception, completed_trials: int) -> str:
    """An evaluator's failure in words: the one fANOVA meets with too few trials said as such (a user's page showed
    "RuntimeError: Encountered zero total variance in all trees."), anything else as the library put it."""
    if "zero total variance" in str(exc):
        return (f"its trees found nothing to attribute in {completed_trials} completed trial"
                f"{'s' if completed_trials != 1 else ''} (too few, or values that barely differ); more trials help")
    return f"{type(exc).__name__}: {exc}"


def collect_importances(study: optuna.Study, seed: int = 0) -> ImportanceData:
    """Importances of the searched parameters that vary, from both evaluators (fANOVA seeded with `seed`)."""
    trials = completed(study)
    names = varying_params(trials, searched_params(trials))
    results: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    for evaluator in EVALUATORS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = optuna.importance.get_param_importances(study, evaluator=_evaluator(evaluator, seed),
                                                              params=names)
        except Exception as exc:  # one evaluator failing must not cost the report; say why instead
            errors[evaluator] = _why(exc, len(trials))
            continue
        results[evaluator] = {k: float(v) if math.isfinite(float(v)) else 0.0 for k, v in raw.items()}
    first = next(iter(results.values()), {})
    order = sorted(names, key=lambda n: (-first.get(n, 0.0), n))
    return ImportanceData(params=order, importances=results, errors=errors)


def plot_importances(data: ImportanceData) -> go.Figure:
    """Two horizontal bar charts, one per evaluator, parameters in the same order (most important on top)."""
    fig = make_subplots(rows=1, cols=len(EVALUATORS), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=list(EVALUATORS))
    params = list(reversed(data.params))  # plotly draws the first category at the bottom
    for col, evaluator in enumerate(EVALUATORS, start=1):
        values = data.importances.get(evaluator)
        if values is None:
            continue
        x = [values.get(p, 0.0) for p in params]
        fig.add_bar(x=x, y=[plot_text(p) for p in params], orientation="h", name=evaluator, row=1, col=col,
                    marker={"color": PALETTE[col - 1]}, text=[f"{v:.3f}" for v in x], textposition="outside",
                    cliponaxis=False, showlegend=False)
    # both panels on the same 0..1 scale (importances are normalised), with room for the labels
    fig.update_xaxes(title_text="importance (sums to 1)", range=[0, 1.15], tickvals=[0, 0.25, 0.5, 0.75, 1])
    fig.update_yaxes(type="category")
    fig.update_layout(title="Hyperparameter importance", template="plotly_white",
                      height=max(HEIGHT - 120, 160 + 40 * len(params)), margin={"l": 120, "r": 20, "t": 70, "b": 50})
    return fig


IMPORTANCE_TRIALS_PER_PARAM = 10  # below this many completed trials per parameter, a ranking is a hint at most


def importance_caveats(trials: int, data: ImportanceData) -> list[str]:
    """What an importance ranking from few trials does not show: said, not hidden (a reviewer read a 3-trial
    ranking, which the other method and another fANOVA seed ordered differently)."""
    lines = []
    need = IMPORTANCE_TRIALS_PER_PARAM * len(data.params)
    if trials < need:
        why = ("parameters drawn together cannot be told apart, and PED-ANOVA's top 10% is a trial or two"
               if len(data.params) > 1 else "PED-ANOVA's top 10% is a trial or two")
        lines.append(f"From {trials} completed trial{'s' if trials != 1 else ''} for {len(data.params)} parameter"
                     f"{'s' if len(data.params) != 1 else ''}: a rough hint, not a ranking ({why}); about {need} "
                     "would say more.")
    tops = {name: max(values, key=lambda k: values[k]) for name, values in data.importances.items() if values}
    if len(set(tops.values())) > 1:
        lines.append("The two methods disagree on the most important parameter ("
                     + ", ".join(f"{name}: {top}" for name, top in tops.items()) + "): neither ranking is settled.")
    return lines
