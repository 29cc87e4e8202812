"""Shared fixtures: a tiny BERT built from a config (no downloads) and real data from ../shared/data."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import csv
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SWEEP_SHARED_DATA", ROOT.parent / "shared" / "data"))
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,?!'\"-:;()&$%/")


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
    """A stratified, seeded subset of TREC's official training file."""
    rows = read_trec(SHARED_DATA / "trec" / "train_5500.label")
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
    ids = tokenizer("what is the name of the city")["input_ids"]
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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "trec" / "train_5500.label").exists():
        pytest.fail(f"real datasets not found at {SHARED_DATA} (set SWEEP_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Directory of a tiny BERT + tokenizer whose vocabulary covers TREC questions and plain English."""
    corpus = [text for text, _ in read_trec(shared_data / "trec" / "train_5500.label")]
    corpus += ["the cat sat on the mat", "good great bad awful fine movie film service order refund"]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), corpus)


@pytest.fixture()
def trec_csvs(tmp_path: Path, shared_data: Path) -> tuple[Path, Path]:
    """Small TREC train/validation CSVs (4 classes, 30 + 10 per class) written to a temp folder."""
    rows = trec_subset(40, seed=1, exclude_abbr=True)
    labels = sorted({label for _, label in rows})[:4]
    train, val = split_per_class([r for r in rows if r[1] in labels], 10)
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
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
