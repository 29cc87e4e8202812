"""Read a labelled table (local file or Hugging Face hub dataset) into raw text and label columns."""

from __future__ import annotations

import csv
import difflib
import functools
import io
import itertools
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from datamodules.cleaning import is_missing, normalize_label
from datamodules.errors import DataError
from datamodules.header import SAMPLE_ROWS, first_row_is_data, given_columns_problem, headerless_message
from datamodules.hub import HUB_PREFIX, read_hub

DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
DELIMITERS = {".csv": ",", ".tsv": "\t"}  # the formats that may lack a header row (then give data.columns)
DEFAULT_TEXT_SEPARATOR = " "  # joins several text columns (as Hugging Face's run_classification.py does)
ONLY_DELIMITED = "applies only to .csv and .tsv files without a header row"
FORMATS_HINT = "give a .csv, .tsv, .jsonl or .parquet file, or hub:<dataset>"
MAX_JSON_PROBLEMS = 5


@dataclass(frozen=True)
class RawTable:
    """The text and label columns of one table, values as read (may be None or non-str).

    With a pair column, each text is a `(text, text_pair)` tuple of the two values as read.
    """

    texts: list[object]
    labels: list[object]
    source: str
    columns: list[str]
    # Unread columns holding free text of the text column's kind (SICK's sentence_B beside sentence_A): a forgotten
    # data.text_pair_column would train on half of each example, so the report names them.
    other_texts: tuple[str, ...] = ()


def load_table(
    source: str,
    *,
    text_column: str | Sequence[str],
    label_column: str,
    field: str,
    split: str = "train",
    columns: Sequence[str] | None = None,
    text_separator: str = DEFAULT_TEXT_SEPARATOR,
    text_pair_column: str | None = None,
    raw_labels: bool = False,
) -> RawTable:
    """Load `source` (a .csv/.tsv/.jsonl/.json/.parquet path, or `hub:NAME[:CONFIG[:SPLIT]]`).

    `text_column` may name several columns: the text is their values joined by `text_separator` (missing or
    blank parts left out). With `text_pair_column` each text is the pair `(text, value of that column)`.
    `columns` names the columns of a .csv/.tsv file without a header row.
    Labels come back as stripped strings (None where missing), or with `raw_labels` as read (a JSON list stays a
    list: task multi-label); texts as read, None where missing.
    Raises DataError listing every problem found with this table, under `field` (e.g. "data.train")
    or "data.text_column" / "data.label_column" / "data.columns".
    """
    text_columns = [text_column] if isinstance(text_column, str) else list(text_column)
    delimited = False
    if source.startswith(HUB_PREFIX):
        if columns is not None:
            raise DataError([("data.columns", f"{ONLY_DELIMITED}, not {source}")])
        names, values = read_hub(source, field=field, split=split, label_column=label_column)
        name = source
    else:
        frame = _read_file(Path(source).expanduser(), field=field, columns=columns)
        names, name = [str(c) for c in frame.columns], Path(source).name
        frame.columns = pd.Index(names)
        delimited = Path(source).suffix.lower() in DELIMITERS

        def values(column: str) -> list[object]:
            return [None if is_missing(v) else v for v in frame[column].tolist()]

    read = functools.cache(values)  # each column's values once, however many checks read them
    problems = column_problems(
        names, text_column=text_columns, label_column=label_column, name=name, text_pair_column=text_pair_column
    )
    if problems and names and not delimited and not source.startswith(HUB_PREFIX) and len(read(names[0])) == 1:
        wrapped = _nested_rows({c: read(c)[0] for c in names})  # a one-line {"data": [...]}: one row, no columns
        problems = [(field, wrapped_message(name, wrapped))] if wrapped is not None else problems
    if problems and delimited and columns is None:
        below = [read(c) for c in names]
        if first_row_is_data(names, below):
            message = headerless_message(name, names, below, text_columns=text_columns, label_column=label_column)
            problems = [(field, message)]
    if not problems and delimited and columns is None:
        problems = repeated_header_problems(names, [read(c) for c in names], name, field)
    if not problems and not delimited:  # a list or an object comes only from JSON (or Parquet, a hub dataset)
        checked = [("data.text_column", c) for c in text_columns]
        checked += [("data.text_pair_column", text_pair_column)] if text_pair_column is not None else []
        checked += [] if raw_labels else [("data.label_column", label_column)]
        problems = [p for where, column in checked if (p := nested_problem(read(column), column, name, where))]
    if not problems:
        texts = join_texts([read(c) for c in text_columns], text_separator)
        if text_pair_column is not None:
            texts = list(zip(texts, read(text_pair_column), strict=True))
        if not texts:
            problems.append((field, f"{name} has a header ({', '.join(names)}) but no rows"))
    if problems:
        raise DataError(problems)
    labels: list[object] = read(label_column) if raw_labels else [normalize_label(v) for v in read(label_column)]
    unread = [c for c in names if c not in (*text_columns, label_column, text_pair_column)]
    like = [c for c in unread if len(text_columns) == 1 and text_like(read(c), read(text_columns[0]))]
    return RawTable(texts=texts, labels=labels, source=source, columns=names, other_texts=tuple(like))


