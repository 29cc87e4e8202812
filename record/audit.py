"""The annotation audit stored with a study (`sweep audit`): its likely label errors, per-class counts and the label
pairs that explain them, bounded in size (Optuna keeps study attributes as JSON in one row).

Written whole by `write_audit` (a later audit replaces it); `read_audit` gives None for a study never audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from record.study import Setter, _HasUserAttrs

_S_AUDIT = "annotation_audit"
MAX_SUSPECTS = 100  # the worst suspects kept with the study (the CSV of `sweep audit --out` has them all)
MAX_TEXT_CHARS = 200
SCORE_BIN = "score bin"  # the `class_name` of a task: regression audit: its "classes" are bins of the score


def shorten(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` cut to at most `limit` characters, the last of them an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Suspect:
    """One training example whose label probably needs a second look."""

    row: int  # 0-based data row of the training file (header not counted)
    text: str  # cut to MAX_TEXT_CHARS; a pair shown as "text ||| text_pair"
    given: str
    suggested: str
    quality: float  # cleanlab's label quality score of the given label: low = more likely wrong


@dataclass(frozen=True)
class ClassAudit:
    """A class's examples, how many were flagged and cleanlab's estimate of its label noise (a share)."""

    label: str
    examples: int
    flagged: int
    estimated_noise: float


@dataclass(frozen=True)
class PairAudit:
    """Flagged examples labelled `given` that the out-of-sample predictions put in `suggested`."""

    given: str
    suggested: str
    count: int


@dataclass(frozen=True)
class AuditRecord:
    """What an annotation audit found in a study's training data, and how it was made."""

    method: str  # embeddings | finetune
    folds: int
    created: str  # ISO 8601 UTC
    data_fingerprint: str
    examples: int
    flagged: int
    accuracy: float  # how well the out-of-fold predictions the audit rests on fit the given labels (`fit_name`)
    fit_name: str = "accuracy"  # accuracy; another task's measure of fit (micro-F1, Spearman ...)
    fit_threshold: float | None = None  # multi-label: the decision threshold the micro-F1 is taken at
    class_name: str = "class"  # what a row of `classes` is (task: regression: SCORE_BIN)
    unit: str = "example"  # what `examples` counts and a suspect is: an example; a word (token classification)
    encoder: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # finetune: what each fold trained with
    seconds: float = 0.0
    suspects: list[Suspect] = field(default_factory=list)  # the worst first, at most MAX_SUSPECTS
    classes: list[ClassAudit] = field(default_factory=list)
    pairs: list[PairAudit] = field(default_factory=list)
    # classes with fewer training examples than folds, left out of the audit: {class: its examples}
    left_out: dict[str, int] = field(default_factory=dict)


def left_out_line(record: AuditRecord) -> str | None:
    """What the audit left out and why (a class too small for its folds), or None when it audited every class."""
    if not record.left_out:
        return None
    unit = "word" if record.unit == "word" else "example"
    shown = ", ".join(f"{name!r} ({n} {unit}{'s' if n != 1 else ''})" for name, n in record.left_out.items())
    n = len(record.left_out)
    if unit == "word":  # token classification: a tag in one training sentence
        return (f"left out {n} tag{'s' if n != 1 else ''} found in a single training sentence: {shown}; "
                f"{'its' if n == 1 else 'their'} words are not checked and no word is suggested as "
                f"{'it' if n == 1 else 'one of them'} (a fold that holds that sentence out has no other to learn "
                "it from; a tag seen once is often misspelt: fix it, or add sentences with it)")
    what = "label" if record.class_name == "label" else "class"
    more = _what_would_audit(record.left_out, what)
    if what == "label":  # multi-label: a row's set keeps the label; only its annotation goes unchecked
        return _left_out_labels(record)
    return (f"left out {n} class{'es' if n != 1 else ''} with fewer training "
            f"examples than --folds {record.folds}: {shown}; their examples are not checked and no example is "
            f"suggested as one of them ({more})")


