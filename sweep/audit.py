"""`sweep audit`: point at the training examples whose labels most likely need a second look.

The data report first (as the study sees the data), then out-of-sample class probabilities for every training
example by K-fold cross-validation (`embeddings`: a logistic regression per fold on frozen-encoder embeddings,
cached; `finetune`: the encoder fine-tuned per fold with the study's best hyperparameters, or the spec's defaults),
then confident learning (`cleanlab`, see `sweep.label_issues`) ranks the likely label errors. The full list goes to
a CSV; the worst ones, per-class counts and the confused label pairs are stored with the study when one exists.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import shlex
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from datamodules import PreparedData
from datamodules.texts import display_text
from record import (
    AuditRecord,
    ClassAudit,
    PairAudit,
    Suspect,
    best_trial,
    read_trial,
    write_audit,
)
from record.audit import MAX_SUSPECTS, MAX_TEXT_CHARS, fit_text, left_out_line, noise_is_flagged_share, weak_fit
from sweep.audit_multilabel import multilabel_issues, rare_label_columns
from sweep.audit_tokens import kept_token_issues, leaves_entity_tags, single_sentence_tags, token_fold_problems
from sweep.dataspec import TOKEN_TASK
from sweep.encoders import resolve_encoder
from sweep.errors import SweepError, beside_the_spec, folder_blocked, new_folders, overwrite_problem
from sweep.label_issues import (
    AUDIT_TASKS,
    AuditTask,
    LabelIssues,
    Splits,
    audit_task_problem,
    kept_classification_issues,
    kept_rows,
    mean_predictions,
    splits_of_rows,
    too_small_classes,
)
from sweep.spec import DEFAULTS, Spec, check_paths, load_spec
from sweep.storage import (
    existing_study_attrs,
    is_sqlite,
    load_study,
    reachability_problems,
    safe_url,
    sqlite_writer_lock,
    storage_problems,
    study_record,
)
from sweep.store_checks import DEFAULT_STORAGE_URL, STORAGE_ENV, choose_storage

METHODS = ("embeddings", "finetune", "ensemble")  # ensemble: the mean of the other two's predictions
DEFAULT_FOLDS = 5
CSV_COLUMNS = ("rank", "row", "text", "text_pair", "given_label", "suggested_label", "label_quality",
               "suggested_probability")  # fmt: skip
# token classification: the suspect word's index in its sentence, the word, and its line in the training file
WORD_COLUMNS = ("word_index", "word", "line")
MARK = ("«", "»")  # around the suspect word in a token classification example's text
SHOWN = 20  # suspects printed on screen


@dataclass(frozen=True)
class AuditRow:
    """One flagged example, as the CSV and the screen show it."""

    rank: int
    row: int  # 0-based data row of the training file (header not counted)
    text: str
    text_pair: str | None
    given: str
    suggested: str
    quality: float
    suggested_probability: float
    position: int | None = None  # token classification: the suspect word of the example
    word: str | None = None  # token classification: that word (`text` shows it marked «so»)
    line: int | None = None  # token classification: its line in the training file (1-based)

    @property
    def shown(self) -> str:
        return self.text if self.text_pair is None else display_text((self.text, self.text_pair))


@dataclass
class AuditResult:
    """What `sweep audit` found, where it wrote it, and whether it was stored with a study."""

    record: AuditRecord
    rows: list[AuditRow]
    label_names: list[str]
    data: PreparedData
    out: Path | None
    stored_in: str | None  # the study it was stored with, else None
    store_note: str | None  # why it was not stored, when a study exists
    storage_url: str = ""
    storage_field: str = ""  # where the store came from (choose_storage): --storage, SWEEP_STORAGE or the spec
    pred_probs: Any = None  # the out-of-fold predictions the ranking rests on (row i = train row i)
    components: dict[str, Any] = dataclasses.field(default_factory=dict)  # each method's own, for `ensemble` both
    labels: Any = None  # the given labels as the task's cleanlab call takes them


# --- checks ----------------------------------------------------------------------------------------------------


def out_problems(out: Path | None) -> list[tuple[str, str]]:
    """--out must name a file (its folder is made when missing, as the CSV is written)."""
    if out is None:
        return []
    if out.is_dir():
        return [("--out", f"{out} is a folder: give a file name such as audit.csv")]
    header = ",".join(CSV_COLUMNS).encode()  # an earlier audit's CSV (with or without the word columns)
    if (taken := overwrite_problem(out, (header + b"\r\n", header + b"\n", header + b","), "an earlier audit's CSV")):
        return [("--out", taken)]
    blocked = folder_blocked(out.parent)
    if blocked:
        return [("--out", f"{blocked}: name a file in a folder")]
    return []


def option_problems(method: str, folds: int) -> list[tuple[str, str]]:
    problems = []
    if method not in METHODS:
        problems.append(("--method", f"must be one of {', '.join(repr(m) for m in METHODS)}, got {method!r}"))
    if folds < 2:
        problems.append(("--folds", f"must be at least 2, got {folds}"))
    return problems


# --- hyperparameters for finetune ------------------------------------------------------------------------------


def spec_defaults(spec: Spec, encoder: str | None = None) -> dict[str, Any]:
    """The spec's fixed values, and for the parameters it searches a value inside the searched space: the warm
    start's known-good configuration for the encoder's family (`sweep.warm_start`, placed in the space), else the
    built-in default moved into it (a built-in 5e-5 outside a searched [1e-4, 4e-4] surprised a user)."""
    from sweep.space import fixed, searched
    from sweep.warm_start import inside, warm_start

    values = {**DEFAULTS, **fixed(spec.search.space)}
    warm = warm_start(spec.search.space, encoder, spec.trainer.accumulate_grad_batches) if encoder else None
    if warm is not None:
        return {**values, **warm.params}
    return {**values, **{name: inside(param, DEFAULTS[name]) for name, param in searched(spec.search.space).items()}}


def finetune_hyperparameters(spec: Spec, study: Any | None, encoder: str | None = None) -> tuple[dict[str, Any], str]:
    """The study's best trial's hyperparameters when it has one, else the spec's defaults; and where they came from."""
    defaults = spec_defaults(spec, encoder)
    best = best_trial(study) if study is not None else None
    if best is None:
        return defaults, ("the spec's fixed values and, for what it searches, the warm start's known-good values in "
                          "its space (no completed trial in a study)")
    chosen = {**defaults, **{k: v for k, v in read_trial(best).all_hyperparameters.items() if k in DEFAULTS}}
    return chosen, f"the best trial of study {spec.name} (trial {best.number})"


