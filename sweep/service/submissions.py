"""Submitting a study through the service: the spec validated exactly as on the command line, then confined to what
the server allows, then created as `sweep run SPEC --workers 0` creates it (no trial runs in the server).

Confinement, on top of the command line's checks:
- the data are the uploaded files (saved under the server's `uploads/`, each in a folder with a generated name, under
  the client's file name made safe: no folder, letters, digits, `.`, `_`, `-` only) or
  paths under a configured data root (resolved, symlinks followed: `..`, other absolute paths and symlinks out of a
  root are refused); a spec's own `data.train` / `data.validation` are treated as such paths; `hub:` sources are
  refused (the server fetches nothing on a request's behalf);
- `storage`, `checkpoint_dir` and `data.cache_dir` are the server's: a spec that sets them is refused (saying so),
  rather than silently moved;
- `model.encoder` is the packaged encoder or a folder under a configured model root (same resolve rule).

Nothing is half-written: every file a refused or failed submission wrote is deleted again, and so is a study it
created.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
import shutil
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import yaml
from rich.console import Console

from sweep.dataspec import data_suffixes, upload_target
from sweep.encoders import PACKAGED
from sweep.errors import Conflict as Conflict
from sweep.errors import SweepError
from sweep.service.settings import ServiceSettings
from sweep.spec import Spec, parse_spec, read_spec_text

# The file types the data modules read (sweep.dataspec / datamodules), kept on an uploaded file's generated name.
UPLOAD_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".label", ".conll", ".bio", ".iob", ".parquet")
MAX_SPEC_BYTES = 1024 * 1024
CHUNK = 1024 * 1024
SERVER_FIELDS = {
    "storage": "the server's store holds every study it runs",
    "checkpoint_dir": "the server keeps checkpoints in its own folder",
    "data.cache_dir": "the server keeps its data cache in its own folder",
}
HUB_PREFIX = "hub:"
_creating = threading.Lock()  # one submission at a time between the name check and the study's creation


class TooLarge(SweepError):
    """An upload over the server's limit (413)."""


@dataclass(frozen=True)
class Upload:
    """A file in the request: its client-side name (only its suffix is used) and a readable stream."""

    filename: str
    stream: IO[bytes]


@dataclass(frozen=True)
class SubmissionRequest:
    """What a submit request carried, as plain values (the API turns its form fields into this)."""

    spec_text: bytes
    data: Upload | None = None
    data_path: str | None = None
    validation: Upload | None = None
    validation_path: str | None = None
    priority: int | None = None


def _roots_phrase(roots: tuple[Path, ...], what: str) -> str:
    return f"{what}: {', '.join(str(r) for r in roots)}" if roots else f"this server has no {what} (--{what[:-1]})"


def confined(value: str, roots: tuple[Path, ...], *, want_dir: bool) -> tuple[Path | None, str | None]:
    """`value` resolved (symlinks followed) and inside one of `roots`, or None and why not. A relative path is
    looked up under each root in turn."""
    if "\x00" in value:
        return None, f"{value!r} holds a NUL character: not a path"
    raw = Path(value)  # `~` is not expanded: the server's home is no place a request may name
    candidates = [raw] if raw.is_absolute() else [root / raw for root in roots]
    for candidate in candidates:
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a name the OS refuses
            continue
        if not any(resolved.is_relative_to(root.resolve()) for root in roots):
            continue
        if want_dir and not resolved.is_dir():
            return None, f"{value!r} is not a folder"
        if not want_dir and not resolved.is_file():
            return None, f"{value!r} is not a file"
        return resolved, None
    return None, None


def _missing_under_a_root(value: str, roots: tuple[Path, ...]) -> str | None:
    """Why `value` names nothing where it would be inside a root (its folder there exists, the file does not), with
    the closest name in that folder; None when that is not the reason. Only folders inside a root are listed."""
    raw = Path(value)
    if "\x00" in value or ".." in raw.parts:
        return None
    for root in roots:
        path = raw if raw.is_absolute() else root / raw
        try:
            folder = path.parent.resolve(strict=True)
            inside = folder.is_relative_to(root.resolve()) and folder.is_dir() and not path.exists()
        except (OSError, RuntimeError, ValueError):
            continue
        if not inside:
            continue
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        close = difflib.get_close_matches(raw.name, names, n=1)
        hint = f" (did you mean {str(raw.with_name(close[0]))!r}?)" if close else ""
        return f"no file {value!r} under the data root {root}{hint}"
    return None


def data_path_problem(value: str, settings: ServiceSettings) -> str:
    missing = _missing_under_a_root(value, settings.data_roots)
    if missing is not None:
        return missing
    roots = _roots_phrase(settings.data_roots, "data-roots")
    return (f"{value!r} is not a file under a data root of this server ({roots}); `..` and links out of a root "
            "are refused: upload the file instead, or give a path under a data root")  # fmt: skip


