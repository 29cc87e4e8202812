"""Seed-robust selection: `sweep reevaluate` re-trains the best configurations with new seeds, status and the report
rank configurations by mean ± std over seeds, and `sweep export --by mean` exports the best run of the best mean."""

from __future__ import annotations

import io
import json
import statistics
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console
from test_runner import write_spec

import sweep.reevaluation
from record import (
    StudyRecord,
    TrialRecord,
    read_study,
    read_trial,
    reevaluation_attrs,
    seed_leaders,
    study_attrs,
    trial_attrs,
)
from reports.seeds import collect_seed_ranking, winner_line
from sweep.checkpoints import is_kept
from sweep.cli import main
from sweep.errors import SweepError
from sweep.export import choose_trial
from sweep.reevaluation import new_seeds, plan_reevaluations, reevaluate_study
from sweep.runner import run_study
from sweep.storage import load_study
from sweep.worker import LoopResult

# --- the ranking by mean, on constructed trials -------------------------------------------------------------------


def run(number: int, value: float | None, *, of: int | None = None, seed: int | None = None,
        state: TrialState = TrialState.COMPLETE) -> TrialRecord:  # fmt: skip
    return TrialRecord(number=number, state=state, value=value, params={"lr": 0.001 * (number + 1)},
                       seed=seed if seed is not None else number, reevaluates=of)  # fmt: skip


def test_the_winner_by_mean_is_not_the_lucky_seed() -> None:
    trials = [
        run(0, 0.80), run(1, 0.83), run(2, 0.70),  # trial 1 is the best single run; trial 2 was never re-evaluated
        run(3, 0.82, of=0, seed=1000), run(4, 0.81, of=0, seed=2000),
        run(5, 0.76, of=1, seed=1001), run(6, 0.79, of=1, seed=2001),
        run(7, None, of=1, seed=3001, state=TrialState.FAIL), run(8, None, of=0, seed=3000, state=TrialState.WAITING),
    ]  # fmt: skip
    ranking = collect_seed_ranking(trials, maximize=True)
    assert [c.configuration for c in ranking.rows] == [0, 1]
    first, second = ranking.rows
    assert [r.number for r in first.runs] == [0, 3, 4] and first.pending == 1 and second.pending == 0
    assert first.mean == pytest.approx(0.81) and first.std == pytest.approx(statistics.stdev([0.80, 0.82, 0.81]))
    assert first.single == 0.80 and first.best_run.number == 3
    assert second.single == 0.83 and second.best_run.number == 1
    assert ranking.best_single is not None and ranking.best_single.number == 1 and ranking.changed
    line = winner_line(ranking)
    spread = f"{statistics.fmean([0.83, 0.76, 0.79]):.4f} ± {statistics.stdev([0.83, 0.76, 0.79]):.4f}"
    assert line == (f"by mean over 3 seeds the best configuration is trial 0's (0.8100 ± 0.0100), not trial 1's, the "
                    f"search's pick (its run 0.8300; mean {spread} over 3 seeds) (1 re-evaluation run still queued or "
                    "running)")


def test_ties_go_to_the_smaller_spread_then_the_earlier_trial_and_minimize_flips_the_order() -> None:
    trials = [
        run(0, 0.5), run(1, 0.625), run(2, 0.625), run(3, 0.25),
        run(4, 0.75, of=0), run(5, 0.625, of=1), run(6, 0.625, of=2), run(7, 0.25, of=3),
    ]  # fmt: skip
    ranking = collect_seed_ranking(trials, maximize=True)
    # 0, 1 and 2 all have a mean of 0.625: 1 and 2 have no spread (1 is earlier), 0 has one.
    assert [c.configuration for c in ranking.rows] == [1, 2, 0, 3]
    assert ranking.rows[0].std == 0.0 and ranking.rows[2].best_run.number == 4
    # the search picked trial 1 (0.625, earlier than 2), the mean picks it too; the best single run since is trial 4
    assert not ranking.changed
    assert (winner_line(ranking) or "") == ("by mean over 2 seeds the best configuration is still trial 1's, the "
                                            "search's pick (0.6250 ± 0.0000; its run 0.6250; best single run 0.7500, "
                                            "trial 4)")
    low = collect_seed_ranking(trials, maximize=False)
    assert [c.configuration for c in low.rows] == [3, 1, 2, 0]
    assert low.best_single is not None and low.best_single.number == 3 and not low.changed
    assert (winner_line(low) or "").startswith("by mean over 2 seeds the best configuration is still trial 3's, the "
                                               "search's pick (0.2500")


