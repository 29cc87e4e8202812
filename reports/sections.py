"""The report's content: one set of sections per study, plus a comparison when there are several."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import plotly.graph_objects as go

from record import best_trial, maximizes, read_audit, read_study, read_trial
from reports.advice import RULES as ADVICE_RULES
from reports.advice import format_number, searched_space
from reports.audit import audit_blocks
from reports.blocks import Block, FigureBlock, ListBlock, NoteBlock, Score, Section, TableBlock
from reports.classes import class_blocks, classes_by_f1, per_class_table
from reports.data import data_blocks
from reports.entities import TOKEN_TASK, entity_blocks
from reports.figures import (
    HEIGHT,
    HistoryData,
    collect_confusion,
    collect_expected_performance,
    collect_history,
    collect_learning_curves,
    plot_best_so_far,
    plot_best_values,
    plot_expected_performance,
    plot_history,
    plot_learning_curves,
    plot_text,
)
from reports.importance import (
    ImportanceData,
    collect_importances,
    importance_caveats,
    importance_problem,
    plot_importances,
)
from reports.scores import scatter_blocks
from reports.seeds import collect_seed_ranking, seed_blocks
from reports.trials import (
    completed,
    completed_values,
    compute_time,
    describe_time_split,
    epochs_run,
    format_seconds,
    headline_metrics,
    hyperparameters,
    is_single_objective,
    metric_name,
    pruning_savings,
    searched_params,
    state_counts,
    study_advice,
    time_split,
    varying_params,
)

CONTOUR_PARAMS = ("learning_rate", "batch_size")
VISIBLE_BLUES = [[0.0, "#9ecae1"], [0.5, "#4292c6"], [1.0, "#08306b"]]  # plotly's Blues without its white end
MAX_ERROR_CHARS = 300
# The per-trial section's title where a task's differs from "Best trial: per class".
BEST_TRIAL_TITLES = {"regression": "Best trial: predicted vs true",
                     "token-classification": "Best trial: per entity type"}
MULTILABEL_METRICS = ("val_f1_micro_at_0.5", "val_exact_match")
MULTILABEL_NOTE = ("Multi-label: a label is predicted when its sigmoid score reaches the decision threshold, which is "
                   "tuned on the same validation set these scores are measured on (so they are somewhat optimistic; "
                   "f1_micro_at_0.5 is the untuned figure). Multi-label: no confusion matrix (a row may carry several "
                   "labels); support is the number of validation rows carrying the label.")


def slug(text: str) -> str:
    """A lowercase id made of letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _spec_get(study: optuna.Study, *path: str) -> Any:
    node: Any = read_study(study).spec
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def head_of(study: optuna.Study) -> str | None:
    """How the study's sequence head reads the encoder (model.pooling as it trains); None for a token task."""
    record = read_study(study)
    if record.task == "token-classification":
        return None
    if record.pooling_as_trained == "mean":
        return "mean of the token states (model.pooling: mean)"
    return "the architecture's own (model.pooling: cls)"


