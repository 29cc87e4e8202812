"""task: token-classification (NER): reading CoNLL / JSON lines, IOB2 tags, sub-token alignment and windows, seqeval
figures against hand-computed ones, a study end to end on the tiny model, the report and the export via `pipeline`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from datamodules import DataError
from datamodules.tagged import TaggedFile, clean_sentences, parse_conll, parse_jsonl, read_tagged, tag_names, to_iob2
from datamodules.token_preparation import encode_sentences, first_subtoken_labels, prepare_token_data, word_windows
from models.entities import IGNORE_INDEX, entity_metrics, word_tags
from sweep.errors import SweepError
from sweep.spec import parse_spec

# -- reading ------------------------------------------------------------------------------------------------


def test_conll_reads_token_and_last_field_and_treats_whitespace_lines_as_boundaries() -> None:
    text = "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\t\nPeter\tB-PER\nBlackburn\tI-PER\n   \n\n"
    sentences = parse_conll(text, "x.conll", "data.train")
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert sentences[1].lines == [6, 7]


def test_conll_line_with_one_field_names_file_and_line() -> None:
    with pytest.raises(DataError) as info:
        parse_conll("a O\nb\nc O\n", "dev.conll", "data.validation")
    assert info.value.problems == [
        ("data.validation", "cannot read dev.conll as CoNLL (token and tag per line): line 2 has one field ('b'): it "
                            "needs a token and its tag")
    ]  # fmt: skip


def test_jsonl_reads_lists_and_refuses_a_tag_list_of_another_length() -> None:
    good = '{"tokens": ["New", "York"], "tags": ["B-loc", "I-loc"]}\n\n{"tokens": [], "tags": []}\n'
    sentences = parse_jsonl(good, "a.jsonl", "data.train", tokens_key="tokens", tags_key="tags")
    assert [s.tokens for s in sentences] == [["New", "York"], []] and sentences[0].lines == [1, 1]
    bad = '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b", "c", "d", "e"], "tags": ["O", "O", "O", "O"]}\n'
    with pytest.raises(DataError) as info:
        parse_jsonl(bad, "wnut.jsonl", "data.train", tokens_key="tokens", tags_key="tags")
    assert info.value.problems == [
        ("data.train", "wnut.jsonl: line 2: 5 tokens but 4 tags (each token needs one tag)")
    ]
    with pytest.raises(DataError) as info:
        parse_jsonl('{"words": ["a"], "ner": ["O"]}\n', "w.jsonl", "data.train", tokens_key="tokens", tags_key="tags")
    assert "line 1 has no 'tokens' and no 'tags'; keys found: words, ner" in info.value.problems[0][1]
    with pytest.raises(DataError) as info:  # more bad lines than are listed: the count is right, the keys still said
        parse_jsonl('{"words": ["a"], "ner": ["O"]}\n' * 6, "w.jsonl", "data.train", tokens_key="tokens",
                    tags_key="tags")  # fmt: skip
    assert "line 5 has no 'tokens' and no 'tags'; and 1 more; keys found: words, ner" in info.value.problems[0][1]


def test_iob1_becomes_iob2_and_the_rewrites_are_counted() -> None:
    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == (
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"], 3
    )
    iob1 = TaggedFile([parse_conll("Peter I-PER\nBlackburn I-PER\n", "a", "f")[0]], "a.iob", "a.iob")
    report = clean_sentences(iob1).report
    assert (report["scheme"], report["tags_rewritten"], report["invalid_transitions"]) == ("IOB1", 1, 0)
    # In a file that uses B-, an entity that starts with I- is an invalid transition (still read as B-).
    sentences = parse_conll("a B-X\nb O\nc I-X\n\n\n\nd O\nd O\n\nd O\n", "b", "f")
    clean = clean_sentences(TaggedFile(sentences, "b.conll", "b.conll"))
    assert clean.tags == [["B-X", "O", "B-X"], ["O", "O"], ["O"]]
    assert (clean.report["scheme"], clean.report["invalid_transitions"]) == ("IOB2", 1)


def test_cleaning_drops_and_counts_empty_and_duplicate_sentences() -> None:
    sentences = parse_jsonl(
        '{"tokens": [], "tags": []}\n{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"], "tags": ["O"]}\n'
        '{"tokens": ["a"], "tags": ["B-x"]}\n', "a.jsonl", "f", tokens_key="tokens", tags_key="tags")  # fmt: skip
    clean = clean_sentences(TaggedFile(sentences, "a.jsonl", "a.jsonl"))
    assert clean.tags == [["O"], ["B-x"]] and clean.first_lines == [2, 4]
    assert {k: clean.report[k] for k in ("rows_in", "empty_text", "duplicates", "rows_out")} == {
        "rows_in": 4, "empty_text": 1, "duplicates": 1, "rows_out": 2}  # fmt: skip


def test_read_tagged_takes_the_format_from_the_spec_or_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "emerging.test.annotated"
    path.write_text("Paris\tB-location\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot tell the format of emerging.test.annotated"):
        read_tagged(str(path), field="data.train")
    assert read_tagged(str(path), field="data.train", fmt="conll").sentences[0].tags == ["B-location"]


# -- alignment and windows ----------------------------------------------------------------------------------


def test_windows_split_at_word_boundaries_and_keep_every_word_once() -> None:
    assert word_windows([1, 2, 3, 1], 3) == [(0, 2), (2, 3), (3, 4)]
    assert word_windows([5, 1], 3) == [(0, 1), (1, 2)]  # a word longer than a window is a window of its own
    assert word_windows([], 3) == []
    assert first_subtoken_labels([None, 0, 1, 1, 2, None], [7, 8, 9]) == [-100, 7, 8, -100, 9, -100]


def wordpiece_tokenizer(tmp_path: Path) -> Any:
    """A WordPiece tokenizer that splits 'strangelove' into 'strange ##love' (and 'yorkers' into 'york ##ers')."""
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dr", "strange", "##love", "visits", "new", "york",
             "##ers", "today", "."]  # fmt: skip
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})


def test_first_sub_token_carries_the_tag_and_long_sentences_become_windows(tmp_path: Path) -> None:
    tokenizer = wordpiece_tokenizer(tmp_path)
    words = ["Dr", "Strangelove", "visits", "New", "Yorkers", "today", "\u200b"]
    tags = [1, 2, 0, 3, 4, 0, 0]
    columns, stats = encode_sentences(tokenizer, [words], [tags], max_length=32)
    assert tokenizer.convert_ids_to_tokens(columns["input_ids"][0]) == [
        "[CLS]", "dr", "strange", "##love", "visits", "new", "york", "##ers", "today", "[UNK]", "[SEP]"]  # fmt: skip
    assert columns["labels"][0] == [-100, 1, 2, -100, 0, 3, 4, -100, 0, 0, -100]
    assert stats == {"sentences_split": 0, "rows": 1, "words_cut": 0, "unknown_words": 1}
    # max_length 6 leaves 4 sub-tokens per window: [dr strange ##love visits] [new york ##ers today] [UNK]
    columns, stats = encode_sentences(tokenizer, [words, ["today"]], [tags, [0]], max_length=6)
    assert columns["sentence"] == [0, 0, 0, 1] and stats["sentences_split"] == 1 and stats["rows"] == 4
    assert all(length <= 6 for length in columns["length"])
    labelled = [label for row in columns["labels"][:3] for label in row if label != IGNORE_INDEX]
    assert labelled == tags  # every word's tag exactly once, in order


# -- metrics ------------------------------------------------------------------------------------------------


def test_entity_metrics_match_a_hand_computed_case() -> None:
    # gold: PER(0-1) LOC(3) | LOC(0) ORG(2-3);  predicted: PER(0-1) LOC(3) | LOC(0-1) ORG(2-3) MISC(5)
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O", "B-ORG", "I-ORG", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "B-ORG", "I-ORG", "O", "B-MISC"]]
    m = entity_metrics(true, pred, ["LOC", "ORG", "PER", "TIME"])
    # 4 gold entities, 5 predicted, 3 exact matches (PER, LOC in sentence 1; ORG): the LOC span is too long.
    assert m["precision_micro"] == pytest.approx(3 / 5) and m["recall_micro"] == pytest.approx(3 / 4)
    assert m["f1_micro"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    # per type: LOC p 1/2 r 1/2 f 1/2; MISC 0; ORG 1; PER 1 -> macro over the 4 types seen = 2.5 / 4
    assert m["f1_macro"] == pytest.approx(2.5 / 4)
    assert m["per_class"]["LOC"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["TIME"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert list(m["per_class"]) == ["LOC", "MISC", "ORG", "PER", "TIME"] and m["entities"] == 4


def test_a_sub_word_split_entity_is_scored_by_its_first_sub_token_across_windows(tmp_path: Path) -> None:
    tokenizer = wordpiece_tokenizer(tmp_path)
    names = ["O", "B-per", "I-per", "B-loc", "I-loc"]
    words = ["Dr", "Strangelove", "visits", "New", "Yorkers", "today"]
    gold = [1, 2, 0, 3, 4, 0]
    columns, _ = encode_sentences(tokenizer, [words], [gold], max_length=6)  # 2 windows, split after 'visits'
    assert columns["sentence"] == [0, 0]
    labels = columns["labels"]
    # The model predicts the right tag on 'strange' but O on '##love' (ignored), and splits the location: 'york'
    # B-loc (wrong: it continues 'new'), '##ers' I-loc (ignored).
    preds = []
    for row in labels:
        row_preds = [label if label != IGNORE_INDEX else 0 for label in row]
        preds.append(row_preds)
    york = columns["input_ids"][1].index(tokenizer.convert_tokens_to_ids("york"))
    preds[1][york] = 3
    strange = columns["input_ids"][0].index(tokenizer.convert_tokens_to_ids("##love"))
    preds[0][strange] = 3  # a tag on a later sub-token never counts
    rows = [1, 0]  # rows arrive in any order
    true_tags, pred_tags = word_tags(rows, [labels[r] for r in rows], [preds[r] for r in rows], names,
                                     columns["sentence"])  # fmt: skip
    assert true_tags == [["B-per", "I-per", "O", "B-loc", "I-loc", "O"]]
    assert pred_tags == [["B-per", "I-per", "O", "B-loc", "B-loc", "O"]]
    m = entity_metrics(true_tags, pred_tags)
    # gold: per 'Dr Strangelove', loc 'New Yorkers'; predicted: the person, and loc 'New' + loc 'Yorkers'
    assert (m["precision_micro"], m["recall_micro"]) == (pytest.approx(1 / 3), pytest.approx(1 / 2))
    assert m["per_class"]["per"]["f1"] == 1.0 and m["per_class"]["loc"]["f1"] == 0.0


# -- the spec -----------------------------------------------------------------------------------------------


NER = {"name": "ner", "task": "token-classification", "data": {"train": "train.conll"}}


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(SweepError) as info:
        parse_spec(data)
    return dict(info.value.problems)


def test_token_classification_spec_defaults_to_entity_f1_and_refuses_class_weights() -> None:
    spec = parse_spec(NER)
    assert spec.task == "token-classification" and spec.objective.metric == "f1_micro"
    assert spec.model_dump(mode="json")["data"] == {"train": "train.conll", "val_fraction": 0.1, "cache_dir": None,
                                                     "label_column": "label", "text_column": "text",
                                                     "validation": None}  # fmt: skip
    assert parse_spec({**NER, "data": {**NER["data"], "format": "conll"}}).data.format == "conll"
    assert problems_of({**NER, "model": {"class_weights": "balanced"}, "objective": {"metric": "accuracy"}}) == {
        "model.class_weights": "'balanced' is not available for task: token-classification (its labels are per-token "
                               "tags, mostly O): remove it or set it to none",
        "objective.metric": "'accuracy' is not a metric of task: token-classification (choose one of f1_micro, "
                            "f1_macro, precision_micro, recall_micro)",
    }  # fmt: skip
    assert set(problems_of({**NER, "data": {**NER["data"], "text_column": ["a", "b"]}})) == {"data.text_column"}
    assert problems_of({"name": "x", "data": {"train": "t.csv", "format": "conll"}}) == {
        "data.format": "applies only to task: token-classification (this spec's task is text-classification): "
                       "remove it"}  # fmt: skip


# -- a study end to end on the tiny model -------------------------------------------------------------------

# Sentences in the quickstart's words (the tiny BERT's vocabulary) with entities of four types: a task the tiny
# model learns in a few epochs. Slots are filled at random (seeded) from ENTITIES.
ENTITIES = {
    "item": ["phone", "sofa", "laptop", "watch", "parcel", "package", "box"],
    "carrier": ["courier", "post office"],
    "payment": ["credit card", "gift card", "paypal", "bank"],
    "reference": ["tracking number", "invoice"],
}
TEMPLATES = [
    "my {item} never came", "the {carrier} lost my {item}", "i paid with {payment} for the {item}",
    "where is my {item} ? the {carrier} says the {reference} is wrong", "can i pay by {payment} ?",
    "the {reference} from the {carrier} does not work", "please send the {item} back to the {carrier}",
    "i want a refund to my {payment} for the {item} and the {item}", "what is the {reference} of my order ?",
    "hello , the {carrier} left the {item} at the door", "my {payment} was charged twice for one {item}",
]  # fmt: skip


def tagged_sentences(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """`n` distinct template sentences with IOB2 tags, drawn with `seed`."""
    rng = random.Random(seed)
    out: dict[tuple[str, ...], list[str]] = {}
    while len(out) < n:
        words: list[str] = []
        tags: list[str] = []
        for part in rng.choice(TEMPLATES).split():
            kind = part.strip("{}")
            if kind in ENTITIES:
                entity = rng.choice(ENTITIES[kind]).split()
                words += entity
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(entity) - 1)
            else:
                words.append(part)
                tags.append("O")
        out[tuple(words)] = tags
    return [(list(words), tags) for words, tags in out.items()]


def words_joined(words: list[str]) -> tuple[str, list[int]]:
    """The words joined by spaces, as a user would pass a sentence to the pipeline, and where each word starts."""
    text, starts = "", []
    for word in words:
        starts.append(len(text) + (1 if text else 0))
        text += (" " if text else "") + word
    return text, starts


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]], iob1: bool = False) -> Path:
    lines = []
    for words, tags in sentences:
        for word, tag in zip(words, tags, strict=True):
            lines.append(f"{word}\t{'I-' + tag[2:] if iob1 and tag.startswith('B-') else tag}")
        lines.append("\t")  # a whitespace-only separator, as WNUT-17's training file has
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_prepared_sentences_from_jsonl_and_conll_agree(tmp_path: Path, tiny_bert: Path) -> None:
    sentences = tagged_sentences(60, seed=0) + [(["hello"] * 20, ["O"] * 20)]
    with (tmp_path / "train.jsonl").open("w", encoding="utf-8") as fh:
        for words, tags in sentences:
            fh.write(json.dumps({"words": words, "ner": tags}) + "\n")
    write_conll(tmp_path / "train.iob", sentences, iob1=True)
    common = dict(validation_source=None, fmt=None, val_fraction=0.25, seed=0,
                  tokenizer_name_or_path=str(tiny_bert), max_length=16, cache_dir=tmp_path / "cache")  # fmt: skip
    from_json = prepare_token_data(train_source=str(tmp_path / "train.jsonl"), tokens_key="words", tags_key="ner",
                                   **common)  # type: ignore[arg-type]  # fmt: skip
    from_conll = prepare_token_data(train_source=str(tmp_path / "train.iob"), tokens_key="tokens", tags_key="tags",
                                    **common)  # type: ignore[arg-type]  # fmt: skip
    assert from_json.fingerprint == from_conll.fingerprint  # IOB1 read as the same IOB2 tags
    assert from_conll.report["cleaning"]["train"]["scheme"] == "IOB1"
    assert from_conll.report["cleaning"]["train"]["tags_rewritten"] > 0
    assert from_json.label_names == tag_names(["carrier", "item", "payment", "reference"])
    assert from_json.report["windows"]["train"]["sentences_split"] > 0  # max_length 16 splits the long tickets
    assert any("split into windows" in w for w in from_json.report["warnings"])
    assert len(from_json.validation_texts) == len(from_json.validation)
    assert from_conll.report["cache"] == "hit"


@pytest.fixture(scope="module")
def ner_study(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    from sweep.runner import run_study

    root = tmp_path_factory.mktemp("ner-study")
    write_conll(root / "train.conll", tagged_sentences(160, seed=1))
    write_conll(root / "dev.annotated", tagged_sentences(40, seed=2))
    spec = {
        "name": "ner-tiny",
        "task": "token-classification",
        "storage": f"sqlite:///{root / 'sweeps.db'}",
        "data": {"train": "train.conll", "validation": "dev.annotated", "format": "conll",
                 "cache_dir": str(root / "cache")},
        "model": {"encoder": str(tiny_bert), "max_length": 32},
        "search": {"n_trials": 2, "sampler": "random", "pruner": "none", "seed": 0,
                   "space": {"learning_rate": {"low": 3e-3, "high": 5e-3, "log": True}, "batch_size": 8,
                             "epochs": 3, "warmup_ratio": 0.0}},
    }  # fmt: skip
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    run_study(root / "spec.yaml")
    return root


def test_run_study_learns_entities_and_records_them_per_type(ner_study: Path) -> None:
    from optuna.trial import TrialState

    from record import read_study, read_trial
    from sweep.storage import load_study

    study = load_study("ner-tiny", f"sqlite:///{ner_study / 'sweeps.db'}")
    record = read_study(study)
    assert record.task == "token-classification" and record.metric == "f1_micro"
    assert record.label_names == tag_names(["carrier", "item", "payment", "reference"])
    assert record.data_report["class_distribution"]["validation"]["item"] > 0
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    best = read_trial(study.best_trial)
    assert study.best_value > 0.5  # an all-O tagger scores 0
    assert set(best.per_class) == {"carrier", "item", "payment", "reference"}
    assert best.metrics["val_f1_micro"] == study.best_value
    assert {"val_precision_micro", "val_recall_micro", "val_f1_macro", "val_loss"} <= set(best.metrics)
    assert best.confusion_matrix is None and best.confused_examples == []


def test_export_loads_with_the_ner_pipeline_and_reproduces_the_metric(ner_study: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from sweep.export import export_trial
    from sweep.storage import load_study

    study = load_study("ner-tiny", f"sqlite:///{ner_study / 'sweeps.db'}")
    out, trial = export_trial(study, tmp_path / "model")
    ner = pipeline("token-classification", model=str(out), aggregation_strategy="first", device=-1)
    groups = ner("my parcel never came and the courier says the tracking number is wrong")
    found = {(g["entity_group"], g["word"]) for g in groups}
    assert {("item", "parcel"), ("carrier", "courier")} <= found, found  # the real type names, not LABEL_3

    # The exported weights reproduce the stored entity F1 on the validation sentences.
    sentences = read_tagged(str(ner_study / "dev.annotated"), field="v", fmt="conll").sentences
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForTokenClassification.from_pretrained(str(out)).eval()
    predicted = []
    for sentence in sentences:
        encoded = tokenizer(sentence.tokens, is_split_into_words=True, truncation=True, max_length=32,
                            return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            ids = model(**encoded).logits[0].argmax(-1).tolist()
        words = encoded.word_ids(0)
        first = [i for i, w in enumerate(words) if w is not None and (i == 0 or words[i - 1] != w)]
        predicted.append([model.config.id2label[ids[i]] for i in first])
    assert entity_metrics([s.tags for s in sentences], predicted)["f1_micro"] == pytest.approx(trial.value, abs=1e-6)
    # ... and so does the card's call as written: "first" tags each word by its first sub-token, as it was scored
    # ("simple" read every sub-token and scored below the stored F1 in a reviewer's check)
    grouped = []
    for sentence in sentences:
        text, starts = words_joined(sentence.tokens)
        tags = ["O"] * len(starts)
        for group in ner(text):
            inside = [i for i, at in enumerate(starts) if group["start"] <= at < group["end"]]
            for k, i in enumerate(inside):
                tags[i] = f"{'B' if k == 0 else 'I'}-{group['entity_group']}"
        grouped.append(tags)
    assert entity_metrics([s.tags for s in sentences], grouped)["f1_micro"] == pytest.approx(trial.value, abs=1e-6)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert 'pipeline("token-classification", model="path/to/this/folder", aggregation_strategy="first")' in card
    assert "| entity type | precision | recall | F1 | support |" in card
    assert json.loads((out / "sweep.json").read_text(encoding="utf-8"))["task"] == "token-classification"
    # an export --by mean says so in the NER card too (it said nothing of the seeds, and showed the lucky run)
    from sweep.export import model_card

    meta = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    chosen = {"configuration": 1, "mean": 0.2871, "std": 0.0837, "runs": [1, 6, 7]}
    by_mean = model_card({**meta, "selected_by": chosen})
    assert "Chosen by mean over seeds: trial 1's configuration had the best mean (0.2871 ± 0.0837 over 3 seeds)" in (
        " ".join(by_mean.split()))
    # the NER pipeline always cuts at model_max_length: the encoder's stays (a long sentence is read whole, not cut
    # at the study's 32), and the tokenizer pads only when asked
    source = AutoTokenizer.from_pretrained(str(json.loads((out / "sweep.json").read_text())["encoder"]))
    assert tokenizer.model_max_length == source.model_max_length > 32
    assert len(tokenizer("word")["input_ids"]) == 3


def test_report_shows_entity_types_weakest_first(ner_study: Path, tmp_path: Path) -> None:
    from reports.blocks import TableBlock
    from reports.page import write_report
    from reports.sections import build_report
    from sweep.storage import load_study

    study = load_study("ner-tiny", f"sqlite:///{ner_study / 'sweeps.db'}")
    sections = {s.title: s for s in build_report([study])}
    blocks = sections["Best trial: per entity type"].blocks
    table = next(b for b in blocks if isinstance(b, TableBlock))
    assert table.columns[0] == "entity type"
    f1s = [row[3] for row in table.rows]
    assert [row[0] for row in table.rows] and f1s == sorted(f1s)
    data = sections["Data"].blocks
    tagged = next(b for b in data if isinstance(b, TableBlock) and b.caption == "Tagged sentences")
    assert tagged.rows[0] == ["scheme", "IOB2", "IOB2"]
    page = write_report([study], tmp_path / "report.html").path.read_text(encoding="utf-8")
    assert "Per-entity-type scores of trial" in page and "Best trial: per entity type" in page


# -- bad input, through the real CLI: one line naming the file and the value, exit 2, nothing written ------------


def bad_input_case(
    tmp_path: Path, encoder: Path, files: dict[str, str], capsys: pytest.CaptureFixture[str], **changes: Any
) -> str:
    """Write `files`, a token-classification spec over train/validation (with `changes`), run `sweep run` on it and
    return its one error line, after checking the exit code and that no file was written or changed."""
    from test_bad_input import snapshot

    from sweep.cli import main

    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    names = list(files)
    spec: dict[str, Any] = {
        "name": "ner-bad", "task": "token-classification", "storage": f"sqlite:///{tmp_path / 'sweeps.db'}",
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "data": {"train": names[0], "validation": names[1], "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(encoder), "max_length": 32},
        "search": {"n_trials": 1, "sampler": "random", "pruner": "none", "space": {"epochs": 1}},
    }  # fmt: skip
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        spec[section][key] = value
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(["run", str(tmp_path / "spec.yaml")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    assert snapshot(tmp_path) == before and not (tmp_path / "sweeps.db").exists()
    return lines[0]


TRAIN_CONLL = "my\tO\nphone\tB-item\nbroke\tO\n\nthe\tO\ncourier\tB-carrier\n\t\n"
DEV_CONLL = "my\tO\nwatch\tB-item\n\n"
BAD_INPUT = {
    "jsonl tag list shorter than its tokens": (
        {"wnut.jsonl": '{"tokens": ["my", "phone"], "tags": ["O", "B-item"]}\n'
                       '{"tokens": ["a", "b", "c", "d", "e"], "tags": ["O", "O", "O", "O"]}\n',
         "dev.conll": DEV_CONLL}, {},
        "error: data.train: wnut.jsonl: line 2: 5 tokens but 4 tags (each token needs one tag)"),
    "validation entity type never seen in training": (
        {"train.conll": TRAIN_CONLL, "emerging.dev.conll": "a\tO\nknife\tB-weapon\n\nb\tB-item\n"}, {},
        "error: data.validation: tag 'B-weapon' at emerging.dev.conll line 2 is not in the training data: entity type "
        "'weapon' never occurs there (types in training: carrier, item)"),
    "conll line without a tag": (
        {"train.conll": "my\tO\nphone\n", "dev.conll": DEV_CONLL}, {},
        "error: data.train: cannot read train.conll as CoNLL (token and tag per line): line 2 has one field "
        "('phone'): it needs a token and its tag"),
    "tags that are not IOB": (
        {"train.conll": "New\tB-LOC\nYork\tE-LOC\nParis\tS-LOC\n", "dev.conll": DEV_CONLL}, {},
        "error: data.train: train.conll: tags must be O, B-<type> or I-<type> (IOB1 or IOB2); found 'E-LOC' at "
        "line 2; 'S-LOC' at line 3"),
    "class ids for tags, on one JSON line each (each said once)": (
        {"ids.jsonl": '{"tokens": ["my", "phone", "broke"], "tags": [0, 7, 0]}\n', "dev.conll": DEV_CONLL}, {},
        "error: data.train: ids.jsonl: tags must be O, B-<type> or I-<type> (IOB1 or IOB2) (the tags are numbers, a "
        "dataset's class ids: write each as its tag name, e.g. through the dataset's features['ner_tags'].feature."
        "names); found '0' at line 1; '7' at line 1"),
    "tags in lower case": (
        {"train.conll": "my\to\nphone\tb-item\n", "dev.conll": DEV_CONLL}, {},
        "error: data.train: train.conll: tags must be O, B-<type> or I-<type> (IOB1 or IOB2) (tags are read as "
        "written: B-, I- and O in capitals); found 'o' at line 1; 'b-item' at line 2"),
    "token and tag columns swapped": (
        {"train.conll": "O\tmy\nB-item\tphone\nO\tbroke\n", "dev.conll": DEV_CONLL}, {},
        "error: data.train: train.conll: tags must be O, B-<type> or I-<type> (IOB1 or IOB2) (the tokens are tags: "
        "the token and tag columns look swapped; the token comes first); found 'my' at line 1; 'phone' at line 2; "
        "'broke' at line 3"),
    "a comma-separated conll file": (
        {"train.conll": "my,O\nphone,B-item\nbroke,O\n", "dev.conll": DEV_CONLL}, {},
        "error: data.train: cannot read train.conll as CoNLL (token and tag per line) (its lines look comma-separated: "
        "CoNLL separates a token and its tag with a space or a tab): line 1 has one field ('my,O'): it needs a token "
        "and its tag; line 2 has one field ('phone,B-item'): it needs a token and its tag; line 3 has one field "
        "('broke,O'): it needs a token and its tag"),
    "training data without entities": (
        {"train.conll": "my\tO\nphone\tO\n", "dev.conll": DEV_CONLL}, {},
        "error: data.train: train.conll has no entity tags (every tag is O): token classification needs B-<type> / "
        "I-<type> tags to learn from"),
    "a csv file": (
        {"train.csv": "text,label\na,b\n", "dev.conll": DEV_CONLL}, {},
        "error: data.train: unsupported file type '.csv' for task: token-classification (.conll, .bio, .iob, .jsonl, "
        ".json; any other name with data.format: conll or jsonl)"),
    "a key of JSON lines for a CoNLL file": (
        {"train.conll": TRAIN_CONLL, "dev.conll": DEV_CONLL}, {"data__text_column": "words"},
        "error: data.text_column: 'words' names a key of JSON lines, and a CoNLL file has none (a token and its tag "
        "per line, the tag last): remove it"),
    "balanced class weights": (
        {"train.conll": TRAIN_CONLL, "dev.conll": DEV_CONLL}, {"model__class_weights": "balanced"},
        "error: model.class_weights: 'balanced' is not available for task: token-classification"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_tagged_input_is_refused_with_one_line_and_nothing_written(
    case: str, tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, changes, expected = BAD_INPUT[case]
    line = bad_input_case(tmp_path, tiny_bert, files, capsys, **changes)
    assert line.startswith("error: ") and expected.removeprefix("error: ") in line, line


def test_a_worker_without_the_spec_file_reads_json_lines_by_the_keys_the_spec_meant(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """The store keeps a full dump of the spec, whose text_column / label_column are then the generic `text` /
    `label`: a worker rebuilding the spec from it (`sweep worker` without --spec, the service's and Ray's workers)
    must still read the JSON lines keys `tokens` / `tags` the spec file left unset."""
    from rich.console import Console

    from sweep.joining import join
    from sweep.runner import run_study

    for name, seed in (("train.jsonl", 3), ("dev.jsonl", 4)):
        lines = [json.dumps({"tokens": w, "tags": t}) for w, t in tagged_sentences(24, seed=seed)]
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    spec = {
        "name": "ner-json", "task": "token-classification", "storage": url,
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "data": {"train": "train.jsonl", "validation": "dev.jsonl", "cache_dir": str(tmp_path / "cache")},
        "model": {"encoder": str(tiny_bert), "max_length": 16},
        "search": {"n_trials": 1, "sampler": "random", "pruner": "none", "space": {"epochs": 1, "batch_size": 16}},
    }  # fmt: skip
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    run_study(tmp_path / "spec.yaml")
    joined = join("ner-json", url, console=Console(quiet=True))
    assert joined.record.spec["data"]["text_column"] == "text"  # the dump, as stored
    assert joined.data.label_names == tag_names(["carrier", "item", "payment", "reference"])


def test_the_export_command_names_the_ner_pipeline(
    ner_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sweep.cli import main

    out = tmp_path / "cli-model"
    assert main(["export", "ner-tiny", "--out", str(out), "--storage", f"sqlite:///{ner_study / 'sweeps.db'}"]) == 0
    assert f'load it with: transformers.pipeline("token-classification", model="{out}", aggregation_strategy=' in (
        capsys.readouterr().out
    )


def test_the_ner_card_marks_an_entity_type_absent_from_validation_and_puts_it_last() -> None:
    from sweep.export import token_model_card

    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    meta = {"study": "s", "trial": 0, "encoder": "minilm", "epochs": 1, "best_epoch": 1, "value": 0.5,
            "metric": "f1_micro", "seed": 0, "hyperparameters": {}, "searched_parameters": {},
            "label_names": ["O", "B-a", "I-a"],
            "validation_metrics": {"f1_micro": 0.5}, "data_fingerprint": "x", "data_report": {},
            "per_class": {"corporation": {**zero, "support": 0}, "person": {**zero, "f1": 0.5, "support": 3}}}
    card = token_model_card(meta)
    assert card.index("| person |") < card.index("| corporation (not in validation) |")


def test_window_warnings_count_one_sentence_and_one_word_in_the_singular() -> None:
    from datamodules.token_preparation import window_warnings

    lines = window_warnings({"validation": {"sentences_split": 1, "rows": 2, "sentences": 100, "words_cut": 1}}, 48)
    assert lines == ["validation: 1 sentence longer than max_length=48 tokens was split into windows (2 rows for 100 "
                     "sentences)", "validation: 1 single word longer than max_length=48 tokens keeps only its first "
                     "sub-tokens (its tag is kept)"]  # fmt: skip


def test_the_opening_line_counts_sentences_and_says_the_windows_apart() -> None:
    """It said '206 train / 101 validation examples' (windows) where the report and card say 195 / 100 sentences."""
    from types import SimpleNamespace

    from sweep.runner import _examples_phrase
    from sweep.spec import parse_spec

    spec = parse_spec({"name": "s", "task": "token-classification", "data": {"train": "t.conll"}})
    windows = {"train": {"sentences": 195, "rows": 206}, "validation": {"sentences": 100, "rows": 101}}
    data = SimpleNamespace(train=[0] * 206, validation=[0] * 101, report={"windows": windows})
    assert _examples_phrase(spec, data) == "195 train / 100 validation sentences (206 / 101 windows)"  # type: ignore[arg-type]
    whole = {"train": {"sentences": 5, "rows": 5}, "validation": {"sentences": 2, "rows": 2}}
    same = SimpleNamespace(train=[0] * 5, validation=[0] * 2, report={"windows": whole})
    assert _examples_phrase(spec, same) == "5 train / 2 validation sentences"  # type: ignore[arg-type]
