"""Checkpoints in an Optuna artifact store (the spec's `artifacts:` section): written when a trial enters the top k,
removed when it falls out, exported from another working folder, checked on download; folder checkpoints written
before artifact stores still export; S3 and GCS as far as they go without a network."""

from __future__ import annotations

import csv
import json
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import quickstart_subset, split_per_class, write_csv
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import FrozenTrial, TrialState
from sklearn.metrics import f1_score

import sweep.artifacts
from record import ARTIFACT_STORE_KEYS, StudyRecord, read_study, read_trial, study_attrs, study_from_attrs
from sweep.artifacts import artifact_settings, open_store
from sweep.checkpoints import is_kept
from sweep.cli import main
from sweep.errors import SweepError
from sweep.runner import run_study
from sweep.spec import ArtifactsSpec
from sweep.storage import load_study

SECRET = "sekrit-0123456789abcdef"  # in the environment while the study runs: it must appear nowhere


def write_spec(root: Path, encoder: Path, name: str, n_trials: int, keep: int, **extra: Any) -> Path:
    train, val = split_per_class(quickstart_subset(45, seed=2), 12)
    spec: dict[str, Any] = {
        "name": name,
        "storage": f"sqlite:///{root / 'sweeps.db'}",
        "checkpoint_dir": str(root / "checkpoints"),
        "data": {
            "train": str(write_csv(root / "train.csv", train)),
            "validation": str(write_csv(root / "val.csv", val)),
            "cache_dir": str(root / "cache"),
        },
        "model": {"encoder": str(encoder), "max_length": 32},
        "search": {
            "n_trials": n_trials, "sampler": "random", "pruner": "none", "keep_checkpoints": keep,
            "space": {"learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}, "batch_size": 8, "epochs": [4, 5]},
        },
        "trainer": {"num_threads": 1},
        **extra,
    }  # fmt: skip
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def url(root: Path) -> str:
    return f"sqlite:///{root / 'sweeps.db'}"


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """3 trials keeping the top 1 checkpoint in a file-system artifact store (an absolute folder)."""
    root = tmp_path_factory.mktemp("artifact-study")
    store = {"store": "filesystem", "path": str(root / "store")}
    spec = write_spec(root, tiny_bert, "artifacts", 3, 1, artifacts=store)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        env.setenv("AWS_ACCESS_KEY_ID", SECRET)
        run_study(spec)
    return root


def complete(study: optuna.Study) -> list[FrozenTrial]:
    return sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (-float(t.value or 0), t.number))