def text_like(values: Sequence[object], texts: Sequence[object]) -> bool:
    """Whether a column's `values` read as free text of the same kind as `texts`: nearly every value a string of
    several words, mostly distinct, on average between a third and three times as long. Ids, labels, scores, dates
    and short codes are not."""

    def words(column: Sequence[object]) -> list[int]:
        return [len(v.split()) for v in column if isinstance(v, str) and v.strip()]

    counts, reference = words(values), words(texts)
    if not values or not reference or len(counts) < 0.9 * len(values):
        return False
    distinct = len({v for v in values if isinstance(v, str)})
    mean, mean_reference = sum(counts) / len(counts), sum(reference) / len(reference)
    return mean >= 3 and distinct >= 0.5 * len(counts) and mean_reference / 3 <= mean <= 3 * mean_reference


def repeated_header_problems(
    names: Sequence[str], columns: Sequence[Sequence[object]], name: str, field: str
) -> list[tuple[str, str]]:
    """Rows that repeat the header line (files joined with their headers): read as data, they would be a class named
    after the label column. Rows are numbered from 1, the header not counted."""
    rows = [i for i, row in enumerate(zip(*columns, strict=True), start=1)
            if all(isinstance(v, str) and v.strip() == n.strip() for v, n in zip(row, names, strict=True))]  # fmt: skip
    if not rows:
        return []
    shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
    lines = "that line" if len(rows) == 1 else f"those {len(rows)} lines"
    return [(field, f"{name} row{'s' if len(rows) > 1 else ''} {shown} repeat{'s' if len(rows) == 1 else ''} the "
                    f"header ({', '.join(names)}): files joined with their header lines? delete {lines}")]  # fmt: skip


def nested_problem(values: Sequence[object], column: str, name: str, field: str) -> tuple[str, str] | None:
    """A JSON list or object where one text or one label belongs (JSON files), or None. Left as it was, it would
    be trained as its Python text (`"['billing']"`)."""
    bad = [(i, v) for i, v in enumerate(values, start=1) if isinstance(v, list | dict)]
    if not bad:
        return None
    row, value = bad[0]
    kind = "list" if isinstance(value, list) else "object"
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    hint = ("several labels per text are task: multi-label" if field == "data.label_column" and kind == "list"
            else "to join several keys into one text, put them at the top level of each object and name them: "
            "data.text_column: [subject, body]" if kind == "object" and field == "data.text_column"
            else f"{column!r} must hold one {'label' if field == 'data.label_column' else 'text'} per row")  # fmt: skip
    more = "" if len(bad) == 1 else f" (and {len(bad) - 1} more row{'s' if len(bad) > 2 else ''})"
    return (field, f"{name} row {row}: {column!r} holds a JSON {kind} ({shown}), not one value{more}: {hint}")


def join_texts(parts: Sequence[Sequence[object]], separator: str) -> list[object]:
    """Row by row, the text of several columns joined by `separator`; one column's values are returned as read.

    Missing or blank parts are left out (no doubled separators); a row whose parts are all missing stays None,
    so cleaning counts it as a missing text.
    """
    if len(parts) == 1:
        return list(parts[0])
    joined: list[object] = []
    for row in zip(*parts, strict=True):
        present = [str(p) for p in row if p is not None]
        kept = [p for p in present if p.strip()]
        joined.append(separator.join(kept) if kept else ("" if present else None))
    return joined


