"""Smoke test of benchmarks/bench_checkpoint.py: both ways of writing a checkpoint, alternating, timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark_script


def test_both_ways_write_alternately_and_the_store_keeps_three(tmp_path: Path, tiny_bert: Path) -> None:
    bench = load_benchmark_script("bench_checkpoint")
    results = tmp_path / "CHECKPOINT.md"
    argv = ["--encoder", str(tiny_bert), "--saves", "3", "--gap", "0", "--work", str(tmp_path / "work"),
            "--results", str(results)]  # fmt: skip
    assert bench.main(argv) == 0
    raw = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    assert {way: len(values) for way, values in raw["seconds"].items()} == {"folder": 3, "stream": 3}
    assert {part: len(values) for part, values in raw["parts"].items()} == {"pack_members": 3, "verify_member": 3}
    assert raw["ratio"] == pytest.approx(raw["median"]["stream"] / raw["median"]["folder"])
    assert len([p for p in (tmp_path / "work" / "store").iterdir() if p.is_file()]) == 3
    assert "| stream |" in results.read_text(encoding="utf-8")
    import sweep.checkpoints

    assert sweep.checkpoints.pack_members is sweep.artifacts.pack_members, "the timing wrappers are taken off again"


def test_saves_must_be_positive() -> None:
    with pytest.raises(SystemExit) as exc:
        load_benchmark_script("bench_checkpoint").parse_args(["--saves", "0"])
    with pytest.raises(SystemExit):
        load_benchmark_script("bench_checkpoint").parse_args(["--gap", "-1"])
    assert exc.value.code == 2