def _optuna_figure(make: Callable[[], go.Figure], title: str, height: int = HEIGHT) -> go.Figure:
    """An optuna.visualization figure, quietly built, with our title, height and template."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = make()
    fig.update_layout(title=plot_text(title), height=height, width=None, template="plotly_white")
    # a log axis's labels in plain exponents: plotly's SI prefixes read a learning rate of 4.5e-5 as "45μ"
    fig.for_each_xaxis(lambda axis: axis.update(exponentformat="e") if axis.type == "log" else None)
    fig.for_each_yaxis(lambda axis: axis.update(exponentformat="e") if axis.type == "log" else None)
    return fig


def _visible_lines(fig: go.Figure, maximize: bool) -> None:
    """Optuna's parallel coordinates colour each trial's line on plotly's "Blues", whose worst end is white: the
    worst trial vanished on the white page. The lines and the colour bar on VISIBLE_BLUES, the best trial darkest."""
    from plotly.colors import sample_colorscale

    lines = [t for t in fig.data if t.type == "scatter" and t.customdata is not None and len(t.customdata)]
    values = [float(t.customdata[0][1]) for t in lines]
    if not values:
        return
    low, high = min(values), max(values)
    for trace, value in zip(lines, values, strict=True):
        share = 1.0 if high == low else (value - low) / (high - low)
        trace.line.color = sample_colorscale(VISIBLE_BLUES, share if maximize else 1.0 - share)[0]
    for trace in fig.data:
        if trace.type == "scatter" and trace.marker is not None and trace.marker.colorscale is not None:
            trace.marker.colorscale = VISIBLE_BLUES


def _ticks_at_choices(fig: go.Figure, trials: Sequence[optuna.trial.FrozenTrial]) -> list[str]:
    """Optuna draws a parameter of numeric choices (batch_size 8, 16, 32) on a continuous axis and interpolates
    between them: ticks at the choices the trials drew, and the names of such parameters for the caption."""
    drawn: dict[str, set[float]] = {}
    for trial in trials:
        for name, value in trial.params.items():
            if isinstance(trial.distributions.get(name), optuna.distributions.CategoricalDistribution):
                drawn.setdefault(name, set()).add(value)
    named = []

    def mark(axis: Any) -> None:
        name = axis.title.text if axis.title is not None else None
        if name in drawn and axis.type != "category":
            axis.update(tickmode="array", tickvals=sorted(drawn[name]))
            named.append(name)

    fig.for_each_xaxis(mark)
    fig.for_each_yaxis(mark)
    return named


# --- summary ------------------------------------------------------------------------------------------------


def summary_blocks(study: optuna.Study) -> list[Block]:
    """Counts, compute time, time saved by pruning, the best trial and failed trials."""
    counts = state_counts(study)
    metric = metric_name(study)
    spent = compute_time(study)
    saved = pruning_savings(study)
    rows: list[list[Any]] = [["metric", f"validation {metric} ({'max' if maximizes(study) else 'min'}imised)"]]
    for label, path in (("encoder", ("model", "encoder")), ("sampler", ("search", "sampler")),
                        ("pruner", ("search", "pruner"))):
        value = _spec_get(study, *path)
        if value is not None:
            rows.append([label, value])
        if label == "encoder" and (head := head_of(study)) is not None:
            rows.append(["head", head])
    if _spec_get(study, "model", "class_weights") == "balanced":  # the loss: said where it is not the plain one
        rows.append(["loss", "cross-entropy with balanced class weights (model.class_weights: balanced)"])
    rows += [[name, value] for name, value in _trainer_rows([study])]  # the trainer settings it set, if any
    rows.append(["trials", ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "none"])
    rows.append(["total compute time", f"{format_seconds(spent.seconds)} over {spent.trials} trials that ended "
                 "(complete, pruned or failed)"])  # fmt: skip
    split = time_split(study)
    if split is not None:
        rows.append(["where trial time went", describe_time_split(split)
                     + (f" (over {split.trials} of {spent.trials} trials)" if split.trials < spent.trials else "")])
    if counts["pruned"]:
        rows.append(["time saved by pruning (estimate)",
                     f"{format_seconds(saved.seconds)} ({saved.epochs:.3g} epoch{'' if saved.epochs == 1 else 's'} "
                     "not run)"])
    total = sum(counts.values())
    blocks: list[Block] = [TableBlock(columns=["", ""], rows=rows, caption="Study")]
    if counts["pruned"]:
        text = ("Time saved by pruning is estimated per pruned trial as (planned epochs − epochs run) × "
                "(the trial's duration ÷ epochs run): each epoch not run is assumed to take as long as the average "
                "epoch the trial did run. That duration includes loading data and the model, so the estimate errs "
                "slightly high.")
        if saved.unknown:
            text += (f" Pruned trials {', '.join(map(str, saved.unknown))} lack planned epochs, epochs run or "
                     "a duration and are not counted.")
        blocks.append(NoteBlock(text))
    if not total:
        blocks.append(NoteBlock("This study has no trials yet.", missing=True))
    best = best_trial(study)
    if best is None and total:
        blocks.append(NoteBlock(f"No completed trial yet, so there is no best trial "
                                f"({counts['pruned']} pruned, {counts['failed']} failed, "
                                f"{counts['running']} running).", missing=True))
    if best is not None:
        blocks.append(best_trial_table(best, metric))
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    if failed:
        errors = [[t.number, (read_trial(t).failure or "no error recorded")[:MAX_ERROR_CHARS]] for t in failed]
        blocks.append(TableBlock(columns=["trial", "error"], rows=errors, caption="Failed trials"))
    return blocks


def best_epoch_of(trial: optuna.trial.FrozenTrial) -> str | None:
    """`2 of 3 run`, `0.68 of 1 run`: where the trial's best evaluation was, of the epochs it ran (None: unknown)."""
    record = read_trial(trial)
    if record.best_at is None:
        return None
    ran = epochs_run(trial)
    return f"{record.best_at} of {f'{round(ran, 2):g}' if ran is not None else record.planned_epochs or '?'} run"


