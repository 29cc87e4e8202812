"""Checkpoints as Optuna artifacts: the store a spec's `artifacts:` section names (a folder every worker reaches, S3
or an S3-compatible store, GCS), opened with credentials from the environment only, and a checkpoint folder packed
into one file and back.

The settings handled here are plain location keys (`record.ARTIFACT_STORE_KEYS`: store, path, bucket, prefix,
endpoint_url); they are what the study record keeps, so nothing here can carry a secret into the store.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import shutil
import tarfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from optuna.artifacts import FileSystemArtifactStore

from sweep.errors import SweepError
from sweep.spec import ArtifactsSpec

# store -> (module it needs, the extra that installs it)
EXTRAS = {"s3": ("boto3", "sweep[s3]"), "gcs": ("google.cloud.storage", "sweep[gcs]")}
PACKED_SUFFIX = ".tar"


def checkpoint_name(number: int) -> str:
    """A trial's checkpoint folder name (also the prefix of the scratch folder it is written in: `.<name>-XXXX`)."""
    return f"trial-{number:05d}"


def remove_scratch(roots: Iterable[Path], number: int) -> list[Path]:
    """Remove what a dead trial's worker was writing when it died: the scratch folders of its checkpoint in the
    checkpoint folders `roots` (a folder store writes inside itself, on its own disk). Only for a trial whose worker
    is gone (the heartbeat or the orphan repair failed it): a live worker's scratch is its own."""
    removed = []
    for root in roots:
        with contextlib.suppress(OSError):  # a folder this machine does not reach, or one another worker cleans now
            for scratch in root.glob(f".{checkpoint_name(number)}-*"):
                shutil.rmtree(scratch, ignore_errors=True)
                removed.append(scratch)
    return removed


class ArtifactStore(Protocol):
    """Optuna's artifact store protocol (optuna.artifacts._protocol, private there)."""

    def open_reader(self, artifact_id: str) -> BinaryIO: ...

    def write(self, artifact_id: str, content_body: BinaryIO) -> None: ...

    def remove(self, artifact_id: str) -> None: ...


def artifact_settings(spec: ArtifactsSpec, checkpoint_root: Path) -> dict[str, str]:
    """The location keys of a spec's artifacts section; a filesystem store's path made absolute (default: the
    study's checkpoint folder)."""
    settings: dict[str, str] = {"store": spec.store}
    if spec.store == "filesystem":
        settings["path"] = str(Path(spec.path).expanduser().resolve() if spec.path else checkpoint_root)
    for key in ("bucket", "prefix", "endpoint_url"):
        value = getattr(spec, key)
        if value is not None:
            settings[key] = value
    return settings


def describe(settings: Mapping[str, str]) -> str:
    """Where the artifacts go, for messages: a folder, s3://bucket/prefix (at the endpoint), gs://bucket/prefix."""
    store = settings.get("store", "filesystem")
    if store == "filesystem":
        return settings.get("path", "?")
    scheme = "s3" if store == "s3" else "gs"
    where = f"{scheme}://{settings.get('bucket', '?')}/{settings.get('prefix', '')}"
    return f"{where} at {settings['endpoint_url']}" if settings.get("endpoint_url") else where


