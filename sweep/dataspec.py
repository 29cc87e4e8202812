"""The spec's `data` section: where the data is, which columns hold the text and the label, and its checks."""

from __future__ import annotations

import math
import os
import re
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from datamodules import DATA_SUFFIXES, DEFAULT_TEXT_SEPARATOR, DELIMITERS, HUB_PREFIX
from datamodules.loading import delimited_hint
from datamodules.tagged import CONLL_SUFFIXES, TAGGED_SUFFIXES

# Keys added after studies were stored, with the behaviour those studies had: left out of a dump at that value,
# so a spec without them has the same fingerprint and the same stored spec as before (its study resumes).
LATER_KEYS: dict[str, Any] = {
    "columns": None,
    "text_separator": DEFAULT_TEXT_SEPARATOR,
    "text_pair_column": None,
    "label_delimiter": None,
    "format": None,
    "label_range": None,
}
TOKEN_TASK = "token-classification"
TOKEN_DEFAULT_COLUMNS = ("tokens", "tags")  # data.text_column / data.label_column of a JSON lines file, when unset


VAL_FRACTION = 0.1  # data.val_fraction when unset
# The generic defaults of data.text_column / data.label_column, which a stored spec spells out for every task.
GENERIC_COLUMNS = ("text", "label")


def _names(value: Any, what: str) -> list[str]:
    """A non-empty list of distinct, non-blank column names, or ValueError saying which rule failed."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"must be {what}, got {value!r}")
    repeated = sorted({v for v in value if value.count(v) > 1})
    if repeated:
        raise ValueError(f"names {', '.join(map(repr, repeated))} more than once")
    return value


class DataSpec(BaseModel):
    """The data: files (or hub datasets), which columns hold the text and the label, and the split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: str
    validation: str | None = None
    # The columns of .csv/.tsv files without a header row, in order (the files are then read without one).
    columns: list[str] | None = None
    # One column, or several joined by text_separator into one text (e.g. [title, description]).
    text_column: str | list[str] = "text"
    text_separator: str = DEFAULT_TEXT_SEPARATOR
    # The second text of each example (task: text-pair); text_column then holds the first.
    text_pair_column: str | None = None
    label_column: str = "label"
    # task: multi-label: cuts a .csv/.tsv label cell into its labels ("billing|refund"); JSON lists need none.
    label_delimiter: str | None = Field(None, min_length=1)
    # task: regression: the scores the label may take, [low, high] inclusive (STS-B: [0, 5]); a row outside is
    # refused, naming the file and rows (a typo such as 7.5 or a score on another scale would train as it is).
    label_range: tuple[float, float] | None = None
    val_fraction: float = Field(VAL_FRACTION, gt=0, lt=1)
    # task: token-classification: read the files as CoNLL (token ... tag per line) or JSON lines, whatever their names
    format: Literal["conll", "jsonl"] | None = None
    cache_dir: str | None = None

    @field_validator("columns", mode="before")
    @classmethod
    def _check_columns(cls, value: Any, info: Any) -> Any:
        if value is None:
            return value
        names = _names(value, "a list of the file's column names, in order (for files without a header row)")
        files = [f for f in (info.data.get("train"), info.data.get("validation")) if isinstance(f, str)]
        other = [f for f in files if f.startswith(HUB_PREFIX) or not f.lower().endswith(tuple(DELIMITERS))]
        if other:
            raise ValueError(f"applies only to .csv and .tsv files without a header row, not {other[0]}")
        return names

    @field_validator("text_column", mode="before")
    @classmethod
    def _check_text_column(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):
            names = [value]
        else:
            names = _names(value, "a column name or a list of column names (joined by data.text_separator)")
        missing = [n for n in names if info.data.get("columns") and n not in info.data["columns"]]
        if missing:
            raise ValueError(f"{missing[0]!r} is not one of data.columns ({', '.join(info.data['columns'])})")
        return value

    @field_validator("label_column", "text_pair_column", mode="after")
    @classmethod
    def _in_columns(cls, value: str | None, info: Any) -> str | None:
        if value is not None and info.data.get("columns") and value not in info.data["columns"]:
            raise ValueError(f"{value!r} is not one of data.columns ({', '.join(info.data['columns'])})")
        return value

    @field_validator("label_range", mode="after")
    @classmethod
    def _check_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(math.isfinite(v) for v in value):
            raise ValueError(f"must be two finite numbers [low, high], got [{value[0]:g}, {value[1]:g}]: for a score "
                             "with no natural bound give the lowest and highest score the data can hold")
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"must be [low, high] with low < high, got [{value[0]:g}, {value[1]:g}]")
        return value

    @model_serializer(mode="wrap")
    def _leave_out_later_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        body: dict[str, Any] = handler(self)
        for key, before in LATER_KEYS.items():
            if key in body and body[key] == before:
                del body[key]
        return body