def _what_would_audit(margins: Mapping[str, int], what: str, *, both_sides: bool = False) -> str:
    """The --folds that audits the left-out ones with 2 examples or more, and that those with fewer need more (one
    line said "needs at least 2 examples" of a label with 4 beside one with 1)."""
    fixable = {k: v for k, v in margins.items() if v >= 2}
    stuck = [k for k, v in margins.items() if v < 2]
    parts = []
    if fixable:
        names = "them" if not stuck else ", ".join(repr(k) for k in fixable)
        parts.append(f"--folds {min(fixable.values())} audits {names} too")
    if stuck:
        need = "2 examples with it and 2 without it" if both_sides else "2 examples"
        named = "" if not fixable else f": {', '.join(repr(k) for k in stuck)}"
        parts.append(f"a {what} needs at least {need} for an out-of-fold check{named}")
    return "; ".join(parts)


def _left_out_labels(record: AuditRecord) -> str:
    """`left_out_line` of a multi-label audit: labels on fewer rows than folds, and labels on nearly every row (fewer
    rows than folds without them; `record.examples` rows in all)."""
    total, folds, n = record.examples, record.folds, len(record.left_out)
    few = {k: v for k, v in record.left_out.items() if v < folds or not total}
    common = {k: v for k, v in record.left_out.items() if k not in few}
    parts = []
    if few:
        shown = ", ".join(f"{name!r} ({v} example{'s' if v != 1 else ''})" for name, v in few.items())
        parts.append(f"{len(few)} label{'s' if len(few) != 1 else ''} on fewer training examples than --folds "
                     f"{folds}: {shown}")  # fmt: skip
    if common:
        shown = ", ".join(f"{name!r} (on {v} of {total})" for name, v in common.items())
        parts.append(f"{len(common)} label{'s' if len(common) != 1 else ''} on nearly every training example "
                     f"(fewer than --folds {folds} without {'it' if len(common) == 1 else 'them'}): {shown}")
    margins = {k: min(v, total - v) if total and k in common else v for k, v in record.left_out.items()}
    more = _what_would_audit(margins, "label", both_sides=bool(common))
    them = "it" if n == 1 else "them"
    return (f"left out {'; and '.join(parts)}; whether a row should carry {them} is not checked, and no suggested set "
            f"adds or drops {them} ({more})")


def noise_is_flagged_share(record: AuditRecord) -> bool:
    """Whether each class's estimated noise is just its flagged share: a regression audit's score bins have no
    separate estimate, and its tables leave that column out. Every other task's tables show cleanlab's estimate,
    also when it is 0 for every class (a column that came and went with the data would read as a missing result)."""
    return record.class_name == SCORE_BIN


WEAK_FIT_SHARE = 0.25  # an accuracy closing less of the gap from the majority baseline to 1 than this is weak


def _count(n: int, what: str) -> str:
    return what if n == 1 else f"{n} {what.replace('label', 'labels')}"


def constant_set_f1(rows_with: Mapping[str, int], rows: int) -> tuple[float, list[str]]:
    """The micro-F1 of the best label set predicted for every row (the k most common labels, k chosen best), and
    that set: what a multi-label model that learned nothing but the label frequencies scores (0.20-0.24 on NLU++,
    where an audit's 0.29 passed a bar of 0.25 and flagged 106 of 300 rows)."""
    if rows <= 0 or not rows_with:
        return 0.0, []
    ranked = sorted(rows_with, key=lambda k: (-rows_with[k], k))
    total = sum(rows_with.values())
    best, chosen, tp, predicted = 0.0, [], 0, 0
    for k, label in enumerate(ranked, start=1):
        tp += rows_with[label]
        predicted += rows
        f1 = 2 * tp / (predicted + total) if predicted + total else 0.0
        if f1 > best:
            best, chosen = f1, ranked[:k]
    return best, chosen


def fit_text(record: AuditRecord) -> str:
    """The out-of-fold fit as a reader sees it: "accuracy 0.812"; a multi-label one with the threshold it is taken at
    ("micro-F1 0.620 at threshold 0.30, the best for these predictions")."""
    text = f"{record.fit_name} {record.accuracy:.3f}"
    if record.fit_threshold is None:
        return text
    return f"{text} at threshold {record.fit_threshold:.2f}, the best for these predictions"


