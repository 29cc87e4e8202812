"""`sweep audit`: the ranking on constructed probabilities and features, the stored record, the report section, and
the command end to end on the tiny BERT (both methods), with its refusals."""

from __future__ import annotations

import csv
import random
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import read_csv_rows, tiny_study_spec, write_csv

from record import AuditRecord, ClassAudit, PairAudit, Suspect, audit_from_attrs, read_audit, write_audit
from record.audit import MAX_SUSPECTS, MAX_TEXT_CHARS, SCORE_BIN, constant_set_f1, weak_fit
from reports import build_report
from reports.audit import audit_blocks
from reports.blocks import NoteBlock, TableBlock
from sweep.cli import main
from sweep.label_issues import (
    AUDIT_TASKS,
    ConfusedLabels,
    audit_task_problem,
    classification_issues,
    fold_problems,
    linear_probabilities,
    mean_predictions,
)

# -- the ranking on data the test controls ----------------------------------------------------------------------


def planted(n_per_class: int, classes: int, errors: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True labels in blocks of `n_per_class`, and given labels where the rows in `errors` moved to the next class."""
    truth = np.repeat(np.arange(classes), n_per_class)
    given = truth.copy()
    for i in errors:
        given[i] = (truth[i] + 1) % classes
    return truth, given


def test_planted_errors_in_constructed_probabilities_rank_first() -> None:
    rng = np.random.default_rng(0)
    errors = [3, 47, 95, 130]
    truth, given = planted(50, 3, errors)
    # A good model: most mass on the true class, a little noise; a few honest but unsure examples too.
    probs = np.full((150, 3), 0.05) + rng.uniform(0, 0.05, size=(150, 3))
    probs[np.arange(150), truth] = rng.uniform(0.75, 0.95, size=150)
    probs[[10, 60], :] = [[0.45, 0.40, 0.15], [0.30, 0.45, 0.25]]  # unsure, but their given label leads
    probs /= probs.sum(axis=1, keepdims=True)
    probs[errors] = 0.02
    probs[errors, truth[errors]] = 0.96  # the model is sure of the true class, so the given one is unlikely
    found = classification_issues(given, probs, ["a", "b", "c"])
    assert sorted(issue.index for issue in found.issues[: len(errors)]) == errors
    assert {issue.index for issue in found.issues} == set(errors)
    top = found.issues[0]
    assert top.suggested == "abc"[truth[top.index]] and top.given == "abc"[given[top.index]]
    assert [i.quality for i in found.issues] == sorted(i.quality for i in found.issues)
    flagged = {c.label: c.flagged for c in found.classes}
    assert flagged == {"a": 1, "b": 2, "c": 1}  # given labels: rows 3 and 47 say b, row 95 says c, row 130 says a
    assert {(p.given, p.suggested): p.count for p in found.pairs} == {("b", "a"): 2, ("c", "b"): 1, ("a", "c"): 1}
    assert found.pairs[0] == ConfusedLabels(given="b", suggested="a", count=2)
    assert found.examples == 150 and found.accuracy == pytest.approx(146 / 150)


def test_linear_probabilities_out_of_fold_find_planted_errors_in_separable_features() -> None:
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(4, 16)) * 4
    truth = np.repeat(np.arange(4), 40)
    features = centers[truth] + rng.normal(size=(160, 16))
    errors = [5, 70, 111, 150]
    given = truth.copy()
    for i in errors:
        given[i] = (truth[i] + 2) % 4
    folds_seen: list[int] = []
    probs = linear_probabilities(features, given, 4, folds=5, seed=0, on_fold=folds_seen.append)
    assert folds_seen == [0, 1, 2, 3, 4]
    assert probs.shape == (160, 4) and np.allclose(probs.sum(axis=1), 1.0)
    # Out of fold: a planted row's own (wrong) label never trained the model that scored it.
    assert all(probs[i].argmax() == truth[i] for i in errors)
    found = classification_issues(given, probs)
    assert sorted(i.index for i in found.issues[: len(errors)]) == errors


def test_fold_problem_names_the_class_and_its_count() -> None:
    labels = ["ABBR"] * 3 + ["HUM"] * 10 + ["LOC"] * 1
    assert fold_problems(labels, 5) == [
        ("data.train", "class 'LOC' has 1 training example, fewer than --folds 5: an out-of-fold check needs at "
                       "least 2 of each class (one learns, one is held out): add examples"),
        ("data.train", "class 'ABBR' has 3 training examples, fewer than --folds 5: --folds 3 or add examples"),
    ]  # fmt: skip
    assert fold_problems(["a"] * 9 + ["b"], 2)[0][1].endswith("held out): add examples")  # no --folds would do
    assert fold_problems(labels, 1) == [("--folds", "must be at least 2, got 1")]
    assert fold_problems(labels[:13], 3) == []
    # more classes too small than MAX_FOLD_LINES: one line, not one per class (`--folds 100` printed each)
    many = [name for n, name in enumerate("ABCDEF") for _ in range(8 + 10 * n)] + ["G"] * 200
    assert fold_problems(many, 100) == [
        ("data.train", "6 of 7 classes have fewer training examples than --folds 100 ('A' 8, 'B' 18, 'C' 28, 'D' 38, "
                       "and 2 more): use --folds 8 or add examples"),
    ]  # fmt: skip
    assert fold_problems(many[:-200], 100)[0][0] == "--folds"  # every class: the option is what is wrong


def test_each_task_has_its_cleanlab_path_or_a_one_line_refusal() -> None:
    assert {"text-classification", "text-pair", "multi-label", "regression", "token-classification"} <= set(
        AUDIT_TASKS
    )
    assert audit_task_problem("text-pair") is None
    assert audit_task_problem("sequence-to-sequence") == (
        "task", "the annotation audit has no cleanlab path for task: sequence-to-sequence yet "
        f"(available: {', '.join(AUDIT_TASKS)})",
    )  # fmt: skip


# -- the stored record and the report section -------------------------------------------------------------------


def audit_record(suspects: int = 3, text: str = "what is it ?") -> AuditRecord:
    return AuditRecord(
        method="embeddings", folds=5, created="2026-11-30T17:00:00+00:00", data_fingerprint="abc", examples=200,
        flagged=suspects, accuracy=0.9, encoder="minilm",
        suspects=[Suspect(row=i, text=text, given="HUM", suggested="LOC", quality=0.01 * i) for i in range(suspects)],
        classes=[ClassAudit("HUM", 100, suspects, 0.02), ClassAudit("LOC", 100, 0, 0.0)],
        pairs=[PairAudit("HUM", "LOC", suspects)],
    )  # fmt: skip


def test_audit_record_round_trips_and_stays_bounded() -> None:
    attrs: dict[str, object] = {}
    small = audit_record()
    write_audit(attrs.__setitem__, small)
    assert audit_from_attrs(attrs) == small
    assert audit_from_attrs({}) is None and audit_from_attrs({"annotation_audit": {"method": 1}}) is None
    write_audit(attrs.__setitem__, audit_record(suspects=150, text="x" * 500))
    big = audit_from_attrs(attrs)
    assert big is not None and big.flagged == 150 and len(big.suspects) == MAX_SUSPECTS
    assert all(len(s.text) == MAX_TEXT_CHARS and s.text.endswith("…") for s in big.suspects)


def test_report_has_an_annotation_audit_section_only_when_the_study_has_one() -> None:
    study = optuna.create_study()
    assert "Annotation audit" not in [s.title for s in build_report([study])]
    write_audit(study.set_user_attr, audit_record())
    sections = {s.title: s for s in build_report([study])}
    section = sections["Annotation audit"]
    captions = [t.caption for t in section.tables]
    assert captions[0].startswith("Suspects per class") and captions[1].startswith("The confusion that explains")
    suspects = section.tables[2]
    assert suspects.columns == ["rank", "row", "text", "given", "suggested", "label quality"]
    assert suspects.rows[0] == [1, 0, "what is it ?", "HUM", "LOC", 0.0]
    assert audit_blocks(None) == []
    stale = audit_blocks(audit_record(), data_fingerprint="other")
    assert any(getattr(b, "missing", False) for b in stale)


def test_the_noise_column_stays_when_nothing_is_flagged_and_only_regression_leaves_it_out() -> None:
    """A clean audit (nothing flagged, cleanlab's estimate 0 everywhere) still shows the estimate; only a regression
    audit's score bins, whose estimate is their flagged share, have no such column."""
    clean = AuditRecord(
        method="embeddings", folds=5, created="2026-11-30T17:00:00+00:00", data_fingerprint="abc", examples=200,
        flagged=0, accuracy=0.99, classes=[ClassAudit("HUM", 100, 0, 0.0), ClassAudit("LOC", 100, 0, 0.0)],
    )  # fmt: skip
    [table] = [b for b in audit_blocks(clean) if isinstance(b, TableBlock)]
    assert table.columns[-1] == "estimated label noise (cleanlab)" and table.rows[0][-1] == "0.0%"
    bins = replace(clean, class_name=SCORE_BIN, classes=[ClassAudit("0-1", 100, 2, 0.02)])
    [table] = [b for b in audit_blocks(bins) if isinstance(b, TableBlock)]
    assert table.columns[-1] == "flagged share"


def test_a_fit_barely_above_the_majority_class_is_called_weak() -> None:
    """A user's SICK audit flagged 26% of its pairs at out-of-fold accuracy 0.595 against 0.525 for always predicting
    the largest class; 4 of the top 5 suspects were labelled correctly. Such a fit gets a warning."""
    weak = replace(audit_record(), examples=400, accuracy=0.595,
                   classes=[ClassAudit("ENTAILMENT", 210, 60, 0.2), ClassAudit("CONTRADICTION", 190, 45, 0.2)])
    warning = weak_fit(weak)
    assert warning is not None and "0.595 is close to always predicting 'ENTAILMENT' (0.525)" in warning
    assert any(getattr(b, "text", "").startswith("Weak fit: the out-of-fold accuracy") for b in audit_blocks(weak))
    assert weak_fit(replace(weak, accuracy=0.80)) is None  # closes over half the gap to 1
    assert weak_fit(replace(weak, fit_name="Spearman")) is None  # regression's measure has no such baseline
    # multi-label: against always predicting the most common labels (a user's NLU++ audits, 0.146 and 0.197, flagged
    # 49% of the rows with no warning; a fine-tuned one at 0.292 passed a bar of 0.25 that the label frequencies
    # alone nearly reach, and flagged 106 of 300 rows)
    counts = [ClassAudit(name, n, 0, 0.0) for name, n in (("card", 60), ("pin", 40), ("new", 30), ("how_long", 20),
                                                            ("arrival", 10))]  # fmt: skip
    labels = replace(weak, fit_name="micro-F1", class_name="label", examples=300, accuracy=0.292, classes=counts)
    assert constant_set_f1({c.label: c.examples for c in counts}, 300) == (pytest.approx(200 / 760), ["card", "pin"])
    assert (weak_fit(labels) or "").startswith("the out-of-fold micro-F1 0.292 is close to always predicting the 2 "
                                               "most common labels (0.263): the flags rest on a weak model")
    assert weak_fit(replace(labels, accuracy=0.527)) is None
    assert "close to predicting no label (0)" in (weak_fit(replace(labels, classes=[], accuracy=0.1)) or "")
    # NER: words, nearly all O: 0.966 against always-O's 0.956 is weak too (a user's WNUT-17 audit)
    words = replace(weak, fit_name="word accuracy", unit="word", examples=15120, accuracy=0.966,
                    classes=[ClassAudit("O", 14459, 100, 0.01), ClassAudit("B-person", 661, 223, 0.3)])
    assert "always predicting 'O' (0.956)" in (weak_fit(words) or "")
    # what it suggests fits the method: a fine-tuned audit is not told to fine-tune (a user's WNUT finetune audit was)
    assert (weak_fit(weak) or "").endswith("(a fine-tuned model fits better: --method finetune or ensemble)")
    tuned = weak_fit(replace(weak, method="finetune")) or ""
    assert "--method finetune" not in tuned and "more epochs in the spec's space, or --method ensemble" in tuned


# -- the command end to end on the tiny BERT ----------------------------------------------------------------------

WORDS = {
    "account": ["password", "login", "username", "email", "profile"],
    "billing": ["invoice", "charge", "payment", "card", "bill"],
    "shipping": ["parcel", "courier", "delivery", "tracking", "package"],
}
FILLER = ["the", "my", "is", "please", "help", "with", "a"]


def separable_rows(n_per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    """Texts whose class shows in distinct words (several of its own words each), shuffled."""
    rng = random.Random(seed)
    rows = []
    for label, words in WORDS.items():
        for i in range(n_per_class):
            text = " ".join(rng.sample(words, 4) + rng.sample(FILLER, 2)) + f" {i}"
            rows.append((text, label))
    rng.shuffle(rows)
    return rows


def write_spec(tmp_path: Path, tiny_bert: Path, rows: list[tuple[str, str]], **extra: object) -> Path:
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "val.csv", separable_rows(4, seed=9))
    return tiny_study_spec(tmp_path, tiny_bert, "audit-test", {"train": "train.csv", "validation": "val.csv"},
                           **extra)  # fmt: skip


def flip(rows: list[tuple[str, str]], indices: list[int]) -> list[tuple[str, str]]:
    """Rows with the labels at `indices` moved to the next label (alphabetically, wrapping)."""
    labels = sorted(WORDS)
    out = list(rows)
    for i in indices:
        text, label = out[i]
        out[i] = (text, labels[(labels.index(label) + 1) % len(labels)])
    return out


def test_audit_end_to_end_flags_planted_errors_writes_csv_and_stores_the_audit(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    errors = [4, 33, 61]
    rows = flip(separable_rows(25), errors)
    spec = write_spec(tmp_path, tiny_bert, rows)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert main(["run", str(spec), "--storage", url]) == 0
    out = tmp_path / "audits" / "audit.csv"  # a missing folder is made when the CSV is written
    assert main(["audit", str(spec), "--out", str(out), "--storage", url, "--top", "5"]) == 0
    printed = capsys.readouterr()
    assert out.is_file()
    assert "Data" in printed.err and "rows read" in printed.err  # the data report comes first
    assert "Likely label errors" in printed.out and "Per class" in printed.out
    assert "stored with study audit-test" in printed.out
    assert f"`sweep report audit-test --storage {url}` shows it" in printed.out.replace("\n", "")  # its own store

    flagged = read_csv_rows(out)
    assert list(flagged[0]) == ["rank", "row", "text", "text_pair", "given_label", "suggested_label",
                                "label_quality", "suggested_probability"]  # fmt: skip
    # The planted errors lead the ranking; `row` is the training file's data row, so the text matches the file.
    assert sorted(int(r["row"]) for r in flagged[: len(errors)]) == errors
    for r in flagged:
        assert (r["text"], r["given_label"]) == rows[int(r["row"])]
    quality = [float(r["label_quality"]) for r in flagged]
    assert quality == sorted(quality)

    from sweep.storage import load_study

    study = load_study("audit-test", url)
    record = read_audit(study)
    assert record is not None and record.method == "embeddings" and record.folds == 5
    assert record.examples == 75 and record.flagged == len(flagged)
    assert sorted(s.row for s in record.suspects[: len(errors)]) == errors
    assert sum(c.examples for c in record.classes) == 75
    report = tmp_path / "report.html"
    assert main(["report", "audit-test", "--storage", url, "--out", str(report)]) == 0
    html = report.read_text(encoding="utf-8")
    assert "Annotation audit" in html and rows[errors[0]][0] in html

    # The second audit reads the embeddings from the cache.
    assert main(["audit", str(spec), "--storage", url]) == 0
    assert "embeddings from the cache" in capsys.readouterr().err

    # finetune trains each fold with the study's best trial's hyperparameters, and its audit replaces the first.
    assert main(["audit", str(spec), "--method", "finetune", "--folds", "2", "--storage", url]) == 0
    assert "fine-tuning each fold with the best trial of study audit-test (trial 0)" in capsys.readouterr().err
    replaced = read_audit(load_study("audit-test", url))
    assert replaced is not None and replaced.method == "finetune" and replaced.folds == 2
    assert replaced.hyperparameters["epochs"] == 1 and replaced.hyperparameters["learning_rate"] == 1e-3


def test_a_class_too_small_for_the_folds_is_left_out_and_the_rest_audited(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A class with fewer examples than folds cannot be held out once per fold (TREC's 50 fine classes have several
    of 1-4): the audit checks the other classes, says which it left out, and stores that with its record."""
    rows = separable_rows(20)
    rows = [r for r in rows if r[1] != "account"] + [r for r in rows if r[1] == "account"][:3]
    errors = [5, 17]
    rows = [(text, "billing" if label == "shipping" else "shipping") if i in errors else (text, label)
            for i, (text, label) in enumerate(rows)]  # fmt: skip
    spec = write_spec(tmp_path, tiny_bert, rows)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", str(spec), "--storage", url]) == 0
    capsys.readouterr()
    out = tmp_path / "audit.csv"
    assert main(["audit", str(spec), "--out", str(out), "--storage", url]) == 0
    printed = capsys.readouterr()
    line = ("left out 1 class with fewer training examples than --folds 5: 'account' (3 examples); their examples are "
            "not checked and no example is suggested as one of them (--folds 3 audits them too)")
    assert line in printed.err.replace("\n", " ") and line in printed.out.replace("\n", " ")
    flagged = read_csv_rows(out)
    assert flagged and {int(r["row"]) for r in flagged} <= set(errors)  # planted errors, as the file's rows
    assert all("account" not in (r["given_label"], r["suggested_label"]) for r in flagged)
    for r in flagged:  # rows still point at the training file's rows
        assert (r["text"], r["given_label"]) == rows[int(r["row"])]
    from sweep.storage import load_study

    record = read_audit(load_study("audit-test", url))
    assert record is not None and record.left_out == {"account": 3}
    assert record.examples == 40 and {c.label for c in record.classes} == {"billing", "shipping"}
    report = tmp_path / "report.html"
    assert main(["report", "audit-test", "--storage", url, "--out", str(report)]) == 0
    assert "The audit left out 1 class with fewer training examples than --folds 5" in report.read_text()
    # the fine-tuned folds leave it out too (the ensemble averages both methods' predictions of the kept rows)
    assert main(["audit", str(spec), "--method", "ensemble", "--folds", "4", "--storage", url,
                 "--out", str(out)]) == 0  # an earlier audit's CSV is replaced  # fmt: skip
    assert "'account' (3 examples)" in capsys.readouterr().err
    mixed = read_audit(load_study("audit-test", url))
    assert mixed is not None and mixed.left_out == {"account": 3} and mixed.examples == 40
    assert all("account" not in (s.given, s.suggested) for s in mixed.suspects)
    # --folds 3 audits every class
    assert main(["audit", str(spec), "--folds", "3", "--storage", url]) == 0
    assert "left out" not in capsys.readouterr().err
    again = read_audit(load_study("audit-test", url))
    assert again is not None and again.left_out == {} and again.examples == 43


def test_an_audit_left_with_one_class_is_refused_and_nothing_is_written(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = separable_rows(10)
    rows = ([r for r in rows if r[1] == "billing"] + [r for r in rows if r[1] == "account"][:3]
            + [r for r in rows if r[1] == "shipping"][:4])  # two classes too small for 5 folds: one would remain
    spec = write_spec(tmp_path, tiny_bert, rows)
    out = tmp_path / "audit.csv"
    assert main(["audit", str(spec), "--out", str(out), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    err = capsys.readouterr().err
    assert "data.train: class 'account' has 3 training examples, fewer than --folds 5: --folds 3 or add examples" in err
    assert "data.train: class 'shipping' has 4 training examples" in err
    assert not out.exists() and not (tmp_path / "cache" / "embeddings").exists()
    assert main(["audit", str(spec), "--method", "bayes", "--folds", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--method: must be one of 'embeddings', 'finetune', 'ensemble', got 'bayes'" in err
    assert "--folds: must be at least 2, got 1" in err and "is a folder" in err
    # the training file itself (or any file but an earlier audit's CSV) is not replaced
    train = tmp_path / "train.csv"
    before = train.read_bytes()
    assert main(["audit", str(spec), "--out", str(train)]) == 2
    assert f"--out: {train} exists and is not an earlier audit's CSV" in " ".join(capsys.readouterr().err.split())
    assert train.read_bytes() == before
    assert main(["audit", str(spec), "--out", str(spec / "a.csv")]) == 2  # the spec file is in the way
    assert f"--out: {spec} is a file, so no folder can be made there" in capsys.readouterr().err
    # a positive_label the data lacks is refused as `sweep run` refuses it (it was a traceback in a fold)
    bad = write_spec(tmp_path, tiny_bert, separable_rows(10),
                     objective={"metric": "f1_binary", "positive_label": "Billing"})  # fmt: skip
    assert main(["audit", str(bad), "--method", "finetune", "--folds", "2"]) == 2
    assert "objective.positive_label: f1_binary scores one class against the other of two" in capsys.readouterr().err


def test_finetune_method_trains_each_fold_with_the_spec_defaults(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, tiny_bert, flip(separable_rows(8), [2]))
    out = tmp_path / "audit.csv"
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert main(["audit", str(spec), "--method", "finetune", "--folds", "2", "--out", str(out),
                 "--storage", url]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "fine-tuning each fold with the spec's fixed values" in err and "epochs 1" in err and "batch_size 16" in err
    assert "fold 1/2 trained on 12 examples" in err and "fold 2/2 trained on 12 examples" in err
    assert out.is_file()
    assert not (tmp_path / "sweeps.db").exists()  # no study: nothing stored, no store created


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_finetune_audit_stopped_by_a_signal_exits_as_the_signal_says(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    signum: signal.Signals,
) -> None:  # fmt: skip
    """Lightning turns an interrupt during training into exit code 1 (or 0 on its own SIGTERM): `timeout ... sweep
    audit --method finetune && next` went on as if the audit had finished."""
    import os

    from models.classifier import SequenceClassifier

    step = SequenceClassifier.training_step

    def killed(self: SequenceClassifier, *args: object) -> object:
        os.kill(os.getpid(), signum)
        return step(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SequenceClassifier, "training_step", killed)
    spec = write_spec(tmp_path, tiny_bert, flip(separable_rows(8), [2]))
    out = tmp_path / "audit.csv"
    code = main(["audit", str(spec), "--method", "finetune", "--folds", "2", "--out", str(out),
                 "--storage", f"sqlite:///{tmp_path / 'sweeps.db'}"])  # fmt: skip
    assert code == 128 + signum
    said = "stopped by SIGTERM: nothing" if signum == signal.SIGTERM else "interrupted: nothing half-written is left"
    assert said in capsys.readouterr().err
    assert not out.exists()


def test_text_pair_audit_keeps_both_texts_in_the_csv(tmp_path: Path, tiny_bert: Path) -> None:
    rows = flip(separable_rows(12, seed=3), [5])
    pairs = [(f"question {i}", text, label) for i, (text, label) in enumerate(rows)]
    with (tmp_path / "train.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "text_b", "label"), *pairs])
    with (tmp_path / "val.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "text_b", "label"), *[("q", t, lab) for t, lab in separable_rows(3, 8)]])
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "pairs", "task": "text-pair",
        "data": {"train": "train.csv", "validation": "val.csv", "text_pair_column": "text_b",
                 "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(tiny_bert), "max_length": 32},
    }), encoding="utf-8")  # fmt: skip
    out = tmp_path / "audit.csv"
    assert main(["audit", str(spec), "--folds", "3", "--out", str(out), "--storage",
                 f"sqlite:///{tmp_path / 's.db'}"]) == 0  # fmt: skip
    flagged = read_csv_rows(out)
    assert int(flagged[0]["row"]) == 5  # the planted pair leads
    for r in flagged:
        assert (r["text"], r["text_pair"], r["given_label"]) == pairs[int(r["row"])]


def test_the_mean_of_two_models_flags_what_both_doubt_not_what_one_gets_wrong() -> None:
    """Two models that each put an honest example in the wrong class (different examples) flag those examples alone;
    their mean keeps only the planted errors, which both doubt."""
    rng = np.random.default_rng(0)
    errors = [3, 47, 95, 130]
    truth, given = planted(50, 3, errors)

    def model(blind: list[int]) -> np.ndarray:
        probs = np.full((150, 3), 0.05) + rng.uniform(0, 0.05, size=(150, 3))
        probs[np.arange(150), truth] = rng.uniform(0.75, 0.95, size=150)
        probs /= probs.sum(axis=1, keepdims=True)
        for i in [*errors, *blind]:  # sure of the true class for the errors, of a wrong one for its blind spots
            probs[i] = 0.02
            probs[i, (truth[i] + (1 if i in errors else 2)) % 3 if i in blind else truth[i]] = 0.96
        return probs

    first, second = model([12, 70]), model([33, 101])
    assert {i.index for i in classification_issues(given, first).issues} >= {12, 70}
    assert {i.index for i in classification_issues(given, second).issues} >= {33, 101}
    mean = mean_predictions(first, second)
    assert np.allclose(mean.sum(axis=1), 1.0)
    assert {i.index for i in classification_issues(given, mean).issues} == set(errors)
    words = mean_predictions([first[:2], first[2:5]], [second[:2], second[2:5]])  # token classification's form
    assert [w.shape for w in words] == [(2, 3), (3, 3)] and np.allclose(words[1], mean[2:5])


def test_ensemble_method_averages_the_embeddings_probe_and_the_fine_tuned_folds(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sweep.audit import run_audit

    spec = write_spec(tmp_path, tiny_bert, flip(separable_rows(8), [2]))
    result = run_audit(spec, method="ensemble", folds=2, storage_url=f"sqlite:///{tmp_path / 's.db'}")
    err = capsys.readouterr().err
    assert "embeddings computed and cached" in err and "fine-tuning each fold with the spec's fixed values" in err
    assert set(result.components) == {"embeddings", "finetune"}
    assert np.allclose(result.pred_probs, (result.components["embeddings"] + result.components["finetune"]) / 2)
    assert result.record.method == "ensemble" and result.record.examples == 24
    note = audit_blocks(result.record)[0]
    assert isinstance(note, NoteBlock)
    assert "the mean of frozen-encoder embeddings and a logistic regression per fold and the encoder fine-tuned" in (
        note.text
    )


def test_finetune_without_a_study_trains_inside_the_searched_space(tmp_path: Path, tiny_bert: Path) -> None:
    """A user searching learning_rate in [1e-4, 4e-4] saw the folds train at the built-in 5e-5: the spec's defaults
    are now the warm start's known-good values placed in the space, or the built-in ones moved into it."""
    from sweep.audit import spec_defaults
    from sweep.spec import parse_spec

    spec = parse_spec({"name": "s", "data": {"train": "t.csv"},
                       "search": {"space": {"learning_rate": {"low": 1.5e-4, "high": 4e-4, "log": True},
                                            "batch_size": [8, 32], "epochs": 2}}})  # fmt: skip
    unread = spec_defaults(spec)  # no encoder to read: the built-in defaults, moved into the space
    assert unread["learning_rate"] == pytest.approx(1.5e-4) and unread["batch_size"] == 32 and unread["epochs"] == 2
    known = spec_defaults(spec, str(tiny_bert))  # a small encoder: its recipe's 1e-4 and batch 16, placed
    # the recipe's batch 16 lies as far from 8 as from 32 on a log scale: the first choice (the built-in 32 would not)
    assert known["learning_rate"] == pytest.approx(1.5e-4) and known["batch_size"] == 8 and known["epochs"] == 2


def test_what_would_audit_a_left_out_class_is_said_for_each_kind() -> None:
    """'a label needs at least 2 examples' was said of 'how_long' (4 examples) beside 'repeat' (1): the --folds that
    audits the first, and the need of the second."""
    from record.audit import left_out_line

    mixed = replace(audit_record(), folds=5, class_name="label", examples=300, left_out={"repeat": 1, "how_long": 4})
    assert (left_out_line(mixed) or "").endswith("(--folds 4 audits 'how_long' too; a label needs at least 2 examples "
                                                 "for an out-of-fold check: 'repeat')")
    classes = replace(audit_record(), folds=5, left_out={"LOC": 1})
    assert (left_out_line(classes) or "").endswith("(a class needs at least 2 examples for an out-of-fold check)")
