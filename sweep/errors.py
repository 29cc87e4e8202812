"""User-facing errors: each names the field, file or value and says what would be right (exit code 2)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


class SweepError(Exception):
    """A problem with the user's input; the CLI prints each problem on one line and exits with code 2.

    `problems` holds `(where, message)` pairs: `where` is a spec field (`search.space.learning_rate.low`),
    a file, or a CLI option; `message` names the rule and the value.
    """

    def __init__(
        self, problems: list[tuple[str, str]] | str, *, source: str | None = None, outside: Iterable[str] = ()
    ) -> None:
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = list(problems)
        self.source = source
        self.outside = frozenset(outside)  # fields that are not in `source` (a request's form fields beside its spec)
        super().__init__(self.render())

    def lines(self) -> list[str]:
        lines = []
        for where, msg in self.problems:
            prefix = f"{self.source}: " if self.source and where not in self.outside else ""
            lines.append(f"{prefix}{where}: {msg}" if where else f"{prefix}{msg}")
        return lines

    def render(self) -> str:
        return "\n".join(self.lines())


def beside_the_spec(problems: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The fields of `problems` that are command-line options (`--workers`) or the store's environment variable
    (`SWEEP_STORAGE`): for a SweepError's `outside`, where option problems join a spec file's (they are not in it)."""
    return frozenset(where for where, _ in problems if where.startswith("--") or where == "SWEEP_STORAGE")


class Conflict(SweepError):
    """The request clashes with the store as it is: a study of that name exists, or its state forbids the action
    (stopping a finished study). 409 from the service; exit code 2 on the command line."""


class NoSuchStudy(SweepError):
    """The store holds no study of that name (exit code 2 on the command line; 404 from the service)."""


class StudyIsStopped(SweepError):
    """The study was stopped (`sweep stop`, the service): nothing runs until `sweep resume NAME`. `sweep run` refuses
    it (exit code 2); `sweep worker NAME` says so and exits 0."""

    def __init__(self, study: str, reason: str):
        self.study, self.reason = study, reason
        super().__init__([("study", f"study {study} is stopped ({reason}): run `sweep resume {study}` first")])

    def stopped_line(self) -> str:
        return stopped_line(self.study, self.reason)


def stopped_line(study: str, reason: str) -> str:
    """What a worker prints when its study was stopped from the store."""
    return f"study {study} was stopped ({reason}); `sweep resume {study}` lets workers continue"


class StorageLost(SweepError):
    """The database stopped answering during a run and did not come back within the retry window (exit code 3)."""

    exit_code = 3


# What an OSError's errno means for a folder the run writes to: retrying cannot help, so the run stops at once.
_DISK_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class DiskError(SweepError):
    """A folder the run writes to (the store's, the checkpoints') refuses writes: read-only file system, no space
    left on device, permission denied. The run stops at once with one line (exit code 2): every later write would
    fail the same way, so nothing is retried."""

    exit_code = 2

    @classmethod
    def from_os_error(cls, exc: OSError, folder: Path, where: str, what: str) -> DiskError | None:
        """The error for `exc` if its errno means a disk that refuses writes; None for any other OSError."""
        reason = _DISK_ERRNOS.get(exc.errno or 0)
        if reason is None:
            return None
        said = str(exc.strerror or "")
        detail = f" ({said})" if said and said.lower() != reason else ""
        return cls([(where, f"cannot write {what} in {folder}: {reason}{detail}; {disk_fix(reason, 'the folder')} "
                            "(or choose another), then run the same command again")])


def disk_fix(reason: str, what: str) -> str:
    """What to do about a disk that refuses writes, for its reason: space for a full one, rights for the others."""
    return "free space" if reason in ("no space left on device", "disk quota exceeded") else f"make {what} writable"


@contextlib.contextmanager
def disk_errors(folder: Path, where: str, what: str) -> Iterator[None]:
    """Inside, an OSError that means a disk refusing writes under `folder` becomes a `DiskError`."""
    try:
        yield
    except OSError as exc:
        error = DiskError.from_os_error(exc, folder, where, what)
        if error is None:
            raise
        raise error from exc


def folder_blocked(folder: Path) -> str | None:
    """Why `folder` can neither be used nor made (a file stands on its path, or the folder it would go in, or it
    itself, cannot be written), else None."""
    folder = folder.resolve()
    blocking = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        return f"{blocking} is a file, so no folder can be made there"
    if blocking is not None and not os.access(blocking, os.W_OK | os.X_OK):
        return f"{blocking} is not writable" + ("" if blocking == folder else f", so {folder} cannot be made")
    return None


def overwrite_problem(path: Path, prefixes: tuple[bytes, ...], what: str) -> str | None:
    """Why `--out` must not replace the file at `path`: it exists and does not start as an earlier output of this
    command does (one of `prefixes`), so it may be anything (the training data: `sweep audit --out train.csv`
    replaced it silently); None when there is no file or it is such an output."""
    if not path.is_file() or path.stat().st_size == 0:  # nothing to lose in an empty file (mktemp's)
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(max(len(p) for p in prefixes))
    except OSError:
        return None  # unreadable: the write says why
    if any(head.startswith(p) for p in prefixes):
        return None
    return f"{path} exists and is not {what}: name a new file, or move it away first"


@contextlib.contextmanager
def new_folders(folder: Path, field: str = "--out") -> Iterator[list[Path]]:
    """`folder` and any missing parents made for what is written inside (an output's `--out`); the list of the ones
    made, topmost first. If the writing fails, the ones made go again (those still empty): nothing half-written. A
    folder the system will not make is one line naming `field`."""
    folder = folder.resolve()
    made = [p for p in reversed([folder, *folder.parents]) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise SweepError([(field, f"cannot make the folder {folder}: {exc.strerror or exc}; name a folder you can "
                                  "write in")]) from None  # fmt: skip
    try:
        yield made
    except BaseException:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise

