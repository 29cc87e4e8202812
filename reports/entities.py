"""The report's parts for token classification (NER): per-entity-type scores, weakest first, and what reading the
tagged data did (tag fixes, sentences split into windows). Plain data in, report blocks out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports.blocks import Block, NoteBlock, TableBlock, score
from reports.classes import classes_by_f1, shown_label

TOKEN_TASK = "token-classification"
ENTITY_NOTE = (
    "Scores are entity level (seqeval, conlleval mode): an entity is found only when its type and its whole span "
    "match; micro averages count every entity, macro F1 averages the entity types. Each word is scored by its first "
    "sub-token's tag."
)
DATA_NOTE = (
    "Each row is a sentence (task: token-classification): the class distribution counts entities per type, a "
    "duplicate is a sentence with the same tokens and tags, tags are read as IOB2, and sentences longer than "
    "max_length are split into windows at word boundaries (a single word longer than a window keeps its first "
    "sub-tokens: the warnings count those)."
)
SPLITS = ("train", "validation")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def entity_blocks(number: int, per_type: Mapping[str, Any]) -> list[Block]:
    """A trial's precision / recall / F1 / support per entity type, lowest F1 first, and what the scores mean."""
    scores = classes_by_f1(per_type)
    if not scores:
        return [NoteBlock(f"Trial {number} recorded no per-entity-type scores.", missing=True)]
    rows = [[shown_label(s), score(s.precision), score(s.recall), score(s.f1), s.support] for s in scores]
    table = TableBlock(columns=["entity type", "precision", "recall", "F1", "support"], rows=rows,
                       caption=f"Per-entity-type scores of trial {number} at its best epoch, lowest F1 first")
    return [table, NoteBlock(ENTITY_NOTE)]


def tagged_data_blocks(report: Mapping[str, Any]) -> list[Block]:
    """What reading tagged sentences did, per split: the IOB scheme, tags fixed, sentences split into windows."""
    cleaning, windows = _dict(report.get("cleaning")), _dict(report.get("windows"))
    splits = [s for s in SPLITS if _dict(cleaning.get(s)) or _dict(windows.get(s))]
    if not splits:
        return [NoteBlock(DATA_NOTE)]
    items = [("scheme", cleaning, "scheme"), ("tokens", cleaning, "tokens"),
             ("I- tags rewritten as B- (IOB1 to IOB2)", cleaning, "tags_rewritten"),
             ("of which invalid transitions in an IOB2 file", cleaning, "invalid_transitions"),
             ("sentences longer than max_length", windows, "sentences_split"), ("rows (windows)", windows, "rows"),
             ("words cut to their first sub-tokens", windows, "words_cut"),
             ("words encoded as the unknown token", windows, "unknown_words")]  # fmt: skip
    rows = [[label, *(_dict(source.get(s)).get(key) for s in splits)] for label, source, key in items]
    return [NoteBlock(DATA_NOTE), TableBlock(columns=["", *splits], rows=rows, caption="Tagged sentences")]
