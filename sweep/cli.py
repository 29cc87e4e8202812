"""The `sweep` command: run a study from a spec, show a study's trials."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweep.errors import SweepError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Hyperparameter sweeps for fine-tuning pretrained text encoders (Optuna + PyTorch Lightning).",
)


class _Out:
    """stdout console, created per use so redirected output (files, CI logs) gets a wide, unwrapped table."""

    def print(self, *args: object, **kwargs: Any) -> None:
        if sys.stdout.isatty():
            Console().print(*args, **kwargs)
            return
        # a file or a pipe: tables 160 wide, every line of text one line (a command in it is not cut)
        console = Console(width=160)
        for item in _flat(args):
            wrap = {} if isinstance(item, Table) else {"soft_wrap": True}
            console.print(item, **{**wrap, **kwargs})


def _flat(items: Any) -> list[Any]:
    """Renderables with groups opened (a group of lines and tables: each printed the way its kind needs)."""
    from rich.console import Group

    flat: list[Any] = []
    for item in items:
        flat += _flat(item.renderables) if isinstance(item, Group) else [item]
    return flat


out = _Out()
err = Console(stderr=True, soft_wrap=True)  # one message, one line: logs and piped output stay greppable

SpecStorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="SQLAlchemy URL of the study store (default: $SWEEP_STORAGE, else the spec's storage:, else "
        "sqlite:///sweeps.db). Put a URL with a password in SWEEP_STORAGE: it stays out of shell history and ps.",
    ),
]
StorageOption = Annotated[  # commands that take a study name, not a spec: no spec's storage: to fall back on
    str | None,
    typer.Option(
        "--storage",
        help="SQLAlchemy URL of the study store (default: $SWEEP_STORAGE, else sqlite:///sweeps.db in this folder; "
        "a spec's storage: is read only by sweep run and sweep audit). Put a URL with a password in SWEEP_STORAGE: "
        "it stays out of shell history and ps.",
    ),
]


StudySpecOption = Annotated[
    Path | None,
    typer.Option("--spec", help="This machine's copy of the study's spec (default: the spec stored in the study)."),
]
CheckpointsOption = Annotated[
    Path | None, typer.Option("--checkpoints", help="Checkpoint folder, if not where the study recorded it.")
]


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Study spec (YAML; README.md, section 'The spec', lists every key).")],
    storage: SpecStorageOption = None,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", help="Finished trials to reach (overrides the spec).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Local worker processes, N trials at once (each with its share of CPU threads or its own GPU; on a "
            "SQLite store this run holds it for them). 0: create the study only, for `sweep worker` on other "
            "machines (PostgreSQL).",
        ),
    ] = 1,
    priority: Annotated[
        int | None,
        typer.Option("--priority", min=-1000, max=1000,
                     help="Workers without a study name take the highest priority first, then the oldest submission "
                     "(-1000 to 1000; default: leave it as it is; 0 for a new study)."),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="Run the --workers N as Ray tasks (each with the spec's resources:) on the Ray cluster at ADDRESS "
            "(HOST:6379, ray://HOST:10001, auto), or on a Ray started here when no address is given. Needs a "
            "PostgreSQL store and pip install 'sweep\\[ray]'.",
        ),
    ] = None,
) -> None:
    """Create the study or resume it (after a crash too), and run trials until N have finished (complete or pruned)."""
    from sweep.runner import run_study

    result = run_study(
        spec, storage_url=storage, n_trials=n_trials, workers=workers, priority=priority, ray_address=ray,
        console=err,
    )
    _finish(result)


@app.command()
def worker(
    study: Annotated[
        str | None,
        typer.Argument(help="Name of an existing study (created by `sweep run`). Without it: work on every study "
                       "with budget left, the highest priority and then the oldest first, and wait for new ones."),
    ] = None,
    storage: StorageOption = None,
    spec: StudySpecOption = None,
    checkpoints: CheckpointsOption = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads for this worker.")] = None,
    heartbeat_interval: Annotated[
        int | None, typer.Option("--heartbeat-interval", help="Seconds between heartbeats (default: the spec's, 60).")
    ] = None,
    grace_period: Annotated[
        int | None,
        typer.Option("--grace-period", help="Seconds of silence before a trial is failed and retried (default 300)."),
    ] = None,
    poll: Annotated[
        float, typer.Option("--poll", help="Without a study name: seconds between looks for work while none is left.")
    ] = 5.0,
    exit_when_idle: Annotated[
        bool,
        typer.Option("--exit-when-idle", help="Without a study name: exit 0 once no study has work (batch jobs)."),
    ] = False,
) -> None:
    """Run a study's trials until its budget is finished (across all workers); without a name, every study's."""
    from sweep.errors import StudyIsStopped
    from sweep.joining import join_study, work_on_studies

    url = _storage_url(storage)
    if study is None:
        given = [name for name, value in (("--spec", spec), ("--checkpoints", checkpoints)) if value is not None]
        if given:
            raise SweepError([(given[0], "belongs to one study: give the study's name (`sweep worker NAME "
                                         f"{given[0]} ...`), or leave it out")])  # fmt: skip
        served = work_on_studies(
            url, poll=poll, exit_when_idle=exit_when_idle, threads=threads, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, console=err,
        )  # fmt: skip
        _finish_service(served)
        return
    try:
        result = join_study(
            study,
            url,
            spec_path=spec,
            checkpoints=checkpoints,
            threads=threads,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            console=err,
        )
    except StudyIsStopped as exc:
        err.print(exc.stopped_line(), highlight=False)
        return
    _finish(result, tables=False)


def _finish_service(served: Any) -> None:
    """The end of a worker without a study name: what it worked on; a signal exits 143 / 130."""
    from sweep.store_checks import shown_store

    names = ", ".join(dict.fromkeys(served.studies)) or "none"
    out.print(f"worked on studies: {names} · wall time {served.seconds:.1f}s · store {shown_store(served.storage_url)}",
              highlight=False)  # fmt: skip
    if served.stopped_by:
        err.print(_signal_line(served.stopped_by, served.interrupted, again=False, finished=served.finished_trial),
                  highlight=False)
        raise typer.Exit(143 if served.stopped_by == "SIGTERM" else 130)


@app.command()
def stop(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOption = None,
) -> None:
    """Stop a study: running trials end as on SIGTERM (queued for a retry), no new trial starts until resumed."""
    import getpass

    from sweep.catalog import stop_study

    summary = stop_study(study, _storage_url(storage), by=f"{getpass.getuser()} (sweep stop)")
    out.print(_state_line(summary), highlight=False)


@app.command()
def resume(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOption = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", help="The search's budget from now on: more trials for a finished study, too "
                                        "(re-evaluation runs come on top, as in `sweep run --n-trials`)."),
    ] = None,
) -> None:
    """Let workers take a stopped or failed study again; the trials its stop interrupted run first. With --n-trials,
    raise its budget (no spec needed): workers (`sweep worker`, a service's) or `sweep run SPEC` run the new trials."""
    from sweep.catalog import resume_study, summarize
    from sweep.storage import load_study

    url = _storage_url(storage)
    before = summarize(load_study(study, url))
    after = resume_study(study, url, n_trials)
    line = _state_line(after)
    if after.budget != before.budget:
        line += f" (budget {before.budget} -> {after.budget})"
    elif before.state not in ("stopped", "failed"):
        line += f" (it was {before.state}, not stopped: nothing changed)"
    out.print(line, highlight=False)
    if after.budget > before.budget and not after.running:
        from sweep.storage import is_sqlite

        where = "on this machine (a SQLite store is one machine's)" if is_sqlite(url) else "on any machine"
        out.print(f"nothing runs yet: the new trials run where a worker takes them, `sweep run SPEC` with the study's "
                  f"spec, `sweep worker {study} --storage URL` {where}, or the workers of a `sweep serve` over this "
                  "store", highlight=False)  # fmt: skip


def _state_line(summary: Any) -> str:
    """One line: a study's state and progress (`sweep stop`, `sweep resume`)."""
    why = summary.stopped or summary.failure
    running = f", {summary.running} running (ending within seconds)" if summary.stopped and summary.running else ""
    waiting = f", {summary.queued} queued for a retry" if summary.queued else ""
    return (f"study {summary.name}: {summary.state}{f' ({why})' if why else ''} · {summary.finished}/"
            f"{summary.budget} trials finished{running}{waiting}")  # fmt: skip


@app.command()
def reevaluate(
    study: Annotated[str, typer.Argument(help="Name of a study created by `sweep run`.")],
    top: Annotated[int, typer.Option("--top", help="Re-train the K best configurations (the study's ranking).")],
    seeds: Annotated[int, typer.Option("--seeds", help="New seeds per configuration (the original run is one more).")],
    storage: StorageOption = None,
    spec: StudySpecOption = None,
    checkpoints: CheckpointsOption = None,
) -> None:
    """Re-train the K best configurations with S new seeds each (trials of the same study), then rank them by mean."""
    from sweep.reevaluation import reevaluate_study

    result, _ = reevaluate_study(
        study, _storage_url(storage), top=top, seeds=seeds, spec_path=spec, checkpoints=checkpoints, console=err
    )
    _finish(result)


def _signal_line(signal: str, interrupted: bool | None, *, again: bool, finished: bool = False) -> str:
    """What a signal did: ended the running trial (recorded as FAIL, retried), came after its training (the trial
    finished and is recorded as usual), or came while no trial ran."""
    if interrupted is False and finished:
        done = "the running trial was past its training and is recorded as it finished"
    elif interrupted is False:
        done = "no trial was running"
    elif interrupted:
        done = "the running trial is recorded as FAIL and queued for a retry with the same parameters"
    else:  # the workers of `sweep run --workers N` each say what they ended
        done = "any running trial is recorded as FAIL and queued for a retry with the same parameters"
    return f"stopped by {signal}: {done}{'; run the same command again to continue' if again else ''}"


def _finish(result: Any, *, tables: bool = True) -> None:
    """Print the outcome of a run; a signal or failed workers end with a non-zero exit code."""
    from sweep.store_checks import shown_store
    from sweep.summary import best_summary, trials_table

    if tables:
        out.print(trials_table(result.study))
        out.print(best_summary(result.study))
    out.print(f"wall time {result.seconds:.1f}s · store {shown_store(result.storage_url)}", highlight=False)
    if result.study_stopped and not result.stopped_by:
        from sweep.errors import stopped_line

        err.print(stopped_line(result.study.study_name, result.study_stopped), highlight=False)
        return
    if result.failures_in_a_row:
        err.print("[red]stopped:[/] three trials in a row failed; see their errors with `sweep status`")
        raise typer.Exit(1)
    if result.stopped_by:
        err.print(_signal_line(result.stopped_by, result.interrupted, again=True, finished=result.finished_trial),
                  highlight=False)
        raise typer.Exit(143 if result.stopped_by == "SIGTERM" else 130)
    from sweep.worker import budget_finished

    bad = [code for code in result.worker_exit_codes if code != 0]
    # workers killed (a negative code: SIGKILL, out of memory) had their trials failed and retried: with the budget
    # finished nothing is missing; a worker that exited with an error (1: trials failing in a row) is a failure
    if bad and all(code < 0 for code in bad) and budget_finished(result.study):
        err.print(f"[yellow]warning:[/] {len(bad)} of {len(result.worker_exit_codes)} workers ended abnormally (exit "
                  f"codes {bad}); their trials were retried and the study finished its budget", highlight=False)
    elif bad:
        err.print(f"[red]{len(bad)} of {len(result.worker_exit_codes)} workers failed[/] (exit codes {bad})")
        raise typer.Exit(1)


@app.command()
def status(
    study: Annotated[str | None, typer.Argument(help="Study name (without it: every study in the store).")] = None,
    storage: StorageOption = None,
) -> None:
    """The study's trials and its best trial; without a study name, every study (state, progress, best, workers)."""
    from sweep.storage import load_study
    from sweep.store_checks import safe_url
    from sweep.summary import best_summary, trials_table

    url = _storage_url(storage)
    if study is None:
        from sweep.catalog import list_studies, studies_table

        summaries = list_studies(url)
        out.print(studies_table(summaries) if summaries else f"no sweep studies in {safe_url(url)} yet",
                  highlight=False)  # fmt: skip
        return
    from record import RecordError
    from sweep.catalog import state_line, summarize

    loaded = load_study(study, url)
    with contextlib.suppress(RecordError):  # not a sweep study's record: its trials below are all there is to say
        out.print(state_line(summarize(loaded)), highlight=False)  # as the studies list and the service page say it
    out.print(trials_table(loaded))
    out.print(best_summary(loaded))


@app.command()
def export(
    study: Annotated[str, typer.Argument(help="Study name.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the Hugging Face model to.")],
    storage: StorageOption = None,
    trial: Annotated[int | None, typer.Option("--trial", help="Trial number (default: the best trial).")] = None,
    by: Annotated[
        str,
        typer.Option("--by", help="value: the best trial; mean: the best run of the configuration with the best mean "
                     "over its seeds (after `sweep reevaluate`)."),
    ] = "value",
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier export in --out (a folder holding sweep.json).")
    ] = False,
    checkpoints: CheckpointsOption = None,
) -> None:
    """Write the best trial's (or trial N's, or by mean over seeds) best-epoch weights as a Hugging Face folder."""
    from record import read_study, read_trial
    from sweep.export import export_trial, load_hint
    from sweep.storage import load_study
    from sweep.summary import best_epoch_text

    if checkpoints is not None and not checkpoints.is_dir():
        raise SweepError([("--checkpoints", f"no such folder: {checkpoints.resolve()} (leave it out to use the folder "
                                            "the study recorded)")])  # fmt: skip
    loaded = load_study(study, _storage_url(storage))
    path, chosen = export_trial(loaded, out_dir, number=trial, force=force, checkpoint_root=checkpoints, by=by)
    record = read_study(loaded)
    metric = record.metric or "value"
    why = ""
    if by == "mean":  # the export recorded how it chose: said from there, not ranked a second time
        import json

        from sweep.export import METADATA_FILE, selected_spread

        selected = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))["selected_by"]
        why = (f"; the best run of trial {selected['configuration']}'s configuration, best by mean over "
               f"{len(selected['runs'])} seeds: {selected_spread(selected)}")  # fmt: skip
    out.print(
        f"exported trial {chosen.number} ({metric} {chosen.value:.4f}, best epoch "
        f"{best_epoch_text(read_trial(chosen))}{why}) to {path}",
        highlight=False,
    )
    hint = load_hint(record.task, bool(record.data_report.get("text_pair")), path, record.data_report.get("max_length"),
                     per_label=bool(read_trial(chosen).label_thresholds),
                     remote_code=record.pooling_as_trained == "mean")  # fmt: skip
    out.print(f"load it with: {hint}", highlight=False, soft_wrap=True)  # code to copy: never cut into lines
    import json

    from sweep.export import METADATA_FILE

    warning = json.loads((path / METADATA_FILE).read_text(encoding="utf-8")).get("learned_nothing")
    if warning:  # what the card says, said here too
        err.print(f"warning: this model learned nothing: {warning}", highlight=False)


