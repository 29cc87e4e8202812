"""End to end on the tiny BERT and the quickstart support tickets: create, persist, resume, refuse, fail, prune."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from rich.console import Console

import sweep.objective
from record import best_trial, read_study, read_trial, study_budget, write_study
from reports.blocks import TableBlock
from reports.classes import confused_pairs, shorten
from reports.sections import best_trial_blocks
from sweep.errors import SweepError
from sweep.runner import run_study
from sweep.storage import load_study


def write_spec(tmp_path: Path, train: Path, val: Path | None, encoder: Path, **overrides: object) -> Path:
    spec: dict = {
        "name": "trec-tiny",
        "storage": f"sqlite:///{tmp_path / 'sweeps.db'}",
        "data": {"train": str(train), "text_column": "text", "label_column": "label", "cache_dir": str(tmp_path / "c")},
        "model": {"encoder": str(encoder), "max_length": 32},
        "objective": {"metric": "f1_macro"},
        "search": {
            "n_trials": 3,
            "sampler": "random",
            "pruner": "none",
            "seed": 0,
            "space": {
                "learning_rate": {"low": 1e-3, "high": 5e-3, "log": True},
                "batch_size": [8, 16],
                "epochs": {"low": 1, "high": 2},
                "weight_decay": {"low": 0.0, "high": 0.1},
            },
        },
    }
    if val is not None:
        spec["data"]["validation"] = str(val)
    for dotted, value in overrides.items():
        node = spec
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_end_to_end_create_persist_resume(tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]) -> None:
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert)
    result = run_study(spec)
    url = result.storage_url
    assert not result.resumed

    study = load_study("trec-tiny", url)  # read back from the SQL store, as `sweep status` does
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 3
    assert read_study(study).label_names == ["account", "billing", "product", "returns"]
    report = read_study(study).data_report
    assert report["num_validation"] == 40 and report["class_distribution"]["validation"]["billing"] == 10
    for trial in finished:
        record = read_trial(trial)
        history = record.history
        epochs = record.hyperparameters["epochs"]
        assert epochs == trial.params["epochs"]
        # Default schedule: one evaluation at each epoch's end (search.first_epoch_evals: 0).
        trained = [r["epochs_trained"] for r in history]
        assert trained == list(range(1, epochs + 1)) and record.epochs_run == epochs
        assert record.evaluations == len(history) == epochs
        best = max(history, key=lambda r: (r["val_f1_macro"], -r["val_loss"]))  # a tie: the lower loss, the earlier
        assert trial.value == pytest.approx(best["val_f1_macro"])  # the best evaluation scores, not the last
        assert record.best_epoch == best["epoch"] + 1
        assert record.best_epochs_trained == pytest.approx(best["epochs_trained"], abs=0.01)
        steps = list(range(1, epochs + 1))  # Optuna steps are epochs
        values = {s: pytest.approx(r["val_f1_macro"]) for s, r in zip(steps, history, strict=True)}
        assert trial.intermediate_values == values
        assert set(record.per_class) == {"account", "billing", "product", "returns"}
        assert record.seed == trial.number
        assert record.timings is not None and record.timings.total >= record.timings.train > 0
        assert record.data_fingerprint == read_study(study).data_fingerprint

    # Same spec, bigger budget: continues to the requested number, data comes from the tokenisation cache.
    again = run_study(spec, n_trials=4)
    assert again.resumed
    assert len(load_study("trec-tiny", url).get_trials(states=(TrialState.COMPLETE,))) == 4
    # ... with new draws: a sampler seeded as at the start drew trials 0 and 1 again (a user's study repeated them)
    rates = [t.params["learning_rate"] for t in load_study("trec-tiny", url).trials]
    assert len(set(rates)) == 4, rates
    run_study(spec, n_trials=4)
    assert len(load_study("trec-tiny", url).trials) == 4
    # Without --n-trials the raised budget stands (the spec's 2 would strand queued retries and show 4/2)
    said = io.StringIO()
    plain = run_study(spec, console=Console(file=said, width=300))
    assert len(plain.study.trials) == 4 and study_budget(plain.study.user_attrs) == 4
    assert "budget stays 4 trials, as raised before (the spec's n_trials is 3; --n-trials N sets the search's)" in (
        said.getvalue())

    # A different spec under the same name is refused, naming what changed; nothing new is written.
    changed = write_spec(tmp_path, train, val, tiny_bert, model__max_length=64)
    with pytest.raises(SweepError, match=r"different spec \(changed: model.max_length 32 -> 64\)"):
        run_study(changed)
    assert len(load_study("trec-tiny", url).trials) == 4

    # --n-trials below what finished already runs nothing and keeps the budget (it showed 4/2, then "as raised")
    said = io.StringIO()
    spec = write_spec(tmp_path, train, val, tiny_bert)  # the original again (write_spec wrote the changed one there)
    run_study(spec, n_trials=2, console=Console(file=said, width=300))
    assert "--n-trials 2: 4 trials of the search have finished already, nothing to run (the budget stays 4; " \
        "--n-trials 5 or more continues the study)" in said.getvalue()
    assert study_budget(load_study("trec-tiny", url).user_attrs) == 4
    # Where the data and the cache sit, and how many threads train, change nothing the trials learn: it continues.
    moved = tmp_path / "moved"
    moved.mkdir()
    copies = [Path(shutil.copy(f, moved / f.name)) for f in (train, val)]
    relocated = write_spec(tmp_path, *copies, tiny_bert, data__cache_dir=str(tmp_path / "other-cache"),
                           trainer={"num_threads": 1}, search__keep_checkpoints=1)  # fmt: skip
    said = io.StringIO()
    assert run_study(relocated, console=Console(file=said, width=300)).resumed
    # ... and a lowered keep_checkpoints says whose checkpoints go after the next trial, while they can be exported
    assert "warning: search.keep_checkpoints 3 -> 1: the checkpoints of trials " in said.getvalue()


def test_the_best_trial_keeps_an_example_text_per_confused_pair(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    train, val = labelled_csvs
    study = run_study(write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1, search__space__epochs=1)).study
    best = best_trial(study)
    assert best is not None
    record = read_trial(best)
    labels = ["account", "billing", "product", "returns"]
    assert record.confusion_matrix is not None
    ranked = [(p.given, p.predicted) for p in confused_pairs(record.confusion_matrix, labels, limit=20)]
    assert ranked and [(e["given"], e["predicted"]) for e in record.confused_examples] == ranked
    with val.open(encoding="utf-8", newline="") as fh:
        rows = [(shorten(row["text"]), row["label"]) for row in csv.DictReader(fh)]
    for example in record.confused_examples:  # a real validation text of its given label
        assert (example["text"], example["given"]) in rows
    assert all("misclassified" not in r for r in [*record.history, record.metrics])  # the rows stay out of the store
    pairs = best_trial_blocks(study)[1]
    assert isinstance(pairs, TableBlock) and pairs.columns[-1] == "example text"
    assert [row[-1] for row in pairs.rows] == [e["text"] for e in record.confused_examples[: len(pairs.rows)]]


def test_split_from_train_when_no_validation(tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]) -> None:
    train, _ = labelled_csvs
    spec = write_spec(tmp_path, train, None, tiny_bert, search__n_trials=1, data__val_fraction=0.25)
    study = run_study(spec).study
    report = read_study(study).data_report
    assert report["num_validation"] == 30 and set(report["class_distribution"]["validation"].values()) == {7, 8}


def test_failed_trial_is_recorded_and_study_goes_on(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sweep.objective.train_trial

    def flaky(hp, data, settings, *, seed, callbacks):  # type: ignore[no-untyped-def]
        if seed == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(hp, data, settings, seed=seed, callbacks=callbacks)

    monkeypatch.setattr(sweep.objective, "train_trial", flaky)
    train, val = labelled_csvs
    study = run_study(write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2)).study
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.FAIL, 2: TrialState.COMPLETE}
    assert read_trial(study.trials[1]).error == "RuntimeError: CUDA out of memory (simulated)"


class PruneFromStep(optuna.pruners.BasePruner):
    """Deterministic: prune every trial once it has reported `step`."""

    def __init__(self, step: int):
        self.step = step

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.step


def test_pruning_callback_stops_training_and_records(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sweep.lifecycle.make_pruner", lambda search: PruneFromStep(2))
    train, val = labelled_csvs
    spec = write_spec(
        tmp_path,
        train,
        val,
        tiny_bert,
        search__n_trials=1,
        search__first_epoch_evals=0,  # one evaluation per epoch: step = epoch
        search__space={"epochs": 4, "learning_rate": 1e-3},
    )
    trial = run_study(spec).study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [1, 2]  # stopped after epoch 2 of 4
    assert read_trial(trial).pruned_at_epoch == 2 and read_trial(trial).epochs_run == 2
    assert len(read_trial(trial).history) == 2


def test_pruning_acts_inside_the_first_epoch(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sweep.lifecycle.make_pruner", lambda search: PruneFromStep(1))
    train, val = labelled_csvs
    spec = write_spec(
        tmp_path,
        train,
        val,
        tiny_bert,
        search__n_trials=1,
        search__first_epoch_evals=3,  # evaluations at 1/4, 1/2 and 3/4 of the first epoch
        search__space={"epochs": 3, "learning_rate": 1e-3, "batch_size": 8},
    )
    study = run_study(spec).study
    trial = study.trials[0]
    assert read_study(study).steps_per_epoch == 4
    assert trial.state == TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [1]  # stopped at the first evaluation, a quarter into epoch 1
    history = read_trial(trial).history
    assert len(history) == 1 and history[0]["epochs_trained"] == pytest.approx(0.25, abs=0.05)
    assert read_trial(trial).pruned_at_epoch == pytest.approx(0.25, abs=0.05)
    assert read_trial(trial).epochs_run == read_trial(trial).pruned_at_epoch
    # It trained only that quarter: one validation run, a quarter of the training examples.
    assert read_trial(trial).timings.train_examples == pytest.approx(
        read_study(study).data_report["num_train"] / 4, abs=8
    )
    assert len(read_trial(trial).validation_wall_times) == 1


def test_bad_input_creates_no_study(tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]) -> None:
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, data__label_column="lable", data__text_column="txt")
    with pytest.raises(SweepError) as info:
        run_study(spec)
    columns = "(columns: text, label)"
    assert sorted(info.value.problems) == [
        ("data.label_column", f"no such column 'lable' in train.csv {columns}; did you mean 'label'?"),
        ("data.label_column", f"no such column 'lable' in val.csv {columns}; did you mean 'label'?"),
        ("data.text_column", f"no such column 'txt' in train.csv {columns}; did you mean 'text'?"),
        ("data.text_column", f"no such column 'txt' in val.csv {columns}; did you mean 'text'?"),
    ]
    assert not (tmp_path / "sweeps.db").exists()

    spec = write_spec(tmp_path, tmp_path / "missing.csv", val, tmp_path / "no-model", storage="mongodb://x")
    with pytest.raises(SweepError) as info:
        run_study(spec)
    problems = dict(info.value.problems)
    assert list(problems) == ["data.train", "storage", "model.encoder"]
    assert problems["data.train"] == f"file not found: {tmp_path / 'missing.csv'}"
    assert problems["storage"].startswith("unsupported scheme 'mongodb' in 'mongodb://x'")
    assert problems["model.encoder"].startswith(f"no such directory: {tmp_path / 'no-model'}")
    assert not (tmp_path / "sweeps.db").exists()


def test_a_study_from_before_first_epoch_evaluations_continues_with_zero(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    train, val = labelled_csvs
    old_style = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1, search__first_epoch_evals=0)
    result = run_study(old_style)
    study = result.study
    record = read_study(study)
    del record.spec["search"]["first_epoch_evals"]  # the spec as such a study recorded it: the key did not exist
    write_study(study.set_user_attr, record)

    two = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2, search__first_epoch_evals=2)
    with pytest.raises(SweepError, match=r"changed: search.first_epoch_evals unset -> 2\) \(a study from before .* "
                                         r"add `first_epoch_evals: 0` under search\)"):  # fmt: skip
        run_study(two)
    resumed = run_study(write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2))  # 0, today's default
    assert resumed.resumed and len(resumed.study.get_trials(states=(TrialState.COMPLETE,))) == 2


def test_a_study_made_under_earlier_defaults_continues_with_them_and_says_so(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    """Studies made when first_epoch_evals was 2 and prune_after_epochs 0.5 by default stored those values; re-running
    their spec file (which names neither) continues them with those values instead of refusing a changed spec."""
    import io

    from rich.console import Console

    train, val = labelled_csvs
    made = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1, search__pruner="median",
                      search__first_epoch_evals=2, search__prune_after_epochs=0.5, search__space__epochs=1)  # fmt: skip
    fingerprint = read_study(run_study(made).study).spec_fingerprint
    said = io.StringIO()
    again = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2, search__pruner="median",
                       search__space__epochs=1)  # fmt: skip
    resumed = run_study(again, console=Console(file=said, width=200))
    assert resumed.resumed and read_study(resumed.study).spec_fingerprint == fingerprint
    notes = [line for line in said.getvalue().splitlines() if line.startswith("note: study 'trec-tiny' continues")]
    assert [n.split(",")[0] for n in notes] == ["note: study 'trec-tiny' continues with search.first_epoch_evals: 2",
                                                "note: study 'trec-tiny' continues with search.prune_after_epochs: 0.5"]
    trial = resumed.study.trials[1]
    trained = [r["epochs_trained"] for r in read_trial(trial).history]
    assert trained[:2] == [pytest.approx(1 / 3, abs=0.07), pytest.approx(2 / 3, abs=0.07)]  # as the study ran


def test_a_trial_that_reached_its_last_evaluation_completes(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna's pruners answer at any step: a trial pruned at its last evaluation would lose its finished result."""
    monkeypatch.setattr("sweep.lifecycle.make_pruner", lambda search: PruneFromStep(2))
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1, search__first_epoch_evals=0,
                      search__space={"epochs": 2, "learning_rate": 1e-3})  # fmt: skip
    trial = run_study(spec).study.trials[0]
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [1, 2]
    assert trial.value == pytest.approx(max(trial.intermediate_values.values()), abs=1e-6)


