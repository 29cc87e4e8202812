"""Best-epoch weights: kept in memory during a trial, written once (atomically, safetensors) when it ends,
and only the study-wide top-k trials' checkpoints stay on disk.

Where a checkpoint is kept is a `CheckpointStore`: a folder under the study's checkpoint_dir (`FolderCheckpoints`,
what every study did before artifact stores), or one packed file in an Optuna artifact store (`ArtifactCheckpoints`:
a folder every worker reaches, S3, GCS). Each trial's record says which: an artifact id, or a folder name only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import mmap
import os
import shutil
import struct
import tarfile
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial
from safetensors import safe_open

from record import TrialRecord, maximizes, ranked, read_study, read_trial, seed_leaders
from sweep.artifacts import (
    PACKED_SUFFIX,
    Member,
    artifact_exists,
    describe,
    open_store,
    pack,
    pack_members,
    sha256,
    unpack,
)
from sweep.errors import SweepError, disk_errors, folder_blocked

if TYPE_CHECKING:  # torch is imported where weights are read or written: `sweep status` and the service need none
    import torch

WEIGHTS_FILE = "model.safetensors"


def save_tokenizer_once(encoder: str, root: Path) -> Path:
    """The study's tokenizer files, written once under the checkpoint root and copied into each checkpoint."""
    target = root / "tokenizer"
    if target.is_dir():
        return target
    from transformers import AutoTokenizer

    if (blocked := folder_blocked(root)) is not None:  # a worker of a study whose folder became a file since
        raise SweepError([("checkpoint_dir", f"cannot keep checkpoints in {root}: {blocked}")])
    with disk_errors(root, "checkpoint_dir", "the tokenizer files"):
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=root))
        try:
            AutoTokenizer.from_pretrained(encoder).save_pretrained(tmp)
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():  # another worker may have won the race
                raise
    return target