@app.command()
def report(
    studies: Annotated[list[str], typer.Argument(help="One or more study names (several: compared side by side).")],
    out_file: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    storage: StorageOption = None,
    png: Annotated[Path | None, typer.Option("--png", help="Also write each figure as a PNG into this folder.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the importance evaluators.")] = 0,
) -> None:
    """One self-contained HTML file (works offline) that explains a study, or compares several."""
    from reports import write_report
    from reports.page import PAGE_START
    from sweep.errors import folder_blocked, new_folders, overwrite_problem
    from sweep.storage import load_study

    if out_file.exists() and out_file.is_dir():
        raise SweepError([("--out", f"{out_file} is a folder: give a file name such as report.html")])
    if (taken := overwrite_problem(out_file, (PAGE_START.encode(),), "an earlier sweep report")) is not None:
        raise SweepError([("--out", taken)])
    blocked = folder_blocked(out_file.parent)
    if blocked:
        raise SweepError([("--out", f"{blocked}: name a file in a folder")])
    if png is not None and (png_blocked := (f"{png} is a file" if png.is_file() else folder_blocked(png))) is not None:
        # before the HTML is written: an unwritable --png failed after it, with a traceback, leaving the page behind
        raise SweepError([("--png", f"{png_blocked}: give a folder for the PNG files (it is made if missing)")])
    url = _storage_url(storage)
    loaded = [load_study(name, url) for name in dict.fromkeys(studies)]
    with new_folders(out_file.parent) as made:  # a missing folder is made, as `sweep export --out` does
        result = write_report(loaded, out_file, png_dir=png, seed=seed)
    if made:
        out.print(f"made the folder {made[-1]}", highlight=False)
    figures = f"{result.figures} {'figure' if result.figures == 1 else 'figures'}"
    out.print(f"wrote {result.path} ({figures})", highlight=False)
    for item in result.skipped:
        out.print(f"  note: {item}", highlight=False)
    if png is not None:
        out.print(result.png_note or f"wrote {len(result.png_files)} PNG files to {png}", highlight=False)