def test_lightnings_own_sigterm_exit_is_recorded_as_a_stop(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning's handler runs before ours and may end the fit with its SIGTERMException (a SystemExit): the trial
    is still FAIL with the reason and queued for a retry, and the run ends as stopped (not killed mid-record)."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    def killed(*args: object, **kwargs: object) -> None:
        raise SIGTERMException

    monkeypatch.setattr(sweep.objective, "train_trial", killed)
    train, val = labelled_csvs
    result = run_study(write_spec(tmp_path, train, val, tiny_bert, search__n_trials=2))
    assert result.stopped_by == "SIGTERM" and result.interrupted
    [stopped, queued] = result.study.get_trials()
    assert stopped.state == TrialState.FAIL and read_trial(stopped).stopped_by == "SIGTERM"
    assert read_trial(stopped).error.startswith("stopped by SIGTERM after")
    assert queued.state == TrialState.WAITING and read_trial(queued).retry_of == stopped.number


def test_a_retry_says_which_trial_it_repeats_in_its_line() -> None:
    from optuna.distributions import FloatDistribution

    from sweep.summary import trial_line

    study = optuna.create_study(direction="maximize")
    retry = optuna.trial.create_trial(value=0.5, params={"lr": 0.1}, distributions={"lr": FloatDistribution(0, 1)},
                                      system_attrs={"failed_trial": 12})  # fmt: skip
    study.add_trial(retry)
    line = trial_line(study, study.trials[0], "f1_macro")
    assert line.startswith("trial 0 COMPLETE · retry of trial 12 · f1_macro 0.5000"), line


def test_a_failed_trials_value_is_said_as_what_it_reached_before_it_failed() -> None:
    """A user read `trial 1 FAIL · spearman 0.3173` (and 0.3173 in the table) as the failed trial's result."""
    from rich.console import Console

    from sweep.summary import trial_line, trials_table

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, intermediate_values={1: 0.3173}))
    assert "· f1_macro 0.3173 before it failed ·" in trial_line(study, study.trials[0], "f1_macro")
    console = Console(record=True, width=200)
    console.print(trials_table(study))
    assert "(0.3173)" in console.export_text()