# --- progress --------------------------------------------------------------------------------------------------


@contextmanager
def progress_bars(console: Console) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal,
    )  # fmt: skip
    with progress:
        yield progress


# --- the two methods -------------------------------------------------------------------------------------------


def embedding_probabilities(
    data: PreparedData, task: AuditTask, labels: Any, encoder: str, cache_dir: Path, *, splits: Splits,
    console: Console,
) -> Any:  # fmt: skip
    """Out-of-fold predictions of the task's probe (a logistic regression per fold for a classifier) on the cached
    frozen-encoder embeddings, fold by fold of `splits` (a row in no fold keeps a prediction of zeros)."""
    with progress_bars(console) as progress:
        bar = progress.add_task("embedding training examples", total=len(data.train))
        features, hit = task.embed(
            data, encoder, cache_dir, on_start=lambda rows: progress.update(bar, total=rows),
            on_batch=lambda rows: progress.update(bar, advance=rows),
        )  # fmt: skip
        progress.update(bar, completed=progress.tasks[bar].total)
        shape = " x ".join(str(n) for n in np.shape(features))
        console.print(f"[dim]audit:[/] embeddings {'from the cache' if hit else 'computed and cached'} ({shape})",
                      highlight=False)  # fmt: skip
        fold_bar = progress.add_task(f"{len(splits)}-fold probe on the embeddings", total=len(splits))
        return task.probe(features, labels, data, splits, lambda _k: progress.update(fold_bar, advance=1))