@app.command()
def audit(
    spec: Annotated[Path, typer.Argument(help="Study spec (YAML): its training data is audited.")],
    method: Annotated[
        str,
        typer.Option("--method", help="embeddings: a linear model per fold on frozen-encoder embeddings "
                     "(fast, cached); finetune: the encoder fine-tuned per fold with the study's best "
                     "hyperparameters (else the spec's defaults); ensemble: both, their predictions averaged "
                     "(the most precise; as slow as finetune)."),
    ] = "embeddings",
    folds: Annotated[int, typer.Option("--folds", help="K of the K-fold cross-validation.")] = 5,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="CSV of every flagged example, worst first.")
    ] = None,
    storage: SpecStorageOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Flagged examples shown on screen.")] = 20,
) -> None:
    """Rank the training examples whose labels most likely need a second look (confident learning, cleanlab)."""
    from sweep.audit import classes_table, pairs_table, run_audit, summary_lines, suspects_table

    result = run_audit(spec, method=method, folds=folds, out=out_file, storage_url=storage, console=err)
    if result.rows:
        out.print(suspects_table(result, limit=top))
    else:
        out.print("no likely label errors: cleanlab flags none of the training examples", highlight=False)
    out.print(classes_table(result))
    if result.record.pairs:
        out.print(pairs_table(result))
    for line in summary_lines(result):
        out.print(line, highlight=False)


