"""model.pooling: a sequence head over the mean of the token states for sentence-transformers encoders, recorded by
the study, exported as a folder whose own code transformers runs only with trust_remote_code=True."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import quickstart_subset, split_per_class, tiny_study_spec, write_csv
from sklearn.metrics import f1_score

from record import StudyRecord, read_study, study_attrs, study_from_attrs
from reports.sections import head_of
from sweep.cli import main
from sweep.encoders import resolve_pooling, sentence_pooling
from sweep.errors import SweepError
from sweep.export import export_trial, load_hint, model_card
from sweep.spec import Spec, load_spec
from sweep.storage import load_study


def sentence_transformers_folder(encoder: Path, target: Path, mode: str = "mean") -> Path:
    """A copy of `encoder` with the files sentence-transformers saves beside a model: modules.json and the Pooling
    module's config (`mode` on)."""
    shutil.copytree(encoder, target)
    kinds = ("Transformer", "Pooling")
    modules = [{"idx": i, "name": str(i), "path": ["", "1_Pooling"][i], "type": f"sentence_transformers.models.{kind}"}
               for i, kind in enumerate(kinds)]  # fmt: skip
    (target / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (target / "1_Pooling").mkdir()
    modes = {f"pooling_mode_{m}": m == mode for m in ("cls_token", "mean_tokens", "max_tokens")}
    (target / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    return target


@pytest.fixture(scope="module")
def st_encoder(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sentence_transformers_folder(tiny_bert, tmp_path_factory.mktemp("st") / "tiny-st", "mean_tokens")


def test_auto_pooling_follows_the_encoders_sentence_transformers_config(
    tiny_bert: Path, st_encoder: Path, tmp_path: Path
) -> None:
    assert sentence_pooling(str(tiny_bert)) is None
    assert resolve_pooling("auto", str(tiny_bert)) == ("cls", "the architecture's own head")
    assert sentence_pooling(str(st_encoder)) == "mean"
    assert resolve_pooling("auto", str(st_encoder)) == ("mean", "the encoder's sentence-transformers pooling")
    cls_folder = sentence_transformers_folder(tiny_bert, tmp_path / "cls", "cls_token")
    pooling, why = resolve_pooling("auto", str(cls_folder))
    assert pooling == "cls" and "is cls, not mean" in why
    assert resolve_pooling("cls", str(st_encoder)) == ("cls", "model.pooling")  # the spec's word wins
    assert resolve_pooling("mean", str(tiny_bert)) == ("mean", "model.pooling")
    later = sentence_transformers_folder(tiny_bert, tmp_path / "st6", "mean_tokens")  # as sentence-transformers 6 saves
    modules = json.loads((later / "modules.json").read_text())
    modules[1]["type"] = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
    (later / "modules.json").write_text(json.dumps(modules))
    (later / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "mean"}))
    assert sentence_pooling(str(later)) == "mean"
    (later / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": ["cls", "max"]}))
    assert sentence_pooling(str(later)) == "cls+max"
    (st_encoder.parent / "broken").mkdir(exist_ok=True)
    (st_encoder.parent / "broken" / "modules.json").write_text("not json")
    assert sentence_pooling(str(st_encoder.parent / "broken")) is None  # unreadable: the architecture's head


def test_the_default_pooling_leaves_the_spec_and_fingerprint_of_earlier_studies_as_they_were() -> None:
    body = {"name": "s", "data": {"train": "t.csv"}}
    before = Spec.model_validate(body)
    assert "pooling" not in before.model_dump()["model"]
    assert Spec.model_validate({**body, "model": {"pooling": "auto"}}).fingerprint() == before.fingerprint()
    chosen = Spec.model_validate({**body, "model": {"pooling": "mean"}})
    assert chosen.model_dump()["model"]["pooling"] == "mean" and chosen.fingerprint() != before.fingerprint()


def test_a_bad_pooling_and_pooling_for_tagging_are_one_line_each(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "data": {"train": "t.csv"}, "model": {"pooling": "max"}}))
    with pytest.raises(SweepError) as bad:
        load_spec(spec)
    assert "model.pooling" in str(bad.value) and "'auto', 'cls' or 'mean'" in str(bad.value)
    spec.write_text(yaml.safe_dump({"name": "s", "task": "token-classification", "data": {"train": "t.conll"},
                                    "model": {"pooling": "mean"}}))  # fmt: skip
    with pytest.raises(SweepError) as tagging:
        load_spec(spec)
    assert "model.pooling: applies to tasks with one prediction per text" in str(tagging.value)