def test_top_k_artifacts_stay_and_the_rest_are_removed(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_study("artifacts", url(study_dir))
    trials = complete(study)
    assert len(trials) == 3
    written = {t.number: read_trial(t).checkpoint_artifact for t in trials if read_trial(t).checkpoint_artifact}
    best = trials[0].number
    assert best in written and len(written) >= 2, "the study should have written an artifact that fell out later"
    # The store holds exactly the best trial's artifact: the ones that fell out of the top 1 were removed.
    assert sorted(p.name for p in (study_dir / "store").iterdir()) == [written[best]]
    assert {t.number for t in study.trials if is_kept(study, t)} == {best}
    # No checkpoint folder was left beside the tokenizer: the checkpoint went to the store only.
    assert sorted(p.name for p in (study_dir / "checkpoints").iterdir()) == ["tokenizer"]
    # Optuna (and so optuna-dashboard) lists each artifact with its trial.
    for number, artifact_id in written.items():
        metas = get_all_artifact_meta(study.trials[number], storage=study._storage)
        assert [(m.artifact_id, m.filename) for m in metas] == [(artifact_id, f"artifacts-trial-{number:05d}.tar")]
    record = read_study(study)
    assert record.artifact_store == {"store": "filesystem", "path": str(study_dir / "store")}

    assert main(["status", "artifacts", "--storage", url(study_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("deleted") == len(written) - 1
    assert "checkpoints: 1 kept as artifacts" in out and str(study_dir / "store") in out


def test_nothing_stored_carries_a_credential(study_dir: Path) -> None:
    study = load_study("artifacts", url(study_dir))
    system = study._storage.get_study_system_attrs(study._study_id)
    stored = json.dumps([study.user_attrs, system] + [[t.user_attrs, t.system_attrs] for t in study.trials])
    assert SECRET not in stored
    assert set(read_study(study).artifact_store or {}) <= set(ARTIFACT_STORE_KEYS)
    # An s3 store's settings as the study keeps them: where, never how to log in.
    s3 = artifact_settings(ArtifactsSpec(store="s3", bucket="models", prefix="team/", endpoint_url="http://minio:9000"),
                           Path("/unused"))  # fmt: skip
    attrs = study_attrs(StudyRecord(artifact_store={**s3, "secret_access_key": SECRET}))
    assert SECRET not in json.dumps(attrs)
    assert study_from_attrs(attrs).artifact_store == s3


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def assert_reproduces(model: Path, val: Path, value: float) -> None:
    """The exported model, loaded as a user would, scores its trial's stored validation metric."""
    from transformers import pipeline

    rows = read_rows(val)
    classify = pipeline("text-classification", model=str(model), device=-1)
    predicted = [p["label"] for p in classify([r["text"] for r in rows], truncation=True, max_length=32)]
    assert f1_score([r["label"] for r in rows], predicted, average="macro") == pytest.approx(value, abs=1e-6)


def test_export_from_another_working_folder(
    study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere, scratch = tmp_path / "elsewhere", tmp_path / "tmp"
    elsewhere.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the download is unpacked
    assert main(["export", "artifacts", "--out", "model", "--storage", url(study_dir)]) == 0
    best = complete(load_study("artifacts", url(study_dir)))[0]
    assert f"exported trial {best.number}" in capsys.readouterr().out
    model = elsewhere / "model"
    assert {"model.safetensors", "config.json", "README.md", "sweep.json", "tokenizer_config.json"} <= {
        p.name for p in model.iterdir()
    }
    assert json.loads((model / "sweep.json").read_text())["trial"] == best.number
    assert list(scratch.iterdir()) == []  # the downloaded artifact and its unpacked folder are gone
    assert sorted(p.name for p in elsewhere.iterdir()) == ["model"]
    assert_reproduces(model, study_dir / "val.csv", float(best.value or 0))


def test_export_checks_the_downloaded_artifact(
    study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store mounted elsewhere (`--checkpoints`) is read there; a changed or missing artifact writes nothing."""
    import shutil

    moved = tmp_path / "mounted"
    shutil.copytree(study_dir / "store", moved)
    assert main(["export", "artifacts", "--out", str(tmp_path / "ok"), "--storage", url(study_dir),
                 "--checkpoints", str(moved)]) == 0  # fmt: skip
    (packed,) = moved.iterdir()
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    packed.write_bytes(bytes(data))
    target = tmp_path / "bad"
    (tmp_path / "empty").mkdir()
    cases = {str(moved): "does not match the SHA-256", str(tmp_path / "none"): "--checkpoints: no such folder",
             str(tmp_path / "empty"): "checkpoint is not in"}  # the study keeps it; the folder named has none
    for folder, message in cases.items():
        args = ["export", "artifacts", "--out", str(target), "--storage", url(study_dir), "--checkpoints", folder]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mounted", "ok"]


def test_folder_checkpoints_still_export_and_a_resumed_study_moves_to_artifacts(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study written before artifact stores (a folder per checkpoint, no artifact id: what `store: folder` still
    writes) exports as before; resumed with an artifact store (not part of the fingerprint), its new trials'
    checkpoints go to the store."""
    root = tmp_path / "legacy"
    root.mkdir()
    run_study(write_spec(root, tiny_bert, "legacy", 1, 2, artifacts={"store": "folder"}))
    study = load_study("legacy", url(root))
    first = read_trial(study.trials[0])
    assert first.checkpoint == "trial-00000" and first.checkpoint_artifact is None
    assert (root / "checkpoints" / "trial-00000" / "model.safetensors").is_file()
    assert read_study(study).artifact_store is None

    run_study(write_spec(root, tiny_bert, "legacy", 2, 2, artifacts={"path": "store"}))  # relative: the spec's folder
    study = load_study("legacy", url(root))
    second = read_trial(study.trials[1])
    assert second.checkpoint_artifact is not None
    assert [p.name for p in (root / "store").iterdir()] == [second.checkpoint_artifact]
    assert {t.number for t in study.trials if is_kept(study, t)} == {0, 1}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for number in (0, 1):
        assert main(["export", "legacy", "--out", f"m{number}", "--trial", str(number), "--storage", url(root)]) == 0
        assert_reproduces(elsewhere / f"m{number}", root / "val.csv", float(study.trials[number].value or 0))


@pytest.fixture()
def bad_spec(tmp_path: Path, tiny_bert: Path) -> Any:
    def write(artifacts: dict[str, Any]) -> Path:
        return write_spec(tmp_path, tiny_bert, "bad", 1, 1, artifacts=artifacts)

    return write


@pytest.mark.parametrize(
    ("artifacts", "message"),
    [
        ({"store": "azure"}, "artifacts.store: must be one of 'filesystem', 's3', 'gcs' or 'folder', got 'azure'"),
        ({"store": "s3"}, "artifacts: store s3 needs bucket"),
        ({"store": "gcs", "bucket": "b", "path": "/x"}, "path only applies to store filesystem"),
        ({"store": "s3", "bucket": "b", "secret_access_key": SECRET}, "credentials never go in the spec: set them in "
                                                                      "the environment (AWS_ACCESS_KEY_ID"),
        ({"store": "s3", "bucket": "b", "endpoint_url": f"http://me:{SECRET}@minio:9000"},
         "must not carry credentials"),
    ],
)  # fmt: skip
def test_bad_artifacts_sections(
    bad_spec: Any, tmp_path: Path, artifacts: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = bad_spec(artifacts)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert SECRET not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no cache, no checkpoint


def test_a_missing_cloud_library_names_the_extra(
    bad_spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep.artifacts._open.cache_clear()
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if not installed (import raises ImportError)
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    with pytest.raises(SweepError, match=r"s3 needs the Python package boto3, which is not installed: pip install "
                                         r"'sweep\[s3\]'"):  # fmt: skip
        open_store({"store": "s3", "bucket": "models"})
    with pytest.raises(SweepError, match=r"pip install 'sweep\[gcs\]'"):
        open_store({"store": "gcs", "bucket": "models"})
    spec = bad_spec({"store": "s3", "bucket": "models"})
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "artifacts.store: s3 needs the Python package boto3" in err and "sweep[s3]" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_s3_store_is_built_from_the_spec_without_a_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """With boto3 installed: the client points at the spec's endpoint and bucket, keys carry the prefix, and no
    request is made (there is no server: a request would fail)."""
    pytest.importorskip("boto3")
    from optuna.artifacts import Boto3ArtifactStore

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sweep.artifacts._open.cache_clear()
    plain = open_store({"store": "s3", "bucket": "models", "endpoint_url": "http://127.0.0.1:9"})
    assert isinstance(plain, Boto3ArtifactStore) and plain.bucket == "models"
    assert plain.client.meta.endpoint_url == "http://127.0.0.1:9"
    prefixed: Any = open_store({"store": "s3", "bucket": "models", "prefix": "team/"})
    assert prefixed.prefix == "team/" and isinstance(prefixed.inner, Boto3ArtifactStore)
    with pytest.raises(SweepError, match="cannot open the s3 store"):
        open_store({"store": "s3", "bucket": "models", "endpoint_url": "http://bad host:9"})


def test_a_packed_checkpoint_is_linked_into_the_folder_store_and_hashed_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder store takes a packed file from its own disk as a hard link (no second copy of the weights); across
    disks, or where links are refused, it copies as Optuna does. The SHA-256 pack returns is the file's."""
    folder = tmp_path / "trial-00001"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4096)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    packed = store_dir / ".scratch" / "s-trial-00001.tar"
    packed.parent.mkdir()
    digest = sweep.artifacts.pack(folder, packed)
    assert digest == sweep.artifacts.sha256(packed)
    store = open_store({"store": "filesystem", "path": str(store_dir)})
    study = optuna.create_study()
    linked = optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(packed), study_or_trial=study)
    assert (store_dir / linked).stat().st_ino == packed.stat().st_ino  # the same file, not a copy
    packed.unlink()  # the scratch folder goes; the artifact stays
    assert sweep.artifacts.sha256(store_dir / linked) == digest
    other = tmp_path / "elsewhere.tar"
    sweep.artifacts.pack(folder, other)

    def no_links(source: str, target: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(sweep.artifacts.os, "link", no_links)
    copied = optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(other), study_or_trial=study)
    assert (store_dir / copied).stat().st_ino != other.stat().st_ino
    assert sweep.artifacts.sha256(store_dir / copied) == sweep.artifacts.sha256(other) == digest


def _classifier(tiny_bert: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=3)


def _unpacked(store_dir: Path, artifact: str, into: Path) -> Path:
    return sweep.artifacts.unpack(store_dir / artifact, into)


def _folder_store(tmp_path: Path, tiny_bert: Path) -> tuple[Path, Path, Any]:
    """The study's tokenizer files, and a folder artifact store with its folder (a worker with nothing learned yet:
    conftest clears the learned checkpoint layouts before each test)."""
    import sweep.checkpoints as checkpoints

    tokenizer_dir = checkpoints.save_tokenizer_once(str(tiny_bert), tmp_path / "root")
    store_dir = tmp_path / "store"
    return tokenizer_dir, store_dir, checkpoints.ArtifactCheckpoints({"store": "filesystem", "path": str(store_dir)})


def test_a_checkpoint_packed_from_memory_matches_one_save_pretrained_wrote(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first checkpoint of a model class goes through save_pretrained and teaches which tensors it writes; later
    ones are packed straight from memory (their weights never written as a folder) and unpack to the same files:
    the same config.json, the same tensors, a folder from_pretrained loads without a missing or unexpected key."""
    import torch
    from transformers import AutoModelForSequenceClassification

    import sweep.checkpoints as checkpoints

    tokenizer_dir, store_dir, store = _folder_store(tmp_path, tiny_bert)
    study = optuna.create_study(study_name="direct")
    model = _classifier(tiny_bert)
    torch.manual_seed(1)
    state = {k: (v + torch.randn_like(v) * 0.01 if v.is_floating_point() else v).detach().clone()
             for k, v in model.state_dict().items()}  # the best epoch's weights, not the model's current ones
    folder_saves: list[str] = []
    real_save = checkpoints.save_checkpoint

    def counted(*args: Any, **kwargs: Any) -> Path:
        folder_saves.append("folder")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "save_checkpoint", counted)
    first, first_sha = store.save(model, state, tokenizer_dir, "trial-00000", study.ask())
    fresh = _classifier(tiny_bert)  # the next trial's model: a new object of the same class
    second, second_sha = store.save(fresh, state, tokenizer_dir, "trial-00001", study.ask())
    assert folder_saves == ["folder"], "the second checkpoint is packed from memory"
    assert sweep.artifacts.sha256(store_dir / second) == second_sha
    a, b = _unpacked(store_dir, first, tmp_path / "a"), _unpacked(store_dir, second, tmp_path / "b")
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert json.loads((a / "config.json").read_text()) == json.loads((b / "config.json").read_text())
    from safetensors.torch import load_file

    written, packed = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert written.keys() == packed.keys() and all(torch.equal(written[k], packed[k]) for k in written)
    loaded, info = AutoModelForSequenceClassification.from_pretrained(str(b), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert all(torch.equal(loaded.state_dict()[k], state[k]) for k in written)


def test_only_a_plain_save_pretrained_layout_is_learned(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """The tensors a packed-from-memory checkpoint holds are the ones save_pretrained wrote (a key it left out stays
    out); shards, another dtype or other metadata are never learned, and that model class keeps save_pretrained."""
    import torch
    from safetensors.torch import load, save_file

    import sweep.checkpoints as checkpoints

    tokenizer_dir = checkpoints.save_tokenizer_once(str(tiny_bert), tmp_path / "root")
    model = _classifier(tiny_bert)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def folder(name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None,
               extra: tuple[str, ...] = ()) -> Path:  # fmt: skip
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text("{}", encoding="utf-8")
        save_file(tensors, str(path / "model.safetensors"), metadata=metadata or {"format": "pt"})
        for item in extra:
            (path / item).write_text("{}", encoding="utf-8")
        return path

    without_bias = {k: v for k, v in state.items() if k != "classifier.bias"}
    for refused in (
        folder("sharded", without_bias, extra=("model.safetensors.index.json",)),
        folder("other-dtype", {**without_bias, "classifier.weight": state["classifier.weight"].half()}),
        folder("other-metadata", without_bias, metadata={"format": "mlx"}),
    ):
        checkpoints.learn_weight_keys(model, refused, state, tokenizer_dir)
        assert checkpoints.checkpoint_members(model, state, tokenizer_dir, tmp_path / "unused") is None, refused.name
    checkpoints.learn_weight_keys(model, folder("plain", without_bias), state, tokenizer_dir)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    members = checkpoints.checkpoint_members(model, state, tokenizer_dir, scratch)
    assert members is not None
    weights = dict(members)["model.safetensors"]
    assert isinstance(weights, list) and set(load(b"".join(weights))) == set(without_bias)
    assert "config.json" in dict(members) and "tokenizer_config.json" in dict(members)


def test_another_encoder_of_the_same_class_is_not_packed_by_the_first_ones_layout(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """A worker that serves two studies: a one-layer BERT after the two-layer one writes every one of its own
    tensors (its first checkpoint goes through save_pretrained again), none of the other's."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSequenceClassification


    tokenizer_dir, store_dir, store = _folder_store(tmp_path, tiny_bert)
    study = optuna.create_study(study_name="two-encoders")
    two = _classifier(tiny_bert)
    store.save(two, {k: v.detach().clone() for k, v in two.state_dict().items()}, tokenizer_dir, "trial-00000",
               study.ask())  # fmt: skip
    config = AutoConfig.from_pretrained(str(tiny_bert), num_labels=3, num_hidden_layers=1)
    one = AutoModelForSequenceClassification.from_config(config)
    state = {k: v.detach().clone() for k, v in one.state_dict().items()}
    packed, _ = store.save(one, state, tokenizer_dir, "trial-00001", study.ask())
    with safe_open(str(_unpacked(store_dir, packed, tmp_path / "one") / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {k for k in state if not k.endswith("position_ids")}


def test_streamed_weights_are_the_safetensors_file_byte_for_byte_without_copying_a_tensor() -> None:
    """Wider dtypes first and then by name, an empty tensor, a non-contiguous one, with and without metadata: the
    buffers joined are what safetensors.torch.save returns; a contiguous tensor's buffer is its own memory."""
    import torch
    from safetensors.torch import save

    import sweep.checkpoints as checkpoints

    torch.manual_seed(0)
    tensors = {"z.weight": torch.randn(3, 5), "a": torch.ones(2, dtype=torch.bfloat16), "ids": torch.arange(4),
               "mask": torch.ones(3, dtype=torch.uint8), "strided": torch.randn(6, 2)[::2], "empty": torch.zeros(0, 3),
               "half": torch.randn(7).half()}  # fmt: skip
    for metadata in ({"format": "pt"}, {}):
        buffers = checkpoints.safetensors_buffers(tensors, metadata)
        expected = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata or None)
        assert b"".join(bytes(view) for view in buffers) == expected
    own = checkpoints.safetensors_buffers({"w": tensors["z.weight"]}, {"format": "pt"})[1]
    assert torch.frombuffer(own, dtype=torch.uint8).data_ptr() == tensors["z.weight"].data_ptr()


def test_a_streamed_checkpoint_that_does_not_read_back_as_written_is_refused(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streamed weights are read back from the disk: a byte that came back changed fails the checkpoint."""
    import torch

    import sweep.checkpoints as checkpoints

    tokenizer_dir, store_dir, store = _folder_store(tmp_path, tiny_bert)
    study = optuna.create_study(study_name="readback")
    model = _classifier(tiny_bert)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    store.save(model, state, tokenizer_dir, "trial-00000", study.ask())  # learns the layout
    real = checkpoints.pack_members

    def flipped(members: Any, target: Path) -> str:
        digest = real(members, target)
        with tarfile.open(target) as tar:
            weights = tar.getmember("model.safetensors")
        with target.open("r+b") as handle:  # the disk returns the weights' last byte changed
            handle.seek(weights.offset_data + weights.size - 1)
            last = handle.read(1)
            handle.seek(weights.offset_data + weights.size - 1)
            handle.write(bytes([last[0] ^ 0xFF]))
        return digest

    monkeypatch.setattr(checkpoints, "pack_members", flipped)
    with torch.no_grad():
        state["classifier.bias"].add_(1.0)
    with pytest.raises(RuntimeError, match="does not read back as the trained weights"):
        store.save(model, state, tokenizer_dir, "trial-00001", study.ask())
    assert not [p for p in store_dir.iterdir() if p.name.startswith(".trial-00001")], "its scratch folder is gone"