def best_trial_table(best: optuna.trial.FrozenTrial, metric: str) -> TableBlock:
    """The best trial's number, value, best epoch, every hyperparameter and headline metrics."""
    record = read_trial(best)
    rows: list[list[Any]] = [["trial", trial_label(best)], [f"validation {metric}", Score(best.values[0])]]
    if (at := best_epoch_of(best)) is not None:
        rows.append(["best epoch", at])
    rows += [[f"hyperparameter: {k}", v] for k, v in hyperparameters(best).items()]
    metrics = record.metrics
    rows += [[f"best-epoch {k.removeprefix('val_')}", Score(v)] for k, v in headline_metrics(metrics).items()]
    if record.threshold is not None:  # task multi-label
        if record.label_thresholds:  # the metrics above are at these, not at the global value
            moved = sum(1 for v in record.label_thresholds.values() if v != record.threshold)
            rows += [["decision thresholds (tuned on validation)",
                      f"one per label ({moved} of {len(record.label_thresholds)} away from the global "
                      f"{record.threshold}); the metrics above are at them"]]
        else:
            rows += [["decision threshold (tuned on validation)", record.threshold]]
        rows += [[f"best-epoch {k.removeprefix('val_')}", Score(metrics[k])]
                 for k in MULTILABEL_METRICS if k in metrics]
    return TableBlock(columns=["", ""], rows=rows, caption=f"Best trial: {best.number}")


def advice_blocks(study: optuna.Study) -> list[Block]:
    """What to try next: best values at the edge of their searched range, a budget too small for the space."""
    lines = study_advice(study)
    if not lines:
        return [NoteBlock("Nothing to suggest: no best value sits at the edge of its searched range and the budget "
                          "allows at least 2 completed trials per searched parameter.")]
    ranges = any(not line.startswith(("learning:", "budget:", "sampler:", "space:")) for line in lines)
    return [ListBlock(lines), NoteBlock(ADVICE_RULES)] if ranges else [ListBlock(lines)]  # the rule of listed ranges


# --- figures per study --------------------------------------------------------------------------------------


def history_blocks(study: optuna.Study) -> list[Block]:
    data = collect_history(study)
    if not data.numbers and not data.pruned_numbers:
        return [NoteBlock("The optimization history needs at least 1 completed or pruned trial with a value; "
                          "this study has none.", missing=True)]
    return [FigureBlock("optimization-history", plot_history(data, metric_name(study)))]


def importance_blocks(study: optuna.Study, seed: int) -> list[Block]:
    problem = importance_problem(study)
    if problem:
        return [NoteBlock(problem, missing=True)]
    data = collect_importances(study, seed=seed)
    blocks: list[Block] = [NoteBlock(f"fANOVA (random forest, seed {seed}) and PED-ANOVA (which parameter values "
                                     "distinguish the top 10% of trials) over the completed trials, for the "
                                     "searched parameters that vary.")]
    if data.importances:
        blocks.append(FigureBlock("importance", plot_importances(data)))
    blocks += [NoteBlock(f"{name} importance could not be computed: {why}", missing=True)
               for name, why in data.errors.items()]
    blocks += [NoteBlock(line) for line in importance_caveats(len(completed(study)), data)]
    blocks += [NoteBlock(line) for line in _unvaried_lines(study, data)]
    return blocks


