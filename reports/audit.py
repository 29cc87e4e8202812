"""The "Annotation audit" section: what `sweep audit` stored with the study (suspects per class, the worst suspects
with their texts, given vs suggested label, and the label pairs that explain them)."""

from __future__ import annotations

from record import AuditRecord
from record.audit import SCORE_BIN, fit_text, left_out_line, noise_is_flagged_share, weak_fit
from reports.blocks import Block, NoteBlock, Score, TableBlock

MAX_SHOWN = 30  # suspects listed in the report (the record keeps up to 100; the CSV has all)
# task multi-label: a flag doubts one or more labels of a row's set
UNLIKELY_SET = "given label set is unlikely (a given label that looks wrong, or a missing one)"
PER_LABEL = "Suspects per label (flagged: rows whose annotation of the label is in doubt), most first"
CHANGES = ("The label changes the suggested sets make (dropped → added; (none): a label dropped or added with nothing "
           "in its place), most first")


def audit_blocks(
    record: AuditRecord | None, data_fingerprint: str | None = None, task: str | None = None
) -> list[Block]:
    """The section's blocks; empty when the study has no audit (the report then leaves the section out). `task`
    words them (multi-label: a row's label set, judged label by label)."""
    if record is None:
        return []
    scores = record.class_name == SCORE_BIN  # task: regression: scores, a ridge regression, cleanlab's score rule
    words = record.unit == "word"  # token classification: each word's tag is audited
    multi = task == "multi-label" or record.class_name == "label"  # a row's label set, judged label by label
    probe = f"frozen-encoder embeddings and a {'ridge' if scores else 'logistic'} regression per fold"
    how = {"embeddings": probe, "finetune": "the encoder fine-tuned per fold",
           "ensemble": f"the mean of {probe} and the encoder fine-tuned per fold"}.get(record.method, record.method)
    unlikely = UNLIKELY_SET if multi else f"given {'tag' if words else 'label'} is unlikely"
    rule = (f"cleanlab's regression label quality flags the {record.unit}s whose given score is far from the "
            "predicted one" if scores else
            f"confident learning (cleanlab) flags the {record.unit}s whose {unlikely}")  # fmt: skip
    rows = ("Rows are 0-based sentences of the training file; the suspect word is marked «so»." if words
            else "Rows are 0-based data rows of the training file.")  # fmt: skip
    blocks: list[Block] = [NoteBlock(
        f"`sweep audit --method {record.method}` ({record.created}): out-of-sample predictions for each of the "
        f"{record.examples} training {record.unit}s by {record.folds}-fold cross-validation ({how}; out-of-fold "
        f"{fit_text(record)}), then {rule}: {record.flagged} flagged "
        f"({record.flagged / max(1, record.examples):.1%}). A flagged {record.unit} is a candidate for a second "
        f"look, not a proven error. {rows}")]
    weak = weak_fit(record)
    if weak:
        blocks.append(NoteBlock(f"Weak fit: {weak}.", missing=True))
    if (left := left_out_line(record)) is not None:
        blocks.append(NoteBlock(f"The audit {left}.", missing=True))
    if data_fingerprint is not None and record.data_fingerprint != data_fingerprint:
        blocks.append(NoteBlock("The audit was made on other data than the study's (data fingerprints differ).",
                                missing=True))
    classes = sorted(record.classes, key=lambda c: (-c.flagged, c.label))
    noise = not noise_is_flagged_share(record)
    blocks.append(TableBlock(
        columns=[record.class_name, f"{record.unit}s", "flagged", "flagged share",
                 *(["estimated label noise (cleanlab)"] if noise else [])],
        rows=[[c.label, c.examples, c.flagged, f"{c.flagged / c.examples:.1%}" if c.examples else "-",
               *([f"{c.estimated_noise:.1%}"] if noise else [])] for c in classes],
        caption=PER_LABEL if multi else f"Suspects per {record.class_name}, most first"))  # fmt: skip
    if record.pairs:
        blocks.append(TableBlock(
            columns=["dropped → added" if multi else "given → suggested", "flagged"],
            rows=[[f"{p.given} → {p.suggested}", p.count] for p in record.pairs],
            caption=CHANGES if multi else "The confusion that explains them: "
                    f"{'label' if record.class_name == 'class' else record.class_name} pairs of the flagged examples, "
                    "most first"))  # fmt: skip
    if record.suspects:
        shown = record.suspects[:MAX_SHOWN]
        blocks.append(TableBlock(
            columns=["rank", "row", "text", "given", "suggested", "label quality"],
            rows=[[i, s.row, s.text, s.given, s.suggested, Score(s.quality)] for i, s in enumerate(shown, 1)],
            caption=f"The {len(shown)} likeliest label errors (lowest label quality first)"))  # fmt: skip
    else:
        blocks.append(NoteBlock("No training example was flagged."))
    return blocks