def test_an_unwritable_cache_is_said_as_data_cache_dir_not_as_the_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only working folder made the default cache unwritable, and the error blamed model.encoder."""
    import errno

    import sweep.runner
    from sweep.spec import parse_spec

    def read_only(**kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "cache" / "abc"))

    monkeypatch.setattr(sweep.runner, "prepare_classification_data", read_only)
    spec = parse_spec({"name": "s", "data": {"train": "t.csv", "cache_dir": str(tmp_path / "cache")}})
    with pytest.raises(SweepError) as err:
        sweep.runner.prepare_data(spec, tmp_path, "enc", Console(quiet=True), source="spec.yaml")
    assert err.value.lines() == [f"spec.yaml: data.cache_dir: cannot write the cache folder {tmp_path / 'cache'}: "
                                 "Read-only file system (set data.cache_dir to a writable folder)"]  # fmt: skip


def test_a_signal_after_a_trials_training_lets_it_finish_and_says_so(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Ctrl-C while trial 0 records its result: it finishes COMPLETE, and the closing line said "no trial was
    running" (a user's run)."""
    import os
    import signal

    from sweep.cli import main

    original = sweep.objective.trial_result

    def interrupted(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGINT)  # handled at once: the worker's handler records the request
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sweep.objective, "trial_result", interrupted)
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__n_trials=2, search__space={"epochs": 1})
    assert main(["run", str(spec)]) == 130
    err = capsys.readouterr().err
    assert "stopped by SIGINT: the running trial was past its training and is recorded as it finished" in err, err
    (trial,) = load_study("trec-tiny", f"sqlite:///{tmp_path / 'sweeps.db'}").trials
    assert trial.state == TrialState.COMPLETE


