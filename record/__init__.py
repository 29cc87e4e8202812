"""The study and trial record: what `sweep` leaves in the Optuna store, named once, typed and versioned.

A leaf package (Optuna and the standard library only; no torch), so `sweep`, `reports` and `benchmarks` all write
and read through it and nothing else touches a raw attribute key. Optuna's `RDBStorage` stays the store: the
record is a schema over its study and trial user attributes, not a second database.

- `StudyRecord` / `write_study` / `read_study`: the spec, fingerprints, data report, labels, metric, budget; and
  the control shared by workers and the service (`write_stopped`, `write_priority`, `write_failure`).
- `TrialRecord` / `TrialWriter` / `read_trial`: hyperparameters, seed, best epoch, history, metrics, per-class
  results, confusion matrix, timings, checkpoint, worker, and how a trial failed or was stopped.
- `ranked` / `best_trial` / `enters_top` (`top_bar` / `beats`): the one ranking of trials (direction-aware,
  NaN/inf-safe, earlier trial first on ties) that status, export, checkpoints, reports and the benchmark share.
- `reevaluation_attrs` / `reevaluated` / `seed_leaders`: re-evaluation runs (`sweep reevaluate`) tagged with the
  configuration they re-train and their seed, grouped per configuration, and each configuration's best run.
- `warm_start_attrs`: the tag of a warm-start trial (`search.warm_start`), read back as `TrialRecord.warm_start`.
- `AuditRecord` / `write_audit` / `read_audit`: the annotation audit (`sweep audit`) stored with a study.
"""

from record.audit import AuditRecord, ClassAudit, PairAudit, Suspect, audit_from_attrs, read_audit, write_audit
from record.ranking import (
    FINISHED,
    LIVE,
    beats,
    best_trial,
    enters_top,
    leads_configuration,
    maximizes,
    ranked,
    reevaluated,
    reevaluation_runs,
    reported_value,
    seed_leaders,
    top_bar,
)
from record.study import (
    ARTIFACT_STORE_KEYS,
    RECORD_VERSION,
    RecordError,
    StudyRecord,
    read_study,
    study_attrs,
    study_budget,
    study_from_attrs,
    write_artifact_store,
    write_budget,
    write_failure,
    write_priority,
    write_stopped,
    write_study,
)
from record.trial import (
    Timings,
    TrialRecord,
    TrialResult,
    TrialWriter,
    read_trial,
    reevaluation_attrs,
    retry_history,
    retry_of,
    trial_attrs,
    trial_seconds,
    warm_start_attrs,
)

__all__ = [
    "AuditRecord",
    "ClassAudit",
    "PairAudit",
    "Suspect",
    "audit_from_attrs",
    "read_audit",
    "write_audit",
    "write_failure",
    "write_priority",
    "write_stopped",
    "ARTIFACT_STORE_KEYS",
    "FINISHED",
    "LIVE",
    "RECORD_VERSION",
    "RecordError",
    "StudyRecord",
    "Timings",
    "TrialRecord",
    "TrialResult",
    "TrialWriter",
    "beats",
    "best_trial",
    "enters_top",
    "leads_configuration",
    "maximizes",
    "ranked",
    "read_study",
    "read_trial",
    "reevaluated",
    "reevaluation_attrs",
    "reevaluation_runs",
    "reported_value",
    "retry_history",
    "retry_of",
    "seed_leaders",
    "study_attrs",
    "top_bar",
    "study_budget",
    "study_from_attrs",
    "trial_attrs",
    "trial_seconds",
    "warm_start_attrs",
    "write_artifact_store",
    "write_budget",
    "write_study",
]