def weak_fit(record: AuditRecord) -> str | None:
    """A warning when the out-of-fold predictions fit the given labels barely better than always predicting the
    most common class (tasks measured by accuracy): most of the examples flagged then carry a correct label, and
    the ranking says more about the model than about the annotation. None when the fit is not weak."""
    # what may fit better: an audit that fine-tuned already is told to train longer, not to fine-tune
    better = ("a model trained longer, or on more data, fits better: more epochs in the spec's space, or --method "
              "ensemble" if record.method == "finetune" else
              "a model trained longer fits better: more epochs, or --method ensemble" if record.method == "ensemble"
              else "a fine-tuned model fits better: --method finetune or ensemble")  # fmt: skip
    if record.fit_name == "micro-F1":  # multi-label: against the best one label set for every row
        baseline, common = constant_set_f1({c.label: c.examples for c in record.classes}, record.examples)
        if record.accuracy >= baseline + WEAK_FIT_SHARE * (1.0 - baseline):
            return None
        always = (f"always predicting the {_count(len(common), 'most common label')} ({baseline:.3f})" if common
                  else "predicting no label (0)")  # fmt: skip
        return (f"the out-of-fold micro-F1 {record.accuracy:.3f} is close to {always}: the flags rest on a weak model, "
                f"and many flagged {record.unit}s will carry a correct label set ({better})")
    if record.fit_name not in ("accuracy", "word accuracy") or not record.classes or not record.examples:
        return None
    largest = max(record.classes, key=lambda c: c.examples)
    baseline = largest.examples / record.examples
    if baseline >= 1.0 or record.accuracy >= baseline + WEAK_FIT_SHARE * (1.0 - baseline):
        return None
    return (f"the out-of-fold accuracy {record.accuracy:.3f} is close to always predicting {largest.label!r} "
            f"({baseline:.3f}): the flags rest on a weak model, and many flagged {record.unit}s will carry a correct "
            f"label ({better})")


def audit_attrs(record: AuditRecord) -> dict[str, Any]:
    """The record as JSON-ready data, with its bounds applied."""
    raw = asdict(record)
    raw["suspects"] = [{**s, "text": shorten(s["text"])} for s in raw["suspects"][:MAX_SUSPECTS]]
    return raw


def write_audit(set_attr: Setter, record: AuditRecord) -> None:
    """Store the audit with the study (replacing an earlier one)."""
    set_attr(_S_AUDIT, audit_attrs(record))


def _items(raw: Any, kind: type, keys: tuple[str, ...]) -> list[Any]:
    if not isinstance(raw, list):
        return []
    return [kind(**{k: item[k] for k in keys}) for item in raw if isinstance(item, Mapping) and set(keys) <= set(item)]


def audit_from_attrs(attrs: Mapping[str, Any]) -> AuditRecord | None:
    """The stored audit, or None when the study has none (or an unreadable one)."""
    raw = attrs.get(_S_AUDIT)
    if not isinstance(raw, Mapping):
        return None
    try:
        return AuditRecord(
            method=str(raw["method"]),
            folds=int(raw["folds"]),
            created=str(raw["created"]),
            data_fingerprint=str(raw["data_fingerprint"]),
            examples=int(raw["examples"]),
            flagged=int(raw["flagged"]),
            accuracy=float(raw["accuracy"]),
            fit_name=str(raw.get("fit_name") or "accuracy"),
            fit_threshold=float(raw["fit_threshold"]) if isinstance(raw.get("fit_threshold"), int | float) else None,
            class_name=str(raw.get("class_name") or "class"),
            unit=str(raw.get("unit") or "example"),
            encoder=str(raw.get("encoder") or ""),
            hyperparameters=dict(raw.get("hyperparameters") or {}),
            seconds=float(raw.get("seconds") or 0.0),
            suspects=_items(raw.get("suspects"), Suspect, ("row", "text", "given", "suggested", "quality")),
            classes=_items(raw.get("classes"), ClassAudit, ("label", "examples", "flagged", "estimated_noise")),
            pairs=_items(raw.get("pairs"), PairAudit, ("given", "suggested", "count")),
            left_out={str(k): int(v) for k, v in (raw.get("left_out") or {}).items()},
        )
    except (KeyError, TypeError, ValueError):
        return None


def read_audit(study: _HasUserAttrs) -> AuditRecord | None:
    """The annotation audit stored with an Optuna study, or None."""
    return audit_from_attrs(study.user_attrs)