def _get(mapping: Mapping[str, Any], dotted: str) -> Any:
    node: Any = mapping
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def safe_upload_name(filename: str | None, key: str, suffix: str) -> str:
    """The client's file name without any folder, kept to letters, digits, `.`, `_` and `-` (others become `_`),
    ending in `suffix`; `KEY{suffix}` where nothing usable is left."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath((filename or "").replace("\\", "/")).name)
    stem = base[: -len(suffix)] if suffix and base.lower().endswith(suffix) else base
    stem = stem.strip("._")[:100]
    return f"{stem or key}{suffix}"


def upload_suffix(upload: Upload, field: str, body: Mapping[str, Any] | None = None) -> tuple[str | None, str | None]:
    """The upload's file type, or why it is refused: one the spec's task reads (`sweep.dataspec.data_suffixes`; any
    of UPLOAD_SUFFIXES where `data.format` says how to read it), so the check and the spec's agree."""
    suffix = Path(upload.filename or "").suffix.lower()
    task = (body or {}).get("task") or "text-classification"
    data = (body or {}).get("data")
    allowed = data_suffixes(task, data.get("format") if isinstance(data, Mapping) else None) or UPLOAD_SUFFIXES
    if suffix in allowed and suffix in UPLOAD_SUFFIXES:
        return suffix, None
    return None, (f"uploaded file {upload.filename!r} has type {suffix or '(none)'!r}: the data of task {task} must "
                  f"be one of {', '.join(s for s in allowed if s in UPLOAD_SUFFIXES)}")  # fmt: skip


@dataclass
class Plan:
    """The confined spec and the files a submission is about to write."""

    spec: Spec
    body: dict[str, Any]
    uploads: dict[str, tuple[Upload, Path]]  # spec field -> (upload, where it goes)


def plan(request: SubmissionRequest, settings: ServiceSettings) -> Plan:
    """Validate and confine a submission without writing anything; SweepError lists every problem."""
    body = read_spec_text(request.spec_text, source="spec")
    if not isinstance(body, dict):
        parse_spec(body, source="spec")  # raises: says what a spec must be
    body = {**body}
    problems: list[tuple[str, str]] = []
    for where, reason in SERVER_FIELDS.items():
        if _get(body, where) is not None:
            problems.append((where, f"set by the server ({reason}): remove it from a submitted spec"))
    data = body.get("data")
    if data is None and (request.data or request.data_path or request.validation or request.validation_path):
        data = {}  # the spec may leave its data section out: the request gives the files
    data = {**data} if isinstance(data, dict) else data
    uploads: dict[str, tuple[Upload, Path]] = {}
    for key, upload, path_field, path_value in (
        ("train", request.data, "data_path", request.data_path),
        ("validation", request.validation, "validation_path", request.validation_path),
    ):
        if upload is not None and path_value:
            problems.append((path_field, f"give the {key} data as an upload or as {path_field}, not both"))
            continue
        if upload is not None:
            suffix, why = upload_suffix(upload, key, body)
            if why:
                problems.append(("data" if key == "train" else "validation", why))
                continue
            # a folder of its own with a generated name, the file in it named as the client named it (made safe):
            # the study's data report and model card then say `train.csv`, not a random name
            target = upload_target(settings.uploads, safe_upload_name(upload.filename, key, suffix or ""))
            uploads[f"data.{key}"] = (upload, target)
            if isinstance(data, dict):
                data[key] = str(target)
            continue
        field: str = path_field
        value: str | None = path_value
        if not value and isinstance(data, dict) and isinstance(data.get(key), str):
            field, value = f"data.{key}", data[key]
        if not value:
            continue
        if value.startswith(HUB_PREFIX):
            problems.append((field, f"{value!r}: this server fetches no hub dataset for a request; upload the file "
                                    "or give a path under a data root"))  # fmt: skip
            continue
        resolved, why = confined(value, settings.data_roots, want_dir=False)
        if resolved is None:
            problems.append((field, why or data_path_problem(value, settings)))
        elif isinstance(data, dict):
            data[key] = str(resolved)
    if isinstance(data, dict):
        body["data"] = data
    elif data is None and not problems:
        problems.append(("data", "required: upload a data file (`data`) or give `data_path`"))
    problems += encoder_problems(body, settings)
    try:
        spec = parse_spec(body, source="spec")
    except SweepError as exc:
        known = {where for where, _ in problems}
        problems += [p for p in exc.problems if p[0] not in known]
    if problems:  # the request's own form fields are no part of the spec: their lines say so
        raise SweepError(problems, source="spec", outside=("data", "validation", "data_path", "validation_path"))
    if isinstance(data, dict):
        data["cache_dir"] = str(settings.folder / "cache")
    body["checkpoint_dir"] = str(settings.folder / "checkpoints" / spec.name)
    return Plan(parse_spec(body, source="spec"), body, uploads)