def _unvaried_lines(study: optuna.Study, data: ImportanceData) -> list[str]:
    """A line for each searched parameter left out because every completed trial drew one value of it (a user read
    "3 completed trials for 2 parameters" under a budget line naming 3)."""
    values: dict[str, set[Any]] = {}
    for trial in completed(study):
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(value)
    left_out = [n for n in searched_space(read_study(study).search_space) if n not in data.params and n in values]
    return [f"{name} is left out: every completed trial drew {format_number(next(iter(values[name])))} (it has no "
            "effect to measure yet)" for name in left_out if len(values[name]) == 1]


def parameter_blocks(study: optuna.Study) -> list[Block]:
    """Parallel coordinates, slice plots and the learning-rate × batch-size contour."""
    trials = completed(study)
    names = searched_params(trials)
    target = f"validation {metric_name(study)}"
    if not trials or not names:
        why = "no completed trial" if not trials else "no searched hyperparameter"
        return [NoteBlock(f"Parameter plots need completed trials with searched hyperparameters; this study has {why}.",
                          missing=True)]
    parallel = _optuna_figure(
        lambda: optuna.visualization.plot_parallel_coordinate(study, params=names, target_name=target),
        "Parallel coordinates")
    _visible_lines(parallel, maximizes(study))
    blocks: list[Block] = [
        FigureBlock("parallel-coordinate", parallel),
        FigureBlock("slice", _optuna_figure(
            lambda: optuna.visualization.plot_slice(study, params=names, target_name=target), "Slice plots")),
    ]
    missing = [p for p in CONTOUR_PARAMS if p not in names]
    if missing:
        blocks.append(NoteBlock(f"The contour of learning_rate × batch_size needs both searched; this study did not "
                                f"search {' or '.join(missing)} (searched: {', '.join(names)}).", missing=True))
    elif len(varying_params(trials, CONTOUR_PARAMS)) < 2 or len(trials) < 2:
        blocks.append(NoteBlock("The contour of learning_rate × batch_size needs at least 2 distinct values of each "
                                "among the completed trials.", missing=True))
    else:
        contour = _optuna_figure(
            lambda: optuna.visualization.plot_contour(study, params=list(CONTOUR_PARAMS), target_name=target),
            "Contour: learning_rate × batch_size", height=520)
        blocks.append(FigureBlock("contour", contour))
        for name in _ticks_at_choices(contour, trials):
            values = ", ".join(format_number(v) for v in sorted({t.params[name] for t in trials if name in t.params}))
            blocks.append(NoteBlock(f"{name} is a choice: the completed trials trained {values} "
                                    "(the ticks); the contour's colour between them is interpolated, not trained."))
    return blocks


def learning_curve_blocks(study: optuna.Study) -> list[Block]:
    curves = collect_learning_curves(study, best_trial(study))
    if not curves:
        return [NoteBlock("Learning curves need trials that reported at least one epoch; this study has none.",
                          missing=True)]
    return [FigureBlock("learning-curves", plot_learning_curves(curves, metric_name(study)))]


def distribution_blocks(study: optuna.Study) -> list[Block]:
    """EDF of completed values and the timeline of all trials."""
    blocks: list[Block] = []
    if completed(study):
        target = f"validation {metric_name(study)}"
        blocks.append(FigureBlock("edf", _optuna_figure(
            lambda: optuna.visualization.plot_edf(study, target_name=target),
            "Empirical distribution of trial values")))
    else:
        blocks.append(NoteBlock("The value distribution needs at least 1 completed trial; this study has 0.",
                                missing=True))
    if any(t.datetime_start is not None for t in study.get_trials(deepcopy=False)):
        blocks.append(FigureBlock("timeline", _optuna_figure(lambda: optuna.visualization.plot_timeline(study),
                                                             "Timeline of trials")))
    else:
        blocks.append(NoteBlock("The timeline needs trials with a start time; this study has none.", missing=True))
    return blocks