def column_problems(
    columns: Sequence[str],
    *,
    text_column: str | Sequence[str],
    label_column: str,
    name: str,
    text_pair_column: str | None = None,
) -> list[tuple[str, str]]:
    """Problems with the chosen text / pair / label columns, each naming the columns that do exist."""
    text_columns = [text_column] if isinstance(text_column, str) else list(text_column)
    chosen = [*(("data.text_column", c) for c in text_columns), ("data.label_column", label_column)]
    if text_pair_column is not None:
        chosen.insert(len(text_columns), ("data.text_pair_column", text_pair_column))
    problems = []
    # A name with spaces around it is shown quoted (`' Text '`): in a plain list the spaces would not show.
    shown = ", ".join(repr(c) if c != c.strip() else c for c in columns) or "none"
    for field, column in chosen:
        if column not in columns:
            message = f"no such column {column!r} in {name} (columns: {shown})"
            # not a column another field already uses (a missing 'sentence2' was told to be 'sentence1', the text)
            free = [c for c in columns if c not in {other for f, other in chosen if f != field}]
            close = [c for c in free if c.strip().lower() == column.strip().lower()]
            close = close or difflib.get_close_matches(column, free, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if close and close[0] != close[0].strip():
                hint += f" (in YAML, quoted: {field.split('.')[-1]}: \"{close[0]}\")"
            problems.append((field, message + hint))
    if label_column in text_columns:
        problems.append(("data.label_column", f"is the same column as data.text_column ({label_column!r})"))
    if text_pair_column is not None and text_pair_column in text_columns:
        problems.append(
            (
                "data.text_pair_column",
                f"is the same column as data.text_column ({text_pair_column!r}): name the second text",
            )
        )
    if text_pair_column is not None and text_pair_column == label_column:
        problems.append(("data.text_pair_column", f"is the same column as data.label_column ({label_column!r})"))
    return problems


# -- hub --------------------------------------------------------------------------------------------------


# -- local files ------------------------------------------------------------------------------------------


def _read_file(path: Path, *, field: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a local table into a DataFrame, raising DataError for anything unreadable."""
    if not path.exists():
        raise DataError([(field, f"file not found: {path.resolve()} ({FORMATS_HINT})")])
    if path.is_dir():
        raise DataError([(field, f"{path.resolve()} is a directory, not a file ({FORMATS_HINT})")])
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        kind = f"file type {suffix!r}" if suffix else "a file without an extension"
        raise DataError([(field, f"cannot read {kind} ({path.name}): {FORMATS_HINT}{delimited_hint(path)}")])
    if columns is not None and suffix not in DELIMITERS:
        raise DataError([("data.columns", f"{ONLY_DELIMITED}, not {path.name}")])
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError([(field, f"cannot read {path.resolve()}: {err.strerror or err}")]) from err
    if not raw.strip():
        needs = ("a header line and at least one row" if suffix in DELIMITERS and columns is None
                 else "at least one row (a JSON object per line)" if suffix == ".jsonl" else "at least one row")
        raise DataError([(field, f"{path.name} is empty: it needs {needs}")])
    if columns is not None:
        return _read_delimited(raw, path.name, field, sep=DELIMITERS[suffix], columns=list(columns))
    return reader(raw, path.name, field)


def decode_utf8(raw: bytes, name: str, field: str) -> str:
    """Decode UTF-8 (a leading BOM is dropped); say where the first bad byte is if it is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        guess = " (it looks like UTF-16)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(
            [
                (
                    field,
                    f"{name} is not valid UTF-8{guess}: byte 0x{raw[err.start]:02x} at offset "
                    f"{err.start} (line {line}); save it as UTF-8",
                )
            ]
        ) from err


def delimiter_problem(
    header: str, sep: str, name: str, *, has_header: bool = True, lines: Sequence[str] = ()
) -> str | None:
    """A hint when the first line is split by another delimiter than the file's extension promises; the link is
    the usual fix (a read-only file keeps its name: a symbolic link named .tsv or .csv is read by the link's name).
    `lines` (the file's first lines) tell a tab-separated file whose texts hold commas: every line has as many tabs,
    and not as many commas."""
    shown = f"{'header' if has_header else 'first line'} {header!r}"
    if sep == "," and _split_evenly_by_tabs(lines):
        return f"{name} looks tab-separated (each of its first lines has the same number of tabs; {shown[:120]}): " \
               "rename it to .tsv (or link it under a .tsv name)"
    if sep in header:
        return None
    if sep == "," and "\t" in header:
        return f"{name} looks tab-separated ({shown}): rename it to .tsv (or link it under a .tsv name)"
    if sep == "," and ";" in header:
        return f"{name} looks semicolon-separated ({shown}): save it with commas, or as .tsv"
    if sep == "\t" and "," in header:
        return f"{name} looks comma-separated ({shown}): rename it to .csv (or link it under a .csv name)"
    if sep == "\t" and ";" in header:
        return f"{name} looks semicolon-separated ({shown}): save it with tabs (or commas as .csv)"
    return None


def _split_evenly_by_tabs(lines: Sequence[str]) -> bool:
    """Whether lines (at least 3) each hold the same number of tabs, at least one, while their commas differ (texts
    with commas in a tab-separated file, such as the SMS Spam Collection)."""
    shown = [line for line in lines if line.strip()][:20]
    if len(shown) < 3:
        return False
    tabs, commas = {line.count("\t") for line in shown}, {line.count(",") for line in shown}
    return len(tabs) == 1 and min(tabs) >= 1 and len(commas) > 1


def delimited_hint(path: Path) -> str:
    """For a file of another type whose first lines are tab- or comma-separated alike (SICK.txt is a TSV): the name to
    link it under; else nothing."""
    try:
        with path.open("rb") as fh:
            head = fh.read(64 * 1024).decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.rstrip("\r") for line in head.split("\n")[:20] if line.strip()]
    if len(lines) < 3:
        return ""
    for sep, suffix in (("\t", ".tsv"), (",", ".csv")):
        counts = {line.count(sep) for line in lines}
        if len(counts) == 1 and min(counts) >= 1:
            return (f"; it looks {'tab' if sep == chr(9) else 'comma'}-separated: link it under a {suffix} name "
                    f"(ln -s {path.name} {path.stem}{suffix}) or copy it to one")
    return ""