def test_fp16_on_a_cpu_is_said_to_train_in_bf16(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning swaps 16-mixed for bf16-mixed on a CPU and says so only in a warning; the stored spec reads 16."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, trainer={"precision": "16-mixed"})
    said = io.StringIO()
    run_study(spec, workers=0, console=Console(file=said, width=300))
    assert "precision 16-mixed: a CPU has no fp16 autocast, so Lightning trains in bf16-mixed here" in said.getvalue()


def test_gradient_clipping_reaches_lightning_and_a_spec_without_it_keeps_its_fingerprint(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytorch_lightning as pl

    from sweep.spec import parse_spec

    seen: list[object] = []

    class Recording(pl.Trainer):
        def __init__(self, *args: object, **kwargs: object) -> None:
            seen.append(kwargs.get("gradient_clip_val"))
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sweep.objective.pl, "Trainer", Recording)
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__n_trials=1, search__space={"epochs": 1},
                      trainer={"gradient_clip_val": 0.5})  # fmt: skip
    run_study(spec)
    assert seen == [0.5]
    plain = {"name": "s", "data": {"train": "t.csv"}}
    assert "gradient_clip_val" not in parse_spec(plain).model_dump(mode="json")["trainer"]  # stored studies resume
    assert parse_spec({**plain, "trainer": {"gradient_clip_val": 1.0}}).fingerprint() != parse_spec(plain).fingerprint()


