"""Tagged sentences for token classification: CoNLL/IOB files and JSON lines read into tokens and tags, tags made
IOB2, and the cleaning pass (empty sentences, duplicates) with its counts. Pure functions apart from `read_tagged`.

A CoNLL-style file holds one token per line: the token is the first whitespace-separated field, its tag the last
(columns in between, such as part-of-speech tags, are ignored). Blank or whitespace-only lines end a sentence and
`-DOCSTART-` lines are skipped. A JSON lines file holds one object per sentence with a list of tokens and a list of
tags of the same length.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodules.cleaning import normalize_text
from datamodules.errors import DataError
from datamodules.hub import HUB_PREFIX
from datamodules.loading import decode_utf8

CONLL_SUFFIXES = (".conll", ".bio", ".iob")
JSON_SUFFIXES = (".jsonl", ".json")
TAGGED_SUFFIXES = CONLL_SUFFIXES + JSON_SUFFIXES
FORMATS = ("conll", "jsonl")
OUTSIDE = "O"
DOCSTART = "-DOCSTART-"
MAX_PROBLEMS = 5
TAGGED_HINT = "give a CoNLL file (.conll, .bio, .iob, or any name with data.format: conll) or JSON lines (.jsonl)"


@dataclass(frozen=True)
class Sentence:
    """One sentence as read: its tokens and tags, and where it was (line of each tag in the file)."""

    tokens: list[str]
    tags: list[str]
    lines: list[int]  # 1-based line of each token's tag (a JSON lines file: the object's line, for every token)


@dataclass(frozen=True)
class TaggedFile:
    """The sentences of one file, in file order (empty sentences included: cleaning drops and counts them)."""

    sentences: list[Sentence]
    source: str
    name: str


def file_format(path: str, fmt: str | None) -> str | None:
    """`conll` or `jsonl` for a path (data.format wins over the suffix); None when neither says."""
    if fmt is not None:
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in CONLL_SUFFIXES:
        return "conll"
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    return None


def _listed(problems: list[str]) -> str:
    more = len(problems) - MAX_PROBLEMS
    return "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")


def parse_conll(text: str, name: str, field: str) -> list[Sentence]:
    """Sentences of a CoNLL-style text; DataError (one line, the first few bad lines) for lines without a tag."""
    single: list[str] = []  # the lines of one field, to tell a comma-separated file
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    problems: list[str] = []

    def close() -> None:
        if tokens or lines:
            sentences.append(Sentence(list(tokens), list(tags), list(lines)))
        for part in (tokens, tags, lines):
            part.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            close()
            continue
        if fields[0] == DOCSTART:
            close()
            continue
        if len(fields) == 1:
            problems.append(f"line {number} has one field ({fields[0][:40]!r}): it needs a token and its tag")
            single.append(fields[0])
            continue
        tokens.append(fields[0])
        tags.append(fields[-1])
        lines.append(number)
    close()
    if problems:
        commas = sum(1 for value in single if value.count(",") == 1 or value.count(";") == 1)
        hint = (" (its lines look comma-separated: CoNLL separates a token and its tag with a space or a tab)"
                if single and commas >= 0.8 * len(single) else "")  # fmt: skip
        raise DataError([(field, f"cannot read {name} as CoNLL (token and tag per line){hint}: "
                                 f"{_listed(problems)}")])  # fmt: skip
    return sentences


def parse_jsonl(text: str, name: str, field: str, *, tokens_key: str, tags_key: str) -> list[Sentence]:
    """Sentences of JSON lines (or one JSON list) of objects with a token list and a tag list of the same length."""
    problems: list[str] = []
    sentences: list[Sentence] = []
    records: list[tuple[int, Any]] = []
    if text.lstrip().startswith("["):
        try:
            records = [(1, r) for r in json.loads(text)]
        except json.JSONDecodeError as err:
            problems.append(f"line {err.lineno} is not valid JSON ({err.msg})")
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    problems.append(f"line {number} is not valid JSON ({err.msg})")
    keys: Counter[str] = Counter()
    for number, record in records:
        if not isinstance(record, dict):
            problems.append(f"line {number} is a JSON {type(record).__name__}, not an object")
            continue
        keys.update(str(k) for k in record)
        tokens, tags = record.get(tokens_key), record.get(tags_key)
        missing = [k for k, v in ((tokens_key, tokens), (tags_key, tags)) if v is None]
        if missing:
            problems.append(f"line {number} has no {' and no '.join(map(repr, missing))}")
        elif not isinstance(tokens, list) or not isinstance(tags, list):
            problems.append(f"line {number}: {tokens_key!r} and {tags_key!r} must be lists (one entry per token)")
        elif len(tokens) != len(tags):
            problems.append(f"line {number}: {_count(len(tokens), 'token')} but {_count(len(tags), 'tag')} (each token "
                            "needs one tag)")
        else:
            sentences.append(Sentence([str(t) for t in tokens], [str(t).strip() for t in tags], [number] * len(tags)))
    if problems:
        found = ""  # after the listed lines, so a long list never hides it
        if any(" has no " in p for p in problems) and keys:
            found = f"; keys found: {', '.join(keys)} (set data.text_column / data.label_column)"
        raise DataError([(field, f"{name}: {_listed(problems)}{found}")])
    return sentences


def read_tagged(
    source: str, *, field: str, fmt: str | None = None, tokens_key: str = "tokens", tags_key: str = "tags"
) -> TaggedFile:
    """Read one file of tagged sentences (format from data.format, else the suffix); DataError on anything unusable."""
    if source.startswith(HUB_PREFIX):
        raise DataError([(field, f"task: token-classification reads local files, not {source}: {TAGGED_HINT}")])
    path = Path(source).expanduser()
    name = path.name
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError([(field, f"{path.resolve()} {what} ({TAGGED_HINT})")])
    kind = file_format(source, fmt)
    if kind is None:
        raise DataError([(field, f"cannot tell the format of {name}: {TAGGED_HINT}")])
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError([(field, f"cannot read {path.resolve()}: {err.strerror or err}")]) from err
    text = decode_utf8(raw, name, field)
    if kind == "conll":
        sentences = parse_conll(text, name, field)
    else:
        sentences = parse_jsonl(text, name, field, tokens_key=tokens_key, tags_key=tags_key)
    if not any(s.tokens for s in sentences):
        raise DataError([(field, f"{name} holds no tagged tokens ({TAGGED_HINT})")])
    return TaggedFile(sentences=sentences, source=source, name=name)


# -- tags ---------------------------------------------------------------------------------------------------


def split_tag(tag: str) -> tuple[str, str | None]:
    """('B' | 'I' | 'O', entity type or None); ValueError for a tag that is not IOB."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, dash, kind = tag.partition("-")
    if dash and prefix in ("B", "I") and kind:
        return prefix, kind
    raise ValueError(tag)