def finetune_probabilities(
    data: PreparedData, task: AuditTask, labels: Any, spec: Spec, encoder: str, hp: dict[str, Any], *,
    splits: Splits, seed: int, console: Console, pooling: str | None = None,
) -> Any:  # fmt: skip
    """Out-of-fold predictions of the encoder fine-tuned on each fold's other folds (the study's training code), with
    the study's head (`pooling`; None: as a new study of the spec would train, resolved here).

    Each fold of `splits` trains with `hp` (seed `seed` + fold), keeps the weights of its best epoch on the study's
    validation split (as a trial does), and predicts its held-out fold with them. A row in no fold (a class left
    out) gets probabilities of zeros.
    """
    import pytorch_lightning as pl
    import torch

    from sweep.best_weights import BestWeights
    from sweep.encoders import resolve_pooling
    from sweep.objective import TrialSettings, train_trial
    from sweep.runner import balanced_class_weights
    from sweep.space import Hyperparameters
    from sweep.taskspec import MINIMIZED

    if pooling is None:
        pooling = "cls" if spec.task == "token-classification" else resolve_pooling(spec.model.pooling, encoder)[0]
    values: dict[str, Any] = {k: (int(v) if k in ("batch_size", "epochs") else float(v)) for k, v in hp.items()
                              if k in DEFAULTS}  # fmt: skip
    params = Hyperparameters(**values)
    items: list[Any] = [None] * len(data.train)
    folds = len(splits)
    monitor = f"val_{spec.objective.metric}"
    with progress_bars(console) as progress:

        class Steps(pl.Callback):
            """Advances a fold's bar by one per training step."""

            def __init__(self, task: Any):
                self.task = task

            def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
                progress.update(self.task, advance=1)

        fold_bar = progress.add_task(f"fine-tuning {folds} folds", total=folds)
        for k, (train_idx, held) in enumerate(splits):
            fold = dataclasses.replace(data, train=data.train.select(train_idx.tolist()))
            weights = None
            if spec.model.class_weights == "balanced" and task.labels is AUDIT_TASKS["text-classification"].labels:
                weights = balanced_class_weights(np.asarray(labels)[train_idx].tolist(), len(data.label_names))
            settings = TrialSettings(
                encoder=encoder, space=spec.search.space, metric=spec.objective.metric, seed=seed + k,
                class_weights=weights, accelerator=spec.trainer.accelerator, precision=spec.trainer.precision,
                eval_batch_size=spec.trainer.eval_batch_size, group_by_length=spec.trainer.group_by_length,
                first_epoch_evals=0, task=spec.task, keep_freed_memory=spec.trainer.keep_freed_memory,
                gradient_clip_val=spec.trainer.gradient_clip_val,
                accumulate_grad_batches=spec.trainer.accumulate_grad_batches, lr_schedule=spec.trainer.lr_schedule,
                early_stopping_patience=spec.trainer.early_stopping_patience,
                positive_label=spec.objective.positive_label, pooling=pooling,
            )  # fmt: skip
            steps = params.epochs * -(-len(train_idx) // params.batch_size)
            step_bar = progress.add_task(f"fold {k + 1}/{folds}", total=steps)

            best = BestWeights(monitor, minimize=spec.objective.metric in MINIMIZED)
            module, _, _ = train_trial(params, fold, settings, seed=seed + k, callbacks=[best, Steps(step_bar)])
            if best.state is not None:
                module.model.load_state_dict(best.state)
            held_rows = data.train.select(held.tolist())
            batches = held_batches(held_rows, data.pad_token_id, spec.trainer.eval_batch_size, task.label_kind)
            predicted = task.predict(module, batches)
            for row, item in zip(held.tolist(), predicted, strict=True):
                items[row] = item
            progress.remove_task(step_bar)
            progress.update(fold_bar, advance=1)
            console.print(f"[dim]audit:[/] fold {k + 1}/{folds} trained on {len(train_idx)} examples "
                          f"(best epoch {best.epoch} of {params.epochs}); predicted {len(held)}", highlight=False)
            del module
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if any(item is None for item in items):  # only a single-label audit leaves rows out: a row of class scores
        items = [np.zeros(len(data.label_names)) if item is None else item for item in items]
    return task.collect(items, data)


def held_batches(dataset: Any, pad_token_id: int, batch_size: int, label_kind: str) -> Any:
    """A function of a trained module yielding (batch, model output) over every row of an encoded dataset, in order,
    in inference mode on the module's device (the batch stays on the CPU)."""
    import torch

    from datamodules.text_classification import EncodedExamples, PaddingCollator

    def run(module: Any) -> Iterator[tuple[dict[str, Any], Any]]:
        examples = EncodedExamples(dataset)
        collate = PaddingCollator(pad_token_id, label_kind)
        module.eval()
        device = next(module.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(examples), batch_size):
                batch = collate([examples[i] for i in range(start, min(start + batch_size, len(examples)))])
                inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
                yield batch, module(inputs)

    return run


# --- results ---------------------------------------------------------------------------------------------------


def audit_rows(issues: LabelIssues, data: PreparedData) -> list[AuditRow]:
    """The flagged examples with their file rows and texts, worst first."""
    rows = []
    for rank, issue in enumerate(issues.issues, 1):
        text = data.train_texts[issue.index] if data.train_texts else ""
        first, second = (text, None) if isinstance(text, str) else text
        word, line = None, None
        if issue.position is not None and data.train_words:  # token classification: the word of its sentence
            words = data.train_words[issue.index]
            word, line = words[issue.position], data.train_lines[issue.index][issue.position]
            first = " ".join([*words[: issue.position], f"{MARK[0]}{word}{MARK[1]}", *words[issue.position + 1 :]])
        rows.append(AuditRow(
            rank=rank, row=data.train_rows[issue.index] if data.train_rows else issue.index, text=first,
            text_pair=second, given=issue.given, suggested=issue.suggested, quality=issue.quality,
            suggested_probability=issue.suggested_probability, position=issue.position, word=word, line=line,
        ))  # fmt: skip
    return rows


def left_out_line_of(
    left_out: dict[str, int], folds: int, *, class_name: str = "class", unit: str = "example", examples: int = 0
) -> str:
    """The line `left_out_line` gives a record with these classes (labels, tags) left out (said before the audit;
    `examples`: the training rows, for a multi-label one)."""
    line = left_out_line(AuditRecord(method="", folds=folds, created="", data_fingerprint="", examples=examples,
                                     flagged=0, accuracy=0.0, left_out=left_out, class_name=class_name,
                                     unit=unit))  # fmt: skip
    return line or ""


def build_record(
    issues: LabelIssues, rows: list[AuditRow], data: PreparedData, *, method: str, folds: int, encoder: str,
    hyperparameters: dict[str, Any], seconds: float, left_out: dict[str, int] | None = None,
) -> AuditRecord:  # fmt: skip
    return AuditRecord(
        method=method,
        folds=folds,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        data_fingerprint=data.fingerprint,
        examples=issues.examples,
        flagged=len(issues.issues),
        accuracy=round(issues.accuracy, 4),
        fit_name=issues.fit_name,
        fit_threshold=issues.fit_threshold,
        class_name=issues.class_name,
        unit=issues.unit,
        encoder=encoder,
        hyperparameters=hyperparameters,
        seconds=round(seconds, 1),
        suspects=[Suspect(row=r.row, text=_cut(r.shown, MAX_TEXT_CHARS), given=r.given, suggested=r.suggested,
                          quality=round(r.quality, 4)) for r in rows[:MAX_SUSPECTS]],  # fmt: skip
        classes=[ClassAudit(label=c.label, examples=c.examples, flagged=c.flagged,
                            estimated_noise=round(c.estimated_noise, 4)) for c in issues.classes],  # fmt: skip
        pairs=[PairAudit(given=p.given, suggested=p.suggested, count=p.count) for p in issues.pairs],
        left_out=dict(left_out or {}),
    )


def write_csv(path: Path, rows: list[AuditRow], *, words: bool = False) -> None:
    """Every flagged example, worst first, written to a temporary file beside `path` and renamed into place; with
    `words` (token classification) also each suspect word, its index in its sentence and its line in the file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS + WORD_COLUMNS if words else CSV_COLUMNS)
            for r in rows:
                probability = "" if math.isnan(r.suggested_probability) else f"{r.suggested_probability:.4f}"
                writer.writerow([r.rank, r.row, r.text, r.text_pair or "", r.given, r.suggested,
                                 f"{r.quality:.4f}", probability,
                                 *((r.position, r.word, r.line) if words else ())])  # fmt: skip
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def store_audit(name: str, url: str, record: AuditRecord) -> None:
    """Write the audit into the study's record (SQLite: under the store's one-writer lock)."""
    with sqlite_writer_lock(url):
        study = load_study(name, url, read_only=False)
        write_audit(study.set_user_attr, record)


# --- the command -----------------------------------------------------------------------------------------------


def run_audit(
    spec_path: str | Path,
    *,
    method: str = "embeddings",
    folds: int = DEFAULT_FOLDS,
    out: Path | None = None,
    storage_url: str | None = None,
    console: Console | None = None,
) -> AuditResult:
    """Check everything, print the data report, compute out-of-fold probabilities, rank likely label errors with
    cleanlab, write the CSV and store the audit with the study (if one exists). Nothing is written on bad input."""
    from sweep.lifecycle import quiet_libraries
    from sweep.runner import DEFAULT_CACHE_DIR, prepare_data

    console = console or Console(stderr=True)
    started = time.perf_counter()
    spec, base = load_spec(spec_path)
    url, field_name = choose_storage(storage_url, spec.storage)
    problems = check_paths(spec, base) + option_problems(method, folds) + out_problems(out)
    if (refusal := audit_task_problem(spec.task)) is not None:
        problems.append(refusal)
    problems += storage_problems(url, field=field_name)
    try:
        encoder = resolve_encoder(spec.model.encoder, base, max_length=spec.model.max_length)
    except SweepError as exc:
        problems += exc.problems
    if not problems and not is_sqlite(url):
        problems += reachability_problems(url, field=field_name)
    if problems:
        raise SweepError(problems, source=str(spec_path), outside=beside_the_spec(problems))
    attrs = existing_study_attrs(url, spec.name)
    existing = study_record(spec.name, attrs) if attrs is not None else None
    quiet_libraries()
    data = prepare_data(spec, base, encoder, console, source=str(spec_path))
    console.print(data_table(data))
    label_names = list(data.label_names)
    task = AUDIT_TASKS[spec.task]
    labels = task.labels(data)
    # a single-label audit leaves out a class with fewer examples than folds (no fold could learn it) and checks
    # the rest; with fewer than two classes left it is refused as every other task's audit is
    left_out = too_small_classes([label_names[i] for i in labels], folds) if task.leaves_out_small_classes else {}
    rows_kept = kept_rows([label_names[i] for i in labels], left_out) if left_out else None
    # multi-label: a label on fewer rows than folds is left out of the audit (its column), the rest audited
    columns_kept = None
    if spec.task == "multi-label":
        left_out, columns_kept = rare_label_columns(labels, label_names, folds)
    # token classification: a tag in a single training sentence is left out (its words), while an entity tag remains
    tags_left_out: list[str] | None = None
    rare = single_sentence_tags(labels, label_names) if spec.task == TOKEN_TASK else {}
    if rare and leaves_entity_tags(labels, label_names, list(rare)):
        left_out, tags_left_out = rare, list(rare)
    audited = labels if columns_kept is None else np.asarray(labels)[:, columns_kept]
    audited_data = data if columns_kept is None else dataclasses.replace(
        data, label_names=[label_names[k] for k in columns_kept])  # fmt: skip
    if rows_kept is None and columns_kept is None:
        if tags_left_out is None:
            left_out = {}
        problems = (task.fold_problems(data, labels, folds) if tags_left_out is None
                    else token_fold_problems(labels, folds, label_names, left_out=tags_left_out))  # fmt: skip
        if problems:
            raise SweepError(problems, source=str(spec_path), outside=beside_the_spec(problems))
    if left_out:
        shown = left_out_line_of(left_out, folds, class_name="label" if columns_kept is not None else "class",
                                 unit="word" if tags_left_out is not None else "example",
                                 examples=len(labels) if columns_kept is not None else 0)  # fmt: skip
        console.print(f"[yellow]audit:[/] {shown}", highlight=False)
    seed = spec.search.seed
    splits = (task.splits(audited, folds, seed) if rows_kept is None
              else splits_of_rows(task.splits(np.asarray(labels)[rows_kept], folds, seed), rows_kept))  # fmt: skip
    cache_dir = Path(spec.data.cache_dir or DEFAULT_CACHE_DIR)
    if not cache_dir.is_absolute() and spec.data.cache_dir:
        cache_dir = base / cache_dir
    hyperparameters: dict[str, Any] = {}
    components: dict[str, Any] = {}
    if method in ("embeddings", "ensemble"):
        components["embeddings"] = embedding_probabilities(data, task, audited, encoder, cache_dir, splits=splits,
                                                           console=console)  # fmt: skip
    if method in ("finetune", "ensemble"):
        study = load_study(spec.name, url) if existing is not None else None
        hyperparameters, source = finetune_hyperparameters(spec, study, encoder)
        shown = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in hyperparameters.items())
        console.print(f"[dim]audit:[/] fine-tuning each fold with {source}: {shown}", highlight=False)
        pooling = existing.pooling_as_trained if existing is not None else None  # the study's head, if any
        components["finetune"] = finetune_probabilities(data, task, labels, spec, encoder, hyperparameters,
                                                         splits=splits, seed=seed, console=console,
                                                         pooling=pooling)  # fmt: skip
        if columns_kept is not None:  # the model predicts every label; the audit judges the kept ones
            components["finetune"] = np.asarray(components["finetune"])[:, columns_kept]
    probs = (mean_predictions(components["embeddings"], components["finetune"]) if method == "ensemble"
             else components[method])  # fmt: skip
    if columns_kept is not None:  # each row's sets shown whole: the labels left out stay as given
        issues = multilabel_issues(audited, probs, audited_data.label_names,
                                   left_out=(np.asarray(labels), label_names, columns_kept))  # fmt: skip
    elif rows_kept is not None:
        issues = kept_classification_issues(labels, probs, label_names, rows_kept)
    elif tags_left_out is not None:
        issues = kept_token_issues(labels, probs, label_names, tags_left_out)
    else:
        issues = task.find(labels, probs, data)
    rows = audit_rows(issues, data)
    record = build_record(issues, rows, data, method=method, folds=folds, encoder=spec.model.encoder,
                          hyperparameters=hyperparameters, seconds=time.perf_counter() - started,
                          left_out=left_out)  # fmt: skip
    if out is not None:
        with new_folders(out.parent):
            write_csv(out, rows, words=issues.unit == "word")
    stored_in, note = None, None
    if existing is not None:
        if existing.data_fingerprint != data.fingerprint:
            note = (f"not stored with study {spec.name}: its data differs from the data audited now "
                    "(the study ran on other data, or another tokenizer or max_length)")  # fmt: skip
        else:
            try:
                store_audit(spec.name, url, record)
                stored_in = spec.name
            except SweepError as exc:  # a running `sweep run` holds the SQLite store
                note = f"not stored with study {spec.name}: {exc.lines()[0]}"
    return AuditResult(record, rows, label_names, data, out, stored_in, note, url, field_name, probs, components,
                       labels)  # fmt: skip


# --- screen ----------------------------------------------------------------------------------------------------


def _cut(text: str, limit: int = 90) -> str:
    """`text` in at most `limit` characters; a text with a marked word (token classification) is cut around it."""
    if len(text) <= limit:
        return text
    start, end = text.find(MARK[0]), text.find(MARK[1]) + 1
    if start < 0 or end <= start or end < limit:
        return text[: limit - 1] + "…"
    begin = start - (limit - 2 - (end - start)) // 2  # the mark in the middle
    if begin + limit - 1 >= len(text):
        return "…" + text[len(text) - (limit - 1) :]
    return "…" + text[max(1, begin) : max(1, begin) + limit - 2] + "…"


def data_table(data: PreparedData) -> Table:
    """The data report as the study sees it: rows kept and dropped, classes per split, token lengths."""
    report = data.report
    table = Table(title="Data", title_justify="left", show_header=True)
    table.add_column("")
    table.add_column("train", justify="right")
    table.add_column("validation", justify="right")
    cleaning = report.get("cleaning", {})
    for key, label in (("rows_in", "rows read"), ("duplicates", "duplicates dropped"),
                       ("conflicting_rows", "rows with conflicting labels dropped"),
                       ("missing_text", "missing text"), ("empty_text", "empty text"),
                       ("missing_label", "missing label"),
                       ("averaged_rows", "rows merged into their text's mean score")):  # fmt: skip
        values = [(cleaning.get(split) or {}).get(key) for split in ("train", "validation")]
        if key == "rows_in" or any(values):
            table.add_row(label, *("-" if v is None else str(v) for v in values))
    overlap = report.get("overlap", {}).get("train_val_overlap", 0)
    table.add_row("train rows also in validation (dropped)", str(overlap), "")
    windows = report.get("windows")
    if isinstance(windows, dict):  # tagged sentences: a long one is split into windows, not truncated
        split_up = [str((windows.get(split) or {}).get("sentences_split", 0)) for split in ("train", "validation")]
        table.add_row(f"sentences over max_length={report.get('max_length')} (split into windows)", *split_up)
        table.add_row("examples used (windows)", str(report.get("num_train")), str(report.get("num_validation")))
    else:
        truncated = report.get("truncated", {})
        table.add_row(f"texts over max_length={report.get('max_length')}", str(truncated.get("train", 0)),
                      str(truncated.get("validation", 0)))  # fmt: skip
        table.add_row("examples used", str(report.get("num_train")), str(report.get("num_validation")))
    distribution = report.get("class_distribution", {})
    total = max(1, int(report.get("num_train") or 0))
    scores = report.get("label_distribution", {})  # task: regression: a score per example, no classes
    if scores:
        table.add_row("scores (min / mean / max)", *(
            f"{s['min']:g} / {s['mean']:.3g} / {s['max']:g}" if (s := scores.get(split)) else "-"
            for split in ("train", "validation")))  # fmt: skip
    types = report.get("entity_types")  # token classification counts entities per type, not examples per tag
    for name in (types or data.label_names) if not scores else ():
        n = distribution.get("train", {}).get(name, 0)
        if types:
            table.add_row(f"entities {name}", str(n), str(distribution.get("validation", {}).get(name, 0)))
            continue
        rare = " (rare)" if n / total < 0.02 else ""
        table.add_row(f"class {name}{rare}", f"{n} ({n / total:.1%})", str(distribution.get("validation", {})
                                                                              .get(name, 0)))  # fmt: skip
    lengths = np.asarray(data.train["length"]) if "length" in data.train.column_names else np.zeros(0)
    if len(lengths):
        p50, p95 = np.percentile(lengths, [50, 95])
        cut = data.report.get("max_length")
        after = f", after the cut at {cut}" if cut else ""  # counted on tokenized examples: at most the cut
        table.add_row(f"tokens per train example (min / median / 95% / max{after})",
                      f"{lengths.min()} / {p50:.0f} / {p95:.0f} / {lengths.max()}", "")  # fmt: skip
    return table


def suspects_table(result: AuditResult, limit: int = SHOWN) -> Table:
    record = result.record
    table = Table(title=f"Likely label errors: {record.flagged} of {record.examples} training {record.unit}s "
                        f"(worst {min(limit, len(result.rows))} shown)", title_justify="left")  # fmt: skip
    for column, justify in (("rank", "right"), ("row", "right"), ("text", "left"), ("given", "left"),
                            ("suggested", "left"), ("quality", "right")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in result.rows[:limit]:
        table.add_row(str(r.rank), str(r.row), _cut(r.shown), r.given, r.suggested, f"{r.quality:.3f}")
    return table


def _multi_label(result: AuditResult) -> bool:
    return bool(result.data.report.get("multi_label"))


def classes_table(result: AuditResult) -> Table:
    record = result.record
    multi = _multi_label(result)
    table = Table(title="Per label (flagged: rows whose annotation of the label is in doubt)" if multi
                  else f"Per {record.class_name}", title_justify="left")  # fmt: skip
    noise = not noise_is_flagged_share(record)
    for column in (record.class_name, f"{record.unit}s", "flagged", "flagged share",
                   *(["estimated noise (cleanlab)"] if noise else [])):  # fmt: skip
        table.add_column(column, justify="left" if column == record.class_name else "right")
    for c in sorted(record.classes, key=lambda c: (-c.flagged, c.label)):
        share = c.flagged / c.examples if c.examples else 0.0
        table.add_row(c.label, str(c.examples), str(c.flagged), f"{share:.1%}",
                      *([f"{c.estimated_noise:.1%}"] if noise else []))  # fmt: skip
    return table


def pairs_table(result: AuditResult) -> Table:
    name = "label" if result.record.class_name == "class" else result.record.class_name
    multi = _multi_label(result)
    table = Table(title="Label changes suggested" if multi
                  else f"{name.capitalize()} pairs of the flagged examples (given → suggested)",
                  title_justify="left")  # fmt: skip
    table.add_column("dropped → added" if multi else "given → suggested")
    table.add_column("flagged", justify="right")
    for p in result.record.pairs:
        table.add_row(f"{p.given} → {p.suggested}", str(p.count))
    return table


def report_command(result: AuditResult) -> str:
    """`sweep report NAME`, with the store named where `sweep report` would not find it by itself (it reads
    --storage, then SWEEP_STORAGE, then the default store; it has no spec to read one from). A password shows
    masked: SWEEP_STORAGE keeps it out of the command line."""
    command = f"sweep report {result.stored_in}"
    if result.storage_field == STORAGE_ENV or result.storage_url == DEFAULT_STORAGE_URL:
        return command
    return f"{command} --storage {shlex.quote(safe_url(result.storage_url))}"


def summary_lines(result: AuditResult) -> list[str]:
    record = result.record
    lines = [f"audit: {record.method}, {record.folds} folds: out-of-fold {fit_text(record)}; "
             f"{record.flagged} of {record.examples} training {record.unit}s flagged "
             f"({record.seconds:.1f} s)"]  # fmt: skip
    weak = weak_fit(record)
    if weak:
        lines.append(f"warning: {weak}")
    if (left := left_out_line(record)) is not None:
        lines.append(f"note: {left}")
    if result.out is not None:
        where = ("row: 0-based sentence of the training file, word_index: the word's 0-based index in it, line: the "
                 "word's line in the file" if record.unit == "word"
                 else "row: 0-based data row of the training file, header not counted")  # fmt: skip
        lines.append(f"wrote {len(result.rows)} rows to {result.out} ({where})")
    if result.stored_in is not None:
        lines.append(f"stored with study {result.stored_in} in {safe_url(result.storage_url)}: "
                     f"`{report_command(result)}` shows it")
    elif result.store_note:
        lines.append(result.store_note)
    return lines
