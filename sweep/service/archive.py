"""Export a trial as a download: `sweep export` into a temporary folder under the server's `exports/`, zipped so
the archive unpacks to one folder that loads with `transformers.pipeline(task, model=folder)`. The temporary files
are deleted once the response is sent (or at once, when the export fails)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sweep.errors import NoSuchStudy, SweepError
from sweep.service.settings import ServiceSettings


class NoSuchTrial(NoSuchStudy):
    """The study has no trial of that number (404, as an unknown study)."""


@dataclass(frozen=True)
class Archive:
    path: Path  # the zip file
    folder: Path  # the temporary folder holding it (delete after sending)
    filename: str  # what the download is called: <study>-trial-<N>.zip


QUERY = {"--by": "by", "--trial": "trial"}


def _as_query(message: str) -> str:
    """`--by value` in a command line's message, as this route takes it: `by=value`."""
    return re.sub(r"(?<![\w-])--(by|trial) (\S+)", r"\1=\2", message)


def export_archive(name: str, settings: ServiceSettings, *, trial: int | None = None, by: str = "value") -> Archive:
    """Zip the best trial (or `trial`, or the best by mean over seeds) of study `name`; SweepError with the command
    line's message when there is nothing to export."""
    from sweep.export import export_trial
    from sweep.storage import load_study

    study = load_study(name, settings.storage_url)
    if trial is not None and trial not in {t.number for t in study.get_trials(deepcopy=False)}:
        count = len(study.get_trials(deepcopy=False))
        raise NoSuchTrial([("trial", f"study {name!r} has no trial {trial} (trials: "
                                     f"{f'0..{count - 1}' if count else 'none'})")])  # fmt: skip
    settings.exports.mkdir(parents=True, exist_ok=True, mode=0o755)
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=settings.exports))
    try:
        try:
            model, chosen = export_trial(study, folder / "model", number=trial, by=by)
        except SweepError as exc:  # the command line's flags are this route's query parameters
            exc.problems = [(QUERY.get(where, where), _as_query(message)) for where, message in exc.problems]
            raise
        top = f"{name}-trial-{chosen.number}"
        path = folder / f"{top}.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(model.rglob("*")):
                if file.is_file():
                    archive.write(file, f"{top}/{file.relative_to(model).as_posix()}")
        shutil.rmtree(model)
        os.chmod(path, 0o644)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Archive(path=path, folder=folder, filename=f"{top}.zip")