def verify_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Re-read the safetensors file and compare every tensor with what was meant to be written."""
    import torch

    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        missing = [k for k in state if k not in keys and not _tied(k)]
        if missing:
            raise RuntimeError(f"checkpoint {path} lacks {len(missing)} tensors, e.g. {missing[:3]}")
        for key in keys:
            stored = f.get_tensor(key)
            if key in state and not torch.equal(stored, state[key].to(stored.dtype)):
                raise RuntimeError(f"checkpoint {path}: tensor {key} differs from the trained weights")


def _tied(key: str) -> bool:
    """Weights transformers may drop on save because they are shared with another tensor."""
    return key.endswith(("position_ids", "decoder.weight", "decoder.bias"))


def save_checkpoint(
    model: Any, state: dict[str, torch.Tensor], tokenizer_dir: Path, target: Path, *, shown: Path | None = None,
    field: str = "checkpoint_dir",
) -> Path:  # fmt: skip
    """Write a Hugging Face folder (safetensors weights, config, tokenizer) atomically; verify it reads back. A disk
    that refuses the write is one line naming `field` and `shown` (default: the target's folder)."""
    from models import quiet_transformers

    with disk_errors(shown or target.parent, field, f"the checkpoint {target.name}"):  # full, read-only: stop
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            model.load_state_dict(state)
            with quiet_transformers():  # no "Writing model shards" bar over our progress display
                model.save_pretrained(tmp, safe_serialization=True)
            for item in tokenizer_dir.iterdir():
                shutil.copy2(item, tmp / item.name)
            verify_weights(tmp / WEIGHTS_FILE, state)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# Per model class and state-dict key set (two encoders of one class may differ in layers): the keys Hugging Face's
# save_pretrained wrote as a checkpoint's one safetensors file (weights it ties or ignores on save left out), learned
# from the first such checkpoint a process writes its way.
_WEIGHT_KEYS: dict[tuple[type, frozenset[str]], tuple[str, ...]] = {}


def _layout(model: Any, state: dict[str, torch.Tensor]) -> tuple[type, frozenset[str]]:
    return type(model), frozenset(state)


def learn_weight_keys(model: Any, folder: Path, state: dict[str, torch.Tensor], tokenizer_dir: Path) -> None:
    """Remember which of `state`'s tensors save_pretrained put in `folder` (a checkpoint it just wrote), when that is
    all it wrote besides small files: one unsharded safetensors file of those tensors as they are (same dtype and
    shape, the usual metadata). Anything else (shards, renamed or converted weights) is never learned, and every
    checkpoint of that model class is written by save_pretrained as before."""
    written = {p.name for p in folder.iterdir()} - {p.name for p in tokenizer_dir.iterdir()}
    if WEIGHTS_FILE not in written or any(name.endswith((".safetensors", ".index.json", ".bin")) for name in
                                          written - {WEIGHTS_FILE}):  # fmt: skip
        return
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as f:
        if f.metadata() != {"format": "pt"}:
            return
        keys = tuple(sorted(f.keys()))
        for key in keys:  # the file is in the page cache: verify_weights has just read all of it
            if key not in state:
                return
            stored = f.get_tensor(key)
            if stored.dtype != state[key].dtype or stored.shape != state[key].shape:
                return
    _WEIGHT_KEYS[_layout(model, state)] = keys


@functools.cache
def _safetensors_dtype(dtype: torch.dtype) -> str:
    """The name safetensors gives `dtype` in a file's header ("F32", "BF16", ...), asked of the library."""
    import torch
    from safetensors.torch import save

    data = save({"x": torch.zeros(1, dtype=dtype)})
    (size,) = struct.unpack("<Q", data[:8])
    return str(json.loads(data[8 : 8 + size])["x"]["dtype"])


def safetensors_buffers(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> list[memoryview]:
    """The bytes `safetensors.torch.save(tensors, metadata)` returns, as the buffers they are made of, without a
    copy of any tensor: the header (its size as 8 little-endian bytes, then its JSON, padded with spaces to a multiple
    of 8) and each tensor's own memory, in the library's order (wider dtypes first, then by name). Written one after
    another they are the library's file byte for byte (tests compare); a checkpoint then needs no memory for its
    weights besides the trained tensors, however large the encoder."""
    import torch

    order = sorted(tensors, key=lambda key: (-tensors[key].element_size(), key))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    data, offset = [], 0
    for key in order:
        tensor = tensors[key].detach().cpu().contiguous()
        size = tensor.numel() * tensor.element_size()
        header[key] = {"dtype": _safetensors_dtype(tensor.dtype), "shape": list(tensor.shape),
                       "data_offsets": [offset, offset + size]}  # fmt: skip
        data.append(tensor.reshape(-1).view(torch.uint8).numpy().data)
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return [memoryview(bytearray(struct.pack("<Q", len(text)) + text)), *data]


def verify_member(packed: Path, name: str, buffers: list[memoryview]) -> None:
    """Compare the member `name` of the tar `packed`, as the disk gives it back, with the buffers it was written
    from (the file's pages are mapped, not copied)."""
    with tarfile.open(packed) as tar:
        info = tar.getmember(name)
    if info.size != sum(view.nbytes for view in buffers):
        raise RuntimeError(f"checkpoint {packed}: {name} holds {info.size} bytes, not the weights' "
                           f"{sum(view.nbytes for view in buffers)}")  # fmt: skip
    with packed.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        offset = info.offset_data
        for view in buffers:
            if view.nbytes and not _same_bytes(mapped, offset, view):
                raise RuntimeError(f"checkpoint {packed}: {name} does not read back as the trained weights")
            offset += view.nbytes


def _same_bytes(mapped: mmap.mmap, offset: int, view: memoryview) -> bool:
    # the tensors over the mapping are gone when this returns, so the mapping can be closed
    import torch

    return torch.equal(torch.frombuffer(mapped, dtype=torch.uint8, count=view.nbytes, offset=offset),
                       torch.frombuffer(view, dtype=torch.uint8))  # fmt: skip


def checkpoint_members(
    model: Any, state: dict[str, torch.Tensor], tokenizer_dir: Path, scratch: Path
) -> list[tuple[str, Member]] | None:
    """A checkpoint's files with its weights streamed from the trained tensors, never written or serialised
    anywhere but into the packed tar (`safetensors_buffers`), once save_pretrained's choice of tensors for this model
    class is known (`learn_weight_keys`); None before. The small files are save_pretrained's own (config.json and
    whatever else it writes without weights, into `scratch`). The caller checks the packed weights against the
    disk (`verify_member`)."""
    from models import quiet_transformers

    keys = _WEIGHT_KEYS.get(_layout(model, state))
    if keys is None:
        return None
    with quiet_transformers():
        model.save_pretrained(scratch, state_dict={})  # config.json exactly as a whole save writes it
    members: list[tuple[str, Member]] = [(p.name, p) for p in sorted(scratch.iterdir())]
    members.append((WEIGHTS_FILE, safetensors_buffers({key: state[key] for key in keys}, {"format": "pt"})))
    members += [(p.name, p) for p in sorted(tokenizer_dir.iterdir())]
    return members


class CheckpointStore(ABC):
    """Where trials' checkpoints are kept: written when a trial enters the top k, removed when it falls out,
    fetched into a local folder by export."""

    @abstractmethod
    def save(self, model: Any, state: dict[str, torch.Tensor], tokenizer_dir: Path, name: str, owner: Any) -> (
        tuple[str, str] | None
    ):
        """Write and verify the checkpoint `name` of the running trial `owner`; returns the (artifact id, SHA-256)
        to record, or None for a folder."""

    @abstractmethod
    def kept(self, record: TrialRecord) -> bool: ...

    @abstractmethod
    def remove(self, record: TrialRecord) -> None: ...

    @abstractmethod
    def fetch(self, record: TrialRecord, scratch: Path) -> Path:
        """A local folder holding the checkpoint's files (`scratch`: an empty folder it may use)."""

    @abstractmethod
    def where(self, record: TrialRecord) -> str: ...


class FolderCheckpoints(CheckpointStore):
    """Each checkpoint a Hugging Face folder `root/trial-NNNNN`."""

    def __init__(self, root: Path):
        self.root = root

    def save(self, model: Any, state: dict[str, torch.Tensor], tokenizer_dir: Path, name: str, owner: Any) -> None:
        save_checkpoint(model, state, tokenizer_dir, self.root / name)

    def _path(self, record: TrialRecord) -> Path:
        return self.root / (record.checkpoint or "")

    def kept(self, record: TrialRecord) -> bool:
        return bool(record.checkpoint) and (self._path(record) / WEIGHTS_FILE).is_file()

    def remove(self, record: TrialRecord) -> None:
        shutil.rmtree(self._path(record), ignore_errors=True)

    def fetch(self, record: TrialRecord, scratch: Path) -> Path:
        return self._path(record)

    def where(self, record: TrialRecord) -> str:
        return str(self._path(record))


class ArtifactCheckpoints(CheckpointStore):
    """Each checkpoint one uncompressed tar of its Hugging Face folder, uploaded as an Optuna artifact of its trial
    (optuna-dashboard lists it) to the store `settings` name."""

    def __init__(self, settings: Mapping[str, str], field: str = "artifacts.path"):
        self.settings = dict(settings)
        self.store = open_store(self.settings)
        self.field = field  # the spec field that names a filesystem store's folder, for disk errors

    def save(self, model: Any, state: dict[str, torch.Tensor], tokenizer_dir: Path, name: str, owner: Any) -> (
        tuple[str, str]
    ):
        from optuna.artifacts import upload_artifact

        if self.settings["store"] != "filesystem":
            with tempfile.TemporaryDirectory(prefix="sweep-checkpoint-") as scratch:
                packed, digest = self._pack(model, state, tokenizer_dir, name, owner, Path(scratch))
                return upload_artifact(artifact_store=self.store, file_path=str(packed), study_or_trial=owner), digest
        # A folder store: the scratch folder inside it (its disk, not a small /tmp), and a full or read-only disk is
        # one line naming the store's folder.
        root = Path(self.settings["path"])
        what = f"the checkpoint {name}"
        with disk_errors(root, self.field, what):
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=root) as scratch:
                packed, digest = self._pack(model, state, tokenizer_dir, name, owner, Path(scratch), shown=root)
                return upload_artifact(artifact_store=self.store, file_path=str(packed), study_or_trial=owner), digest

    def _pack(
        self, model: Any, state: dict[str, torch.Tensor], tokenizer_dir: Path, name: str, owner: Any, scratch: Path,
        shown: Path | None = None,
    ) -> tuple[Path, str]:  # fmt: skip
        """The packed checkpoint in `scratch` and its SHA-256: its weights streamed from the tensors into the tar
        where the model class's weights layout is known (then read back from the disk and compared), else written as
        a folder by save_pretrained (read back, compared) and packed."""
        packed = scratch / f"{owner.study.study_name}-{name}{PACKED_SUFFIX}"
        small = scratch / "files"
        small.mkdir()
        members = checkpoint_members(model, state, tokenizer_dir, small)
        if members is not None:
            digest = pack_members(members, packed)
            weights = dict(members)[WEIGHTS_FILE]
            assert isinstance(weights, list)  # checkpoint_members streams the weights: buffers, not a file
            verify_member(packed, WEIGHTS_FILE, weights)
            return packed, digest
        field = self.field if shown is not None else "checkpoint_dir"  # a local scratch: save_checkpoint's default
        folder = save_checkpoint(model, state, tokenizer_dir, scratch / name, shown=shown, field=field)
        learn_weight_keys(model, folder, state, tokenizer_dir)
        return packed, pack(folder, packed)

    def kept(self, record: TrialRecord) -> bool:
        return bool(record.checkpoint_artifact) and artifact_exists(
            self.store, self.settings, str(record.checkpoint_artifact)
        )

    def remove(self, record: TrialRecord) -> None:
        from optuna.artifacts.exceptions import ArtifactNotFound

        with contextlib.suppress(ArtifactNotFound):  # another worker's top-k rule removed it first
            self.store.remove(str(record.checkpoint_artifact))

    def fetch(self, record: TrialRecord, scratch: Path) -> Path:
        """Download the packed checkpoint, check its SHA-256 against the trial's record, unpack it."""
        from optuna.artifacts import download_artifact
        from optuna.artifacts.exceptions import ArtifactNotFound

        packed = scratch / f"checkpoint{PACKED_SUFFIX}"
        try:
            download_artifact(
                artifact_store=self.store, file_path=str(packed), artifact_id=str(record.checkpoint_artifact)
            )
        except ArtifactNotFound:
            raise SweepError([("--trial", f"trial {record.number}'s checkpoint artifact is not in {self.where(record)} "
                                          "(deleted, or the store is not where the study recorded it: --checkpoints "
                                          "names a filesystem store's folder)")]) from None  # fmt: skip
        if record.checkpoint_sha256 and sha256(packed) != record.checkpoint_sha256:
            raise SweepError([("--trial", f"trial {record.number}'s checkpoint artifact in {self.where(record)} does "
                                          "not match the SHA-256 recorded when it was written: it was changed or "
                                          "truncated")])  # fmt: skip
        folder = unpack(packed, scratch / "checkpoint")
        packed.unlink()
        return folder

    def where(self, record: TrialRecord) -> str:
        return f"artifact {record.checkpoint_artifact} in {describe(self.settings)}"


@functools.lru_cache(maxsize=8)
def _artifact_checkpoints(items: tuple[tuple[str, str], ...], field: str) -> ArtifactCheckpoints:
    return ArtifactCheckpoints(dict(items), field)


def checkpoint_store(root: Path, artifacts: Mapping[str, str] | None) -> CheckpointStore:
    """Where a worker writes checkpoints: the artifact store `artifacts` names, else folders under `root`."""
    if artifacts is not None:
        # the default folder store is the study's checkpoint_dir: disk errors then name that field
        field = "checkpoint_dir" if Path(artifacts.get("path", "")) == root else "artifacts.path"
        return _artifact_checkpoints(tuple(sorted(artifacts.items())), field)
    return FolderCheckpoints(root)


def trial_checkpoints(
    study: optuna.Study, trial: FrozenTrial, root: Path | None = None, artifacts: Mapping[str, str] | None = None
) -> CheckpointStore | None:
    """Where this trial's checkpoint is (None when it never had one). `root` overrides the folder recorded with the
    study (for a filesystem artifact store too); `artifacts` the artifact store (a worker's own settings)."""
    record = read_trial(trial)
    study_record = read_study(study)
    if record.checkpoint_artifact:
        settings = artifacts or study_record.artifact_store
        if settings is None:
            return None
        if root is not None and settings.get("store") == "filesystem":
            settings = {**settings, "path": str(root)}
        return checkpoint_store(Path(), settings)
    base = root or study_record.checkpoint_dir
    return FolderCheckpoints(Path(base)) if record.checkpoint and base else None


def checkpoint_where(study: optuna.Study, trial: FrozenTrial, root: Path | None = None) -> str | None:
    """Where a trial's checkpoint is, for messages (a folder, or an artifact and its store)."""
    store = trial_checkpoints(study, trial, root)
    return store.where(read_trial(trial)) if store else None


def is_kept(study: optuna.Study, trial: FrozenTrial, root: Path | None = None) -> bool:
    store = trial_checkpoints(study, trial, root)
    return bool(store and store.kept(read_trial(trial)))


def prune_checkpoints(
    study: optuna.Study, keep: int, artifacts: Mapping[str, str] | None = None, *, dry_run: bool = False
) -> list[int]:
    """Delete every checkpoint (folder or artifact) outside the study-wide top `keep` completed trials, except the
    best run of each re-evaluated configuration (what `sweep export --by mean` exports); returns the trial numbers.
    `artifacts`: this worker's artifact store settings (its own mount path), else the study's. `dry_run`: only say
    which would go."""
    deleted = []
    trials, maximize = study.get_trials(deepcopy=False), maximizes(study)
    protected = {t.number for t in seed_leaders(trials, maximize=maximize).values()}
    for trial in ranked(trials, maximize=maximize)[keep:]:
        if trial.number in protected:
            continue
        record = read_trial(trial)
        if not record.checkpoint:
            continue
        store = trial_checkpoints(study, trial, artifacts=artifacts)
        if store is not None and store.kept(record):
            if not dry_run:
                store.remove(record)
            deleted.append(trial.number)
    return deleted


def disk_usage(path: Path) -> int:
    """Bytes under `path` (0 when it does not exist)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
