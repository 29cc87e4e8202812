"""The spec's `task:` key: which tasks run, which are refused until built, and the task's rules on `data`."""

from __future__ import annotations

from typing import Any

# `task:` values that run today; the other tasks of issue #11 are refused by name until they exist.
TASKS = ("text-classification", "text-pair")
PLANNED_TASKS = ("token-classification", "multi-label", "regression")
DEFAULT_TASK = "text-classification"


def task_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """`data.text_pair_column` given for a task without a second text, or missing for `task: text-pair`."""
    task, section = data.get("task", DEFAULT_TASK), data.get("data")
    if task not in TASKS or not isinstance(section, dict):
        return []  # an unknown task or a missing data section is reported by the model itself
    pair = section.get("text_pair_column")
    if task == "text-pair" and pair is None:
        return [("data.text_pair_column", "required for task: text-pair: name the column of the second text")]
    if task != "text-pair" and pair is not None:
        return [
            (
                "data.text_pair_column",
                f"applies only to task: text-pair (this spec's task is {task}): remove it, or set task: text-pair",
            )
        ]
    return []