class _Prefixed:
    """A bucket store whose keys start with the spec's `prefix` (Optuna's stores use the bare artifact id)."""

    def __init__(self, inner: Any, prefix: str):
        self.inner, self.prefix = inner, prefix

    def open_reader(self, artifact_id: str) -> BinaryIO:
        reader: BinaryIO = self.inner.open_reader(self.prefix + artifact_id)
        return reader

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.inner.write(self.prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self.inner.remove(self.prefix + artifact_id)


def _library(store: str) -> Any:
    module, extra = EXTRAS[store]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SweepError([("artifacts.store", f"{store} needs the Python package {module.split('.')[0]}"
                                              f"{'-cloud-storage' if store == 'gcs' else ''}, which is not "
                                              f"installed: pip install '{extra}'")]) from None  # fmt: skip


class LinkingFileSystemStore(FileSystemArtifactStore):
    """Optuna's folder store, whose `write` copies every upload into the folder. A packed checkpoint is written in a
    scratch folder inside the store (its disk), so the upload is a hard link to that file instead: one copy of the
    weights less per checkpoint. Anything else (another disk, a file system without hard links, a stream that is no
    file) is copied as Optuna does."""

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        source = getattr(content_body, "name", None)
        if isinstance(source, str) and Path(source).is_file():
            try:
                os.link(source, self._get_filepath(artifact_id))
                return
            except OSError:  # EXDEV (another disk), EPERM (no hard links there): copy
                pass
        super().write(artifact_id, content_body)


def open_store(settings: Mapping[str, str]) -> ArtifactStore:
    """The Optuna artifact store the settings name; SweepError (one line) when its library is missing or its
    client cannot be built. Credentials come from the environment, by boto3's and google-cloud-storage's rules."""
    return _open(tuple(sorted(settings.items())))


@functools.lru_cache(maxsize=8)
def _open(items: tuple[tuple[str, str], ...]) -> ArtifactStore:
    settings = dict(items)
    store = settings.get("store", "filesystem")
    if store == "filesystem":
        return LinkingFileSystemStore(Path(settings["path"]))
    if store not in EXTRAS:
        raise SweepError([("artifacts.store", f"must be one of 'filesystem', 's3' or 'gcs', got {store!r}")])
    library = _library(store)
    from optuna.artifacts import Boto3ArtifactStore, GCSArtifactStore

    inner: Any
    try:
        if store == "s3":  # builds a client only: no request is sent until an artifact is read or written
            client = library.client("s3", endpoint_url=settings.get("endpoint_url"))
            inner = Boto3ArtifactStore(settings["bucket"], client=client)
        else:
            inner = GCSArtifactStore(settings["bucket"], client=library.Client())
    except Exception as exc:  # no credentials found (GCS), a malformed endpoint (boto3)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError([("artifacts", f"cannot open the {store} store {describe(settings)}: {reason}")]) from None
    prefix = settings.get("prefix") or ""
    return _Prefixed(inner, prefix) if prefix else inner


def artifact_exists(store: ArtifactStore, settings: Mapping[str, str], artifact_id: str) -> bool:
    """Whether the store still holds the artifact (a metadata request for a bucket; nothing is downloaded)."""
    kind = settings.get("store", "filesystem")
    if kind == "filesystem":
        return (Path(settings["path"]) / artifact_id).is_file()
    inner: Any = store.inner if isinstance(store, _Prefixed) else store
    key = (settings.get("prefix") or "") + artifact_id
    try:
        if kind == "gcs":
            return inner.bucket_obj.get_blob(key) is not None
        inner.client.head_object(Bucket=inner.bucket, Key=key)
        return True
    except Exception as exc:
        response = getattr(exc, "response", None) or {}
        if str(response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError([("artifacts", f"cannot reach the artifact store {describe(settings)}: {reason}")]) from None


class _Hashing:
    """A binary file being written, hashed as it is written (the packed checkpoint is not read again for its
    SHA-256)."""

    def __init__(self, handle: BinaryIO):
        self.handle, self.digest = handle, hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.handle.tell()


def pack(folder: Path, target: Path) -> str:
    """Pack a checkpoint folder's files into one uncompressed tar at `target`; returns its SHA-256."""
    return pack_members([(item.name, item) for item in sorted(folder.iterdir())], target)


# A member of a packed checkpoint: a file, or its content as buffers held in memory, written one after another.
Member = Path | list[memoryview]


class _Buffers:
    """Buffers read one after another as one file, for tarfile (it copies a member from a file object); a read
    within one buffer is a view of it, not a copy."""

    def __init__(self, buffers: list[memoryview]):
        self.buffers = [view.cast("B") for view in buffers if view.nbytes]
        self.index = self.position = 0

    def read(self, size: int) -> bytes | memoryview:
        parts = []
        while size > 0 and self.index < len(self.buffers):
            buffer = self.buffers[self.index]
            part = buffer[self.position : self.position + size]
            parts.append(part)
            size -= len(part)
            self.position += len(part)
            if self.position == len(buffer):
                self.index, self.position = self.index + 1, 0
        return parts[0] if len(parts) == 1 else b"".join(parts)


def pack_members(members: Iterable[tuple[str, Member]], target: Path) -> str:
    """One uncompressed tar at `target` of files (a path) and of contents held in memory (buffers, written in order
    as a file of that name, never joined into one copy): a checkpoint whose weights are streamed from the trained
    tensors is written to disk once, here. Returns the tar's SHA-256, hashed as it is written."""
    with target.open("wb") as handle:
        hashing = _Hashing(handle)
        with tarfile.open(fileobj=hashing, mode="w") as tar:  # type: ignore[call-overload]
            for name, content in members:
                if isinstance(content, Path):
                    tar.add(content, arcname=name)
                    continue
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = sum(view.nbytes for view in content), int(time.time()), 0o644
                tar.addfile(info, _Buffers(content))  # type: ignore[arg-type]
    return hashing.digest.hexdigest()


def unpack(packed: Path, into: Path) -> Path:
    """Unpack a packed checkpoint into the folder `into` (only plain files inside it: tarfile's "data" filter)."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(packed, "r") as tar:
        tar.extractall(into, filter="data")
    return into


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