def tag_problems(file: TaggedFile, field: str) -> list[tuple[str, str]]:
    """One problem naming the first few tags that are not O, B-type or I-type (BIOES/BILOU tags are not read), each
    (tag, line) once, with the likely cause where one shows: numbers for tags (a dataset's class ids), tags in lower
    case, or the token and tag columns swapped."""
    bad: dict[str, None] = {}
    wrong: list[str] = []
    tokens_as_tags = tokens = 0
    for sentence in file.sentences:
        for token, tag, line in zip(sentence.tokens, sentence.tags, sentence.lines, strict=True):
            tokens += 1
            tokens_as_tags += _is_tag(token)
            if not _is_tag(tag):
                bad[f"{tag!r} at line {line}"] = None
                wrong.append(tag)
    if not bad:
        return []
    hint = ""
    if all(tag.strip().lstrip("-").isdigit() for tag in wrong):
        hint = (" (the tags are numbers, a dataset's class ids: write each as its tag name, e.g. through the "
                "dataset's features['ner_tags'].feature.names)")
    elif all(_is_tag(tag.upper()) or _is_tag(_upper_prefix(tag)) for tag in wrong):
        hint = " (tags are read as written: B-, I- and O in capitals)"
    elif tokens and tokens_as_tags >= 0.8 * tokens:
        hint = " (the tokens are tags: the token and tag columns look swapped; the token comes first)"
    return [(field, f"{file.name}: tags must be O, B-<type> or I-<type> (IOB1 or IOB2){hint}; found "
                    f"{_listed(list(bad))}")]  # fmt: skip


def _is_tag(value: str) -> bool:
    try:
        split_tag(value)
    except ValueError:
        return False
    return True


def _upper_prefix(tag: str) -> str:
    """`b-person` as `B-person`: the prefix in capitals, the type as written."""
    prefix, dash, kind = tag.partition("-")
    return f"{prefix.upper()}{dash}{kind}"