def test_accumulated_batches_step_the_optimizer_once_per_group_and_evaluations_still_count_epochs_in_batches(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    from sweep.spec import parse_spec

    # 120 training rows in batches of 8: 15 batches an epoch, 8 optimizer steps with 2 batches summed per step
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__n_trials=1,
                      search__space={"batch_size": 8, "epochs": 2}, search__first_epoch_evals=2,
                      trainer={"accumulate_grad_batches": 2})  # fmt: skip
    (trial,) = run_study(spec).study.trials
    history = read_trial(trial).history
    # the evaluation a third in moves from batch 5 (between the two batches of step 3) to batch 4, step 2's last
    assert [r["epochs_trained"] for r in history] == [0.2667, 0.6667, 1.0, 2.0]
    assert [r["step"] for r in history] == [2, 5, 8, 16]  # optimizer steps: a group's last batch, and an epoch's end
    plain = {"name": "s", "data": {"train": "t.csv"}}
    assert "accumulate_grad_batches" not in parse_spec(plain).model_dump(mode="json")["trainer"]  # studies resume
    accumulating = parse_spec({**plain, "trainer": {"accumulate_grad_batches": 4}})
    assert accumulating.fingerprint() != parse_spec(plain).fingerprint()


def test_a_cosine_schedule_reaches_every_head_and_the_card_says_so(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweep.export import _settings_note
    from sweep.spec import parse_spec

    seen: list[str] = []
    build = sweep.objective.build_module

    def recording(task: str, head: object) -> object:
        module = build(task, head)  # type: ignore[arg-type]
        seen.append(module.lr_schedule)
        return module

    monkeypatch.setattr(sweep.objective, "build_module", recording)
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__n_trials=1, search__space={"epochs": 1},
                      trainer={"lr_schedule": "cosine"})  # fmt: skip
    study = run_study(spec).study
    assert seen == ["cosine"]
    stored = read_study(study).spec
    meta = {"hyperparameters": {"batch_size": 32}, "spec": stored}
    assert _settings_note(meta) == "; a cosine decay of the learning rate after the warm-up"
    from sweep.summary import best_summary

    shown = io.StringIO()
    Console(file=shown, width=300).print(best_summary(study))  # what `sweep status` prints
    assert "trainer: cosine learning rate after the warm-up" in shown.getvalue()
    plain = {"name": "s", "data": {"train": "t.csv"}}
    assert "lr_schedule" not in parse_spec(plain).model_dump(mode="json")["trainer"]  # stored studies resume
    with pytest.raises(SweepError, match="trainer.lr_schedule"):
        parse_spec({**plain, "trainer": {"lr_schedule": "step"}})


