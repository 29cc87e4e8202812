"""The study lifecycle: samplers and pruners by name, create or resume, the same-spec and same-data checks, and
loading a study for a worker that joins it."""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from pydantic import BaseModel
from sqlalchemy.engine import make_url

from datamodules import PreparedData
from record import StudyRecord, warm_start_attrs, write_artifact_store, write_study
from sweep.artifacts import artifact_settings
from sweep.errors import SweepError
from sweep.space import grid
from sweep.spec import (
    NOT_FINGERPRINTED,
    OMITTED_AT_DEFAULT,
    PRUNE_AFTER_DEFAULT,
    WARMUP_PRUNERS,
    RangeParam,
    SearchSpec,
    Spec,
)
from sweep.storage import Heartbeat, open_storage, safe_url, study_names, study_record
from sweep.taskspec import direction
from sweep.warm_start import WarmStart

CREATE_HINT = "`sweep run SPEC --storage URL --workers 0`"


def quiet_libraries() -> None:
    """Keep the screen for our own progress: no per-trial banners from Lightning, Optuna or transformers."""
    # ERROR: our own line reports each failed trial with its error (the traceback is kept in the trial's record).
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
    warnings.filterwarnings("ignore", ".*Experimental.*", category=optuna.exceptions.ExperimentalWarning)


# --- samplers and pruners ---------------------------------------------------------------------------------------


def max_epochs(search: SearchSpec) -> int:
    epochs = search.space.epochs
    if isinstance(epochs, RangeParam):
        return int(epochs.high)
    return int(max(epochs) if isinstance(epochs, list) else epochs)


def steps_per_epoch(search: SearchSpec) -> int:
    """Optuna steps per epoch: the end of each epoch plus the extra evaluations inside the first one."""
    return search.first_epoch_evals + 1


def warmup_steps(search: SearchSpec) -> int:
    """Optuna's n_warmup_steps for `prune_after_epochs`: the first step at which that much training is done (Optuna
    prunes from step n_warmup_steps on). Epoch e of training ends at step e * steps_per_epoch."""
    return math.ceil(search.prune_after_epochs * steps_per_epoch(search) - 1e-9)


# Several workers (salt != 0): `constant_liar` makes TPE treat running trials as bad, so workers spread out.
SAMPLERS: dict[str, Callable[[SearchSpec, int, bool], optuna.samplers.BaseSampler]] = {
    "tpe": lambda search, seed, shared: optuna.samplers.TPESampler(seed=seed, constant_liar=shared),
    "random": lambda search, seed, shared: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda search, seed, shared: optuna.samplers.GridSampler(grid(search.space), seed=seed),
    "gp": lambda search, seed, shared: optuna.samplers.GPSampler(seed=seed),
    "qmc": lambda search, seed, shared: optuna.samplers.QMCSampler(seed=seed),
}

# Pruners act on evaluations; a step is 1/steps_per_epoch of an epoch (epoch ends are multiples of it).
PRUNERS: dict[str, Callable[[SearchSpec], optuna.pruners.BasePruner]] = {
    "median": lambda search: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup_steps(search)),
    "percentile": lambda search: optuna.pruners.PercentilePruner(
        25.0, n_startup_trials=3, n_warmup_steps=warmup_steps(search)
    ),
    "hyperband": lambda search: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=max_epochs(search) * steps_per_epoch(search), reduction_factor=3
    ),
    "successive_halving": lambda search: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    "none": lambda search: optuna.pruners.NopPruner(),
}


HISTORY_STRIDE = 1_000_003  # a prime: the seeds of (worker k, n trials before) and (worker k', n') rarely meet