def resolve_data_path(source: str, base: Path) -> str:
    """A local data path made absolute against the spec's folder; `hub:` sources unchanged. A symbolic link keeps
    its own name (not resolved): its suffix says how the file is read (`train.tsv -> sts-train.csv` is a TSV)."""
    if source.startswith(HUB_PREFIX):
        return source
    p = Path(source).expanduser()
    return str(p if p.is_absolute() else Path(os.path.abspath(base / p)))


# `sweep serve` keeps each upload in a folder of its own with a generated name, under the name its sender gave it
_UPLOADED = re.compile(r"[\\/]uploads[\\/][0-9a-f]{32}[\\/]([^\\/]+)$")


def upload_target(uploads: Path, name: str) -> Path:
    """Where `sweep serve` writes an uploaded file named `name` (already made safe): a new folder of its own."""
    return uploads / uuid.uuid4().hex / name


def shown_source(source: str) -> str:
    """A data source as the data report, the model card and `sweep.json` show it: a file uploaded to `sweep serve`
    by the name its sender gave it (`train.csv`), not by where the server keeps it; anything else as it is."""
    uploaded = _UPLOADED.search(source)
    return uploaded.group(1) if uploaded else source


def data_suffixes(task: Any, fmt: Any) -> tuple[str, ...] | None:
    """The file suffixes a task reads; None where any name goes (token classification with data.format)."""
    if task != TOKEN_TASK:
        return DATA_SUFFIXES
    return None if fmt is not None else TAGGED_SUFFIXES


def tagged_columns(data: DataSpec) -> tuple[str, str]:
    """The JSON keys of the tokens and the tags (task: token-classification): data.text_column / data.label_column
    when the spec sets them, else `tokens` / `tags`."""
    given = data.model_fields_set
    text = data.text_column if "text_column" in given and isinstance(data.text_column, str) else None
    return text or TOKEN_DEFAULT_COLUMNS[0], data.label_column if "label_column" in given else TOKEN_DEFAULT_COLUMNS[1]


def unused_key_problems(task: Any, section: dict[str, Any]) -> list[tuple[str, str]]:
    """Keys of a spec's raw `data` section that would do nothing beside the rest of it: `val_fraction` with a
    validation file (the split is given), `text_column` / `label_column` of CoNLL files (a token and its tag per
    line: no columns, no keys). A study's stored spec spells out every default (0.1, text, label): those values pass,
    and stored specs are not checked at all (`parse_spec(stored=True)`)."""
    problems = []
    fraction = section.get("val_fraction")
    if section.get("validation") is not None and fraction is not None and fraction != VAL_FRACTION:
        problems.append(("data.val_fraction", f"{fraction} would split data.train, and data.validation names the "
                                              "validation file: remove it (or remove data.validation to split "
                                              "data.train)"))  # fmt: skip
    if task == TOKEN_TASK and _reads_conll(section):
        for key, generic in zip(("text_column", "label_column"), GENERIC_COLUMNS, strict=True):
            value = section.get(key)
            if value is not None and value != generic:
                problems.append((f"data.{key}", f"{value!r} names a key of JSON lines, and a CoNLL file has none (a "
                                                "token and its tag per line, the tag last): remove it"))  # fmt: skip
    return problems


def _reads_conll(section: dict[str, Any]) -> bool:
    """Whether a token-classification data section is read as CoNLL (data.format, else the train file's suffix)."""
    fmt, train = section.get("format"), section.get("train")
    if fmt is not None:
        return bool(fmt == "conll")
    return isinstance(train, str) and Path(train).suffix.lower() in CONLL_SUFFIXES