def encoder_problems(body: dict[str, Any], settings: ServiceSettings) -> list[tuple[str, str]]:
    """`model.encoder` must be the packaged encoder or a folder under a model root; made absolute in `body`."""
    model = body.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("encoder"), str):
        return []
    name = model["encoder"]
    if name in PACKAGED:
        return []
    resolved, why = confined(name, settings.model_roots, want_dir=True)
    if resolved is None:
        roots = _roots_phrase(settings.model_roots, "model-roots")
        return [("model.encoder", why or f"{name!r} is neither the packaged encoder ({', '.join(PACKAGED)}) nor a "
                                        f"folder under a model root of this server ({roots})")]  # fmt: skip
    body["model"] = {**model, "encoder": str(resolved)}
    return []


def save_upload(upload: Upload, target: Path, limit: int, field: str) -> None:
    """Copy an upload to `target` in chunks; over `limit` bytes the partial file is deleted and TooLarge raised."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    written = 0
    with target.open("xb") as out:
        while chunk := upload.stream.read(CHUNK):
            written += len(chunk)
            if written > limit:
                break
            out.write(chunk)
    if written > limit:
        target.unlink(missing_ok=True)
        raise TooLarge([(field, f"upload {upload.filename!r} is over this server's limit of {_mb(limit)} "
                                "(sweep serve --max-upload-mb)")])  # fmt: skip


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB" if n >= 1024 * 1024 else f"{n} bytes"


def read_spec_upload(stream: IO[bytes]) -> bytes:
    raw = stream.read(MAX_SPEC_BYTES + 1)
    if len(raw) > MAX_SPEC_BYTES:
        raise TooLarge([("spec", f"the spec is over {_mb(MAX_SPEC_BYTES)}: a study spec is a short YAML file")])
    return raw


def submit(request: SubmissionRequest, settings: ServiceSettings) -> str:
    """Create the submitted study (data checked and prepared, no trial run); returns its name.

    SweepError (400) lists every problem; Conflict (409) when the name is taken; TooLarge (413) for an upload over
    the limit. On any failure, every file written here is deleted, and a study created here too.
    """
    from sweep.runner import run_study
    from sweep.storage import existing_study_attrs

    planned = plan(request, settings)
    name = planned.spec.name
    written: list[Path] = []
    folder = settings.submissions / uuid.uuid4().hex
    with _creating:
        if existing_study_attrs(settings.storage_url, name) is not None:
            raise Conflict([("name", f"a study named {name!r} already exists: choose another name (or follow it, "
                                     "stop it and resume it from its page)")])  # fmt: skip
        try:
            for field, (upload, target) in planned.uploads.items():
                written.append(target.parent)  # the upload's own folder
                save_upload(upload, target, settings.max_upload_bytes, field)
            folder.mkdir(parents=True, mode=0o755)
            written.append(folder)
            spec_file = folder / "spec.yaml"
            spec_file.write_text(yaml.safe_dump(planned.body, sort_keys=False), encoding="utf-8")
            console = Console(file=io.StringIO(), width=200)
            try:
                run_study(spec_file, storage_url=settings.storage_url, workers=0, console=console)
            except SweepError as exc:  # an upload is named as its sender named it, not by its name on this server
                stored = [target.name for _, target in planned.uploads.values()]
                names = {target.name: f"{upload.filename} (uploaded as {field})"
                         for field, (upload, target) in planned.uploads.items()
                         if upload.filename and stored.count(target.name) == 1}  # two of one name: the field says it
                raise SweepError([(where, _renamed(message, names)) for where, message in exc.problems],
                                 source="spec") from None  # fmt: skip
            if request.priority is not None:
                from record import write_priority
                from sweep.storage import load_study

                write_priority(load_study(name, settings.storage_url, read_only=False).set_user_attr,
                               request.priority)  # fmt: skip
        except BaseException:
            if existing_study_attrs(settings.storage_url, name) is not None:  # created here: it was not there before
                _delete_study(name, settings.storage_url)
            for path in written:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            raise
    return name


def _renamed(message: str, names: dict[str, str]) -> str:
    """Each stored file name in `message`, as a whole name (not inside `dev_train.csv` for `train.csv`), said as its
    sender named it and which upload it was."""
    for stored, shown in names.items():
        message = re.sub(rf"(?<![\w.-]){re.escape(stored)}(?![\w.-])", shown.replace("\\", "\\\\"), message)
    return message


def _delete_study(name: str, url: str) -> None:
    """Remove a study this submission created before it failed (nothing half-written)."""
    import optuna

    from sweep.storage import open_storage

    with contextlib.suppress(KeyError, SweepError):  # KeyError: it was never created
        optuna.delete_study(study_name=name, storage=open_storage(url))