@app.command()
def serve(
    storage: StorageOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; any but a loopback one needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    data_root: Annotated[
        list[Path] | None,
        typer.Option("--data-root", help="A folder whose files a submitted spec may name (repeat for more)."),
    ] = None,
    model_root: Annotated[
        list[Path] | None,
        typer.Option("--model-root", help="A folder whose model folders a submitted spec's encoder may name."),
    ] = None,
    folder: Annotated[
        Path, typer.Option("--folder", help="The server's own folder: uploads, submitted specs, checkpoints, exports.")
    ] = Path("sweep-service"),
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest data file an upload may be, in MB.")
    ] = 200,
    workers: Annotated[
        int, typer.Option("--workers", help="Local `sweep worker` processes to start beside the server (0: none).")
    ] = 0,
    ray: Annotated[
        str | None,
        typer.Option("--ray", metavar="[ADDRESS]", help="Start the --workers N as Ray tasks on the Ray cluster at "
                     "ADDRESS (a Ray started here when no address is given); PostgreSQL store, pip install "
                     "'sweep\\[ray]'."),
    ] = None,
    worker_cpus: Annotated[float, typer.Option("--worker-cpus", help="CPUs each Ray worker asks for.")] = 1,
    worker_gpus: Annotated[float, typer.Option("--worker-gpus", help="GPUs each Ray worker asks for.")] = 0,
) -> None:
    """Run the service: an HTTP API (OpenAPI at /docs) and a web page to submit, follow, stop and export studies.

    The token comes from $SWEEP_SERVICE_TOKEN or the file named by $SWEEP_SERVICE_TOKEN_FILE (never an option: it
    would show in `ps` and shell history). Workers on other machines: `sweep worker` with SWEEP_STORAGE set.
    """
    from sweep.service.server import check_settings
    from sweep.service.server import serve as run_server

    settings = check_settings(
        storage_url=_storage_url(storage), host=host, port=port, folder=folder, data_roots=data_root or [],
        model_roots=model_root or [], max_upload_mb=max_upload_mb, workers=workers, environ=os.environ,
        ray_address=ray,
    )  # fmt: skip
    if ray is not None and (worker_cpus <= 0 or worker_gpus < 0):
        raise SweepError([("--worker-cpus", f"must be > 0 (and --worker-gpus >= 0), got {worker_cpus:g} and "
                                            f"{worker_gpus:g}")])  # fmt: skip
    run_server(settings, host=host, port=port, workers=workers, say=lambda line: err.print(line, highlight=False),
               ray_address=ray, worker_cpus=worker_cpus, worker_gpus=worker_gpus)  # fmt: skip


