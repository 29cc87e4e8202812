"""benchmarks/bench_catalog.py: what a worker's look for work costs as the store fills."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark_script


def test_both_reads_are_timed_at_each_size_and_agree(tmp_path: Path) -> None:
    bench = load_benchmark_script("bench_catalog")
    results = tmp_path / "out" / "CATALOG.md"
    argv = ["--studies", "2", "3", "--trials", "4", "--repeats", "1", "--work", str(tmp_path / "w"),
            "--results", str(results)]  # fmt: skip
    assert bench.main(argv) == 0
    data = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    assert [step["studies"] for step in data["steps"]] == [2, 3] and all(step["agree"] for step in data["steps"])
    assert all(step["list_studies_again_s"] >= 0 for step in data["steps"])
    text = results.read_text(encoding="utf-8")
    assert "| 3 | 12 |" in text and "| yes |" in text and "python benchmarks/bench_catalog.py --studies 2 3" in text
    # a second run reuses the store: nothing to add, the same sizes
    assert bench.main(argv) == 0


@pytest.mark.parametrize("bad", [["--studies", "5", "2"], ["--studies", "0"], ["--trials", "0"], ["--repeats", "0"]])
def test_bad_options_exit_with_code_2(bad: list[str], tmp_path: Path) -> None:
    bench = load_benchmark_script("bench_catalog")
    with pytest.raises(SystemExit) as exc:
        bench.parse_args([*bad, "--work", str(tmp_path)])
    assert exc.value.code == 2


def test_a_password_in_the_store_url_never_reaches_the_command_written_down(tmp_path: Path) -> None:
    bench = load_benchmark_script("bench_catalog")
    args = bench.parse_args(["--storage", "postgresql+psycopg://ann:s3cret@db:5432/x", "--work", str(tmp_path)])
    assert "s3cret" not in args.command and "ann:***@db" in args.command