def make_sampler(search: SearchSpec, salt: int = 0, history: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; `salt` varies the seed per worker process (0: the spec's seed, reproducible), `history`
    (the trials the study has already sampled) per continuation: a resumed study's sampler seeded as at its start
    would draw its first configurations again (a random start-up draws from the seed alone)."""
    return SAMPLERS[search.sampler](search, (search.seed + salt + HISTORY_STRIDE * history) % 2**32, salt != 0)


def sampled_trials(study: optuna.Study) -> int:
    """How many trials the study's samplers have drawn so far: every trial but those waiting to run (a queued
    retry or warm start has its parameters already)."""
    return sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def make_pruner(search: SearchSpec) -> optuna.pruners.BasePruner:
    return PRUNERS[search.pruner](search)


# --- create, resume, join ---------------------------------------------------------------------------------------


def default_checkpoint_root(spec: Spec, base: Path, url: str) -> Path:
    """`checkpoint_dir` from the spec, else `checkpoints/<study>` beside the SQLite file (or the working folder)."""
    if spec.checkpoint_dir:
        root = Path(spec.checkpoint_dir).expanduser()
        return (root if root.is_absolute() else base / root).resolve()
    parsed = make_url(url)
    parent = (
        Path(parsed.database).resolve().parent
        if parsed.get_backend_name() == "sqlite" and parsed.database
        else Path.cwd()
    )
    return parent / "checkpoints" / spec.name


def spec_record(spec: Spec) -> dict[str, Any]:
    """The spec as stored with the study: its storage URL without a password."""
    dump = spec.model_dump(mode="json")
    if dump.get("storage"):
        dump["storage"] = safe_url(dump["storage"])
    return dump


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two spec dumps."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if old != new else []


_MISSING = object()


def _default_of(key: str) -> Any:
    """The spec's default for a dotted key (`trainer.lr_schedule`: "linear"), which a stored spec may leave out; the
    marker `_MISSING` where the key has none or is not a field."""
    model: Any = Spec
    *parents, last = key.split(".")
    for part in parents:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        model = field.annotation if field is not None else None
    fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
    if last not in fields or fields[last].is_required():
        return _MISSING
    return fields[last].get_default(call_default_factory=True)


def _change(key: str, old: Any, new: Any) -> str:
    """`trainer.accumulate_grad_batches 2 -> 4`: a changed key with the study's value and the spec's (unset: a key
    one side leaves out; long values cut)."""

    def at(tree: Any) -> str:
        for part in key.split("."):
            tree = tree.get(part, _MISSING) if isinstance(tree, dict) else _MISSING
        if tree is _MISSING:
            default = _default_of(key) if key in OMITTED_AT_DEFAULT else _MISSING
            return "unset" if default is _MISSING else f"{json.dumps(default)} (the default)"
        shown = json.dumps(tree, ensure_ascii=False)
        return shown if len(shown) <= 40 else f"{shown[:37]}..."

    return f"{key} {at(old)} -> {at(new)}"


# Keys of the fingerprint whose change leaves what the trials learn as it was: where the data files sit (their contents
# are guarded by the data fingerprint, checked before anything is read into the cache), where the cache is, how many
# threads train. A study continues under them; its stored spec keeps the values it was created with. (Left in the
# fingerprint itself: taking them out would change every stored study's fingerprint.)
CHANGEABLE = ("data.train", "data.validation", "data.cache_dir", "trainer.num_threads")


# Defaults that changed after studies were stored with them, by section and key: the values earlier sweeps gave a
# spec that left the key out (a stored spec without the key ran with the last one; see the serializers). A spec file
# that still leaves the key out continues such a study with the value it was made with, not today's default.
PAST_DEFAULTS: dict[tuple[str, str], tuple[Any, ...]] = {
    ("search", "first_epoch_evals"): (2,),  # evaluations at 1/3 and 2/3 of epoch 1, until pruning waited for its end
    ("search", "prune_after_epochs"): (0.5, 0.0),  # two thirds into epoch 1; none before the warm-up existed
}
_STORED_WITHOUT = {("search", "prune_after_epochs"): 0.0, ("search", "first_epoch_evals"): 0}


def with_past_defaults(record: StudyRecord, spec: Spec) -> tuple[Spec, list[str]]:
    """`spec` to continue the study of `record` with, and a line for each key it takes from the study: a key of
    PAST_DEFAULTS the spec file leaves out, whose stored value was the default when the study was made. A key the
    file names is left as it is (a value other than the study's is then refused as a changed spec)."""
    notes: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    for (section, key), earlier in PAST_DEFAULTS.items():
        current = getattr(spec, section)
        stored_section = record.spec.get(section)
        if key in current.model_fields_set or not isinstance(stored_section, dict):
            continue
        stored = stored_section.get(key, _STORED_WITHOUT.get((section, key), _MISSING))
        if stored is _MISSING or stored == getattr(current, key) or stored not in earlier:
            continue
        if key == "prune_after_epochs" and (current.pruner not in WARMUP_PRUNERS or record.spec.get(section, {}).get(
                "pruner", "median") not in WARMUP_PRUNERS):  # fmt: skip
            continue  # hyperband and successive halving take no warm-up (the spec refuses one)
        sections.setdefault(section, {})[key] = stored
        notes.append(
            f"study {spec.name!r} continues with {section}.{key}: {json.dumps(stored)}, as it was created (an earlier "
            f"default; today's is {json.dumps(getattr(current, key))}; name the key in the spec to say which)"
        )
    if not sections:
        return spec, []
    update = {section: getattr(spec, section).model_copy(update=values) for section, values in sections.items()}
    return spec.model_copy(update=update), notes


def check_same_spec(record: StudyRecord, spec: Spec, url: str) -> None:
    """Refuse to continue a study that another spec (other than budget, locations and threads) created."""
    if record.spec_fingerprint == spec.fingerprint():
        return
    old, new = record.spec, spec.model_dump(mode="json")
    kept = (*NOT_FINGERPRINTED, *CHANGEABLE)
    changed = [k for k in _diff(old, new) if not any(k == n or k.startswith(f"{n}.") for n in kept)]
    if not changed and _diff(old, new):
        return
    follows = PRUNE_AFTER_DEFAULT if spec.search.pruner in WARMUP_PRUNERS else 0.0  # the warm-up's default
    if "search.pruner" in changed and spec.search.prune_after_epochs == follows:
        changed = [k for k in changed if k != "search.prune_after_epochs"]  # it changed with the pruner
    hints = []
    if "search.first_epoch_evals" in changed and "first_epoch_evals" not in old.get("search", {}):
        hints.append(
            " (a study from before evaluations inside the first epoch: add `first_epoch_evals: 0` under search)"
        )
    if "search.prune_after_epochs" in changed and not old.get("search", {}).get("prune_after_epochs"):
        hints.append(
            " (a study made without a pruning warm-up, the default before 0.5: add `prune_after_epochs: 0` under "
            "search to continue it as it ran)"
        )
    hint = "".join(hints)
    raise SweepError(
        [
            (
                "name",
                f"study {spec.name!r} already exists in {safe_url(url)} with a different spec "
                f"(changed: {', '.join(_change(k, old, new) for k in changed) or 'unknown'}){hint}; give the spec a "
                "new name to start "
                "a new study, or run the original spec to continue",
            )
        ]
    )


def same_data(record: StudyRecord, spec: Spec, *, joining: bool) -> Callable[[str], None]:
    """A check of a data fingerprint against the study's: refuses data (or a tokenizer) other than the study's.

    Handed to data preparation, it runs before anything is tokenized or cached, so a refusal writes nothing.
    """

    def check(fingerprint: str) -> None:
        if record.data_fingerprint == fingerprint:
            return
        if joining:
            message = (
                f"the data on this machine ({spec.data.train}) differs from the data study {spec.name!r} was "
                "created with: give every worker the same files"
            )
        else:
            message = (
                f"study {spec.name!r} was run on different data (or tokenizer) than {spec.data.train} now holds; "
                "give the spec a new name to start a new study"
            )
        raise SweepError([("data", message)])

    return check


def read_record(study: optuna.Study) -> StudyRecord:
    """The study's record; a SweepError for a record written by a newer sweep."""
    return study_record(study.study_name, study.user_attrs)


def create_or_resume(
    storage: optuna.storages.RDBStorage,
    spec: Spec,
    data: PreparedData,
    url: str,
    checkpoint_root: Path,
    base: Path | None = None,
    warm: WarmStart | None = None,
    pooling: str | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study with its record, or load it if the same spec made it before on the same data. A new study
    queues `warm` (search.warm_start) as its first trial, and records `pooling` (model.pooling resolved for its
    encoder; None: not recorded, trained as cls)."""
    sampler, pruner = make_sampler(spec.search), make_pruner(spec.search)
    if spec.name in study_names(storage):
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
        study.sampler = make_sampler(spec.search, history=sampled_trials(study))
        record = read_record(study)
        check_same_spec(record, spec, url)
        same_data(record, spec, joining=False)(data.fingerprint)
        if spec.artifacts.uses_artifacts and record.artifact_store is None:  # a folder study moves on to artifacts
            settings = artifact_settings(spec.artifacts, Path(record.checkpoint_dir or "."))
            write_artifact_store(study.set_user_attr, settings)
        return study, True
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        direction=direction(spec.objective.metric),
        sampler=sampler,
        pruner=pruner,
    )
    record = StudyRecord(
        spec=spec_record(spec),
        spec_fingerprint=spec.fingerprint(),
        data_fingerprint=data.fingerprint,
        data_report=data.report,
        label_names=list(data.label_names),
        metric=spec.objective.metric,
        steps_per_epoch=steps_per_epoch(spec.search),
        checkpoint_dir=str(checkpoint_root),
        spec_dir=str(base) if base is not None else None,
        task=spec.task,
        submitted_at=time.time(),
        artifact_store=artifact_settings(spec.artifacts, checkpoint_root) if spec.artifacts.uses_artifacts else None,
        pooling=pooling,
    )
    write_study(study.set_user_attr, record)
    with warnings.catch_warnings():  # Optuna's own tools (optuna-dashboard, `optuna` CLI) then name the objective
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([record.metric_label or spec.objective.metric])
    if warm is not None:
        study.enqueue_trial(warm.params, user_attrs=warm_start_attrs(warm.source))
    return study, False


def load_for_worker(name: str, url: str, heartbeat: Heartbeat, spec: Spec | None = None) -> optuna.Study:
    """Open a study that `sweep run` created, to run its trials; SweepError when the store or study is missing."""
    storage = open_storage(url, must_exist=True, create_tables=False, heartbeat=heartbeat)
    try:
        names = study_names(storage)
    except Exception as exc:  # PostgreSQL without optuna's tables: nobody created a study there
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise SweepError(
            [("study", f"no sweep studies in {safe_url(url)} ({reason}); create the study first with {CREATE_HINT}")]
        ) from None
    if name not in names:
        known = f"studies here: {', '.join(names)}" if names else "the store holds no study yet"
        raise SweepError(
            [("study", f"no study named {name!r} in {safe_url(url)} ({known}); create it first with {CREATE_HINT}")]
        )
    if spec is None:
        return optuna.load_study(study_name=name, storage=storage)
    # Each worker's sampler gets its own seed: with one shared seed, workers would draw the same start-up trials;
    # and one per continuation of the study (`sampler_history`), or they would draw its first trials again.
    study = optuna.load_study(study_name=name, storage=storage, pruner=make_pruner(spec.search))
    study.sampler = make_sampler(spec.search, salt=worker_salt(), history=sampler_history(study))
    return study


WORKER_NUMBER_ENV = "SWEEP_WORKER_NUMBER"  # 1..N, set by `sweep run --workers N` for the workers it starts


SAMPLER_HISTORY_ENV = "SWEEP_SAMPLER_HISTORY"  # the study's sampled trials when `sweep run --workers N` started them


def sampler_history(study: optuna.Study) -> int:
    """The `history` of a joining worker's sampler: what the run that started it counted (its N workers then agree,
    and the run repeated draws the same), else the study's sampled trials now."""
    given = os.environ.get(SAMPLER_HISTORY_ENV, "")
    return int(given) if given.isdigit() else sampled_trials(study)


def worker_salt() -> int:
    """What a joining worker adds to search.seed: its number among the workers of one `sweep run --workers N`
    (1..N: the same draws each time the run is repeated), else its process id (workers started on their own)."""
    number = os.environ.get(WORKER_NUMBER_ENV, "")
    return int(number) if number.isdigit() and int(number) > 0 else os.getpid()
