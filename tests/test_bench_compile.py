"""Smoke test of benchmarks/bench_compile.py: eager and compiled runs of the bare loop, in order, with the shares."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_benchmark_script


def load_compile() -> ModuleType:
    return load_benchmark_script("bench_compile")


def test_the_shares_are_against_the_mean_of_both_eager_runs() -> None:
    bench = load_compile()
    runs = {"eager": {"seconds": 10.0}, "compiled": {"seconds": 40.0}, "compiled again": {"seconds": 8.0},
            "eager again": {"seconds": 12.0}}  # fmt: skip
    summary = bench.seed_summary(runs)
    assert summary == {"eager_seconds": 11.0, "compiled_share": pytest.approx(40 / 11),
                       "compiled_again_share": pytest.approx(8 / 11), "compile_seconds": 32.0}  # fmt: skip


@pytest.mark.real_data  # the default dataset is TREC from ../shared/data
def test_each_seed_runs_eager_compiled_compiled_again_and_eager_on_the_same_examples(
    tmp_path: Path, tiny_bert: Path
) -> None:
    bench = load_compile()
    results = tmp_path / "COMPILE.md"
    # backend "eager": Dynamo traces the model (what compiling checks) without generating code, so the test is quick
    argv = ["--encoder", str(tiny_bert), "--train-size", "24", "--val-size", "8", "--max-length", "32",
            "--batch-size", "8", "--seeds", "0", "--backend", "eager", "--work", str(tmp_path / "work"),
            "--results", str(results)]  # fmt: skip
    assert bench.main(argv) == 0
    raw = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    (run,) = raw["runs"]
    assert list(run["runs"]) == ["eager", "compiled", "compiled again", "eager again"]
    assert {r["examples"] for r in run["runs"].values()} == {24}, "one epoch of the same examples each time"
    assert raw["precision"] == "bf16-mixed" and raw["backend"] == "eager"
    text = results.read_text(encoding="utf-8")
    assert "| 0 |" in text and "Compiled-again share across seeds" in text


@pytest.mark.parametrize("bad", [["--batch-size", "0"], ["--precision", "fp8"]])
def test_bad_options_exit_with_code_2(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_compile().parse_args(bad)
    assert exc.value.code == 2
