"""The `sweep` command: run a study from a spec, show a study's trials."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.console import Console
from rich.markup import escape

from sweep.errors import SweepError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Hyperparameter sweeps for fine-tuning pretrained text encoders (Optuna + PyTorch Lightning).",
)


class _Out:
    """stdout console, created per use so redirected output (files, CI logs) gets a wide, unwrapped table."""

    def print(self, *args: object, **kwargs: Any) -> None:
        Console(width=None if sys.stdout.isatty() else 160).print(*args, **kwargs)


out = _Out()
err = Console(stderr=True, soft_wrap=True)  # one message, one line: logs and piped output stay greppable

StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="SQLAlchemy URL of the study store (default: $SWEEP_STORAGE, else the spec's storage:, else "
        "sqlite:///sweeps.db). Put a URL with a password in SWEEP_STORAGE: it stays out of shell history and ps.",
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
    spec: Annotated[Path, typer.Argument(help="Study spec (YAML).")],
    storage: StorageOption = None,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", help="Finished trials to reach (overrides the spec).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Local worker processes (each with its share of CPU threads or its own GPU; PostgreSQL for more "
            "than 1). 0: create the study only, for `sweep worker` on other machines.",
        ),
    ] = 1,
) -> None:
    """Create the study or resume it (after a crash too), and run trials until N have finished (complete or pruned)."""
    from sweep.runner import run_study

    result = run_study(spec, storage_url=storage, n_trials=n_trials, workers=workers, console=err)
    _finish(result)


@app.command()
def worker(
    study: Annotated[str, typer.Argument(help="Name of an existing study (created by `sweep run`).")],
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
) -> None:
    """Join a study from any machine and run its trials until the study's budget is finished (across all workers)."""
    from sweep.joining import join_study
    from sweep.store_checks import choose_storage

    result = join_study(
        study,
        choose_storage(storage)[0],
        spec_path=spec,
        checkpoints=checkpoints,
        threads=threads,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        console=err,
    )
    _finish(result, tables=False)


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
    from sweep.store_checks import choose_storage

    result, _ = reevaluate_study(
        study, choose_storage(storage)[0], top=top, seeds=seeds, spec_path=spec, checkpoints=checkpoints, console=err
    )
    _finish(result)


def _finish(result: Any, *, tables: bool = True) -> None:
    """Print the outcome of a run; a signal or failed workers end with a non-zero exit code."""
    from sweep.store_checks import safe_url
    from sweep.summary import best_summary, trials_table

    if tables:
        out.print(trials_table(result.study))
        out.print(best_summary(result.study))
    out.print(f"wall time {result.seconds:.1f}s · store {safe_url(result.storage_url)}", highlight=False)
    if result.failures_in_a_row:
        err.print("[red]stopped:[/] three trials in a row failed; see their errors with `sweep status`")
        raise typer.Exit(1)
    if result.stopped_by:
        err.print(
            f"stopped by {result.stopped_by}: the running trial is recorded as FAIL and queued for a retry with the "
            "same parameters; run the same command again to continue",
            highlight=False,
        )
        raise typer.Exit(143 if result.stopped_by == "SIGTERM" else 130)
    bad = [code for code in result.worker_exit_codes if code != 0]
    if bad:
        err.print(f"[red]{len(bad)} of {len(result.worker_exit_codes)} workers failed[/] (exit codes {bad})")
        raise typer.Exit(1)


