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
@pytest.mark.parametrize(("precision", "pooling"), [("32-true", "auto"), ("bf16-mixed", "mean")])
def test_both_sides_train_the_same_examples_in_alternating_rounds(
    tmp_path: Path, tiny_bert: Path, precision: str, pooling: str, monkeypatch: pytest.MonkeyPatch,
    heads_loaded: list[str],
) -> None:
    limit = load_limit()
    monkeypatch.chdir(tmp_path)  # a relative --work: the specs it writes must still name the data it wrote
    results = tmp_path / "LIMIT.md"
    argv = ["--encoder", str(tiny_bert), "--train-size", "40", "--val-size", "12", "--max-length", "32",
            "--batch-size", "8", "--seeds", "0", "1", "--repeats", "2", "--work", "work", "--results", str(results),
            "--precision", precision, "--pooling", pooling]  # fmt: skip
    assert limit.main(argv) == 0
    # ours and the bare loop train the same head: the tiny BERT is no sentence-transformers model (auto: cls)
    head = "cls" if pooling == "auto" else "mean"
    assert heads_loaded == [head] * 8, "2 seeds x 2 rounds x (ours, bare)"
    raw = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    assert raw["pooling"] == head
    assert raw["repeats"] == 2 and [run["seed"] for run in raw["runs"]] == [0, 1] and raw["precision"] == precision
    assert [run["firsts"] for run in raw["runs"]] == [["ours", "bare"], ["bare", "ours"]]
    for run in raw["runs"]:
        for side in ("ours", "bare"):
            assert len(run[side]["throughputs"]) == 2 and run[side]["throughput"] in run[side]["throughputs"]
        assert run["ours"]["examples"] == run["bare"]["examples"] == 40, "one epoch of the same training examples"
        assert run["share"] == pytest.approx(run["ours"]["throughput"] / run["bare"]["throughput"])
    text = results.read_text(encoding="utf-8")
    assert "| 0 | ours, bare |" in text and "| 1 | bare, ours |" in text and "Share across seeds" in text


@pytest.mark.real_data
def test_the_trainer_side_trains_the_same_rows_and_counts_its_padding(tmp_path: Path, tiny_bert: Path) -> None:
    limit = load_limit()
    results = tmp_path / "LIMIT.md"
    argv = ["--encoder", str(tiny_bert), "--train-size", "40", "--val-size", "12", "--max-length", "32",
            "--batch-size", "8", "--seeds", "0", "--repeats", "3", "--work", str(tmp_path / "work"),
            "--results", str(results), "--sides", "ours", "bare", "trainer"]  # fmt: skip
    assert limit.main(argv) == 0
    raw = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    run = raw["runs"][0]
    assert raw["sides"] == ["ours", "bare", "trainer"]
    assert run["firsts"] == ["ours", "bare", "trainer"], "each side goes first once in three rounds"
    assert run["trainer"]["examples"] == run["ours"]["examples"] == 40 and len(run["trainer"]["throughputs"]) == 3
    longest = max(len(ids) for ids in limit.prepared(limit.parse_args(argv), 0)[0].train["input_ids"])
    for side in ("ours", "bare", "trainer"):  # padding included, never more than every row at the longest length
        assert 40 * 2 <= run[side]["padded_tokens"] <= 40 * longest
        assert run[side]["tokens_per_second"] == pytest.approx(run[side]["padded_tokens"] / run[side]["seconds"])
    assert run["versus_trainer"] == pytest.approx(run["ours"]["throughput"] / run["trainer"]["throughput"])
    text = results.read_text(encoding="utf-8")
    assert "| Trainer (examples/s) |" in text and "sweep / Trainer (examples/s) across seeds" in text


@pytest.mark.parametrize("bad", [["--repeats", "0"], ["--batch-size", "0"], ["--sides", "ours", "trainer"]])
def test_bad_options_exit_with_code_2(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_limit().parse_args(bad)
    assert exc.value.code == 2
