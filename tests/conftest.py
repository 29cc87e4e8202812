"""Shared fixtures: a tiny BERT built from a config (no downloads), labelled text the project ships
(data/quickstart/support_tickets.csv), and the public datasets of ../shared/data for the tests marked `real_data`.

A fresh clone anywhere runs every test: those marked `real_data` skip, saying how to point at the data
(SWEEP_SHARED_DATA=/path/to/shared/data), when it is absent; under CI (CI set) a missing dataset fails them instead.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import csv
import importlib.util
import random
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SWEEP_SHARED_DATA", ROOT.parent / "shared" / "data"))
TREC_TRAIN = "trec/train_5500.label"
QUICKSTART = ROOT / "data" / "quickstart" / "support_tickets.csv"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,?!'\"-:;()&$%/@#*+")


@pytest.fixture(autouse=True)
def first_checkpoints_of_the_process() -> Iterator[None]:
    """Every test starts as a fresh worker process does: no model class's checkpoint layout learned yet
    (`sweep.checkpoints._WEIGHT_KEYS`), so its first checkpoint goes through save_pretrained whatever ran before."""
    checkpoints = sys.modules.get("sweep.checkpoints")
    if checkpoints is not None:
        checkpoints._WEIGHT_KEYS.clear()
    yield


def quickstart_rows() -> list[tuple[str, str]]:
    """The quickstart's 456 clean rows, in file order, without its 9 deliberately dirty ones.

    As data/quickstart/README.md counts them: whitespace collapsed, rows without text or label dropped, texts seen
    with two labels dropped (both rows), then exact duplicates dropped (the first copy kept).
    """
    with QUICKSTART.open(encoding="utf-8", newline="") as fh:
        rows = [(" ".join(row["text"].split()), row["label"].strip()) for row in csv.DictReader(fh)]
    rows = [(text, label) for text, label in rows if text and label]
    labels_of: dict[str, set[str]] = {}
    for text, label in rows:
        labels_of.setdefault(text, set()).add(label)
    return list(dict.fromkeys((text, label) for text, label in rows if len(labels_of[text]) == 1))


def quickstart_subset(n_per_class: int, seed: int = 0, n_classes: int = 4) -> list[tuple[str, str]]:
    """A stratified, seeded subset of the quickstart's clean rows: `n_per_class` rows of each of the first
    `n_classes` labels in sorted order (account, billing, product, returns, shipping); at most 90 per class."""
    rows = quickstart_rows()
    labels = sorted({label for _, label in rows})[:n_classes]
    rng = random.Random(seed)
    rng.shuffle(rows)
    taken: Counter[str] = Counter()
    out = []
    for text, label in rows:
        if label in labels and taken[label] < n_per_class:
            taken[label] += 1
            out.append((text, label))
    short = {label: taken[label] for label in labels if taken[label] < n_per_class}
    assert not short, f"the quickstart has fewer than {n_per_class} clean rows of {short}"
    return out


def read_trec(path: Path) -> list[tuple[str, str]]:
    """Parse TREC's `COARSE:fine question` lines into (question, coarse label) pairs."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        label, question = line.split(" ", 1)
        rows.append((question.strip(), label.split(":", 1)[0]))
    return rows


def trec_subset(n_per_class: int, seed: int = 0, exclude_abbr: bool = False) -> list[tuple[str, str]]:
    """A stratified, seeded subset of TREC's official training file (for tests marked `real_data` only)."""
    rows = read_trec(SHARED_DATA / TREC_TRAIN)
    rng = random.Random(seed)
    rng.shuffle(rows)
    taken: Counter[str] = Counter()
    out = []
    for text, label in rows:
        if exclude_abbr and label == "ABBR":
            continue
        if taken[label] < n_per_class:
            taken[label] += 1
            out.append((text, label))
    return out


