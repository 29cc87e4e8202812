"""Best-epoch weights kept per trial, top-k on disk, exported as a Hugging Face folder that reproduces its metric."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import quickstart_subset, split_per_class, write_csv
from optuna.trial import TrialState
from sklearn.metrics import f1_score

import sweep.export
from record import read_trial
from sweep.checkpoints import is_kept
from sweep.cli import main
from sweep.errors import SweepError
from sweep.export import export_trial
from sweep.runner import run_study
from sweep.storage import load_study


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A 5-trial study on the quickstart support tickets (tiny BERT) keeping the top 2 checkpoints as plain folders
    (`artifacts: {store: folder}`; tests/test_artifacts.py covers the default artifact store)."""
    root = tmp_path_factory.mktemp("export-study")
    train, val = split_per_class(quickstart_subset(45, seed=2), 12)
    spec = {
        "name": "trec-export",
        "storage": f"sqlite:///{root / 'sweeps.db'}",
        "data": {
            "train": str(write_csv(root / "train.csv", train)),
            "validation": str(write_csv(root / "val.csv", val)),
            "cache_dir": str(root / "cache"),
        },
        "model": {"encoder": str(tiny_bert), "max_length": 32},
        "artifacts": {"store": "folder"},
        "search": {
            "n_trials": 5,
            "sampler": "random",
            "pruner": "none",
            "keep_checkpoints": 2,
            "space": {"learning_rate": {"low": 5e-4, "high": 5e-3, "log": True}, "batch_size": 8, "epochs": [2, 3]},
        },
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    run_study(root / "spec.yaml")
    return root


def url(root: Path) -> str:
    return f"sqlite:///{root / 'sweeps.db'}"


def test_only_top_k_checkpoints_stay(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_study("trec-export", url(study_dir))
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (-t.value, t.number))
    assert len(complete) == 5
    kept = {t.number for t in study.trials if is_kept(study, t)}
    assert kept == {complete[0].number, complete[1].number}
    dirs = sorted(p.name for p in (study_dir / "checkpoints" / "trec-export").iterdir())
    assert dirs == sorted([f"trial-{n:05d}" for n in kept] + ["tokenizer"])  # no stray temp folders
    for trial in complete[:2]:
        assert read_trial(trial).checkpoint_epoch == read_trial(trial).best_epoch

    assert main(["status", "trec-export", "--storage", url(study_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("kept") >= 3  # two rows + the summary line
    assert "checkpoints: 2 kept" in out and " MB in " in out


def test_export_round_trip_reproduces_the_metric(study_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    study = load_study("trec-export", url(study_dir))
    out, trial = export_trial(study, tmp_path / "model")
    assert trial.number == max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value).number
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "sweep.json", "tokenizer_config.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)

    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "account", "1": "billing", "2": "product", "3": "returns"}
    assert AutoModelForSequenceClassification.from_pretrained(out).config.label2id["product"] == 2

    with (study_dir / "val.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    classify = pipeline("text-classification", model=str(out), device=-1)
    predicted = [p["label"] for p in classify([r["text"] for r in rows], truncation=True, max_length=32)]
    f1 = f1_score([r["label"] for r in rows], predicted, average="macro")
    assert f1 == pytest.approx(trial.value, abs=1e-6)
    # the tokenizer cuts where the study did (max_length 32) with truncation=True alone, and pads only when asked
    assert [p["label"] for p in classify([r["text"] for r in rows], truncation=True)] == predicted
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.model_max_length == 32
    assert len(tokenizer("word " * 100, truncation=True)["input_ids"]) == 32
    assert len(tokenizer("word")["input_ids"]) == 3
    saved = json.loads((out / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == 32 and saved.get("max_length", 32) == 32
    if (out / "tokenizer.json").is_file():
        fast = json.loads((out / "tokenizer.json").read_text())
        assert fast["padding"] is None and fast["truncation"]["max_length"] == 32

    meta = json.loads((out / "sweep.json").read_text())
    assert meta["study"] == "trec-export" and meta["trial"] == trial.number
    assert meta["best_epoch"] == read_trial(trial).best_epoch and meta["value"] == trial.value
    assert "epoch" not in meta["validation_metrics"] and "step" not in meta["validation_metrics"]  # one position
    assert meta["spec"]["search"]["keep_checkpoints"] == 2 and meta["data_report"]["num_validation"] == 48
    card = (out / "README.md").read_text()
    facts = (f"trial {trial.number}", "trec-export", "pipeline(", "| billing |", "learning_rate=", "best validation",
             "`model_max_length` is 32")
    for fact in facts:
        assert fact in card
    assert "by sweep" in card and "pypi.org" not in card, "no link to an unrelated PyPI project of the same name"


def test_export_a_chosen_trial_and_force(study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_study("trec-export", url(study_dir))
    second = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (-t.value, t.number))[1]
    target = tmp_path / "m"
    assert (
        main(
            ["export", "trec-export", "--out", str(target), "--storage", url(study_dir), "--trial", str(second.number)]
        )
        == 0
    )
    said = capsys.readouterr().out
    assert f"exported trial {second.number}" in said
    # how to call it as the study scored: a text beyond the encoder's positions would crash the pipeline otherwise
    assert f'pipeline("text-classification", model="{target}"), called with truncation=True, max_length=32' in said
    assert json.loads((target / "sweep.json").read_text())["trial"] == second.number

    assert main(["export", "trec-export", "--out", str(target), "--storage", url(study_dir)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["export", "trec-export", "--out", str(target), "--storage", url(study_dir), "--force"]) == 0
    assert json.loads((target / "sweep.json").read_text())["trial"] != second.number
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_force_replaces_only_an_earlier_export_never_other_files_or_the_current_folder(
    study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out . --force` in a folder holding the store and the data, or --force over a folder of notes, deleted them;
    now both are refused (one line, exit 2) and nothing is touched."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "sweeps.db").write_bytes(b"the store")
    (work / "data.csv").write_text("text,label\n", encoding="utf-8")
    base = ["export", "trec-export", "--storage", url(study_dir), "--force"]
    assert main([*base, "--out", str(work)]) == 2
    err = capsys.readouterr().err
    assert f"error: --out: {work} is not an earlier export (no sweep.json; it holds data.csv, sweeps.db)" in err
    assert sorted(p.name for p in work.iterdir()) == ["data.csv", "sweeps.db"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no scratch folder left"

    model = tmp_path / "model"
    assert main([*base, "--out", str(model)]) == 0
    monkeypatch.chdir(model)  # an earlier export, but the folder the command runs in
    assert main([*base, "--out", "."]) == 2
    assert f"error: --out: {model} is the folder this command runs in" in capsys.readouterr().err
    assert (model / "sweep.json").is_file()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    assert main([*base, "--out", "file.txt"]) == 2
    assert f"error: --out: {tmp_path / 'file.txt'} is a file" in capsys.readouterr().err


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_exported_folder_has_the_callers_umask(study_dir: Path, tmp_path: Path, umask: int) -> None:
    """A teammate can read an exported model: not mkdtemp's 0700 nor the checkpoint's modes, but the umask's."""
    study = load_study("trec-export", url(study_dir))
    old = os.umask(umask)
    try:
        out, _ = export_trial(study, tmp_path / "model")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert "model.safetensors" in files and "README.md" in files
    assert files == dict.fromkeys(files, 0o666 & ~umask)


def test_bad_exports_write_nothing(study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_study("trec-export", url(study_dir))
    dropped = next(t.number for t in study.trials if not is_kept(study, t))
    kept = sorted(t.number for t in study.trials if is_kept(study, t))
    target = tmp_path / "out"
    cases = {
        ("nope",): "no study named 'nope'",
        ("trec-export", "--trial", "99"): "has no trial 99 (trials: 0..4)",
        ("trec-export", "--trial", str(dropped)): f"trials with a checkpoint: {', '.join(map(str, kept))}",
    }
    for args, message in cases.items():
        assert main(["export", *args, "--out", str(target), "--storage", url(study_dir)]) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    assert not target.exists()
    (tmp_path / "notes").write_text("mine")
    assert main(["export", "trec-export", "--out", str(tmp_path / "notes" / "m"), "--storage", url(study_dir)]) == 2
    assert f"{tmp_path / 'notes'} is a file, so no folder can be made there" in capsys.readouterr().err


def test_pruned_failed_and_empty_studies(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="empty", storage=storage, direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, state=TrialState.FAIL))
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.2}, distributions=dist, state=TrialState.PRUNED, intermediate_values={1: 0.3}
        )
    )
    with pytest.raises(SweepError, match="no completed trial yet"):
        export_trial(study, tmp_path / "o")
    with pytest.raises(SweepError, match="trial 0 is FAIL, not COMPLETE"):
        export_trial(study, tmp_path / "o", number=0)
    with pytest.raises(SweepError, match="trial 1 is PRUNED, not COMPLETE.*no trial has a checkpoint"):
        export_trial(study, tmp_path / "o", number=1)
    assert not (tmp_path / "o").exists()


def test_interrupted_export_leaves_no_folder(study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object) -> None:
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C after the weights were copied

    monkeypatch.setattr(sweep.export, "_check_config", crash)
    with pytest.raises(KeyboardInterrupt):
        export_trial(load_study("trec-export", url(study_dir)), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt):  # the folders it made for --out go too
        export_trial(load_study("trec-export", url(study_dir)), tmp_path / "models" / "v1" / "model")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_an_export_ended_by_sigterm_or_sighup_leaves_no_hidden_copy(
    study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    signum: signal.Signals,
) -> None:  # fmt: skip
    """`timeout 3 sweep export ...` (SIGTERM) or a closed terminal (SIGHUP) killed the process outright: its hidden
    copy beside --out and the unpacked checkpoint in the temporary folder (88 MB each) stayed behind."""
    import tempfile

    checked = sweep.export._check_config

    def killed_meanwhile(*args: object) -> None:
        os.kill(os.getpid(), signum)  # the handler raises at the next instruction
        checked(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sweep.export, "_check_config", killed_meanwhile)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    before = signal.getsignal(signum)
    code = main(["export", "trec-export", "--out", str(tmp_path / "model"), "--storage", url(study_dir)])
    assert code == 128 + signum
    assert f"stopped by {signum.name}: nothing half-written is left" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["tmp"] and not any((tmp_path / "tmp").iterdir())
    assert signal.getsignal(signum) == before  # the command's handler is gone with it


def test_a_second_signal_during_the_clean_up_is_noted_not_raised(
    study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closing terminal sends SIGHUP twice, `kill` is often sent twice: the second one raised inside the clean-up
    and left the hidden copy it was removing."""
    import shutil

    checked, removed = sweep.export._check_config, shutil.rmtree

    def killed(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        checked(*args)  # type: ignore[arg-type]

    def killed_again(path: Any, *args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        removed(path, *args, **kwargs)

    monkeypatch.setattr(sweep.export, "_check_config", killed)
    monkeypatch.setattr(sweep.export.shutil, "rmtree", killed_again)
    assert main(["export", "trec-export", "--out", str(tmp_path / "model"), "--storage", url(study_dir)]) == 143
    assert list(tmp_path.iterdir()) == []


def test_a_signal_the_caller_ignores_stays_ignored() -> None:
    """`nohup sweep export ...` died with the terminal once the command installed its own SIGHUP handler."""
    from sweep.cli import _terminable

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with _terminable("export"):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # the others are the command's
    finally:
        signal.signal(signal.SIGHUP, before)


def test_export_from_a_moved_checkpoint_folder(study_dir: Path, tmp_path: Path) -> None:
    """Another machine sharing the store mounts the checkpoints elsewhere: --checkpoints points there."""
    import shutil

    study = load_study("trec-export", url(study_dir))
    moved = tmp_path / "mounted"
    shutil.copytree(study_dir / "checkpoints" / "trec-export", moved)
    out, trial = export_trial(study, tmp_path / "model", checkpoint_root=moved)
    assert (out / "model.safetensors").read_bytes() == (
        moved / f"trial-{trial.number:05d}" / "model.safetensors"
    ).read_bytes()
    with pytest.raises(SweepError, match=f"looked in {tmp_path / 'elsewhere'}") as err:
        export_trial(study, tmp_path / "model2", checkpoint_root=tmp_path / "elsewhere")
    # not "--trial: ... was not kept or was deleted": the study keeps it, only not in the folder named
    assert err.value.problems[0][0] == "--checkpoints" and "the study keeps it at " in err.value.problems[0][1]


def test_export_names_a_checkpoints_folder_that_does_not_exist(
    study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sweep.cli import main

    args = ["export", "trec-export", "--storage", url(study_dir), "--out", str(tmp_path / "m")]
    assert main([*args, "--checkpoints", str(tmp_path / "nowhere")]) == 2
    assert f"error: --checkpoints: no such folder: {tmp_path / 'nowhere'}" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_optuna_cli_reads_our_store(study_dir: Path) -> None:
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "optuna"
    result = subprocess.run(
        [str(cli), "trials", "--study-name", "trec-export", "--storage", url(study_dir), "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    trials = json.loads(result.stdout)
    assert len(trials) == 5 and {t["state"] for t in trials} == {"COMPLETE"}


def at_epoch_end(epoch: int, metrics: dict[str, Any]) -> Any:
    """A stand-in for Lightning's trainer as a validation at the end of `epoch` (0-based) of 4 batches sees it."""
    from types import SimpleNamespace

    progress = SimpleNamespace(current=SimpleNamespace(completed=4))
    return SimpleNamespace(sanity_checking=False, callback_metrics=metrics, current_epoch=epoch,
                           num_training_batches=4, global_step=4 * (epoch + 1),
                           fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))  # fmt: skip


def test_best_weights_keep_the_best_evaluation_in_reused_buffers_apart_from_the_model() -> None:
    from types import SimpleNamespace

    import torch

    from sweep.best_weights import BestWeights

    model = torch.nn.Linear(3, 2)
    module = SimpleNamespace(model=model)
    best = BestWeights("val_f1")

    def evaluate(value: float, fill: float, epoch: int) -> None:
        with torch.no_grad():
            model.weight.fill_(fill)
        trainer = at_epoch_end(epoch, {"val_f1": torch.tensor(value)})
        best.on_validation_end(trainer, module)  # type: ignore[arg-type]

    evaluate(0.5, 1.0, 0)
    assert best.state is not None
    buffer = best.state["weight"]
    assert buffer.data_ptr() != model.weight.data_ptr()  # a copy, not the live parameter
    evaluate(0.4, 2.0, 1)  # worse: the kept weights stay those of epoch 1
    assert best.epoch == 1 and torch.equal(best.state["weight"], torch.full((2, 3), 1.0))
    evaluate(0.7, 3.0, 2)  # better: copied into the same buffer, not a fresh allocation
    assert best.epoch == 3 and best.best == pytest.approx(0.7) and best.epochs_trained == 3.0
    assert best.state["weight"] is buffer and torch.equal(buffer, torch.full((2, 3), 3.0))
    with torch.no_grad():
        model.weight.fill_(9.0)  # training on does not touch the kept copy
    assert torch.equal(best.state["weight"], torch.full((2, 3), 3.0))
    lower = BestWeights("val_loss", minimize=True)
    trainer = at_epoch_end(0, {"val_loss": torch.tensor(0.3)})
    lower.on_validation_end(trainer, module)  # type: ignore[arg-type]
    trainer.callback_metrics["val_loss"] = torch.tensor(0.2)
    lower.on_validation_end(trainer, module)  # type: ignore[arg-type]
    assert lower.best == pytest.approx(0.2)

    # a tie of the metric goes to the lower validation loss (a user's trial scored accuracy 0.62 at every evaluation
    # while its loss fell, and exported the weights of the first), else to the earlier evaluation
    tied = BestWeights("val_acc")
    for epoch, (fill, loss) in enumerate([(1.0, 0.97), (2.0, 0.90), (3.0, 0.95), (4.0, 0.90)]):
        with torch.no_grad():
            model.weight.fill_(fill)
        trainer = at_epoch_end(epoch, {"val_acc": torch.tensor(0.62), "val_loss": torch.tensor(loss)})
        tied.on_validation_end(trainer, module)  # type: ignore[arg-type]
    assert tied.epoch == 2 and tied.state is not None and torch.equal(tied.state["weight"], torch.full((2, 3), 2.0))

    # the module's record ranks, in full precision: logged metrics are float32, where 0.62 and 0.6200001 tie
    recorded = SimpleNamespace(model=model, history=[])
    exact = BestWeights("val_acc")
    for epoch, acc in enumerate([0.62, 0.6200001]):
        with torch.no_grad():
            model.weight.fill_(float(epoch + 1))
        recorded.history.append({"step": 4 * (epoch + 1), "val_acc": acc, "val_loss": 0.9})
        trainer = at_epoch_end(epoch, {"val_acc": torch.tensor(0.62, dtype=torch.float32),
                                       "val_loss": torch.tensor(0.9)})  # fmt: skip
        exact.on_validation_end(trainer, recorded)  # type: ignore[arg-type]
    assert exact.epoch == 2 and exact.best == 0.6200001

    from sweep.objective import best_epoch

    history = [{"val_acc": 0.62, "val_loss": 0.97, "step": 1}, {"val_acc": 0.62, "val_loss": 0.90, "step": 2},
               {"val_acc": 0.62, "val_loss": 0.95, "step": 3}, {"val_acc": 0.62, "val_loss": 0.90, "step": 4}]
    assert best_epoch(history, "val_acc")["step"] == 2  # the same evaluation as the weights
    assert best_epoch([{"val_acc": 0.6, "step": 1}, {"val_acc": 0.6, "step": 2}], "val_acc")["step"] == 1


def test_best_weights_copy_nothing_below_the_bar_and_the_best_once_above_it() -> None:
    """A trial whose evaluations cannot enter the study's kept checkpoints copies no weights; once one beats the bar,
    the state is that evaluation's weights (never an earlier, worse evaluation's)."""
    from types import SimpleNamespace

    import torch

    from record import beats
    from sweep.best_weights import BestWeights

    model = torch.nn.Linear(3, 2)
    module = SimpleNamespace(model=model)
    best = BestWeights("val_f1", worth_keeping=lambda value: beats(value, 0.625, maximize=True))

    def evaluate(value: float, fill: float) -> None:
        with torch.no_grad():
            model.weight.fill_(fill)
        trainer = at_epoch_end(0, {"val_f1": torch.tensor(value)})
        best.on_validation_end(trainer, module)  # type: ignore[arg-type]

    evaluate(0.5, 1.0)
    evaluate(0.625, 2.0)  # a tie with the bar does not enter
    assert best.best == 0.625 and best.state is None and best.copies == 0
    evaluate(0.75, 3.0)
    assert best.state is not None and torch.equal(best.state["weight"], torch.full((2, 3), 3.0)) and best.copies == 1


def test_a_trial_copies_weights_only_when_it_can_enter_the_kept_checkpoints(tmp_path: Path) -> None:
    from dataclasses import replace

    import optuna

    from record import trial_attrs
    from sweep.objective import TrialSettings, _keeping_rule
    from sweep.spec import SpaceSpec

    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.8):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=trial_attrs(seed=0)))
    settings = TrialSettings(encoder="tiny", space=SpaceSpec(), metric="f1_macro", seed=0, class_weights=None,
                             accelerator="cpu", precision="32-true", eval_batch_size=8, checkpoint_root=tmp_path,
                             tokenizer_dir=tmp_path, keep_checkpoints=2)  # fmt: skip
    rule = _keeping_rule(study.ask(), settings, reevaluates=None)
    assert rule is not None and not rule(0.5) and rule(0.51)  # the 2nd best is the bar
    assert _keeping_rule(study.ask(), settings, reevaluates=0) is None  # a re-evaluation run keeps every best
    settings = replace(settings, keep_checkpoints=3)
    rule = _keeping_rule(study.ask(), settings, reevaluates=None)
    assert rule is not None and rule(0.01)  # fewer complete trials than kept checkpoints: anything enters
    settings = replace(settings, checkpoint_root=None)
    rule = _keeping_rule(study.ask(), settings, reevaluates=None)
    assert rule is not None and not rule(0.99)  # no checkpoints: nothing is copied


def test_the_card_says_where_inside_epoch_1_the_exported_evaluation_ran() -> None:
    """As the trials table does (0.33/1), not "epoch 1" for weights from a third into it."""
    from sweep.export import _best_at

    assert _best_at({"best_epoch": 1, "best_epochs_trained": 0.3333}) == "0.33"
    assert _best_at({"best_epoch": 2, "best_epochs_trained": 2.0}) == "2"
    assert _best_at({"best_epoch": 3}) == "3"  # a study made before the fraction was recorded


def test_the_card_says_a_weighted_loss_a_re_evaluation_run_and_a_split_training_count() -> None:
    """A user retraining from the card got another loss (class weights were not on it); a reviewer read 364 as every
    row cleaning kept (456, of which 92 went to validation); an exported re-evaluation run did not say it was one."""
    from sweep.export import _loss_note, _rerun_note, _split_note

    assert _loss_note({"class_weights": "balanced"}) == "; class weights balanced (weighted cross-entropy)"
    assert _loss_note({"class_weights": "none"}) == _loss_note({}) == ""
    assert _rerun_note({"reevaluates": 2, "seed": 1002}) == (
        " It is a re-evaluation run (`sweep reevaluate`) of trial 2's configuration, trained with seed 1002.")
    assert _rerun_note({"reevaluates": None, "seed": 0}) == ""
    assert _split_note({"split": "stratified from train, val_fraction=0.2, seed=0"}) == " and the validation split"
    assert _split_note({"split": "given"}) == ""


def test_the_card_says_how_many_batches_each_optimizer_step_summed_and_where_gradients_were_clipped() -> None:
    """Retraining from the card's batch size alone would take twice the optimizer steps of half the batch."""
    from sweep.export import _settings_note

    meta = {"hyperparameters": {"batch_size": 8}, "class_weights": "balanced",
            "spec": {"trainer": {"accumulate_grad_batches": 4, "gradient_clip_val": 1.0}}}  # fmt: skip
    assert _settings_note(meta) == ("; class weights balanced (weighted cross-entropy); gradients of 4 batches summed "
                                    "per optimizer step (an effective batch of 32); gradients clipped to an L2 norm "
                                    "of 1")  # fmt: skip
    assert _settings_note({"hyperparameters": {"batch_size": 8}, "spec": {"trainer": {}}}) == ""
    stopped = {"hyperparameters": {"batch_size": 8}, "spec": {"trainer": {"early_stopping_patience": 3}}}
    assert _settings_note(stopped) == "; early stopping after 3 evaluations without improvement"


def test_exporting_a_model_that_predicts_one_class_says_it_learned_nothing(
    study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The export wires the study's "learned nothing" check to the trial it writes (the check itself is tested in
    test_reports_advice)."""
    from rich.console import Console

    import reports.advice
    import sweep.cli
    from sweep.cli import main

    monkeypatch.setattr(sweep.cli, "err", Console(stderr=True, width=300))
    monkeypatch.setattr(reports.advice, "model_learning_warning", lambda **kw: "this model predicts 'a' ...")
    assert main(["export", "trec-export", "--out", str(tmp_path / "m"), "--storage", url(study_dir)]) == 0
    assert "warning: this model learned nothing: this model predicts 'a' ..." in capsys.readouterr().err
    # the card and sweep.json say it too: whoever gets the folder did not see the terminal
    card = (tmp_path / "m" / "README.md").read_text(encoding="utf-8")
    assert "**Warning: this model learned nothing.** This model predicts 'a' ...." in card
    meta = json.loads((tmp_path / "m" / "sweep.json").read_text(encoding="utf-8"))
    assert meta["learned_nothing"] == "this model predicts 'a' ..."
    from sweep.export import _best_at

    assert meta["best_at"] == _best_at(meta)  # sweep.json says the best epoch as the card does ("0.32", not 1)
    # a model that learned: no warning, and the headline does not repeat the objective's metric
    monkeypatch.setattr(reports.advice, "model_learning_warning", lambda **kw: None)
    assert main(["export", "trec-export", "--out", str(tmp_path / "n"), "--storage", url(study_dir)]) == 0
    card = (tmp_path / "n" / "README.md").read_text(encoding="utf-8")
    assert "Warning" not in card and json.loads((tmp_path / "n" / "sweep.json").read_text())["learned_nothing"] is None
    headline = next(line for line in card.splitlines() if line.startswith("f1_macro: **"))
    assert headline.count("f1_macro") == 1 and "accuracy" in headline