def _read_delimited(raw: bytes, name: str, field: str, *, sep: str, columns: list[str] | None = None) -> pd.DataFrame:
    """CSV (quoted) or TSV (no quoting, as GLUE writes it); empty cells become missing, "NA" stays text.

    With `columns` the file has no header row: every line is data, read under those names.
    """
    text = decode_utf8(raw, name, field)
    problem = delimiter_problem(text.split("\n", 1)[0].rstrip("\r"), sep, name, has_header=columns is None,
                                lines=text.split("\n", 21)[:20])  # fmt: skip
    if problem:
        raise DataError([(field, problem)])
    quoting: Literal[0, 3] = csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE
    if columns is not None:
        first, widest = _first_and_widest(text, sep, quoting)
        problem = given_columns_problem(first, name, columns, widest) if first else None  # unreadable: pandas says
        if problem:
            raise DataError([("data.columns", problem)])
    if columns is None:
        first = next(csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting), [])
        twice = [c for c in dict.fromkeys(first) if c.strip() and first.count(c) > 1]  # blank: Excel's spare cells
        if twice:
            raise DataError([(field, f"{name}'s header names {twice[0]!r} twice (columns: {', '.join(first)}): give "
                                     "each column its own name")])  # fmt: skip
    header = "data.columns" if columns is not None else "the header row"
    fields = f"as many fields as {header} names (name any extra columns there)"
    fix = (f"put texts that contain commas in double quotes; every row needs {fields}" if sep == ","
           else f"texts must not contain tabs; every row needs {fields}")  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                sep=sep,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                index_col=False,
                quoting=quoting,
                header=None if columns is not None else "infer",
                names=columns,
            )
        except (pd.errors.ParserError, ValueError) as err:
            detail = str(err).replace("Error tokenizing data. C error: ", "").strip()
            headerless = _headerless_ragged(text, sep, quoting, name) if columns is None else None
            raise DataError([(field, headerless or f"cannot parse {name}: {detail} ({fix})")]) from err
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        than = "data.columns names" if columns is not None else "its header has columns"
        raise DataError([(field, f"cannot parse {name}: its rows have more fields than {than} ({fix})")])
    return frame


def _headerless_ragged(text: str, sep: str, quoting: Literal[0, 3], name: str) -> str | None:
    """Why a file pandas cannot parse is a table without a header row whose rows differ in length (STS-B's files: 7
    or 9 fields): its first row reads as data. None when it does not look so."""
    first, widest = _first_and_widest(text, sep, quoting)  # every row: STS-B's longer rows come late
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        rows = list(itertools.islice(csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting), SAMPLE_ROWS + 1))
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(limit)
    if len(rows) < 2 or not first or len(first) >= widest:  # a first row as wide as any: pandas' count says more
        return None
    below = [[r[i] if i < len(r) else None for r in rows[1:]] for i in range(len(first))]
    if not first_row_is_data(first, below):
        return None
    shown = ", ".join(repr(v if len(v) <= 30 else v[:27] + "...") for v in first)
    return (f"{name} looks like it has no header row (its first row reads as data: {shown}), and its rows have up to "
            f"{widest} fields: give its {widest} columns with data.columns: [...], one name per field, the text and "
            "label columns under the names data.text_column and data.label_column give")