def stored_data_section(task: Any, section: dict[str, Any]) -> dict[str, Any]:
    """A stored spec's data section as the spec file most likely wrote it. The store keeps a full dump, so a
    token-classification study's unset `text_column` / `label_column` come back as the generic `text` / `label`,
    which would make its JSON lines keys `text` / `label` instead of `tokens` / `tags`: read as unset. (A spec that
    named `text` and `label` on purpose is told apart only by its file: `sweep worker --spec`.)"""
    if task != TOKEN_TASK or (section.get("text_column"), section.get("label_column")) != GENERIC_COLUMNS:
        return section
    return {k: v for k, v in section.items() if k not in ("text_column", "label_column")}


def path_problems(
    sources: dict[str, Any], base: Path, suffixes: tuple[str, ...] | None = DATA_SUFFIXES
) -> list[tuple[str, str]]:
    """Missing or unsupported local files among `sources` ({"train": ..., "validation": ...}), without reading them.

    `suffixes`: the file types the task reads (`data_suffixes`); None accepts any name.
    """
    problems = []
    for field, source in sources.items():
        if not isinstance(source, str) or source.startswith(HUB_PREFIX):
            continue
        path = Path(resolve_data_path(source, base))
        if not path.exists():
            problems.append((f"data.{field}", f"file not found: {path}"))
        elif suffixes == TAGGED_SUFFIXES and path.suffix.lower() not in suffixes:
            problems.append(
                (
                    f"data.{field}",
                    f"unsupported file type '{path.suffix}' for task: {TOKEN_TASK} ({', '.join(suffixes)}; any other "
                    "name with data.format: conll or jsonl)",
                )
            )
        elif suffixes is not None and path.suffix.lower() not in suffixes:
            problems.append(
                (
                    f"data.{field}",
                    f"unsupported file type '{path.suffix}' ({', '.join(suffixes)} or {HUB_PREFIX}<name>)"
                    + (f"; a {path.suffix} file holds tagged words: set task: {TOKEN_TASK}"
                       if path.suffix.lower() in TAGGED_SUFFIXES else
                       "; a file without an extension is read by its name: give it one with an extension, e.g. a link "
                       "(ln -s FILE train.tsv for tab-separated lines; data.columns names the columns of a file "
                       "without a header row)" if not path.suffix else delimited_hint(path)),
                )
            )
    return problems


def data_problems(data: DataSpec, base: Path, task: Any = None) -> list[tuple[str, str]]:
    """Problems found by reading the local data files a valid data section names (columns, header, encoding).

    The run reads them anyway; this is for a spec refused for other reasons, so one run lists every problem.
    Hub datasets are not fetched here.
    """
    from datamodules import DataError, load_table

    if task == TOKEN_TASK:
        return tagged_problems(data, base)
    problems: list[tuple[str, str]] = []
    for field, source in (("data.train", data.train), ("data.validation", data.validation)):
        if source is None or source.startswith(HUB_PREFIX):
            continue
        try:
            load_table(
                resolve_data_path(source, base),
                text_column=data.text_column,
                label_column=data.label_column,
                field=field,
                columns=data.columns,
                text_separator=data.text_separator,
                text_pair_column=data.text_pair_column,
                raw_labels=task in ("multi-label", "regression"),  # a label set or a score, read as it is written
            )
        except DataError as err:
            problems += [p for p in err.problems if p not in problems]  # column problems repeat per file
    return problems


def tagged_problems(data: DataSpec, base: Path) -> list[tuple[str, str]]:
    """Problems found by reading the tagged files (task: token-classification) a valid data section names."""
    from datamodules import DataError
    from datamodules.token_preparation import load_tagged_sources

    tokens, tags = tagged_columns(data)
    validation = resolve_data_path(data.validation, base) if data.validation else None
    try:
        load_tagged_sources(resolve_data_path(data.train, base), validation, fmt=data.format, tokens_key=tokens,
                            tags_key=tags)  # fmt: skip
    except DataError as err:
        return err.problems
    return []