def test_more_summed_batches_than_an_epoch_has_is_refused_before_anything_is_stored(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    """A helper's `accumulate_grad_batches: 100000` trained one optimizer step per epoch on a gradient Lightning had
    divided by 100000, silently."""
    from sweep.runner import accumulation_problem, trainer_settings_line
    from sweep.spec import parse_spec

    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__space={"batch_size": [8, 16], "epochs": 1},
                      trainer={"accumulate_grad_batches": 9})  # fmt: skip
    with pytest.raises(SweepError) as err:
        run_study(spec)  # 120 rows at batch 16: 8 batches an epoch
    assert err.value.lines() == [f"{spec}: trainer.accumulate_grad_batches: 9 is more than the 8 batches of an epoch "
                                 "(120 training rows at batch_size 16): each epoch would make one optimizer step; set "
                                 "it to at most 8, or lower batch_size"]  # fmt: skip
    store = tmp_path / "sweeps.db"
    assert not store.exists() or not optuna.get_all_study_names(f"sqlite:///{store}")
    plain = parse_spec({"name": "s", "data": {"train": "t.csv"}, "search": {"space": {"batch_size": 32}},
                        "trainer": {"accumulate_grad_batches": 4}})  # fmt: skip
    assert accumulation_problem(plain, 128) is None  # 4 batches: one step an epoch, allowed
    assert trainer_settings_line(plain) == ("trainer: 4 batches summed per optimizer step (effective batch 32 x 4 = "
                                            "128)")  # fmt: skip
    searched = parse_spec({"name": "s", "data": {"train": "t.csv"}, "search": {"space": {"batch_size": [8, 16]}},
                           "trainer": {"accumulate_grad_batches": 4}})  # fmt: skip
    assert trainer_settings_line(searched) == ("trainer: 4 batches summed per optimizer step (effective batch "
                                               "batch_size x 4)")  # fmt: skip
    cosine = parse_spec({"name": "s", "data": {"train": "t.csv"},
                         "trainer": {"lr_schedule": "cosine", "gradient_clip_val": 1}})  # fmt: skip
    assert trainer_settings_line(cosine) == ("trainer: cosine learning rate after the warm-up; gradients clipped to an "
                                             "L2 norm of 1")  # fmt: skip
    assert trainer_settings_line(parse_spec({"name": "s", "data": {"train": "t.csv"}})) is None


