"""benchmarks/bench_repeat.py: both sides repeated per seed in alternating order, and a side called faster only
where it is ahead in every round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark_script


def _rounds(*pairs: tuple[float | None, float | None]) -> list[dict]:
    return [{"measures": {"train_throughput": {"ratio": t}, "wall_s": {"ratio": w}}} for t, w in pairs]


def test_the_order_alternates_and_a_side_is_ahead_only_in_every_round() -> None:
    bench = load_benchmark_script("bench_repeat")
    assert [bench.round_order(i) for i in range(3)] == [("ours", "peer"), ("peer", "ours"), ("ours", "peer")]
    ahead = bench.verdicts([{"rounds": _rounds((1.2, 0.9), (1.05, 0.95))}, {"rounds": _rounds((1.1, 0.8))}])
    assert ahead["train_throughput"]["ahead_in_every_round"] == "ours"  # more examples per second
    assert ahead["wall_s"]["ahead_in_every_round"] == "ours"  # less wall time
    assert ahead["train_throughput"]["median"] == pytest.approx(1.1)
    assert (ahead["wall_s"]["min"], ahead["wall_s"]["max"]) == (0.8, 0.95)
    mixed = bench.verdicts([{"rounds": _rounds((1.3, 1.1), (0.84, 0.9))}])
    assert mixed["train_throughput"]["ahead_in_every_round"] == "neither"
    assert mixed["wall_s"]["ahead_in_every_round"] == "neither"
    behind = bench.verdicts([{"rounds": _rounds((0.9, 1.2), (None, 1.1))}])
    assert behind["train_throughput"]["ahead_in_every_round"] == "undecided", "a round without the measure"
    assert behind["wall_s"]["ahead_in_every_round"] == "peer"


def test_rounds_must_be_positive() -> None:
    with pytest.raises(SystemExit) as exc:
        load_benchmark_script("bench_repeat").parse_args(["--rounds", "0"])
    assert exc.value.code == 2


@pytest.mark.real_data  # the benchmark's dataset is TREC from ../shared/data
def test_two_rounds_of_both_sides_run_in_alternating_order(tmp_path: Path, tiny_bert: Path) -> None:
    bench = load_benchmark_script("bench_repeat")
    results = tmp_path / "REPEAT.md"
    argv = ["--encoder", str(tiny_bert), "--train-size", "40", "--val-size", "20", "--max-classes", "4",
            "--max-length", "32", "--trials", "2", "--seeds", "0", "--rounds", "2", "--work", str(tmp_path / "work"),
            "--results", str(results)]  # fmt: skip
    assert bench.main(argv) == 0
    raw = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    (seed,) = raw["seeds"]
    assert [r["order"] for r in seed["rounds"]] == [["ours", "peer"], ["peer", "ours"]]
    for r in seed["rounds"]:
        throughput = r["measures"]["train_throughput"]
        assert throughput["ours"] > 0 and throughput["peer"] > 0
        assert throughput["ratio"] == pytest.approx(throughput["ours"] / throughput["peer"])
        assert r["trials"]["ours"]["complete"] + r["trials"]["ours"]["pruned"] == 2
    assert len(raw["verdict"]["wall_s"]["ratios"]) == 2
    text = results.read_text(encoding="utf-8")
    assert "--rounds 2" in text and "| 0 | 2 | peer, ours |" in text and "ahead in every round" in text