def expected_blocks(study: optuna.Study) -> list[Block]:
    values = completed_values(study)
    if not values:
        return [NoteBlock("Expected validation performance needs at least 1 completed trial; this study has 0.",
                          missing=True)]
    curve = collect_expected_performance(values, maximizes(study))
    blocks: list[Block] = [
        NoteBlock(f"The expected best validation {metric_name(study)} of n trials drawn at random (with replacement) "
                  f"from this study's {len(values)} completed trials, ±1 standard deviation (Dodge et al. 2019, "
                  f"“Show Your Work”). A curve still {'rising' if maximizes(study) else 'falling'} at the right says "
                  "more trials would likely help. "
                  "Re-evaluation runs (`sweep reevaluate`) are left out: they re-train configurations already drawn."),
        FigureBlock("expected-performance", plot_expected_performance({study.study_name: curve}, metric_name(study))),
    ]
    if len(values) == 1:
        blocks.append(NoteBlock("With 1 completed trial the curve is a single point.", missing=True))
    return blocks


def best_trial_blocks(study: optuna.Study) -> list[Block]:
    best = best_trial(study)
    if best is None:
        needed = ("Predicted against true scores need" if read_study(study).task == "regression"
                  else "Per-class scores and the confusion matrix need")  # fmt: skip
        return [NoteBlock(f"{needed} a completed trial; this study has none.", missing=True)]
    labels = read_study(study).label_names
    if read_study(study).task == "regression":
        return scatter_blocks(best, labels[0] if labels else "score")
    record = read_trial(best)
    if read_study(study).task == "multi-label":
        return multilabel_blocks(best.number, record.per_class, labels, record.threshold, record.label_thresholds)
    if read_study(study).task == TOKEN_TASK:
        return entity_blocks(best.number, record.per_class)
    examples = {(e["given"], e["predicted"]): e["text"] for e in record.confused_examples}
    return class_blocks(best.number, record.per_class, labels, collect_confusion(best, labels), examples=examples)


def multilabel_blocks(
    number: int,
    per_class: dict[str, Any],
    labels: Sequence[str],
    threshold: float | None,
    label_thresholds: dict[str, float],
) -> list[Block]:
    """A multi-label trial's per-label table (weakest first) with its threshold(s), and what the figures mean."""
    scores = classes_by_f1(per_class, labels)
    if not scores:
        return [NoteBlock(f"Trial {number} recorded no per-label scores.", missing=True)]
    table = per_class_table(number, scores)
    if label_thresholds:
        table = TableBlock(columns=[*table.columns, "threshold"],
                           rows=[[*row, label_thresholds.get(str(row[0]), threshold)] for row in table.rows],
                           caption=table.caption + "; each label's own decision threshold")  # fmt: skip
    elif threshold is not None:
        table = TableBlock(columns=table.columns, rows=table.rows,
                           caption=table.caption + f"; decision threshold {threshold:.2f} for every label")
    return [table, NoteBlock(MULTILABEL_NOTE)]


def study_sections(study: optuna.Study, *, seed: int, group: str | None, prefix: str) -> list[Section]:
    """Every section for one study."""
    if not is_single_objective(study):
        return [Section("Summary", f"{prefix}summary", group, [NoteBlock(
            f"This study has {len(study.directions)} objectives; reports explain single-objective studies only.",
            missing=True)])]
    parts: list[tuple[str, list[Block]]] = [
        ("Summary", summary_blocks(study)),
        ("What to try next", advice_blocks(study)),
        *([("Seed-robust selection", seeds)] if (seeds := seed_blocks(study)) else []),
        ("Optimization history", history_blocks(study)),
        ("Hyperparameter importance", importance_blocks(study, seed)),
        ("Hyperparameters and values", parameter_blocks(study)),
        ("Learning curves", learning_curve_blocks(study)),
        ("Value distribution and timeline", distribution_blocks(study)),
        ("Expected validation performance", expected_blocks(study)),
        (BEST_TRIAL_TITLES.get(read_study(study).task, "Best trial: per class"), best_trial_blocks(study)),
        ("Data", data_blocks(read_study(study).data_report)),
        *([("Annotation audit", audit)] if (audit := audit_blocks(read_audit(study), read_study(study).data_fingerprint,
                                                                  read_study(study).task)) else []),
    ]
    return [Section(title, f"{prefix}{slug(title)}", group, blocks) for title, blocks in parts]