def test_a_winner_whose_best_run_is_a_reevaluation_is_a_change_from_the_searchs_pick() -> None:
    """Two users read "still trial 0's" where the search had picked trial 1: the comparison was with the best single
    run, which a re-evaluation run of trial 0 had become."""
    trials = [run(0, 0.5), run(1, 0.6), run(2, 0.9, of=0), run(3, 0.6, of=1)]
    ranking = collect_seed_ranking(trials, maximize=True)
    assert [c.configuration for c in ranking.rows] == [0, 1] and ranking.changed
    assert winner_line(ranking) == ("by mean over 2 seeds the best configuration is trial 0's (0.7000 ± 0.2828), not "
                                    "trial 1's, the search's pick (its run 0.6000; mean 0.6000 ± 0.0000 over 2 seeds; "
                                    "best single run 0.9000, trial 2)")
    assert collect_seed_ranking([run(0, 0.5), run(1, 0.6)]).rows == []  # nothing re-evaluated: no ranking
    assert winner_line(collect_seed_ranking([run(0, 0.5)])) is None


# --- planning: which configurations, which seeds ------------------------------------------------------------------


def frozen(number: int, value: float | None, state: TrialState = TrialState.COMPLETE, **attrs: Any) -> Any:
    trial = create_trial(state=state, value=value, params={"lr": 0.1 + number / 100},
                         distributions={"lr": FloatDistribution(0.0, 1.0)}, user_attrs=attrs)  # fmt: skip
    trial.number = number
    return trial


def test_new_seeds_are_deterministic_and_skip_used_ones() -> None:
    assert new_seeds(7, {7}, 3) == [1007, 2007, 3007]
    assert new_seeds(7, {7, 1007, 3007}, 2) == [2007, 4007]
    assert new_seeds(7, set(), 0) == []


def test_plan_tops_up_only_what_is_missing() -> None:
    trials = [
        frozen(0, 0.5, **trial_attrs(seed=0)), frozen(1, 0.9, **trial_attrs(seed=1)), frozen(2, 0.7),
        frozen(3, 0.99, **reevaluation_attrs(of=0, seed=1000)),  # a lucky re-evaluation run is no configuration
        frozen(4, None, TrialState.FAIL, **reevaluation_attrs(of=1, seed=1001)),  # failed, no retry: seed not reused
        frozen(5, None, TrialState.WAITING, **reevaluation_attrs(of=1, seed=2001)),
    ]  # fmt: skip
    plan = plan_reevaluations(trials, top=2, seeds=2, maximize=True, search_seed=100)
    assert plan.configurations == [1, 2]
    assert plan.existing == {1: [2001], 2: []}
    assert [(p.configuration, p.seed) for p in plan.new] == [(1, 3001), (2, 1102), (2, 2102)]  # trial 2: seed 100 + 2
    assert plan.new[0].params == {"lr": 0.11}
    low = plan_reevaluations(trials, top=1, seeds=1, maximize=False, search_seed=0)
    assert low.configurations == [0] and low.existing == {0: [1000]} and low.new == []


# --- end to end on the tiny model ---------------------------------------------------------------------------------


