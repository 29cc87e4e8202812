"""Smoke test of benchmarks/bench_pooling.py: each configuration trained with both heads, the first alternating."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark_script


@pytest.mark.real_data  # the default dataset is TREC from ../shared/data
def test_each_configuration_trains_with_both_heads_and_the_table_compares_them(tmp_path: Path, tiny_bert: Path) -> None:
    pooling = load_benchmark_script("bench_pooling")
    results = tmp_path / "POOLING.md"
    argv = ["--encoder", str(tiny_bert), "--train-size", "40", "--val-size", "12", "--max-length", "32",
            "--batch-size", "8", "--seeds", "0", "1", "--learning-rates", "1e-3", "--epochs", "2",
            "--work", str(tmp_path / "work"), "--results", str(results)]  # fmt: skip
    assert pooling.main(argv) == 0
    raw = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    assert [(r["seed"], r["pooling"]) for r in raw["runs"]] == [(0, "cls"), (0, "mean"), (1, "mean"), (1, "cls")]
    assert all(len(r["f1"]) == 2 and r["best"] == max(r["f1"]) and r["train_seconds"] > 0 for r in raw["runs"])
    assert raw["val_size"] == 12 and raw["epochs"] == 2
    text = results.read_text(encoding="utf-8")
    assert "| 0 | 0.001 | mean pooling |" in text and "| 0.001 |" in text.split("gain")[-1]


def test_bad_learning_rates_exit_with_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    pooling = load_benchmark_script("bench_pooling")
    with pytest.raises(SystemExit) as done:
        pooling.parse_args(["--learning-rates", "0"])
    assert done.value.code == 2 and "--learning-rates must each lie in (0, 1)" in capsys.readouterr().err