def test_a_study_recorded_before_pooling_existed_trains_the_architectures_head() -> None:
    old = study_from_attrs({"spec": {"name": "s"}, "data_fingerprint": "x"})
    assert old.pooling is None and old.pooling_as_trained == "cls"
    new = study_from_attrs(study_attrs(StudyRecord(spec={"name": "s"}, pooling="mean")))
    assert new.pooling == "mean" and new.pooling_as_trained == "mean"


def test_the_mean_pooling_head_averages_the_unpadded_token_states(tiny_bert: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from models.classifier import load_pretrained_classifier

    model = load_pretrained_classifier(str(tiny_bert), ["a", "b", "c"], 0.0, pooling="mean").eval()
    assert not [name for name, _ in model.named_parameters() if "pooler" in name]  # BERT's pooler is not built
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    batch = tokenizer(["the cat sat on the mat", "good"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.encoder(**batch).last_hidden_state
    short = int(batch["attention_mask"][1].sum())
    expected = model.classifier(hidden[1, :short].mean(dim=0))
    torch.testing.assert_close(logits[1], expected)
    assert logits.shape == (2, 3)
    # saved and loaded in another dtype (a GPU user's bf16 or fp16): the encoder follows it, as the head does
    from models.modeling_mean_pooling import MeanPoolingForSequenceClassification

    model.save_pretrained(tmp_path / "saved")
    half = MeanPoolingForSequenceClassification.from_pretrained(tmp_path / "saved", dtype=torch.bfloat16).eval()
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        torch.testing.assert_close(half(**batch).logits.float(), logits, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="pooling: must be one of cls, mean"):
        load_pretrained_classifier(str(tiny_bert), ["a", "b"], pooling="max")


def test_mean_pooling_drops_inputs_an_encoder_does_not_take_and_serves_regression_and_multi_label(
    tmp_path: Path, tiny_bert: Path
) -> None:
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from models.classifier import load_pretrained_classifier
    from models.multilabel import MultiLabelClassifier
    from models.regressor import load_pretrained_regressor, output_layer

    folder = tmp_path / "distil"
    config = DistilBertConfig(vocab_size=200, dim=32, n_layers=1, n_heads=2, hidden_dim=37)
    DistilBertModel(config).save_pretrained(folder)
    model = load_pretrained_classifier(str(folder), ["a", "b"], pooling="mean").eval()
    ids = torch.tensor([[2, 5, 7, 3]])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))
    assert out.logits.shape == (1, 2)  # DistilBERT takes no token_type_ids: left out, not an error

    regressor = load_pretrained_regressor(str(tiny_bert), "score", score_mean=2.5, pooling="mean")
    assert regressor.config.problem_type == "regression" and output_layer(regressor).bias.item() == 2.5
    multi = MultiLabelClassifier(encoder_name_or_path=str(tiny_bert), label_names=["x", "y"], learning_rate=1e-3,
                                 label_priors=[0.5, 0.1], pooling="mean")  # fmt: skip
    assert multi.model.config.problem_type == "multi_label_classification"
    assert multi.model.classifier.bias.tolist() == pytest.approx([0.0, -2.1972], abs=1e-4)
    tokens = AutoTokenizer.from_pretrained(tiny_bert)(["good film"], return_tensors="pt")
    assert multi.model(**tokens, labels=torch.tensor([[1.0, 0.0]])).loss is not None  # transformers' own loss


@pytest.fixture(scope="module")
def mean_study(st_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-trial study of the sentence-transformers-like tiny encoder (pooling auto: mean), checkpoints kept."""
    root = tmp_path_factory.mktemp("mean-study")
    train, val = split_per_class(quickstart_subset(30, seed=3), 8)
    data = {"train": str(write_csv(root / "train.csv", train)), "validation": str(write_csv(root / "val.csv", val))}
    tiny_study_spec(root, st_encoder, "mean-pooled", data, storage=f"sqlite:///{root / 'sweeps.db'}",
                    search={"n_trials": 2, "keep_checkpoints": 1, "space": {"epochs": 2}})  # fmt: skip
    return root


def test_a_study_records_mean_pooling_trains_it_and_exports_a_folder_that_needs_trust_remote_code(
    mean_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(mean_study / "spec.yaml")
    assert main(["run", spec]) == 0
    said = capsys.readouterr().err
    assert "pooling: mean of the token states (the encoder's sentence-transformers pooling)" in said
    url = f"sqlite:///{mean_study / 'sweeps.db'}"
    study = load_study("mean-pooled", url)
    assert read_study(study).pooling == "mean"

    out = tmp_path / "model"
    assert main(["export", "mean-pooled", "--storage", url, "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert f'model="{out}", trust_remote_code=True' in said.out + said.err
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "sweep-mean-pooling"
    assert config["auto_map"]["AutoModelForSequenceClassification"] == (
        "modeling_mean_pooling.MeanPoolingForSequenceClassification")
    assert (out / "modeling_mean_pooling.py").is_file()
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["pooling"] == "mean"
    card = (out / "README.md").read_text()
    assert "mean of the encoder's token states" in card
    assert 'pipeline("text-classification", model="path/to/this/folder", trust_remote_code=True)' in card
    assert "`AutoModelForSequenceClassification.from_pretrained(..., trust_remote_code=True)`" in card
    assert "`AutoTokenizer.from_pretrained(..., trust_remote_code=True)`" in card

    # where sweep is not imported: without the flag transformers refuses; with it the pipeline scores as the trial did
    with (mean_study / "val.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    script = textwrap.dedent(f"""
        import json, sys
        from transformers import pipeline
        try:
            pipeline("text-classification", model={str(out)!r}, device=-1)
            print("loaded without trust_remote_code")
        except ValueError as exc:
            print("refused:", "trust_remote_code" in str(exc))
        classify = pipeline("text-classification", model={str(out)!r}, device=-1, trust_remote_code=True)
        texts = json.loads(open("texts.json", encoding="utf-8").read())
        print(json.dumps([p["label"] for p in classify(texts, truncation=True, max_length=32)]))
        print("models" in sys.modules or "sweep" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    (tmp_path / "texts.json").write_text(json.dumps([r["text"] for r in rows]), encoding="utf-8")
    # no terminal to answer transformers' "run the custom code? [y/N]" on: it refuses
    done = subprocess.run([sys.executable, "-c", script], stdin=subprocess.DEVNULL, text=True, capture_output=True,
                          cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    refused, labels, imported = done.stdout.strip().splitlines()[-3:]
    assert refused.endswith("refused: True")  # after the prompt it printed
    assert imported == "False"
    trial = max((t for t in study.trials if t.value is not None), key=lambda t: t.value)
    assert f1_score([r["label"] for r in rows], json.loads(labels), average="macro") == pytest.approx(trial.value)

    again, _ = export_trial(study, tmp_path / "again")  # the same folder through the function
    assert (again / "modeling_mean_pooling.py").read_bytes() == (out / "modeling_mean_pooling.py").read_bytes()
    assert head_of(study) == "mean of the token states (model.pooling: mean)"  # the report's `head` row

    # `sweep export` in a process of its own (no head code imported before) asks nothing: transformers' "run the
    # custom code? [y/N]" waited 15 s in a user's terminal while the export read the tokenizer back
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "sweep", "export", "mean-pooled", "--storage", url, "--out", str(tmp_path / "cli")]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, text=True, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "custom code" not in done.stdout + done.stderr and "[y/N]" not in done.stdout + done.stderr
    assert (tmp_path / "cli" / "modeling_mean_pooling.py").is_file()


def test_the_load_hint_and_card_name_trust_remote_code_only_for_mean_pooling() -> None:
    assert load_hint("text-classification", False, "/m", 64, remote_code=True) == (
        'transformers.pipeline("text-classification", model="/m", trust_remote_code=True), called with '
        "truncation=True, max_length=64 (as the study scored)")
    assert "trust_remote_code" not in load_hint("text-classification", False, "/m", 64)
    assert 'model="/m", trust_remote_code=True, function_to_apply="none"' in load_hint(
        "regression", False, "/m", remote_code=True)
    assert 'model="/m", trust_remote_code=True, top_k=None' in load_hint("multi-label", False, "/m", remote_code=True)
    meta = {"study": "s", "trial": 0, "task": "multi-label", "metric": "f1_micro", "value": 0.5, "best_epoch": 1,
            "epochs": 1, "hyperparameters": {}, "label_names": ["a", "b"], "encoder": "minilm", "max_length": 32,
            "data_report": {}, "spec": {}, "threshold": 0.4, "validation_metrics": {}, "pooling": "mean", "seed": 0,
            "searched_parameters": {}, "data_fingerprint": "f"}  # fmt: skip
    card = model_card(meta)
    assert 'model="path/to/this/folder", trust_remote_code=True, top_k=None' in card
    assert "trust_remote_code" not in model_card({**meta, "pooling": "cls"})
