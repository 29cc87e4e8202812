"""The spec's `task:` key: the tasks, the metrics each can optimise (and in which direction), and the task's rules
on `data`. Torch-free: the spec validates against it."""

from __future__ import annotations

from typing import Any, Literal

TASKS = ("text-classification", "text-pair", "token-classification", "multi-label", "regression")
DEFAULT_TASK = "text-classification"

# f1_binary: the F1 of one class, objective.positive_label (two classes: spam against ham, a rare class's detection)
_CLASSIFICATION = ("f1_macro", "f1_micro", "f1_weighted", "accuracy", "f1_binary")
# The `objective.metric` values each task can optimise; the first is the task's default.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "text-classification": _CLASSIFICATION,
    "text-pair": _CLASSIFICATION,
    # entity-level scores (seqeval): micro over entities is the task's usual headline figure
    "token-classification": ("f1_micro", "f1_macro", "precision_micro", "recall_micro"),
    "multi-label": ("f1_micro", "f1_macro"),
    "regression": ("spearman", "pearson", "rmse"),
}
# Metrics where lower is better: a study optimising one minimises.
MINIMIZED = frozenset({"rmse"})
# Tasks whose examples may be a pair of texts (data.text_pair_column).
PAIR_TASKS = ("text-pair", "regression")


def default_metric(task: str) -> str:
    """The metric a study of `task` optimises when the spec names none."""
    return TASK_METRICS.get(task, _CLASSIFICATION)[0]


def direction(metric: str) -> Literal["minimize", "maximize"]:
    """Optuna's study direction for `metric`."""
    return "minimize" if metric in MINIMIZED else "maximize"


def metric_problem(task: str, metric: str) -> str | None:
    """Why `metric` cannot be the objective of a `task` study, or None."""
    allowed = TASK_METRICS.get(task)
    if allowed is None or metric in allowed:
        return None
    import difflib

    close = [m for m in allowed if m.lower() == metric.lower()] or difflib.get_close_matches(metric, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{metric!r} is not a metric of task: {task} (choose one of {', '.join(allowed)}){hint}"


def task_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """`data.text_pair_column` given for a task without a second text, or missing for `task: text-pair`."""
    task, section = data.get("task", DEFAULT_TASK), data.get("data")
    if task not in TASKS or not isinstance(section, dict):
        return []  # an unknown task or a missing data section is reported by the model itself
    problems = []
    objective = data.get("objective")
    metric = objective.get("metric") if isinstance(objective, dict) else None
    if isinstance(metric, str) and (problem := metric_problem(task, metric)):
        problems.append(("objective.metric", problem))
    positive = objective.get("positive_label") if isinstance(objective, dict) else None
    if metric == "f1_binary" and positive is None and not problems:
        problems.append(("objective.positive_label", "f1_binary is the F1 of one class: name it, e.g. "
                                                     "positive_label: spam"))  # fmt: skip
    elif positive is not None and metric != "f1_binary":
        problems.append(("objective.positive_label", f"is read only with metric: f1_binary (this spec's metric is "
                                                     f"{metric or default_metric(task)}): set metric: f1_binary, or "
                                                     "remove it"))  # fmt: skip
    if task == "regression":
        problems += regression_problems(data)
    elif section.get("label_range") is not None:
        problems.append(("data.label_range", f"applies only to task: regression (this spec's task is {task}): "
                                             "remove it, or set task: regression"))
    problems += multilabel_problems(task, section, data.get("model"))
    problems += token_problems(task, data)
    pair = section.get("text_pair_column")
    if task == "text-pair" and pair is None:
        return problems + [
            ("data.text_pair_column", "required for task: text-pair: name the column of the second text")
        ]
    if task not in PAIR_TASKS and pair is not None:
        return problems + [
            (
                "data.text_pair_column",
                f"applies only to task: {' or '.join(PAIR_TASKS)} (this spec's task is {task}): remove it, or "
                "set task: text-pair",
            )
        ]
    return problems


def _fixed_zero(value: Any) -> bool:
    """A search-space entry that can only be 0 (a fixed 0, or choices of 0 only)."""
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, int | float) and not isinstance(v, bool) and v == 0 for v in values)


