"""The test fixtures themselves: the tiny tokenizer knows its words after a reload from disk, the quickstart rows
are the clean rows its README counts, and tests marked real_data skip (or fail under CI) without the public data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import QUICKSTART, quickstart_rows, quickstart_subset
from transformers import AutoTokenizer

HERE = Path(__file__).resolve().parent

# Every word and symbol of the quickstart tickets is in the tiny vocabulary, so [UNK] should not occur at all; the
# bound leaves room for a stray symbol (a ticket added with "€") and nothing more. For scale: a tokenizer that lost
# its vocabulary on reload (transformers 5 keeps only the 5 special tokens of `BertTokenizerFast(vocab_file=...)`)
# gives 100% [UNK], and a vocabulary built from half of the tickets gives 18% on the other half.
MAX_UNK_SHARE = 0.005


def test_tiny_tokenizer_reloaded_from_disk_knows_the_words(tiny_bert: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    saved = json.loads((tiny_bert / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert len(tokenizer) == len(saved) > 1000  # the whole saved vocabulary, not just the special tokens
    assert tokenizer.tokenize("Where is my refund?") == ["where", "is", "my", "refund", "?"]

    texts = [text for text, _ in quickstart_rows()]
    ids = [i for text in texts for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    unknown = sum(i == tokenizer.unk_token_id for i in ids)
    assert len(ids) > 5000
    assert unknown / len(ids) <= MAX_UNK_SHARE, f"{unknown} of {len(ids)} tokens are [UNK]"


def test_quickstart_rows_are_the_clean_rows_its_readme_counts() -> None:
    rows = quickstart_rows()
    assert len(rows) == 456 and len({text for text, _ in rows}) == 456
    assert Counter(label for _, label in rows) == {
        "billing": 92, "shipping": 91, "returns": 91, "account": 90, "product": 92
    }  # fmt: skip
    assert QUICKSTART.read_text(encoding="utf-8").count("\n") == 466  # header + 465 rows, 9 of them dirty
    subset = quickstart_subset(10, seed=1)
    assert Counter(label for _, label in subset) == {"account": 10, "billing": 10, "product": 10, "returns": 10}
    assert subset == quickstart_subset(10, seed=1) != quickstart_subset(10, seed=2)


PROBE = """
import pytest

@pytest.mark.real_data
def test_reads_trec(shared_data):
    assert (shared_data / "trec" / "train_5500.label").is_file()

@pytest.mark.real_data("sst2/dev.tsv")
def test_reads_sst2(shared_data):
    assert (shared_data / "sst2" / "dev.tsv").is_file()

def test_reads_without_the_marker(shared_data):
    pass

def test_needs_nothing():
    pass
"""


def run_probe(tmp_path: Path, shared: Path, ci: bool) -> str:
    """Run PROBE under this conftest in a fresh pytest process; returns its output."""
    project = tmp_path / "probe"
    project.mkdir(exist_ok=True)
    shutil.copy(HERE / "conftest.py", project / "conftest.py")
    (project / "test_probe.py").write_text(PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(SWEEP_SHARED_DATA=str(shared), COLUMNS="400")  # COLUMNS: reasons on one line
    if ci:
        env["CI"] = "true"
    command = [sys.executable, "-m", "pytest", "-vv", "-rsfE", "-p", "no:cacheprovider", "-W", "ignore", str(project)]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def test_real_data_tests_skip_with_how_to_point_at_the_data(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    out = run_probe(tmp_path, empty, ci=False)
    assert "1 passed, 2 skipped, 1 error" in out, out
    how = "set SWEEP_SHARED_DATA=/path/to/shared/data to run the tests marked real_data"
    assert "test_reads_trec SKIPPED" in out and "test_reads_sst2 SKIPPED" in out
    assert f"real datasets not found (trec/train_5500.label under {empty}): {how}" in out
    assert f"real datasets not found (sst2/dev.tsv under {empty}): {how}" in out
    assert "test_reads_without_the_marker reads ../shared/data: mark it @pytest.mark.real_data" in out


def test_under_ci_a_missing_dataset_fails_instead(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    out = run_probe(tmp_path, empty, ci=True)
    assert "1 passed, 3 errors" in out and "skipped" not in out, out
    assert "CI must run the real-data tests, but: real datasets not found (trec/train_5500.label" in out


def test_with_the_data_they_run(tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "data"
    for name in ("trec/train_5500.label", "sst2/dev.tsv"):
        (shared / name).parent.mkdir(parents=True, exist_ok=True)
        (shared / name).write_text("x\n", encoding="utf-8")
    (shared / "sst2" / "dev.tsv").unlink()
    out = run_probe(tmp_path, shared, ci=True)  # sst2 missing: only its test is refused
    assert "2 passed, 2 errors" in out, out
    assert "real datasets not found (sst2/dev.tsv under" in out