@app.command()
def status(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOption = None,
) -> None:
    """A table of the study's trials (state, value, best epoch, parameters, duration) and its best trial."""
    from sweep.storage import load_study
    from sweep.store_checks import choose_storage
    from sweep.summary import best_summary, trials_table

    loaded = load_study(study, choose_storage(storage)[0])
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
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
    checkpoints: CheckpointsOption = None,
) -> None:
    """Write the best trial's (or trial N's, or by mean over seeds) best-epoch weights as a Hugging Face folder."""
    from record import read_study, read_trial
    from sweep.export import export_trial
    from sweep.storage import load_study
    from sweep.store_checks import choose_storage

    loaded = load_study(study, choose_storage(storage)[0])
    path, chosen = export_trial(loaded, out_dir, number=trial, force=force, checkpoint_root=checkpoints, by=by)
    metric = read_study(loaded).metric or "value"
    out.print(
        f"exported trial {chosen.number} ({metric} {chosen.value:.4f}, best epoch "
        f"{read_trial(chosen).best_epoch}) to {path}",
        highlight=False,
    )
    out.print(f'load it with: transformers.pipeline("text-classification", model="{path}")', highlight=False)


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
    from sweep.storage import load_study
    from sweep.store_checks import choose_storage

    if out_file.exists() and out_file.is_dir():
        raise SweepError([("--out", f"{out_file} is a folder: give a file name such as report.html")])
    if not out_file.resolve().parent.is_dir():
        raise SweepError([("--out", f"folder does not exist: {out_file.resolve().parent}")])
    url = choose_storage(storage)[0]
    loaded = [load_study(name, url) for name in dict.fromkeys(studies)]
    result = write_report(loaded, out_file, png_dir=png, seed=seed)
    out.print(f"wrote {result.path} ({result.figures} figures)", highlight=False)
    for item in result.skipped:
        out.print(f"  note: {item}", highlight=False)
    if png is not None:
        out.print(result.png_note or f"wrote {len(result.png_files)} PNG files to {png}", highlight=False)


@app.command()
def audit(
    spec: Annotated[Path, typer.Argument(help="Study spec (YAML): its training data is audited.")],
    method: Annotated[
        str,
        typer.Option("--method", help="embeddings: a linear classifier per fold on frozen-encoder embeddings "
                     "(fast, cached); finetune: the encoder fine-tuned per fold with the study's best "
                     "hyperparameters (else the spec's defaults)."),
    ] = "embeddings",
    folds: Annotated[int, typer.Option("--folds", help="K of the K-fold cross-validation.")] = 5,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="CSV of every flagged example, worst first.")
    ] = None,
    storage: StorageOption = None,
    top: Annotated[int, typer.Option("--top", help="Flagged examples shown on screen.")] = 20,
) -> None:
    """Rank the training examples whose labels most likely need a second look (confident learning, cleanlab)."""
    from sweep.audit import classes_table, pairs_table, run_audit, summary_lines, suspects_table

    result = run_audit(spec, method=method, folds=folds, out=out_file, storage_url=storage, console=err)
    if result.rows:
        out.print(suspects_table(result, limit=top))
    else:
        out.print("no likely label errors: confident learning flags none of the training examples", highlight=False)
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
) -> None:
    """Run the service: an HTTP API (OpenAPI at /docs) and a web page to submit, follow, stop and export studies.

    The token comes from $SWEEP_SERVICE_TOKEN or the file named by $SWEEP_SERVICE_TOKEN_FILE (never an option: it
    would show in `ps` and shell history). Workers on other machines: `sweep worker` with SWEEP_STORAGE set.
    """
    from sweep.service.server import check_settings
    from sweep.service.server import serve as run_server
    from sweep.store_checks import choose_storage

    settings = check_settings(
        storage_url=choose_storage(storage)[0], host=host, port=port, folder=folder, data_roots=data_root or [],
        model_roots=model_root or [], max_upload_mb=max_upload_mb, workers=workers, environ=os.environ,
    )  # fmt: skip
    run_server(settings, host=host, port=port, workers=workers, say=lambda line: err.print(line, highlight=False))


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line each and exit with code 2."""
    try:
        code = app(args=argv, standalone_mode=False)  # click returns a typer.Exit's code here
        if isinstance(code, int) and code:
            return code
    except SweepError as exc:
        for line in exc.lines():  # escaped: a message's own brackets (`sweep[postgres]`) are text, not markup
            err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err.print("interrupted: the running trial is recorded as failed; run the same command again to continue")
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