def regression_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Classification-only settings in a `task: regression` spec: class weights and label smoothing."""
    problems = []
    model = data.get("model")
    if isinstance(model, dict) and model.get("class_weights") not in (None, "none"):
        problems.append(("model.class_weights", f"{model['class_weights']!r} weights classes, and task: regression "
                                                "has none (its label is a number): remove it"))
    search = data.get("search")
    space = search.get("space") if isinstance(search, dict) else None
    if isinstance(space, dict) and "label_smoothing" in space and not _fixed_zero(space["label_smoothing"]):
        problems.append(("search.space.label_smoothing", "smooths class labels, and task: regression has none "
                                                         "(its loss is mean squared error): remove it"))
    return problems
def multilabel_problems(task: str, data: dict[str, Any], model: Any) -> list[tuple[str, str]]:
    """`data.label_delimiter` and `model.threshold` outside task: multi-label; class weights within it."""
    model = model if isinstance(model, dict) else {}
    if task != "multi-label":
        return [
            (where, f"applies only to task: multi-label (this spec's task is {task}): remove it, or set "
                    "task: multi-label")
            for where, given in (("data.label_delimiter", data.get("label_delimiter")),
                                 ("model.threshold", model.get("threshold")))
            if given is not None
        ]  # fmt: skip
    if model.get("class_weights") == "balanced":
        return [("model.class_weights", "balanced is not available for task: multi-label (the decision threshold is "
                                        "tuned on validation instead; model.threshold: per-label tunes one per "
                                        "label): remove it")]  # fmt: skip
    return []
TOKEN_TASK = "token-classification"
DATA_FORMATS = ("conll", "jsonl")  # data.format: how task: token-classification reads its files, whatever their names


def token_problems(task: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    """`data.format` outside task: token-classification; for it, CSV-only keys, several text columns and class weights
    (its classes are tags)."""
    section, model = data.get("data"), data.get("model")
    problems = []
    if isinstance(section, dict) and section.get("format") is not None and task != TOKEN_TASK:
        problems.append(("data.format", f"applies only to task: {TOKEN_TASK} (this spec's task is {task}): remove it"))
    if task == TOKEN_TASK and isinstance(section, dict):
        if section.get("columns") is not None:
            problems.append(("data.columns", f"applies to .csv/.tsv files, not to task: {TOKEN_TASK}: remove it"))
        if isinstance(section.get("text_column"), list):
            problems.append(("data.text_column", f"task: {TOKEN_TASK} reads one list of tokens per sentence: name "
                                                 "one key (default tokens)"))
    if task == TOKEN_TASK and isinstance(model, dict) and model.get("class_weights") == "balanced":
        problems.append(("model.class_weights", f"'balanced' is not available for task: {TOKEN_TASK} (its labels are "
                                                "per-token tags, mostly O): remove it or set it to none"))
    if task == TOKEN_TASK and isinstance(model, dict) and model.get("pooling") not in (None, "auto"):
        problems.append(("model.pooling", f"applies to tasks with one prediction per text, not to task: {TOKEN_TASK} "
                                          "(each token is tagged from its own state): remove it"))  # fmt: skip
    return problems


# Hyperparameters a task's training never uses (fixed at their neutral value there): left out of its trials' record.
NOT_USED = {"regression": ("label_smoothing",)}


def applicable(hyperparameters: dict[str, Any], task: str) -> dict[str, Any]:
    """The hyperparameters a trial of `task` trains with, without those its task never uses."""
    return {k: v for k, v in hyperparameters.items() if k not in NOT_USED.get(task, ())}


def positive_label_problem(metric: str, positive: str | None, label_names: list[str]) -> str | None:
    """Why objective.positive_label does not fit the data's classes (f1_binary wants two, one of them named), else
    None."""
    if metric != "f1_binary" or positive is None:
        return None
    shown = ", ".join(repr(name) for name in label_names)
    if len(label_names) != 2:
        return (f"f1_binary scores one class against the other of two, and the data has {len(label_names)} classes "
                f"({shown}): use f1_macro, or a spec with two classes")
    if positive not in label_names:
        alike = [name for name in label_names if name.casefold() == str(positive).casefold()]
        guess = f"; did you mean {alike[0]!r}?" if alike else ""
        return f"{positive!r} is not a class of the data (classes: {shown}){guess}"
    return None