def test_reevaluate_end_to_end(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2, search__space__epochs=3,
                      search__space__learning_rate={"low": 5e-3, "high": 2e-2, "log": True})  # learns something here
    url = run_study(spec).storage_url
    # From here on every pruner question is answered "prune": re-evaluation runs must not even ask.
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)

    result, plan = reevaluate_study("trec-tiny", url, top=2, seeds=1)
    assert len(plan.new) == 2 and read_study(result.study).budget == 4

    # A second call asks for 2 seeds each; its process dies right after its first run started (left RUNNING).
    def killed(study: optuna.Study, *args: object) -> LoopResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Heartbeat of storage is supposed to be used with Study.optimize"
            study.ask()
        return LoopResult()

    with monkeypatch.context() as patched:
        patched.setattr(sweep.reevaluation, "work", killed)
        _, topped = reevaluate_study("trec-tiny", url, top=2, seeds=2)
    assert [p.configuration for p in topped.new] == plan.configurations  # one more seed each, nothing repeated

    # Any worker runs what is queued: `sweep worker` fails the orphan, retries it with its tag and seed, runs the rest.
    assert main(["worker", "trec-tiny", "--storage", url]) == 0
    study = load_study("trec-tiny", url)
    records = [read_trial(t) for t in study.get_trials()]
    runs = [r for r in records if r.reevaluates is not None]
    assert sum(r.state == TrialState.COMPLETE for r in runs) == 4 and all(r.pruned_at_epoch is None for r in runs)
    failed = [r for r in runs if r.state == TrialState.FAIL]
    assert len(failed) == 1
    retry = next(r for r in runs if r.retry_of == failed[0].number)
    assert (retry.reevaluates, retry.seed, retry.state) == (failed[0].reevaluates, failed[0].seed, TrialState.COMPLETE)
    for configuration in plan.configurations:
        seeds = [r.seed for r in records if r.configuration == configuration and r.state == TrialState.COMPLETE]
        assert sorted(seeds) == [configuration, configuration + 1000, configuration + 2000]  # recorded, distinct
        params = {repr(r.params) for r in records if r.configuration == configuration and r.params}
        assert len(params) == 1  # every run trains the original's configuration (the killed one never got to it)
    finished = [r for r in records if r.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == read_study(study).budget == 6  # the budget counts exactly the re-evaluation runs

    # Again: nothing added, nothing run, and it says what exists. `sweep run` on the spec keeps the re-evaluation runs
    # in the budget (n_trials counts the search's trials).
    before = len(study.get_trials())
    capsys.readouterr()
    assert main(["reevaluate", "trec-tiny", "--top", "5", "--seeds", "2", "--storage", url]) == 0
    err = capsys.readouterr().err
    assert "queued 0 re-evaluation runs" in err and err.count("has 2 re-evaluation runs") == 2, err
    assert "--top 5: the study has 2 completed search configurations, re-evaluating all of them" in err
    assert "6/6 trials finished (the budget: 2 of the search + 4 re-evaluation runs)" in err, err
    run_study(spec)
    study = load_study("trec-tiny", url)
    assert len(study.get_trials()) == before and read_study(study).budget == 6

    # status: the runs are marked, the seed table and the verdict are printed.
    assert main(["status", "trec-tiny", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "re-evaluates trial" in out and "configurations by mean over seeds" in out
    assert "by mean over 3 seeds the best configuration is" in out

    # export --by mean: the best run (by value) of the configuration with the best mean, whose checkpoint is kept.
    ranking = collect_seed_ranking(records, maximize=True)
    assert ranking.winner is not None
    means = {c: statistics.fmean([r.value for r in records if r.configuration == c and r.value is not None
                                  and r.state == TrialState.COMPLETE]) for c in plan.configurations}  # fmt: skip
    best_config = max(means, key=lambda c: (means[c], -c))
    group = [r for r in records if r.configuration == best_config and r.state == TrialState.COMPLETE]
    expected = max(group, key=lambda r: (r.value, -r.number)).number
    assert ranking.winner.configuration == best_config and ranking.winner.best_run.number == expected
    assert len({r.value for r in records if r.value is not None}) > 2  # seeds do move the value: not a vacuous pick
    leaders = seed_leaders(study.get_trials(), maximize=True)
    assert all(is_kept(study, t) for t in leaders.values())  # the top-k rule never deleted what --by mean exports
    capsys.readouterr()
    assert main(["export", "trec-tiny", "--storage", url, "--out", str(tmp_path / "model"), "--by", "mean"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"exported trial {expected} (" in said and f"the best run of trial {best_config}'s configuration, best by " \
        "mean over 3 seeds: " in said
    meta = json.loads((tmp_path / "model" / "sweep.json").read_text())
    assert meta["trial"] == expected and meta["selected_by"]["configuration"] == best_config
    assert "Chosen by mean over seeds" in (tmp_path / "model" / "README.md").read_text()
    # the search's pick exported as it is: its card gives its configuration's mean over seeds (a user's card said
    # only the single-seed score), and names the configuration with the better mean where it is another
    search_pick = ranking.search_best
    assert search_pick is not None
    picked = next(r for r in ranking.rows if r.configuration == read_trial(study.trials[search_pick.number])
                  .configuration)  # fmt: skip
    assert main(["export", "trec-tiny", "--storage", url, "--out", str(tmp_path / "pick"), "--trial",
                 str(search_pick.number)]) == 0  # fmt: skip
    card = " ".join((tmp_path / "pick" / "README.md").read_text().split())
    spread = f"{picked.mean:.4f}" + (f" ± {picked.std:.4f}" if picked.std is not None else "")
    assert (f"Re-trained with other seeds (`sweep reevaluate`): trial {picked.configuration}'s configuration scored "
            f"{spread} over {len(picked.runs)} runs") in card
    assert (f"Trial {best_config}'s configuration had the better mean" in card) == (best_config != picked.configuration)
    assert "lean optimistic" in card
    check = json.loads((tmp_path / "pick" / "sweep.json").read_text())["seed_check"]
    assert check["configuration"] == picked.configuration and check["best_mean_configuration"] == best_config

    # The report has the section, with the verdict.
    assert main(["report", "trec-tiny", "--storage", url, "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Seed-robust selection" in page and "By mean over 3 seeds the best configuration is" in page

    # --n-trials below what the search ran says the search's count: a user read "6 finished" and gave 7, for nothing
    said = io.StringIO()
    run_study(spec, n_trials=1, console=Console(file=said, width=300))
    assert "--n-trials 1: 2 trials of the search have finished already, nothing to run (the search's budget stays 2, " \
        "with 4 re-evaluation runs on top; --n-trials 3 or more continues the study)" in said.getvalue()

    # The patched pruner does bite: one more search trial (n_trials 3, plus the 4 re-evaluation runs) is pruned.
    run_study(spec, n_trials=3)
    study = load_study("trec-tiny", url)
    assert [t.state for t in study.get_trials()][-1] == TrialState.PRUNED and read_study(study).budget == 7


# --- bad input and export choices ---------------------------------------------------------------------------------


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    plain = optuna.create_study(study_name="plain", storage=url, direction="maximize")
    plain.add_trial(frozen(0, 0.5))
    ours = optuna.create_study(study_name="ours", storage=url, direction="maximize")
    for key, value in study_attrs(StudyRecord(spec={"name": "ours"}, data_fingerprint="abc", budget=1)).items():
        ours.set_user_attr(key, value)
    ours.add_trial(frozen(0, None, TrialState.FAIL))
    before = (tmp_path / "s.db").read_bytes()
    cases = [
        (["ours", "--top", "0", "--seeds", "2"], "error: --top: must be >= 1, got 0"),
        (["ours", "--top", "1", "--seeds", "-1"], "error: --seeds: must be >= 1, got -1"),
        (["plain", "--top", "1", "--seeds", "1"], "error: study: study 'plain' in sqlite:///"),
        (["ours", "--top", "1", "--seeds", "1"], "error: study: study 'ours' has no completed trial to re-evaluate"),
        (["nope", "--top", "1", "--seeds", "1"], "error: study: no study named 'nope'"),
    ]
    for args, message in cases:
        assert main(["reevaluate", *args, "--storage", url]) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), (args, lines)
    assert (tmp_path / "s.db").read_bytes() == before


def test_export_by_mean_choices_and_a_missing_checkpoint(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    for key, value in study_attrs(StudyRecord(spec={"name": "s"}, data_fingerprint="abc")).items():
        study.set_user_attr(key, value)
    with pytest.raises(SweepError, match=r"--by.*has no completed trial yet: run its trials first"):
        choose_trial(study, None, by="mean")  # not a re-evaluation that would itself be refused
    for trial in (frozen(0, 0.5), frozen(1, 0.9)):
        study.add_trial(trial)
    with pytest.raises(SweepError, match="--by.*no re-evaluated configuration.*sweep reevaluate"):
        choose_trial(study, None, by="mean")
    study.add_trial(frozen(2, 0.8, **reevaluation_attrs(of=0, seed=1000)))
    study.add_trial(frozen(3, 0.1, **reevaluation_attrs(of=1, seed=1001)))
    with pytest.raises(SweepError, match=r"mean: trial 2, the best run of trial 0's configuration \(best by mean, "
                                         r"0\.6500 ± 0\.2121\), keeps no checkpoint"):
        choose_trial(study, None, by="mean")
    with pytest.raises(SweepError, match="must be 'value' or 'mean', got 'median'"):
        choose_trial(study, None, by="median")
    with pytest.raises(SweepError, match="give --trial N or --by mean, not both"):
        choose_trial(study, 1, by="mean")
    with pytest.raises(SweepError, match="trial 1's checkpoint was not kept"):  # --by value: today's best trial
        choose_trial(study, None)


@pytest.mark.postgres
def test_reevaluate_on_postgresql_under_the_budget_lock(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], postgres_url: str
) -> None:
    from sqlalchemy import create_engine, text

    from sweep.internals import budget_lock

    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, storage=postgres_url, search__n_trials=1,
                      search__space__epochs=1)  # fmt: skip
    url = run_study(spec).storage_url
    _, plan = reevaluate_study("trec-tiny", url, top=1, seeds=1)
    study = load_study("trec-tiny", url, read_only=False)
    runs = [read_trial(t) for t in study.get_trials() if read_trial(t).reevaluates is not None]
    assert [(r.reevaluates, r.seed, r.state) for r in runs] == [(0, 1000, TrialState.COMPLETE)]
    assert read_study(study).budget == 2 and len(plan.new) == 1

    engine = create_engine(postgres_url)
    advisory = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
    try:
        with budget_lock(study), engine.connect() as conn:
            assert conn.execute(advisory).scalar() == 1  # queueing waits for new trials' budget count, and so on
        with engine.connect() as conn:
            assert conn.execute(advisory).scalar() == 0
    finally:
        engine.dispose()


def test_advice_and_expected_performance_leave_reevaluation_runs_out() -> None:
    from reports.trials import completed_values, study_advice

    space = {"lr": {"low": 0.0, "high": 1.0}, "wd": {"low": 0.0, "high": 1.0}, "dropout": {"low": 0.0, "high": 0.5}}
    study = optuna.create_study(direction="maximize")
    record = StudyRecord(spec={"name": "s", "search": {"n_trials": 2, "sampler": "random", "space": space}},
                         data_fingerprint="abc", budget=2)  # fmt: skip
    for key, value in study_attrs(record).items():
        study.set_user_attr(key, value)
    for trial in (frozen(0, 0.5), frozen(1, 0.6)):
        study.add_trial(trial)
    before = study_advice(study)
    assert any("--n-trials" in line for line in before)  # 2 trials for 3 searched parameters: too few
    for trial in (frozen(2, 0.9, **reevaluation_attrs(of=0, seed=1000)),
                  frozen(3, 0.1, **reevaluation_attrs(of=1, seed=1001))):  # fmt: skip
        study.add_trial(trial)
    for key, value in study_attrs(StudyRecord(spec=record.spec, data_fingerprint="abc", budget=4)).items():
        study.set_user_attr(key, value)
    # the same numbers and --n-trials (it counts the search's trials), and the line says so
    aside = [line.replace("(n_trials 2)", "(n_trials 2, the search's; re-evaluation runs aside)") for line in before]
    assert study_advice(study) == aside and aside != before
    assert completed_values(study) == [0.5, 0.6]


def test_the_comparison_marks_a_lucky_reevaluation_run_and_gives_the_mean() -> None:
    """A re-evaluated study's best single run can be a re-evaluation run (one more seed of a configuration): the
    comparison says so, and gives the best configuration by mean beside it."""
    from reports.sections import best_trial_table, comparison_table

    studies = []
    for name in ("reevaluated", "plain"):
        study = optuna.create_study(study_name=name, direction="maximize")
        for key, value in study_attrs(StudyRecord(spec={"name": name}, data_fingerprint="abc")).items():
            study.set_user_attr(key, value)
        for trial in (frozen(0, 0.5), frozen(1, 0.6)):
            study.add_trial(trial)
        studies.append(study)
    for trial in (frozen(2, 0.9, **reevaluation_attrs(of=0, seed=1000)),
                  frozen(3, 0.1, **reevaluation_attrs(of=1, seed=1001))):  # fmt: skip
        studies[0].add_trial(trial)
    rows = {row[0]: row[1:] for row in comparison_table(studies).rows}
    assert rows["trial"] == ["2 (re-evaluation run of trial 0, seed 1000)", 1]
    assert rows["best by mean over seeds"] == ["trial 0: 0.7000 ± 0.2828 over 2 seeds", "not re-evaluated"]
    assert dict(best_trial_table(studies[0].best_trial, "f1_macro").rows)["trial"].startswith("2 (re-evaluation")
    assert "best by mean over seeds" not in {row[0] for row in comparison_table(studies[1:] * 2).rows}