def _optional_values(argv: list[str]) -> list[str]:
    """`--ray` may come without its ADDRESS: then it means a Ray started on this machine."""
    from sweep.cluster import LOCAL

    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(LOCAL)
    return out


# Commands that write files (an export folder, a report, an audit CSV and its cache) and train no trial: a SIGTERM
# (`timeout`, `kill`) or SIGHUP (a closed terminal) ends them as Ctrl-C does, through their clean-up, so no temporary
# copy is left behind (an export killed by `timeout` left two hidden 88 MB folders). The trial commands have their
# own graceful stop (sweep.worker.GracefulStop); `serve` has its own handlers.
TERMINABLE = frozenset({"export", "report", "audit", "status", "stop"})


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP or SIGINT in a TERMINABLE command: a KeyboardInterrupt, so every clean-up that handles Ctrl-C
    runs, carrying the signal for the exit code (143, 129, 130)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STORAGE_SOURCE: list[str] = []  # where this command's store URL came from: --storage, SWEEP_STORAGE or storage


def _storage_url(option: str | None) -> str:
    """The store URL (`choose_storage`), remembering its source, so an error about it names where the user set it
    (a worker's error said `--storage:` of a URL given only in SWEEP_STORAGE)."""
    from sweep.store_checks import choose_storage

    url, source = choose_storage(option)
    _STORAGE_SOURCE[:] = [source]
    return url


