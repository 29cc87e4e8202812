"""Every task end to end on a small real subset of its public dataset, with the tiny test model.

The subsets are the ones `benchmarks/bench_tasks.py` studies with MiniLM (built by `benchmarks/task_studies/`), so
this also keeps the benchmark's data builders working. The tiny model learns little from real text (most words are
outside its vocabulary): these tests check the path (real file formats and their traps, cleaning, tokenising, a
trial, the stored record, the report, the export loading with its pipeline), not learning; tests/test_learning.py
checks learning on the same datasets with MiniLM.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from record import read_study, read_trial
from sweep.export import export_trial
from sweep.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
# task -> (the module under benchmarks/task_studies, a file it reads, what the export's pipeline is called with)
STUDIES = {
    "text-classification": ("text_classification", "trec/train_5500.label"),
    "text-pair": ("text_pair", "sick/SICK.txt"),
    "token-classification": ("ner", "wnut17/wnut17train.conll"),
    "multi-label": ("multilabel", "nlupp/banking/fold0.json"),
    "regression": ("regression", "stsb/sts-train.csv"),
}
PIPELINES = {"token-classification": "token-classification"}


def _study_module(name: str) -> Any:
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(f"task_studies.{name}")


@pytest.mark.real_data(*(path for _, path in STUDIES.values()))
@pytest.mark.parametrize("task", list(STUDIES))
def test_each_task_runs_on_its_real_dataset_and_exports(task: str, tmp_path: Path, shared_data: Path,
                                                        tiny_bert: Path) -> None:  # fmt: skip
    from transformers import pipeline

    spec = _study_module(STUDIES[task][0]).build(tmp_path, shared_data)
    assert spec.get("task", "text-classification") == task
    spec["model"]["encoder"] = str(tiny_bert)
    spec["search"] = {"n_trials": 1, "pruner": "none", "keep_checkpoints": 1,
                      "space": {"learning_rate": 1e-3, "batch_size": 32, "epochs": 1}}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    study = run_study(path).study
    trial = study.trials[0]
    record, study_record = read_trial(trial), read_study(study)
    assert trial.value is not None and study_record.task == task
    assert f"val_{study_record.metric}" in record.metrics
    report = study_record.data_report
    assert report["num_train"] > 100 and report["num_validation"] > 50

    out, _ = export_trial(study, tmp_path / "model")
    meta = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert meta["task"] == task and meta["value"] == trial.value
    run = pipeline(PIPELINES.get(task, "text-classification"), model=str(out), device=-1)
    answer = run({"text": "A man plays a guitar.", "text_pair": "A person plays music."}
                 if task == "text-pair" or report.get("text_pair") else "Where is the Eiffel Tower ?")
    assert answer is not None
