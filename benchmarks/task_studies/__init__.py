"""One small MiniLM study per task, run one after the other by `benchmarks/bench_tasks.py`.

Each module exposes `DESCRIPTION` (dataset and subset, one line) and `build(work, shared) -> dict`: it writes the
data subset into `work` and returns the study spec (SQLite store and cache in `work`). A module may also expose
`baseline(work) -> (name, value)`: a trivial predictor's score on the same validation subset, for comparison.
"""

# Run order: the task name and its module under benchmarks/task_studies.
STUDIES = (
    ("text-classification", "text_classification"),
    ("text-pair", "text_pair"),
    ("token-classification", "ner"),
    ("multi-label", "multilabel"),
    ("regression", "regression"),
)
