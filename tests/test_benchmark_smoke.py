"""Smoke test of benchmarks/bench_trainer.py: both sides run end to end on a tiny BERT and tiny data."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_trainer.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_trainer", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_stratified_split_is_seeded_disjoint_and_proportional() -> None:
    bench = load_benchmark()
    rows = [(f"text {label} {i}", label) for label, n in (("a", 60), ("b", 30), ("c", 10)) for i in range(n)]
    train, val = bench.stratified_split(rows, 20, 10, seed=3)
    again = bench.stratified_split(rows, 20, 10, seed=3)
    assert (train, val) == again
    assert len(train) == 20 and len(val) == 10 and not set(train) & set(val)
    assert sorted(label for _, label in train).count("a") == 12
    assert {label for _, label in val} == {"a", "b", "c"}
    assert bench.unique_rows([("x  y", "a"), ("x y", "b"), ("z", "a")]) == [("z", "a")]


@pytest.mark.real_data  # the benchmark's default dataset is TREC from ../shared/data
def test_benchmark_runs_both_sides_and_writes_results(tmp_path: Path, tiny_bert: Path) -> None:
    bench = load_benchmark()
    results = tmp_path / "out" / "RESULTS.md"
    argv = [
        "--encoder", str(tiny_bert),
        "--train-size", "60",
        "--val-size", "40",
        "--max-classes", "4",
        "--trials", "2",
        "--work", str(tmp_path / "work"),
        "--results", str(results),
    ]  # fmt: skip
    assert bench.main(argv) == 0

    text = results.read_text(encoding="utf-8")
    assert "python benchmarks/bench_trainer.py --encoder" in text and "--trials 2" in text
    assert "| sweep (ours) | Trainer.hyperparameter_search (peer) | ours / peer |" in text
    for row in (
        "wall time, whole side",
        "best validation macro-F1",
        "time to first reach the peer's best F1",
        "training throughput",
        "our overhead share",
    ):
        assert f"| {row}" in text, row
    assert "### Our per-trial time split" in text
    for column in (
        "training steps (s)",
        "validation forward (s)",
        "overhead (s)",
        "data prep (s)",
        "model load (s)",
        "training loop around steps (s)",
        "evaluation loop around forward (s)",
        "checkpointing (s)",
        "set-up/storage/other (s)",
        "overhead",
    ):
        assert column in text, column
    assert "smoke run, not a benchmark" in text
    assert "torch threads" in text and "transformers" in text

    raw = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    (rep,) = raw["repetitions"]
    for side in ("ours", "peer"):
        assert rep[side]["wall"] > 0
        assert 0.0 <= rep[side]["best_f1"] <= 1.0
        assert len(rep[side]["trials"]) == 2
        assert all(trial["evals"] for trial in rep[side]["trials"])
    summary = rep["summary"]
    for key in ("wall_s", "best_f1", "train_throughput"):
        assert summary["measures"][key]["ratio"] is not None and summary["measures"][key]["ratio"] > 0, key
    assert summary["same_startup_configurations"] == [2, 2], "TPE with one seed draws the same first trials"
    assert "Identical configurations in TPE's random start-up trials: 2 of 2" in text
    assert summary["peer_evaluations_inside_epoch"] == 0
    assert summary["measures"]["examples_trained"]["ours"] == summary["measures"]["examples_trained"]["peer"]
    split = summary["our_split"]
    assert len(split) == 2
    for row in split:  # the honest split: steps and forward passes inside their loops, overhead the rest
        assert 0 < row["train_steps"] <= row["train"] and 0 < row["validation_forward"] <= row["validation"]
        assert row["train_steps"] + row["validation_forward"] + row["overhead"] == pytest.approx(row["total"])
        assert row["overhead"] >= row["data"] + row["model_load"] + row["checkpoint"] + row["evaluation_loop"]
        assert 0.0 < row["overhead_share"] < 1.0
    assert raw["data"]["train_size"] == 60 and raw["data"]["val_size"] == 40 and len(raw["data"]["labels"]) == 4
    assert "## Targets (from the issue), judged on the worst repetition" in text
    assert "| time to reach the peer's final best F1 ≤ 0.5 × the peer's total time |" in text

    # --render rewrites the same Markdown from results.json alone
    results.unlink()
    assert bench.main(["--render", str(tmp_path / "out" / "results.json")]) == 0
    assert results.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("bad", [["--trials", "0"], ["--encoder", "/no/such/folder"]])
def test_bad_options_exit_with_code_2(bad: list[str], tmp_path: Path) -> None:
    bench = load_benchmark()
    with pytest.raises(SystemExit) as exc:
        bench.parse_args([*bad, "--work", str(tmp_path)])
    assert exc.value.code == 2