def _named_source(exc: SweepError) -> SweepError:
    if _STORAGE_SOURCE:
        exc.problems = [(_STORAGE_SOURCE[0] if where in ("storage", "--storage") else where, message)
                        for where, message in exc.problems]  # fmt: skip
    return exc


_TERMINATED: list[int] = []  # the signal `_terminate` raised for (typer turns the exception into an exit code 130)
_OWNER: list[int] = []  # the process that installed `_terminate`


def _terminate(signum: int, _frame: Any) -> None:
    import signal

    if _OWNER and os.getpid() != _OWNER[0]:  # a forked child (cleanlab's multiprocessing pool): the signal's usual
        # behaviour, so a pool shutting its workers down with SIGTERM is not stuck on a worker that raised holding a
        # queue lock (an audit hung for 16 minutes)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _TERMINATED.append(signum)
    # the clean-up this starts runs to its end: a second signal (a closing terminal sends SIGHUP twice, `kill` is
    # often sent twice) is only noted, not raised inside it (it left the hidden copy it was removing)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(s) is _terminate:
                signal.signal(s, _noted)
    raise Terminated(signum)


def _noted(signum: int, _frame: Any) -> None:
    _TERMINATED.append(signum)


@contextlib.contextmanager
def _terminable(command: str | None) -> Any:
    import signal
    import threading

    if command not in TERMINABLE or threading.current_thread() is not threading.main_thread():
        yield
        return
    _OWNER[:] = [os.getpid()]
    # SIGINT too: Lightning (`audit --method finetune`) turns a KeyboardInterrupt into sys.exit(1), and the signal
    # recorded here still gives the exit code and line a Ctrl-C gets
    # a signal the caller ignores stays ignored (`nohup sweep export ...`, a script's background job and Ctrl-C)
    chosen = [s for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, _terminate) for s in chosen}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line each and exit with code 2."""
    argv = _optional_values(list(sys.argv[1:] if argv is None else argv))
    command = next((a for a in argv if not a.startswith("-")), None)
    empty = [a.split("=")[0] for i, a in enumerate(argv)
             if (a.startswith("--") and a.endswith("=")) or (a.startswith("--") and i + 1 < len(argv)
                                                              and argv[i + 1] == "" and "=" not in a)]  # fmt: skip
    if empty:  # `--out ''` (an unset shell variable): a path would read it as the current folder
        err.print(f"[red]error:[/] {escape(empty[0])}: is followed by an empty value: give one, or leave the option "
                  "out", highlight=False)  # fmt: skip
        return 2
    _TERMINATED.clear()
    _STORAGE_SOURCE.clear()
    try:
        with _terminable(command):
            code = app(args=argv, prog_name="sweep", standalone_mode=False)  # click returns a typer.Exit's code here
        if code == 130 and command in TERMINABLE:  # typer's exit code for a KeyboardInterrupt (a trial command says
            # its own line, `_signal_line`)
            return _interrupted(Terminated(_TERMINATED[0]) if _TERMINATED else KeyboardInterrupt(), command)
        if isinstance(code, int) and code:
            return code
    except SweepError as exc:
        # escaped: a message's own brackets (`sweep[postgres]`) are text, not markup
        for line in _named_source(exc).lines():
            err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt as exc:
        return _interrupted(exc, command)
    except SystemExit:  # Lightning's answer to an interrupt during training: exit 1 (or 0 on its own SIGTERM)
        if _TERMINATED:
            return _interrupted(Terminated(_TERMINATED[0]), command)
        raise
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:  # usage errors, raised by click or by the copy of click that typer carries
        import click
        from typer.exceptions import TyperException

        if isinstance(exc, click.exceptions.ClickException | TyperException):
            return _usage_error(exc)
        if isinstance(exc, click.exceptions.Abort | typer.Abort):  # click's word for a KeyboardInterrupt
            return _interrupted(exc.__cause__ or exc.__context__, command)
        raise
    return 0


def _interrupted(exc: BaseException | None, command: str | None) -> int:
    """The line and exit code of a command ended by Ctrl-C (130), or by SIGTERM / SIGHUP (`Terminated`: 128 + it)."""
    import signal

    with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) takes no line: the exit code still says it
        if isinstance(exc, Terminated) and exc.signum != signal.SIGINT:
            err.print(f"stopped by {signal.Signals(exc.signum).name}: nothing half-written is left", highlight=False)
        elif command in TERMINABLE:
            err.print("interrupted: nothing half-written is left", highlight=False)
        elif isinstance(exc, KeyboardInterrupt):
            err.print("interrupted: the running trial is recorded as failed; run the same command again to "
                      "continue")  # fmt: skip
    if isinstance(exc, Terminated) and exc.signum != signal.SIGINT:
        return 128 + exc.signum
    return 130


def _usage_error(exc: Exception) -> int:
    """A command line click refused (a missing argument, an unknown option or command): one line naming what is
    wrong and where the help is, exit code 2. `sweep` alone shows the help, as click does."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()  # type: ignore[attr-defined]
        return 2
    ctx = getattr(exc, "ctx", None)
    where = f" ({ctx.command_path} --help lists what it takes)" if ctx is not None else ""
    message = exc.format_message()  # type: ignore[attr-defined]
    err.print(f"[red]error:[/] {escape(message)}{escape(where)}", highlight=False, soft_wrap=True)
    return 2  # bad input, whatever exit code click's class carries (a FileError's is 1)


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
