"""Smoke test of benchmarks/bench_limit.py: sweep's trial training and the bare loop, rounds alternating, medians."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_benchmark_script

ROOT = Path(__file__).resolve().parents[1]


def load_limit() -> ModuleType:
    return load_benchmark_script("bench_limit")


def test_the_median_round_is_reported_with_every_rounds_value() -> None:
    limit = load_limit()
    rounds = [{"throughput": 90.0, "seconds": 1.0}, {"throughput": 80.0, "seconds": 2.0},
              {"throughput": 120.0, "seconds": 3.0}]  # fmt: skip
    assert limit.median_round(rounds) == {"throughput": 90.0, "seconds": 1.0, "throughputs": [90.0, 80.0, 120.0]}
    assert limit.median_round(rounds[:2])["throughput"] == 80.0, "an even count: the lower middle round"


@pytest.mark.real_data  # the default dataset is TREC from ../shared/data
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_both_sides_train_the_same_examples_in_alternating_rounds(
    tmp_path: Path, tiny_bert: Path, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = load_limit()
    monkeypatch.chdir(tmp_path)  # a relative --work: the specs it writes must still name the data it wrote
    results = tmp_path / "LIMIT.md"
    argv = ["--encoder", str(tiny_bert), "--train-size", "40", "--val-size", "12", "--max-length", "32",
            "--batch-size", "8", "--seeds", "0", "1", "--repeats", "2", "--work", "work", "--results", str(results),
            "--precision", precision]  # fmt: skip
    assert limit.main(argv) == 0
    raw = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    assert raw["repeats"] == 2 and [run["seed"] for run in raw["runs"]] == [0, 1] and raw["precision"] == precision
    assert [run["firsts"] for run in raw["runs"]] == [["ours", "bare"], ["bare", "ours"]]
    for run in raw["runs"]:
        for side in ("ours", "bare"):
            assert len(run[side]["throughputs"]) == 2 and run[side]["throughput"] in run[side]["throughputs"]
        assert run["ours"]["examples"] == run["bare"]["examples"] == 40, "one epoch of the same training examples"
        assert run["share"] == pytest.approx(run["ours"]["throughput"] / run["bare"]["throughput"])
    text = results.read_text(encoding="utf-8")
    assert "| 0 | ours, bare |" in text and "| 1 | bare, ours |" in text and "Share across seeds" in text


@pytest.mark.parametrize("bad", [["--repeats", "0"], ["--batch-size", "0"]])
def test_bad_options_exit_with_code_2(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_limit().parse_args(bad)
    assert exc.value.code == 2
