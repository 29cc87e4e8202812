"""`sweep audit` for task: token-classification: cleanlab's token ranking on constructed probabilities, the word
probe out of fold on constructed features (folds over sentences), and the command end to end on the tiny BERT
(both methods) with its refusals."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import read_csv_rows, tiny_study_spec
from test_token_classification import tagged_sentences, write_conll

from record import read_audit
from reports import build_report
from sweep.audit_tokens import (
    FIT_NAME,
    WordTags,
    kept_token_issues,
    leaves_entity_tags,
    sentence_folds,
    single_sentence_tags,
    token_fold_problems,
    token_issues,
    word_probe,
    word_tags,
)
from sweep.cli import main
from sweep.label_issues import AUDIT_TASKS, audit_task_problem

TAGS = ["O", "B-item", "I-item", "B-place", "I-place"]


def constructed(sentences: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """Sub-token labels of rows (IGNORE_INDEX on special and later sub-tokens) and the sentence of each row: every
    fourth sentence is long and comes as two windows. True tags: O, B-item, B-place I-place; no I-item."""
    rng = random.Random(seed)
    rows, of = [], []
    for s in range(sentences):
        words = [rng.choice([0, 0, 0, 1, 3]) for _ in range(rng.randint(4, 8))]
        tags = [t for w in words for t in ([3, 4] if w == 3 else [w])]
        windows = [tags[: len(tags) // 2], tags[len(tags) // 2 :]] if s % 4 == 3 else [tags]
        for window in windows:
            rows.append([-100, *[x for t in window for x in (t, -100)], -100])  # [CLS] word ##piece ... [SEP]
            of.append(s)
    return rows, of


def test_word_tags_keep_each_words_first_sub_token_and_its_place_in_the_sentence() -> None:
    labels = word_tags([[-100, 1, -100, 0, -100], [-100, 3, 4, -100], [-100, 0, -100]], [0, 0, 1])
    assert [t.tolist() for t in labels.tags] == [[1, 0], [3, 4], [0]]
    assert labels.offsets.tolist() == [0, 2, 0]  # the second window of sentence 0 starts at its third word
    assert labels.flat().tolist() == [1, 0, 3, 4, 0] and labels.starts().tolist() == [0, 2, 4, 5]


def planted_words(labels: WordTags, count: int, seed: int) -> list[tuple[int, int]]:
    """`count` (row, word) pairs of B-item words, chosen with `seed`."""
    rng = random.Random(seed)
    items = [(r, j) for r, tags in enumerate(labels.tags) for j, t in enumerate(tags) if t == 1]
    return sorted(rng.sample(items, count))


def sure_of(truth: WordTags, errors: list[tuple[int, int]]) -> list[np.ndarray]:
    """Each word's tag probabilities of a good model: its true tag 0.8-0.95 (before scaling), and sure (0.96) of the
    true tag, B-item, of each planted word, so the given one is unlikely."""
    rng = np.random.default_rng(0)
    probs = []
    for tags in truth.tags:
        p = rng.uniform(0.0, 0.05, size=(len(tags), len(TAGS)))
        p[np.arange(len(tags)), tags] = rng.uniform(0.8, 0.95, size=len(tags))
        probs.append(p / p.sum(axis=1, keepdims=True))
    for r, j in errors:
        probs[r][j] = [0.01, 0.96, 0.01, 0.01, 0.01]
    return probs


def test_planted_tag_errors_in_constructed_probabilities_rank_first() -> None:
    rows, sentences = constructed(60, seed=0)
    truth = word_tags(rows, sentences)
    errors = planted_words(truth, 4, seed=1)
    given = WordTags([t.copy() for t in truth.tags], truth.sentences, truth.offsets)
    for r, j in errors:
        given.tags[r][j] = 3  # an item tagged as the start of a place
    probs = sure_of(truth, errors)
    probs[0][0] = 0.15
    probs[0][0][given.tags[0][0]] = 0.4  # unsure, but its given tag leads: not an error
    found = token_issues(given, probs, TAGS)

    assert sorted((i.index, i.position - given.offsets[i.index]) for i in found.issues[: len(errors)]) == errors
    assert {(i.index, i.position - given.offsets[i.index]) for i in found.issues} == set(errors)
    top = found.issues[0]
    assert (top.given, top.suggested) == ("B-place", "B-item") and top.suggested_probability > 0.8
    assert [i.quality for i in found.issues] == sorted(i.quality for i in found.issues)
    # the position is the word's index in its sentence: in a second window it counts the first window's words
    second = [i for i in found.issues if given.offsets[i.index] > 0]
    assert all(i.position >= given.offsets[i.index] for i in second)
    words = len(given.flat())
    assert found.examples == words and found.unit == "word" and found.fit_name == FIT_NAME == "word accuracy"
    assert found.accuracy == pytest.approx((words - len(errors)) / words)
    counts = {c.label: (c.examples, c.flagged) for c in found.classes}
    assert "I-item" not in counts  # a tag no word has is not listed
    assert counts["B-place"][1] == len(errors) and counts["B-item"][1] == 0
    assert sum(n for n, _ in counts.values()) == words
    assert [(p.given, p.suggested, p.count) for p in found.pairs] == [("B-place", "B-item", len(errors))]


def test_a_tag_in_one_sentence_is_left_out_and_the_other_words_audited_in_their_places() -> None:
    """A misspelt tag (one word of one sentence) refused the whole NER audit; now only its words go unchecked."""
    rows, sentences = constructed(40, seed=3)
    truth = word_tags(rows, sentences)
    given = WordTags([t.copy() for t in truth.tags], truth.sentences, truth.offsets)
    second = next(r for r in range(len(given.tags)) if given.offsets[r] > 0 and 0 in given.tags[r].tolist())
    given.tags[second][given.tags[second].tolist().index(0)] = 2  # "I-item": once, in a second window
    errors = planted_words(truth, 3, seed=4)
    errors = [(r, j) for r, j in errors if r != second]
    for r, j in errors:
        given.tags[r][j] = 3
    assert single_sentence_tags(given, TAGS) == {"I-item": 1}
    assert leaves_entity_tags(given, TAGS, ["I-item"]) and not leaves_entity_tags(given, TAGS, ["B-item", "B-place",
                                                                                              "I-place", "I-item"])
    assert token_fold_problems(given, 2, TAGS, left_out=["I-item"]) == []
    probs = sure_of(truth, errors)
    found = kept_token_issues(given, probs, TAGS, ["I-item"])

    assert {(i.index, i.position - given.offsets[i.index]) for i in found.issues} == set(errors)
    assert all(given.tags[i.index][i.position - given.offsets[i.index]] == TAGS.index(i.given) for i in found.issues)
    assert "I-item" not in {i.given for i in found.issues} | {i.suggested for i in found.issues}
    assert found.examples == len(given.flat()) - 1 and "I-item" not in {c.label for c in found.classes}


def test_word_probe_predicts_planted_words_out_of_fold_and_sentences_stay_together() -> None:
    rows, sentences = constructed(80, seed=2)
    truth = word_tags(rows, sentences)
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(len(TAGS), 16)) * 4
    features = centers[truth.flat()] + rng.normal(size=(len(truth.flat()), 16))
    errors = planted_words(truth, 4, seed=4)
    given = WordTags([t.copy() for t in truth.tags], truth.sentences, truth.offsets)
    for r, j in errors:
        given.tags[r][j] = 0  # an item left untagged
    splits = sentence_folds(given, 5, seed=0)
    held = np.concatenate([h for _, h in splits])
    assert sorted(held.tolist()) == list(range(len(given.tags)))  # every row held out once
    for train, held_rows in splits:  # a sentence's windows are held out together, never trained on meanwhile
        assert not set(given.sentences[train].tolist()) & set(given.sentences[held_rows].tolist())
    folds_seen: list[int] = []
    probs = word_probe(features, given, len(TAGS), splits, folds_seen.append)
    assert folds_seen == [0, 1, 2, 3, 4]
    assert [p.shape for p in probs] == [(len(t), len(TAGS)) for t in given.tags]
    assert all(probs[r][j].argmax() == 1 for r, j in errors)  # its own wrong tag never trained the model
    found = token_issues(given, probs, TAGS)
    assert sorted((i.index, i.position - given.offsets[i.index]) for i in found.issues[: len(errors)]) == errors

    # A fold whose training sentences lack a tag still gives every tag its column (probability 0 there).
    place = {int(s) for r, s in enumerate(given.sentences) if 3 in given.tags[r]}
    only_held = np.array([r for r, s in enumerate(given.sentences) if s in place])
    rest = np.array([r for r, s in enumerate(given.sentences) if s not in place])
    probs = word_probe(features, given, len(TAGS), [(rest, only_held), (only_held, rest)])
    assert all(p.shape[1] == len(TAGS) for p in probs)
    assert all(np.allclose(probs[r][:, 3], 0.0) and np.allclose(probs[r].sum(axis=1), 1.0) for r in only_held)


def test_fold_problems_name_the_short_count() -> None:
    labels = word_tags([[-100, 0, 1, -100], [-100, 0, 3, 4, -100], [-100, 1, 0, -100]], [0, 1, 2])
    assert token_fold_problems(labels, 5, TAGS) == [
        ("data.train", "3 training sentences, fewer than --folds 5: lower --folds or add sentences")]
    assert token_fold_problems(labels, 2, TAGS) == [
        ("data.train", f"tag {name!r} occurs in 1 training sentence (1 word): a fold that holds that sentence out "
                       "has no other to learn the tag from, so every tag needs 2 sentences or more: add sentences "
                       "with it, or fix the tag") for name in ("B-place", "I-place")]  # fmt: skip
    assert token_fold_problems(word_tags([[0, 1], [1, 0]], [0, 1]), 2, TAGS) == []


def test_token_classification_has_its_audit_path() -> None:
    assert audit_task_problem("token-classification") is None
    assert AUDIT_TASKS["token-classification"].label_kind == "tokens"


# -- the command end to end on the tiny BERT ----------------------------------------------------------------------


DEV = tagged_sentences(20, seed=9)


def plant(sentences: list[tuple[list[str], list[str]]], count: int, seed: int) -> list[tuple[int, int]]:
    """Untag `count` item words (B-item -> O) in distinct sentences that validation does not have (sweep drops those
    from train), in place; (sentence, word) of each."""
    rng = random.Random(seed)
    dev = {tuple(words) for words, _ in DEV}
    items = [(s, j) for s, (words, tags) in enumerate(sentences) for j, t in enumerate(tags)
             if t == "B-item" and tuple(words) not in dev]  # fmt: skip
    chosen: dict[int, int] = {}
    for s, j in rng.sample(items, len(items)):
        chosen.setdefault(s, j)
        if len(chosen) == count:
            break
    for s, j in chosen.items():
        sentences[s][1][j] = "O"
    return sorted(chosen.items())


def ner_spec(tmp_path: Path, tiny_bert: Path, sentences: list[tuple[list[str], list[str]]],
             dev: list[tuple[list[str], list[str]]] = DEV, **extra: object) -> Path:  # fmt: skip
    write_conll(tmp_path / "train.conll", sentences)
    write_conll(tmp_path / "dev.conll", dev)
    search = {"space": {"learning_rate": 3e-3, "warmup_ratio": 0.0}}
    # max_length 12: the longer templates come as two windows
    return tiny_study_spec(tmp_path, tiny_bert, "ner-audit", {"train": "train.conll", "validation": "dev.conll"},
                           max_length=12, task="token-classification", search=search, **extra)  # fmt: skip


def test_audit_end_to_end_flags_planted_tags_names_their_words_and_stores_the_audit(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentences = tagged_sentences(80, seed=5)
    errors = plant(sentences, 3, seed=6)
    spec = ner_spec(tmp_path, tiny_bert, sentences)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert main(["run", str(spec), "--storage", url]) == 0
    out = tmp_path / "audit.csv"
    assert main(["audit", str(spec), "--out", str(out), "--storage", url, "--top", "5"]) == 0
    printed = capsys.readouterr()
    assert "entities item" in printed.err and "computed and cached" in printed.err
    assert "Likely label errors" in printed.out and "training words" in printed.out
    assert "stored with study ner-audit" in printed.out and "word accuracy" in printed.out
    # its data table counts sentences split into windows (it said "texts over max_length 0" beside a warning that
    # a sentence was split)
    assert "sentences over max_length=" in printed.err and "texts over max_length" not in printed.err

    flagged = read_csv_rows(out)
    assert list(flagged[0]) == ["rank", "row", "text", "text_pair", "given_label", "suggested_label",
                                "label_quality", "suggested_probability", "word_index", "word", "line"]  # fmt: skip
    # The planted words lead: `row` is the sentence of the file, `word_index` the word in it.
    assert sorted((int(r["row"]), int(r["word_index"])) for r in flagged[: len(errors)]) == errors
    assert {(r["given_label"], r["suggested_label"]) for r in flagged[: len(errors)]} == {("O", "B-item")}
    file_lines = (tmp_path / "train.conll").read_text(encoding="utf-8").splitlines()
    for r in flagged:
        words, tags = sentences[int(r["row"])]
        j = int(r["word_index"])
        assert r["word"] == words[j] and r["given_label"] == tags[j]
        assert r["text"] == " ".join([*words[:j], f"«{words[j]}»", *words[j + 1 :]])
        assert file_lines[int(r["line"]) - 1] == f"{words[j]}\t{tags[j]}"  # the line to fix

    from sweep.storage import load_study

    record = read_audit(load_study("ner-audit", url))
    assert record is not None and record.unit == "word" and record.fit_name == "word accuracy"
    dev = {tuple(words) for words, _ in DEV}  # training sentences also in validation are dropped, not audited
    assert any(tuple(w) in dev for w, _ in sentences)  # so `row` above skips sentences, as in a real file
    assert record.examples == sum(len(w) for w, _ in sentences if tuple(w) not in dev)
    assert record.flagged == len(flagged)
    assert sum(c.examples for c in record.classes) == record.examples
    assert "«" in record.suspects[0].text
    section = {s.title: s for s in build_report([load_study("ner-audit", url)])}["Annotation audit"]
    assert section.tables[0].columns[1] == "words"
    assert "training words" in section.blocks[0].text and "suspect word is marked" in section.blocks[0].text

    # The second audit reads the word embeddings from the cache; finetune trains each fold with the best trial's
    # hyperparameters and predicts each held-out sentence's words.
    assert main(["audit", str(spec), "--storage", url]) == 0
    assert "embeddings from the cache" in capsys.readouterr().err
    assert main(["audit", str(spec), "--method", "finetune", "--folds", "2", "--out", str(out),
                 "--storage", url]) == 0  # fmt: skip
    assert "fine-tuning each fold with the best trial of study ner-audit (trial 0)" in capsys.readouterr().err
    replaced = read_audit(load_study("ner-audit", url))
    assert replaced is not None and replaced.method == "finetune" and replaced.folds == 2
    assert replaced.examples == record.examples and len(read_csv_rows(out)) == replaced.flagged


def test_too_few_sentences_or_only_tags_in_one_sentence_are_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = {tuple(words) for words, _ in DEV}
    sentences = [s for s in tagged_sentences(60, seed=1) if tuple(s[0]) not in dev]
    spec = ner_spec(tmp_path, tiny_bert, sentences[:4])
    out = tmp_path / "audit.csv"
    store = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["audit", str(spec), "--out", str(out), "--storage", store]) == 2
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")] == [
        f"error: {spec}: data.train: 4 training sentences, fewer than --folds 5: lower --folds or add sentences"]

    # every entity tag in one sentence: nothing would be left to audit
    items = [s for s in sentences if set(s[1]) == {"O", "B-item"}]
    plain = [(words, ["O"] * len(words)) for words, _ in sentences[:29] if (words, _) != items[0]]
    spec = ner_spec(tmp_path, tiny_bert, [items[0], *plain], dev=items[1:])
    assert main(["audit", str(spec), "--out", str(out), "--storage", store]) == 2
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")] == [
        f"error: {spec}: data.train: tag 'B-item' occurs in 1 training sentence (1 word): a fold that holds that "
        "sentence out has no other to learn the tag from, so every tag needs 2 sentences or more: add sentences with "
        "it, or fix the tag"]
    assert not out.exists() and not (tmp_path / "cache" / "embeddings").exists() and not (tmp_path / "s.db").exists()


def test_a_tag_misspelt_once_is_left_out_and_the_rest_audited(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = {tuple(words) for words, _ in DEV}
    typo = [s for s in tagged_sentences(60, seed=1) if tuple(s[0]) not in dev][:30]
    words, tags = typo[0]
    j = tags.index("B-item")
    typo[0] = (words, [*tags[:j], "B-itme", *tags[j + 1 :]])  # a tag misspelt once
    spec = ner_spec(tmp_path, tiny_bert, typo)
    out = tmp_path / "audit.csv"
    store = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", str(spec), "--storage", store, "--n-trials", "1"]) == 0
    capsys.readouterr()
    assert main(["audit", str(spec), "--out", str(out), "--storage", store]) == 0
    said = capsys.readouterr().err
    assert ("audit: left out 1 tag found in a single training sentence: 'B-itme' (1 word); its words are not checked "
            "and no word is suggested as it (a fold that holds that sentence out has no other to learn it from; a "
            "tag seen once is often misspelt: fix it, or add sentences with it)") in " ".join(said.split())
    from sweep.storage import load_study

    record = read_audit(load_study("ner-audit", store))
    assert record is not None and record.left_out == {"B-itme": 1}
    assert record.examples == sum(len(w) for w, _ in typo) - 1
    flagged = read_csv_rows(out)
    assert "B-itme" not in {r["given_label"] for r in flagged} | {r["suggested_label"] for r in flagged}
    for r in flagged:  # each flagged word is the word of its row and place
        words, tags = typo[int(r["row"])]
        assert r["word"] == words[int(r["word_index"])] and r["given_label"] == tags[int(r["word_index"])]