# --- comparison ---------------------------------------------------------------------------------------------


def trial_label(trial: optuna.trial.FrozenTrial) -> int | str:
    """A trial's number, and for a re-evaluation run what it re-trains: its best single value is one more seed of
    that configuration, not a configuration of its own."""
    record = read_trial(trial)
    if record.reevaluates is None:
        return trial.number
    seed = f", seed {record.seed}" if record.seed is not None else ""
    return f"{trial.number} (re-evaluation run of trial {record.reevaluates}{seed})"


def _by_mean(study: optuna.Study) -> str | None:
    """The configuration with the best mean over its seeds (`sweep reevaluate`), or None for a study without any."""
    ranking = collect_seed_ranking([read_trial(t) for t in study.get_trials(deepcopy=False)],
                                   maximize=maximizes(study))  # fmt: skip
    winner = ranking.winner
    if winner is None:
        return None
    return f"trial {winner.configuration}: {winner.spread} over {len(winner.runs)} seeds"


# Trainer settings that change what a trial learns, with the value a stored spec leaves out (its default).
TRAINER_SETTINGS = {"lr_schedule": "linear", "accumulate_grad_batches": 1, "gradient_clip_val": "none",
                    "early_stopping_patience": "none"}


def _trainer_rows(studies: Sequence[optuna.Study]) -> list[list[Any]]:
    """A row per trainer setting that some study set (studies compared across schedules, say), else none."""
    rows = []
    for key, default in TRAINER_SETTINGS.items():
        values = [_spec_get(s, "trainer", key) for s in studies]
        if any(v is not None for v in values):
            rows.append([f"trainer.{key}", *(default if v is None else v for v in values)])
    return rows


def _leader_row(studies: Sequence[optuna.Study], bests: Sequence[optuna.trial.FrozenTrial | None]) -> list[list[Any]]:
    """`leads`: which study's best value is the best of them (the metric's direction), where every study has one on
    the same metric, the same task and the same direction; else no row (the notes above the table say why)."""
    if len(studies) < 2 or any(b is None for b in bests):
        return []
    if len({metric_name(s) for s in studies}) > 1 or len({read_study(s).task for s in studies}) > 1:
        return []
    if len({maximizes(s) for s in studies}) > 1:
        return []
    values = [b.values[0] for b in bests if b is not None]
    top = max(values) if maximizes(studies[0]) else min(values)
    way = "highest" if maximizes(studies[0]) else "lowest"
    return [[f"best of these ({way})", *("yes" if v == top else "" for v in values)]]


def comparison_table(studies: Sequence[optuna.Study]) -> TableBlock:
    """Each study's best trial side by side (one column per study), with every hyperparameter any of them has; the
    best by mean over seeds too where a study was re-evaluated."""
    bests = [best_trial(s) if is_single_objective(s) else None for s in studies]
    hps = [hyperparameters(b) if b is not None else {} for b in bests]
    keys = list(dict.fromkeys(k for hp in hps for k in hp))
    means = [_by_mean(s) if is_single_objective(s) else None for s in studies]
    rows: list[list[Any]] = [
        ["metric", *(metric_name(s) for s in studies)],
        ["best value", *(Score(b.values[0]) if b else None for b in bests)],
        *_leader_row(studies, bests),
        *([["best by mean over seeds", *(m or "not re-evaluated" for m in means)]] if any(means) else []),
        ["trial", *(trial_label(b) if b else None for b in bests)],
        ["best epoch", *(best_epoch_of(b) if b else None for b in bests)],
        ["encoder", *(_spec_get(s, "model", "encoder") for s in studies)],
        *([["head", *heads]] if any(heads := [head_of(s) for s in studies]) else []),
        *_trainer_rows(studies),
        *([k, *(hp.get(k) for hp in hps)] for k in keys),
    ]
    return TableBlock(columns=["study", *(s.study_name for s in studies)], rows=rows,
                      caption="Best trial of each study")