def _first_and_widest(text: str, sep: str, quoting: Literal[0, 3]) -> tuple[list[str], int]:
    """The first row's fields and the most fields any row has (what `data.columns` must name). A row the csv module
    cannot read ends the count with what it had (pandas, reading the file next, says where); a long text is no such
    row (the module's field limit is lifted while counting)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    first: list[str] = []
    widest = 0
    try:
        for i, row in enumerate(csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting)):
            first = row if i == 0 else first
            widest = max(widest, len(row))
    except csv.Error:
        pass
    finally:
        csv.field_size_limit(limit)
    return first, widest


def _read_json(raw: bytes, name: str, field: str) -> pd.DataFrame:
    """JSON lines (one object per line); a .json file may instead hold one list of objects."""
    text = decode_utf8(raw, name, field)
    problems: list[str] = []
    rows: list[dict[str, object]] = []

    def take(record: object, where: str) -> None:
        if isinstance(record, dict):
            rows.append(record)
        else:
            problems.append(f"{where} is a JSON {type(record).__name__}, not an object")

    listed_rows = text.lstrip().startswith("[")
    if listed_rows:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:  # the parser stops where it noticed: a stray comma sits just before
            problems.append(f"line {err.lineno} (or just before it) is not valid JSON ({err.msg})")
        else:
            for i, record in enumerate(records, start=1):
                take(record, f"item {i}")
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    take(json.loads(line), f"line {lineno}")
                except json.JSONDecodeError as err:
                    problems.append(f"line {lineno} is not valid JSON ({err.msg})")
    wrapped = _nested_rows(_whole_document(text)) if problems and not listed_rows else None
    if wrapped is not None:  # one multi-line JSON document: its lines fail one by one
        raise DataError([(field, wrapped_message(name, wrapped))])
    if problems:
        more = len(problems) - MAX_JSON_PROBLEMS
        listed = "; ".join(problems[:MAX_JSON_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        shape = ("a JSON list of objects (like [{\"text\": \"...\", \"label\": \"...\"}, ...])" if listed_rows
                 else 'JSON lines (one object per line, like {"text": "...", "label": "..."})')  # fmt: skip
        raise DataError([(field, f"cannot read {name} as {shape}: {listed}")])
    columns = list(dict.fromkeys(str(key) for row in rows for key in row))
    return pd.DataFrame({c: pd.Series([row.get(c) for row in rows], dtype=object) for c in columns})


def _whole_document(text: str) -> object:
    """The text read as one JSON document, or None where it is not one."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _nested_rows(document: object) -> str | None:
    """The key under which one JSON object holds the rows as a list of objects (`{"data": [...]}`, as some exports
    write), else None."""
    if not isinstance(document, dict):
        return None
    return next((str(key) for key, value in document.items()
                 if isinstance(value, list) and value and all(isinstance(v, dict) for v in value)), None)  # fmt: skip


def wrapped_message(name: str, key: str) -> str:
    return (f"{name} holds one JSON object with its rows under {key!r}: give the rows themselves, as a JSON list of "
            "objects or one object per line (JSON lines)")


def _read_parquet(raw: bytes, name: str, field: str) -> pd.DataFrame:
    """A Parquet file via pandas / pyarrow."""
    try:
        return pd.read_parquet(io.BytesIO(raw))
    except Exception as err:  # pyarrow raises several types for a corrupt or foreign file
        raise DataError([(field, f"cannot read {name} as Parquet: {type(err).__name__}: {err}")]) from err


def _read_csv(raw: bytes, name: str, field: str) -> pd.DataFrame:
    return _read_delimited(raw, name, field, sep=",")


def _read_tsv(raw: bytes, name: str, field: str) -> pd.DataFrame:
    return _read_delimited(raw, name, field, sep="\t")


_READERS: dict[str, Callable[[bytes, str, str], pd.DataFrame]] = {
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".jsonl": _read_json,
    ".json": _read_json,
    ".parquet": _read_parquet,
}
