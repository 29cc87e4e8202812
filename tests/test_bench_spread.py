"""benchmarks/bench_spread.py: the peer's best configuration trained with several training seeds on each side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark_script


def test_repeats_below_two_and_a_missing_results_file_are_refused(tmp_path: Path) -> None:
    bench = load_benchmark_script("bench_spread")
    results = tmp_path / "results.json"
    results.write_text("{}", encoding="utf-8")
    for argv in (["--results", str(results), "--repeats", "1"], ["--results", str(tmp_path / "none.json")]):
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(argv)
        assert exc.value.code == 2


def test_the_peers_best_is_its_best_variant() -> None:
    bench = load_benchmark_script("bench_spread")
    entry = {"peers": {"trainer": {"epoch": {"best_f1": 0.70, "best_params": {"learning_rate": 1e-4}},
                                   "steps": {"best_f1": 0.75, "best_params": {"learning_rate": 5e-5}},
                                   "never": {"best_f1": None, "best_params": {}}}}}  # fmt: skip
    assert bench.peer_best(entry) == ("steps", {"learning_rate": 5e-5}, 0.75)


@pytest.mark.real_data  # the benchmark's dataset is TREC from ../shared/data
def test_each_side_trains_the_configuration_with_consecutive_training_seeds(tmp_path: Path, tiny_bert: Path) -> None:
    bench = load_benchmark_script("bench_spread")
    command = ["python", "benchmarks/bench_trainer.py", "--encoder", str(tiny_bert), "--train-size", "40",
               "--val-size", "20", "--max-classes", "4", "--max-length", "32", "--trials", "2",
               "--seeds", "3"]  # fmt: skip
    params = {"learning_rate": 1e-3, "batch_size": 8, "epochs": 2}
    # ran when sweep evaluated at 1/3 and 2/3 of epoch 1 by default (its results say so, the command does not)
    earlier = {"config": {"command": " ".join(command), "evals_per_epoch": 3},
               "seeds": [{"seed": 3, "ours": {"best_f1": 0.5}, "peers": {"trainer": {
                   "epoch": {"best_f1": 0.6, "best_params": params}}}}]}  # fmt: skip
    results = tmp_path / "results.json"
    results.write_text(json.dumps(earlier), encoding="utf-8")
    out = tmp_path / "SPREAD.md"
    assert bench.main(["--results", str(results), "--repeats", "2", "--work", str(tmp_path / "work"),
                       "--out", str(out)]) == 0  # fmt: skip
    raw = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    (seed,) = raw["seeds"]
    assert seed["params"] == params and seed["one_example"] == pytest.approx(1 / 20)
    for side in ("ours", "peer"):
        runs = seed["runs"][side]
        assert [r["training_seed"] for r in runs] == [3, 4]
        for r in runs:
            assert len(r["epoch_ends"]) == 2
            assert r["last"] == r["epoch_ends"][-1] and r["best_epoch_end"] == max(r["epoch_ends"])
        scored = [r["scored"] for r in runs]
        assert seed["summary"][side]["scored"]["mean"] == pytest.approx(sum(scored) / 2)
        assert seed["summary"][side]["scored"]["max"] == max(scored)
    for r in seed["runs"]["ours"]:  # ours scores a trial by its best evaluation, inside the first epoch too
        assert len(r["evaluations"]) > 2 and r["scored"] == pytest.approx(max(r["evaluations"]))
    assert all(r["scored"] == r["last"] for r in seed["runs"]["peer"])  # what hyperparameter_search returns
    text = out.read_text(encoding="utf-8")
    assert "## Seed 3: learning rate 1.00e-03, batch 8, 2 epochs" in text and "| ours | end of the last epoch |" in text
    out.unlink()
    assert bench.main(["--render", str(out.with_suffix(".json"))]) == 0  # the Markdown again, without training
    assert out.read_text(encoding="utf-8") == text