def _unlike_data_notes(studies: Sequence[optuna.Study]) -> list[Block]:
    """A note where the studies ran different tasks, or were scored on different data (other training or validation
    files; another encoder on the same files is what a comparison is for): one metric's name, other quantities."""
    records = [read_study(s) for s in studies]
    notes: list[Block] = []
    tasks = list(dict.fromkeys(r.task for r in records))
    if len(tasks) > 1:
        notes.append(NoteBlock(f"The studies ran different tasks ({', '.join(tasks)}): even a metric of the same name "
                               "measures different things in each, so their values are not comparable.", missing=True))
        return notes
    sources, sizes = {}, {}
    for study, record in zip(studies, records, strict=True):
        report = record.data_report
        # file names, not paths: the same file in another checkout, or uploaded to the service twice (each upload
        # has a folder of its own), is the same data; the rows each split kept tell apart files of one name
        sources[study.study_name] = (_file_name(report.get("train")),
                                     _file_name(report.get("validation")) or report.get("split"))  # fmt: skip
        sizes[study.study_name] = (report.get("num_train"), report.get("num_validation"))
    if len(set(sources.values())) > 1 or len(set(sizes.values())) > 1:
        said = "; ".join(f"{name}: {train} / {validation} ({sizes[name][0]} / {sizes[name][1]} rows)"
                         for name, (train, validation) in sources.items())  # fmt: skip
        notes.append(NoteBlock(f"The studies were trained and scored on different data ({said}): their values "
                               "compare the data as much as the models.", missing=True))
    return notes


def _file_name(source: Any) -> Any:
    """A data file's name without its folder (`hub:` sources and anything that is no path as they are)."""
    if not isinstance(source, str) or source.startswith("hub:"):
        return source
    return source.replace("\\", "/").rsplit("/", 1)[-1]


def comparison_section(studies: Sequence[optuna.Study]) -> Section:
    """Best-so-far curves, best values and expected-performance curves on shared axes, and the best trials."""
    usable = [s for s in studies if is_single_objective(s)]
    metrics = list(dict.fromkeys(metric_name(s) for s in usable if completed(s)))
    metric = metrics[0] if len(metrics) == 1 else "value"
    blocks: list[Block] = []
    if len(metrics) > 1:  # one axis for accuracy and Spearman would compare what cannot be compared
        blocks.append(NoteBlock(f"The studies optimise different metrics ({', '.join(metrics)}): their values are not "
                                "directly comparable, so no figure puts them on one axis (each study's own section "
                                "has its figures).", missing=True))
    blocks += _unlike_data_notes(usable)
    names = [s.study_name for s in usable]
    if len(set(names)) < len(names):
        names = [f"{n} [{i + 1}]" for i, n in enumerate(names)]
    histories: dict[str, HistoryData] = {n: collect_history(s) for n, s in zip(names, usable, strict=True)}
    with_values = {n: h for n, h in histories.items() if h.numbers}
    without = [n for n in names if n not in with_values] + [s.study_name for s in studies if s not in usable]
    if without:
        blocks.append(NoteBlock(f"No completed trial (left out of the figures): {', '.join(without)}.", missing=True))
    if with_values and len(metrics) == 1:
        blocks.append(FigureBlock("compare-best-so-far", plot_best_so_far(with_values, metric)))
        blocks.append(FigureBlock("compare-best-values", plot_best_values(
            list(with_values), [h.best_so_far[-1] for h in with_values.values()], metric)))
        curves = {n: collect_expected_performance(completed_values(s), maximizes(s))
                  for (n, h), s in zip(histories.items(), usable, strict=True) if h.numbers}
        blocks.append(FigureBlock("compare-expected-performance", plot_expected_performance(curves, metric)))
    blocks.append(comparison_table(studies))
    return Section("Comparison", "comparison", None, blocks)


def build_report(studies: Sequence[optuna.Study], *, seed: int = 0) -> list[Section]:
    """All sections: a comparison first when there are several studies, then each study's own sections."""
    if not studies:
        return [Section("No study", "no-study", None, [NoteBlock("No study was given.", missing=True)])]
    if len(studies) == 1:
        return study_sections(studies[0], seed=seed, group=None, prefix="")
    sections = [comparison_section(studies)]
    for i, study in enumerate(studies):
        sections += study_sections(study, seed=seed, group=study.study_name, prefix=f"s{i + 1}-")
    return sections