def to_iob2(tags: Sequence[str]) -> tuple[list[str], int]:
    """Tags in IOB2 (every entity starts with B-): an I-X that starts a chunk (after O, after another type, or first
    in the sentence) becomes B-X. Returns the tags and how many were rewritten."""
    out: list[str] = []
    rewritten = 0
    previous: str | None = None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I" and previous != kind:
            tag = f"B-{kind}"
            rewritten += 1
        out.append(tag)
        previous = kind
    return out, rewritten


# -- cleaning -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanSentences:
    """Cleaned sentences (order kept) with IOB2 tags, and the counts of what cleaning did."""

    tokens: list[list[str]]
    tags: list[list[str]]
    first_lines: list[int]  # the line each kept sentence starts at
    report: dict[str, Any] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)  # each kept sentence's 0-based index among the file's sentences


def clean_sentences(file: TaggedFile) -> CleanSentences:
    """Normalise tokens (NFKC, whitespace), make tags IOB2 and drop empty and duplicate sentences, counting each.

    The report says the file's scheme (`IOB2` when it has any B- tag, else `IOB1`), `tags_rewritten` (I- tags that
    started an entity, made B-), and `invalid_transitions`: those same rewrites in an IOB2 file, where an entity must
    start with B- (an I-X after O or after another type is an annotation slip there). Keys shared with text cleaning
    (`rows_in`, `empty_text`, `duplicates`, `rows_out`, `normalized`) count sentences.
    """
    iob2 = any(tag.startswith("B-") for s in file.sentences for tag in s.tags)
    report: dict[str, Any] = {
        "rows_in": len(file.sentences), "empty_text": 0, "duplicates": 0, "normalized": 0,
        "scheme": "IOB2" if iob2 else "IOB1", "tags_rewritten": 0, "invalid_transitions": 0, "tokens": 0,
    }  # fmt: skip
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    tokens_out: list[list[str]] = []
    tags_out: list[list[str]] = []
    first_lines: list[int] = []
    rows: list[int] = []
    for row, sentence in enumerate(file.sentences):
        if not sentence.tokens:
            report["empty_text"] += 1
            continue
        tokens = [normalize_text(t) for t in sentence.tokens]
        tags, rewritten = to_iob2(sentence.tags)
        report["tags_rewritten"] += rewritten
        key = (tuple(tokens), tuple(tags))
        if key in seen:
            report["duplicates"] += 1
            continue
        seen.add(key)
        report["normalized"] += tokens != sentence.tokens  # sentences kept whose tokens normalising changed
        tokens_out.append(tokens)
        tags_out.append(tags)
        first_lines.append(sentence.lines[0])
        rows.append(row)
        report["tokens"] += len(tokens)
    if iob2:
        report["invalid_transitions"] = report["tags_rewritten"]
    report["rows_out"] = len(tokens_out)
    return CleanSentences(tokens_out, tags_out, first_lines, report, rows)


def entity_types(tags: Sequence[Sequence[str]]) -> list[str]:
    """The sorted entity types of IOB2 tag sequences."""
    return sorted({tag[2:] for sentence in tags for tag in sentence if tag != OUTSIDE})


def tag_names(types: Sequence[str]) -> list[str]:
    """Label names of a token classifier over `types`: O first, then B- and I- of each type (sorted)."""
    return [OUTSIDE, *(f"{prefix}-{kind}" for kind in types for prefix in ("B", "I"))]


def entity_counts(tags: Sequence[Sequence[str]], types: Sequence[str]) -> dict[str, int]:
    """Entities per type (B- tags of IOB2 sequences), in `types` order."""
    counts = Counter(tag[2:] for sentence in tags for tag in sentence if tag.startswith("B-"))
    return {kind: counts[kind] for kind in types}


def unseen_type_problem(file: TaggedFile, types: Sequence[str], field: str) -> tuple[str, str] | None:
    """The first tag of `file` whose entity type training never has, with its line; None when all are known."""
    known = set(types)
    unseen: dict[str, tuple[str, int]] = {}
    for sentence in file.sentences:
        for tag, line in zip(sentence.tags, sentence.lines, strict=True):
            kind = split_tag(tag)[1]
            if kind is not None and kind not in known:
                unseen.setdefault(kind, (tag, line))
    if not unseen:
        return None
    kind, (tag, line) = next(iter(unseen.items()))
    also = f"; also unseen: {', '.join(list(unseen)[1:])}" if len(unseen) > 1 else ""
    return (
        field,
        f"tag {tag!r} at {file.name} line {line} is not in the training data: entity type {kind!r} never occurs "
        f"there (types in training: {', '.join(types)}){also}",
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
