"""Joining an existing study to run its trials: `sweep worker` (any machine), and `sweep reevaluate` (this
process), both through `join`: checks first (nothing is written on bad input), the spec from the study or from
`--spec`, the data prepared and refused when it differs from the study's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from rich.console import Console

from datamodules import PreparedData
from record import StudyRecord
from sweep.encoders import resolve_encoder
from sweep.errors import SweepError
from sweep.lifecycle import check_same_spec, load_for_worker, quiet_libraries, read_record, same_data
from sweep.runner import RunResult, finished_run, heartbeat_of, open_study, prepare_data, trial_settings, work
from sweep.spec import Spec, check_paths, load_spec, parse_spec
from sweep.storage import Heartbeat, reachability_problems, safe_url, sqlite_writer_lock, storage_problems
from sweep.worker import worker_id


@dataclass
class Joined:
    """A study opened by a process that will run its trials: its spec, where it starts, its data and encoder."""

    study: optuna.Study
    spec: Spec
    record: StudyRecord
    data: PreparedData
    encoder: str
    checkpoint_root: Path


def join(
    name: str,
    url: str,
    *,
    spec_path: str | Path | None = None,
    checkpoints: Path | None = None,
    threads: int | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    console: Console,
) -> Joined:
    """Open an existing study to run its trials (`sweep worker`, `sweep reevaluate`): everything is checked before
    anything is written, and the data is prepared here (refused when it differs from the study's).

    The spec comes from the study itself (recorded when it was created), or from `spec_path` (it must be the same
    spec; its folder is where relative data paths start). Tables are never created here.
    """
    problems = storage_problems(url, field="--storage", must_exist=True)
    if threads is not None and threads < 1:
        problems.append(("--threads", f"must be >= 1, got {threads}"))
    if not problems:
        problems += reachability_problems(url, field="--storage")
    if problems:
        raise SweepError(problems)
    quiet_libraries()
    record = read_record(load_for_worker(name, url, Heartbeat()))
    if not record.created_by_sweep:
        raise SweepError([("study", f"study {name!r} in {safe_url(url)} was not created by `sweep run`")])
    if spec_path is not None:
        spec, base = load_spec(spec_path)
        try:
            check_same_spec(record, spec, url)
        except SweepError as exc:
            raise SweepError([("--spec", f"{spec_path} is not the spec of this study: {exc.problems[0][1]}")]) from None
    else:
        spec = parse_spec(record.spec, source=f"study {name}")
        base = Path(record.spec_dir or ".")
    study = load_for_worker(name, url, heartbeat_of(spec, heartbeat_interval, grace_period), spec=spec)
    paths = check_paths(spec, base)
    if paths:
        hint = "" if spec_path else " (pass --spec with this machine's copy of the spec, beside its data)"
        raise SweepError([(where, msg + hint) for where, msg in paths], source=f"study {name}")
    encoder = resolve_encoder(spec.model.encoder, base, max_length=spec.model.max_length)
    torch.set_num_threads(threads or spec.trainer.num_threads or torch.get_num_threads())
    data = prepare_data(spec, base, encoder, console, check=same_data(record, spec, joining=True))
    root = checkpoints.resolve() if checkpoints else Path(record.checkpoint_dir or "checkpoints")
    return Joined(study, spec, record, data, encoder, root)


def join_study(
    name: str,
    url: str,
    *,
    spec_path: str | Path | None = None,
    checkpoints: Path | None = None,
    threads: int | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    console: Console | None = None,
) -> RunResult:
    """`sweep worker`: join an existing study and run its trials until the study-wide budget is finished."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    joined = join(name, url, spec_path=spec_path, checkpoints=checkpoints, threads=threads,
                  heartbeat_interval=heartbeat_interval, grace_period=grace_period, console=console)  # fmt: skip
    study, spec = joined.study, joined.spec
    with sqlite_writer_lock(url):
        open_study(study, url, spec.search.n_trials, console, f"worker {worker_id()} joined study [bold]{name}[/] "
                   f"in {safe_url(url)}")  # fmt: skip
        settings = trial_settings(spec, joined.data, joined.encoder, joined.checkpoint_root)
        loop = work(study, spec, joined.data, settings, console)
    return finished_run(study, url, True, started, loop)
