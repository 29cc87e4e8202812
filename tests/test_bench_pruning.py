"""benchmarks/bench_pruning.py: false prunes and rank correlations on a constructed study, and (on the tiny BERT) a
pruned configuration rerun to completion through sweep's own training, after a completed one reproduces its curve."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest
import yaml
from conftest import load_benchmark_script, quickstart_subset, split_per_class, write_csv
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

import sweep.lifecycle
from record import TrialRecord, trial_attrs
from sweep.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/results.json as committed before issue #12's fair run: two repetitions of seed 0, the old layout
OLD_RESULTS = ROOT / "tests" / "fixtures" / "bench-results-before-issue-12.json"


def load_script() -> ModuleType:
    return load_benchmark_script("bench_pruning")


DISTRIBUTIONS = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
                 "batch_size": CategoricalDistribution([8, 16])}
# Three complete trials, two pruned (their full runs scripted below), one failed; 3 Optuna steps per epoch.
RECORDED: dict[int, tuple[TrialState, dict[int, float]]] = {
    0: (TrialState.COMPLETE, {1: 0.30, 2: 0.50, 3: 0.60, 6: 0.70}),
    1: (TrialState.COMPLETE, {1: 0.40, 2: 0.55, 3: 0.65}),
    2: (TrialState.COMPLETE, {1: 0.20, 2: 0.30, 3: 0.40, 6: 0.45, 9: 0.50}),
    3: (TrialState.PRUNED, {1: 0.10}),
    4: (TrialState.PRUNED, {1: 0.15, 2: 0.20}),
    5: (TrialState.FAIL, {}),
}
FULL_RUNS = {3: {1: 0.10, 2: 0.60, 3: 0.75, 6: 0.80}, 4: {1: 0.15, 2: 0.20, 3: 0.30}}


def constructed_study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for number, (state, curve) in RECORDED.items():
        study.add_trial(create_trial(
            state=state, value=max(curve.values()) if state == TrialState.COMPLETE else None,
            params={"learning_rate": 1e-4 * (number + 1), "batch_size": 8}, distributions=DISTRIBUTIONS,
            intermediate_values=curve,
            user_attrs=trial_attrs(seed=100 + number, hyperparameters={"learning_rate": 1e-4 * (number + 1)}),
        ))  # fmt: skip
    return study


def test_false_prunes_and_rank_correlations_on_a_constructed_study() -> None:
    bench = load_script()
    rerun: list[int] = []

    def fake_rerun(record: TrialRecord) -> dict[int, float]:
        assert record.seed == 100 + record.number and record.hyperparameters  # what a real rerun trains with
        rerun.append(record.number)
        return FULL_RUNS[record.number]

    found, left_out = bench.configurations(constructed_study(), fake_rerun)
    assert rerun == [3, 4] and left_out == [5]  # only the pruned ones are rerun; the failed one is left out
    analysis = bench.analyse(found, maximize=True, steps_per_epoch=3)
    rows = {r["number"]: r for r in analysis["configurations"]}
    # Finals: 3 -> 0.80, 0 -> 0.70, 1 -> 0.65, 2 -> 0.50, 4 -> 0.30. Trial 3 was pruned at 1/3 of epoch 1 but its
    # full run comes first: a false prune. Trial 4 ends last: rightly pruned.
    assert [rows[n]["rank"] for n in range(5)] == [2, 3, 4, 1, 5]
    assert analysis["false_prunes"] == [3] and analysis["pruned"] == 2
    assert rows[3]["pruned_at_point"] == "1/3 of epoch 1" and rows[3]["value_at_pruning"] == 0.10
    assert rows[3]["margin_to_top"] == pytest.approx(0.80 - 0.65)
    assert rows[4]["pruned_at_point"] == "2/3 of epoch 1" and rows[4]["margin_to_top"] == pytest.approx(0.30 - 0.65)
    assert not rows[4]["in_top"]
    by_point = {p["point"]: (p["configurations"], p["spearman"]) for p in analysis["correlations"]}
    # 1/3 of epoch 1: ranks (4,5,3,1,2) against (4,3,2,5,1): sum d^2 = 22 -> 1 - 6*22/(5*24) = -0.1.
    assert by_point["1/3 of epoch 1"] == (5, pytest.approx(-0.1))
    assert by_point["end of epoch 1"] == (5, pytest.approx(0.9))  # only trials 0 and 1 swap
    assert by_point["end of epoch 2"] == (3, pytest.approx(1.0))
    assert by_point["end of epoch 3"] == (1, None)  # fewer than 3 configurations: no correlation


def test_spearman_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    bench = load_script()
    rng = random.Random(7)
    for _ in range(20):
        xs = [rng.choice([0.1, 0.2, 0.3, 0.4]) for _ in range(9)]
        ys = [rng.random() for _ in range(9)]
        expected = spearmanr(xs, ys).statistic
        if len(set(xs)) > 1:
            assert bench.spearman(xs, ys) == pytest.approx(expected)
    assert bench.spearman([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]) is None and bench.spearman([1.0, 2.0], [1.0, 2.0]) is None


def test_the_target_is_judged_across_seeds_and_the_section_renders(tmp_path: Path) -> None:
    bench = load_script()

    def run(label: str, false: list[int]) -> dict[str, Any]:
        found, _ = bench.configurations(constructed_study(), lambda record: FULL_RUNS[record.number])
        analysis = {**bench.analyse(found, maximize=True, steps_per_epoch=3), "false_prunes": false}
        check = {"trial": 1, "steps": 3, "same_steps": True, "max_abs_difference": 0.0, "reproduced": True}
        return {"label": label, "analysis": analysis, "reproduction": check}

    assert bench.judge([run("seed 0", [3]), run("seed 1", []), run("seed 2", [])])["met"]
    runs = [run("seed 0", [3]), run("seed 1", [3]), run("seed 2", [])]
    target = bench.judge(runs)
    assert not target["met"] and target["seeds_with_false_prunes"] == ["seed 0", "seed 1"]
    assert "pruned in 2 of 3 seeds (target: at most 1 of 3): not met" in target["text"]
    assert "the target needs three" in bench.judge(runs[:2])["text"]

    path = tmp_path / "pruning.json"
    path.write_text(json.dumps({"command": "python benchmarks/bench_pruning.py", "runs": runs, "target": target}))
    text = "\n".join(bench.pruning_section(path))
    assert text.startswith("## Pruning quality") and "not met" in text
    assert "| seed 0 | 5 | 2 | 3: rank 1, 0.8000, +0.1500 | trial 1 rerun: reproduced" in text
    assert "| 1/3 of epoch 1 | -0.10 (5) | -0.10 (5) | -0.10 (5) |" in text
    assert "| end of epoch 3 | — (1) | — (1) | — (1) |" in text
    assert "| 3 | pruned | 4.00e-04 | 8 | ? | 1/3 of epoch 1 | 0.1000 | 0.8000 | 1 (top) |" in text


class PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first evaluation, nothing else: a smoke study with a pruned trial, for sure."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 1


def test_a_pruned_configuration_is_rerun_after_a_completed_one_reproduces(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_script()
    monkeypatch.setitem(sweep.lifecycle.PRUNERS, "median", lambda search: PruneTrialOne())
    train, val = split_per_class(quickstart_subset(16, seed=4, n_classes=3), 4)
    spec = {
        "name": "pruning",
        "storage": f"sqlite:///{tmp_path / 'bench.db'}",
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "data": {"train": str(write_csv(tmp_path / "train.csv", train)),
                 "validation": str(write_csv(tmp_path / "val.csv", val)), "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(tiny_bert), "max_length": 32},
        "search": {"n_trials": 2, "sampler": "random", "pruner": "median", "first_epoch_evals": 2,
                   "keep_checkpoints": 1, "space": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True},
                                                    "batch_size": 8, "epochs": 1}},
    }  # fmt: skip
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    study = run_study(spec_path).study
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE, TrialState.PRUNED]
    stored = study.get_trials()[1].intermediate_values

    assert bench.main([str(spec_path), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "pruning.json").read_text())
    (run,) = result["runs"]
    assert run["label"] == "seed 0" and run["study"] == "pruning"
    check = run["reproduction"]
    assert check["trial"] == 0 and check["same_steps"] and check["reproduced"], check
    assert check["max_abs_difference"] < 1e-6  # same process, same threads: the same curve
    rows = {r["number"]: r for r in run["analysis"]["configurations"]}
    assert rows[1]["state"] == "pruned" and rows[1]["pruned_at_point"] == "1/3 of epoch 1"
    assert list(rows[1]["curve"]) == ["1", "2", "3"]  # rerun to the end of its one epoch
    assert rows[1]["curve"]["1"] == pytest.approx(stored[1], abs=1e-6)  # the same run up to where it was pruned
    assert rows[1]["in_top"] and run["analysis"]["false_prunes"] == [1]  # of two configurations both are top 3
    text = (tmp_path / "out" / "PRUNING.md").read_text()
    assert text.startswith("# Pruning quality") and "trial 0 rerun: reproduced" in text


def test_our_studies_are_found_in_both_results_layouts(tmp_path: Path) -> None:
    bench = load_script()
    work = tmp_path / "work"
    results = {"config": {"work": str(work), "threads": 2, "command": "python benchmarks/bench_trainer.py"},
               "machine": {"date": "2026-12-01 10:00 UTC"},
               "seeds": [{"seed": 0, "ours": {"spec": str(work / "seed0" / "ours" / "spec.yaml")}},
                         {"seed": 2, "ours": {}}]}  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    specs, threads, benchmark = bench.specs_of(path)
    assert specs == [work / "seed0" / "ours" / "spec.yaml", work / "seed2" / "ours" / "spec.yaml"] and threads == 2
    assert benchmark == {"date": "2026-12-01 10:00 UTC", "command": "python benchmarks/bench_trainer.py"}
    # the results.json from before issue #12 (kept as a fixture): `repetitions` of one seed
    old = json.loads(OLD_RESULTS.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**old, "config": {**old["config"], "work": str(work)}}))
    specs, _, benchmark = bench.specs_of(path)
    assert specs == [work / f"rep{i}" / "spec.yaml" for i in range(1, len(old["repetitions"]) + 1)]
    assert benchmark["date"] == old["machine"]["date"]


def test_results_md_includes_the_pruning_section_of_its_own_run_and_judges_the_target(tmp_path: Path) -> None:
    """bench_trainer.py's RESULTS.md: the section from pruning.json beside results.json, and the false-prune row
    judged from it, only when pruning.json was made from that results.json."""
    load_script()  # bench_trainer imports it by name from benchmarks/
    trainer = load_benchmark_script("bench_trainer")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    results = json.loads(OLD_RESULTS.read_text(encoding="utf-8"))
    found, _ = load_script().configurations(constructed_study(), lambda record: FULL_RUNS[record.number])
    analysis = load_script().analyse(found, maximize=True, steps_per_epoch=3)
    runs = [{"label": "seed 0", "seed": 0, "analysis": analysis, "reproduction": None}]
    pruning = {"command": "python benchmarks/bench_pruning.py", "runs": runs, "target": load_script().judge(runs),
               "benchmark": {"date": results["machine"]["date"], "command": results["config"]["command"]}}
    path = tmp_path / "pruning.json"
    path.write_text(json.dumps(pruning))

    text = trainer.render(json.loads(json.dumps(results)), path)
    row = "| a configuration that would have finished in the top 3 is pruned in at most one of the three seeds"
    # the old results ran both repetitions on seed 0: both columns read that seed's study
    assert f"{row} (see Pruning quality) | — | 1 (trial 3) | 1 (trial 3) | yes (on 1 seed; the target needs three) |" \
        in text  # fmt: skip
    assert "\n## Pruning quality\n" in text and "| seed 0 | 5 | 2 | 3: rank 1, 0.8000, +0.1500 | not run |" in text
    assert text.index("## Pruning quality") > text.index("### Our per-trial time split")

    path.write_text(json.dumps({**pruning, "benchmark": {"date": "2020-01-01 00:00 UTC", "command": "other"}}))
    text = trainer.render(json.loads(json.dumps(results)), path)
    assert "## Pruning quality" not in text and "is from another benchmark run (2020-01-01 00:00 UTC)" in text
    assert f"{row} | — | — | — | not measured" in text
    assert trainer.render(json.loads(json.dumps(results)), tmp_path / "none.json") == trainer.render(
        json.loads(json.dumps(results))
    )