def split_per_class(rows: list[tuple[str, str]], n_val: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The first `n_val` rows of each class go to validation, the rest to train."""
    seen: Counter[str] = Counter()
    train: list[tuple[str, str]] = []
    val: list[tuple[str, str]] = []
    for text, label in rows:
        seen[label] += 1
        (val if seen[label] <= n_val else train).append((text, label))
    return train, val


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """A CSV with a header row as one dict per row (the audit's `--out` file, for instance)."""
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def tiny_study_spec(
    folder: Path, encoder: Path, name: str, data: dict[str, Any], *, max_length: int = 32, **extra: Any
) -> Path:
    """`folder/spec.yaml`: a one-trial study of the tiny BERT (one epoch, no pruning, no checkpoints, learning rate
    1e-3 unless `extra["search"]` says otherwise) over `data` (its cache under `folder/cache`)."""
    import yaml

    search: dict[str, Any] = {"n_trials": 1, "pruner": "none", "first_epoch_evals": 0, "keep_checkpoints": 0,
                              "space": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}}  # fmt: skip
    overrides = extra.pop("search", {})
    search["space"].update(overrides.pop("space", {}))
    search.update(overrides)
    spec = {"name": name, "data": {**data, "cache_dir": str(folder / "cache")},
            "model": {"encoder": str(encoder), "max_length": max_length}, "search": search, **extra}  # fmt: skip
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def build_tiny_bert(directory: Path, corpus: list[str], vocab_size: int = 3000) -> Path:
    """Save a tiny BERT (hidden 32, 2 layers) and a word-level vocabulary drawn from `corpus`.

    Uses `BertTokenizer(vocab=...)`: in transformers 5 `BertTokenizerFast(vocab_file=...)` silently
    keeps only the special tokens, so every word becomes [UNK].
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    counts = Counter(w for text in corpus for w in re.findall(r"[a-z0-9]+", text.lower()))
    words = [w for w, _ in counts.most_common(vocab_size)]
    vocab = SPECIALS + PUNCT + [w for w in words if w not in PUNCT]
    tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)})
    ids = tokenizer(corpus[0])["input_ids"]
    assert tokenizer.unk_token_id not in ids, "tiny tokenizer maps ordinary words to [UNK]"
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)  # the same tiny encoder every session: deterministic tests
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def load_benchmark_script(name: str) -> ModuleType:
    """`benchmarks/<name>.py` as the module `name` (registered, since dataclasses resolve their module by name)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def real_data_missing(*files: str) -> str | None:
    """Why the public datasets cannot be read here (None when `files`, relative to SHARED_DATA, all exist)."""
    missing = [name for name in files or (TREC_TRAIN,) if not (SHARED_DATA / name).is_file()]
    if not missing:
        return None
    return (
        f"real datasets not found ({', '.join(missing)} under {SHARED_DATA}): "
        "set SWEEP_SHARED_DATA=/path/to/shared/data to run the tests marked real_data"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `real_data` (optionally with the files they read) skip without the data; under CI they fail."""
    marker = item.get_closest_marker("real_data")
    if marker is None:
        return
    reason = real_data_missing(*marker.args)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the real-data tests, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture()
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The public datasets folder; only for tests marked `real_data` (which skip, or fail under CI, without it)."""
    if request.node.get_closest_marker("real_data") is None:
        pytest.fail(f"{request.node.nodeid} reads ../shared/data: mark it @pytest.mark.real_data", pytrace=False)
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny BERT + tokenizer whose vocabulary covers every quickstart word and the test sentences.

    Built from data every clone has, so it is the same model with or without ../shared/data.
    """
    corpus = [text for text, _ in quickstart_rows()]
    corpus += ["the cat sat on the mat", "good great bad awful fine movie film service order refund"]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), corpus)


@pytest.fixture()
def labelled_csvs(tmp_path: Path) -> tuple[Path, Path]:
    """Small quickstart train/validation CSVs (4 classes, 30 + 10 per class) written to a temp folder."""
    train, val = split_per_class(quickstart_subset(40, seed=1), 10)
    return write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "val.csv", val)


POSTGRES_ENV = "SWEEP_TEST_POSTGRES_URL"


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards.

    The server comes from SWEEP_TEST_POSTGRES_URL (a role allowed to CREATE DATABASE); .ci/run installs
    PostgreSQL from Debian packages, starts it and sets the variable. Without it the test is skipped, visibly.
    """
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"no PostgreSQL server configured: set {POSTGRES_ENV}=postgresql+psycopg://USER:PW@HOST/DB")
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"sweep_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)
        admin.dispose()


def _drop_database(admin: Any, name: str) -> None:
    """Drop a test database, ending its sessions; without the right to end one (a role that is not a member of
    pg_signal_backend, facing an autovacuum worker or another role's exiting session) wait for them instead."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with admin.connect() as conn:
        try:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError:
            pass
    for attempt in range(30):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))  # cancels autovacuum itself
            return
        except DBAPIError:
            if attempt == 29:
                raise
            time.sleep(1)


@pytest.fixture()
def secret_url(postgres_url: str) -> Iterator[tuple[str, str]]:
    """(URL, password) of a throwaway role on the test database, whose password appears nowhere else (the secrets
    tests look for it in every output)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ProgrammingError

    role, password = f"sweep_secret_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            conn.execute(text(f"GRANT {role} TO CURRENT_USER"))  # so that its objects can be dropped afterwards
            conn.execute(text(f"GRANT ALL ON SCHEMA public TO {role}"))
    except ProgrammingError as exc:
        admin.dispose()
        pytest.skip(f"the test role may not create roles ({exc.orig}): ALTER ROLE ... CREATEROLE, as .ci/run does")
    try:
        yield make_url(postgres_url).set(username=role, password=password).render_as_string(False), password
    finally:
        with admin.connect() as conn:
            # Wait (up to 10 s each) until its sessions are gone: a session still exiting when the role is dropped
            # makes the database's DROP ... WITH (FORCE) fail (nobody may terminate a dropped role's backend).
            conn.execute(
                text(f"SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = '{role}'")
            )
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.fixture()
def heads_loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The `pooling` of every classifier `models.classifier.load_pretrained_classifier` builds while the test runs
    (sweep's modules and the benchmarks' bare loops and peers look it up there at each call)."""
    import models.classifier

    heads: list[str] = []
    load = models.classifier.load_pretrained_classifier

    def spy(*args: Any, **kwargs: Any) -> Any:
        heads.append(str(kwargs.get("pooling", "cls")))
        return load(*args, **kwargs)

    monkeypatch.setattr(models.classifier, "load_pretrained_classifier", spy)
    return heads