def test_early_stopping_ends_a_trial_whose_metric_stops_improving_and_the_trial_completes(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    """A learning rate too small to move the predictions: the F1 a third into epoch 1 is never beaten, so with
    patience 1 the trial ends at the next evaluation, complete, with its best evaluation kept."""
    spec = write_spec(tmp_path, *labelled_csvs, tiny_bert, search__n_trials=1,
                      search__space={"learning_rate": 1e-12, "batch_size": 8, "epochs": 4},
                      search__first_epoch_evals=2, trainer={"early_stopping_patience": 1})  # fmt: skip
    said = io.StringIO()
    (trial,) = run_study(spec, console=Console(file=said, width=300)).study.trials
    record = read_trial(trial)
    assert trial.state == TrialState.COMPLETE
    assert [r["epochs_trained"] for r in record.history] == [0.3333, 0.6667]
    assert trial.value == record.history[0]["val_f1_macro"]
    assert "trainer: a trial ends after 1 evaluation without improvement" in said.getvalue()


def test_a_refused_resume_names_a_left_out_default_by_its_value() -> None:
    """A helper wrote `lr_schedule: linear` and read `changed: trainer.lr_schedule "cosine" -> unset` (a stored spec
    leaves a later key out at its default); a key that did not exist when the study ran stays `unset`."""
    from sweep.lifecycle import _change

    assert _change("trainer.lr_schedule", {"trainer": {"lr_schedule": "cosine"}}, {"trainer": {}}) == (
        'trainer.lr_schedule "cosine" -> "linear" (the default)')
    assert _change("search.first_epoch_evals", {"search": {}}, {"search": {"first_epoch_evals": 2}}) == (
        "search.first_epoch_evals unset -> 2")


def test_a_study_that_searches_nothing_says_so_when_it_is_created(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__space={"learning_rate": 1e-3, "epochs": 1})
    said = io.StringIO()
    run_study(spec, workers=0, console=Console(file=said, width=400))
    assert "note: space: nothing is searched (search.space gives every hyperparameter one value), so the 3 trials " \
        "train one configuration with different seeds" in said.getvalue()
    (tmp_path / "r").mkdir()
    ranged = write_spec(tmp_path / "r", train, val, tiny_bert)  # its own store; learning_rate searched
    said = io.StringIO()
    run_study(ranged, workers=0, console=Console(file=said, width=400))
    assert "nothing is searched" not in said.getvalue()


def test_output_to_a_file_gets_a_line_per_evaluation_and_no_line_is_cut(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    """A run logged to a file was silent between `created study` and the first trial's line (100 s), and long lines
    were cut at the console's width."""
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1, search__space__epochs=1,
                      search__first_epoch_evals=2)  # fmt: skip
    said = io.StringIO()
    run_study(spec, console=Console(file=said, width=60))  # a file: no terminal, a narrow width
    lines = said.getvalue().splitlines()
    evaluated = [line for line in lines if line.startswith("trial 0 · evaluated at epoch ")]
    assert [line.split(" · ")[1] for line in evaluated] == ["evaluated at epoch 0.33/1", "evaluated at epoch 0.67/1",
                                                            "evaluated at epoch 1/1"]  # fmt: skip
    assert all(" · f1_macro 0." in line for line in evaluated)
    assert any(line.startswith("trial 0 COMPLETE · f1_macro ") and len(line) > 60 for line in lines)


def test_f1_binary_optimises_the_named_classs_own_f1(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spam study wanted the spam class's F1 (its data's SOURCE.md says so): f1_binary was refused, and status only
    gave the averages."""
    from conftest import quickstart_subset, split_per_class, write_csv

    from record import read_trial
    from sweep.cli import main

    train, val = split_per_class(quickstart_subset(30, seed=3, n_classes=2), 10)  # account, billing
    paths = write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "val.csv", val)
    spec = write_spec(tmp_path, *paths, tiny_bert, objective={"metric": "f1_binary", "positive_label": "billing"},
                      search__n_trials=2)  # fmt: skip
    run_study(spec)
    study = load_study("trec-tiny", f"sqlite:///{tmp_path / 'sweeps.db'}")
    assert study.metric_names == ["f1_binary of 'billing'"]  # optuna-dashboard names the objective (it was None)
    for trial in study.trials:
        record = read_trial(trial)
        assert trial.value == pytest.approx(record.per_class["billing"]["f1"])
        assert record.metrics["val_f1_binary"] == trial.value and "val_f1_macro" in record.metrics
    capsys.readouterr()
    assert main(["status", "trec-tiny", "--storage", f"sqlite:///{tmp_path / 'sweeps.db'}"]) == 0
    assert "validation f1_binary of 'billing' = " in capsys.readouterr().out
    from sweep.export import export_trial

    out, _ = export_trial(study, tmp_path / "model")
    assert "f1_binary (the F1 of class 'billing'): **" in (out / "README.md").read_text(encoding="utf-8")

    # refused, each in one line naming the field, before anything is written
    (tmp_path / "bad").mkdir()
    cases = [
        ({"metric": "f1_binary"}, "objective.positive_label: f1_binary is the F1 of one class"),
        ({"metric": "f1_macro", "positive_label": "billing"},
         "objective.positive_label: is read only with metric: f1_binary"),
        ({"metric": "f1_binary", "positive_label": "Billing"},
         "objective.positive_label: 'Billing' is not a class of the data (classes: 'account', 'billing'); did you "
         "mean 'billing'?"),
    ]  # fmt: skip
    for objective, message in cases:
        bad = write_spec(tmp_path / "bad", *paths, tiny_bert, name="bad", objective=objective)
        assert main(["run", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("error:") == 1 and "Traceback" not in err, err
        assert not (tmp_path / "bad" / "sweeps.db").exists()
        assert not (tmp_path / "bad" / "c").exists() and "tokenized" not in err  # refused before tokenizing
    four_train, four_val = split_per_class(quickstart_subset(20, seed=3), 5)
    four = write_spec(tmp_path / "bad", write_csv(tmp_path / "bad" / "t4.csv", four_train),
                      write_csv(tmp_path / "bad" / "v4.csv", four_val), tiny_bert, name="four",
                      objective={"metric": "f1_binary", "positive_label": "billing"})  # fmt: skip
    assert main(["run", str(four)]) == 2
    assert "f1_binary scores one class against the other of two, and the data has 4 classes" in capsys.readouterr().err


def test_a_run_from_another_folder_names_the_store_beside_the_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sweep run ../spam.yaml` from another folder created a new ./sweeps.db and retrained from trial 0 without a
    word about the store beside the spec that held the study."""
    import optuna

    from sweep.runner import store_beside_spec

    project, other = tmp_path / "project", tmp_path / "other"
    project.mkdir()
    other.mkdir()
    optuna.create_study(study_name="spam", storage=f"sqlite:///{project / 'sweeps.db'}")
    spec = project / "spec.yaml"
    monkeypatch.chdir(other)
    said = store_beside_spec("sqlite:///sweeps.db", Path("../project/spec.yaml"), "spam")
    assert said == (f"{project / 'sweeps.db'}, beside the spec, holds study 'spam' already; this run starts it afresh "
                    f"in {other / 'sweeps.db'} (a relative SQLite path is read from the folder you run in): run from "
                    f"{project}, or give --storage sqlite:///{project / 'sweeps.db'} to continue it")
    assert store_beside_spec("sqlite:///sweeps.db", spec, "ham") is None  # the store there has no such study
    assert store_beside_spec(f"sqlite:///{other / 'sweeps.db'}", spec, "spam") is None  # an absolute path is meant
    monkeypatch.chdir(project)
    assert store_beside_spec("sqlite:///sweeps.db", spec, "spam") is None  # the same store
    # a SQLite file of that name that is no Optuna store is read, never written (opening it as a store would make
    # Optuna's tables in it)
    import sqlite3

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    with sqlite3.connect(theirs / "sweeps.db") as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    before = (theirs / "sweeps.db").read_bytes()
    monkeypatch.chdir(other)
    assert store_beside_spec("sqlite:///sweeps.db", theirs / "spec.yaml", "spam") is None
    assert (theirs / "sweeps.db").read_bytes() == before
    # a folder name SQLite's URI would cut at `?` is read where it is, and nothing is made beside it
    odd = tmp_path / "pro?ject"
    odd.mkdir()
    with sqlite3.connect(odd / "sweeps.db") as conn:  # (a sqlite:/// URL itself would cut the path at `?`)
        conn.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
        conn.execute("INSERT INTO studies (study_name) VALUES ('spam')")
    assert store_beside_spec("sqlite:///sweeps.db", odd / "spec.yaml", "spam") is not None
    assert not (tmp_path / "pro").exists()
