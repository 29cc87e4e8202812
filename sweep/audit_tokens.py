"""The annotation audit of task: token-classification: each training word's tag checked against out-of-fold tag
probabilities, ranked by `cleanlab.token_classification` (no torch at import).

An audited example is a row of the prepared training data: a sentence, or a window of one (a sentence longer than
max_length comes as consecutive rows, see datamodules/token_preparation.py). Its items are its words, the first
sub-token of each carrying the word's tag. A flagged issue is one word: `LabelIssue.index` is its row, `position` the
word's index in its sentence (the row's first word is not the sentence's first in a later window).

- Folds are over sentences, never words: a sentence's words (all its windows) are held out together, so no word is
  predicted by a model that saw its sentence. They are stratified by each sentence's rarest tag (scikit-learn's
  `StratifiedGroupKFold`), which spreads every tag's sentences over the folds: a tag must be in 2 sentences or more
  so that each fold's model has one to learn it from. A tag in a single sentence (often a misspelt tag) is left out
  (`single_sentence_tags`): its words are not checked and no word is suggested as it (`kept_token_issues`); the
  audit is refused only when no entity tag would remain (`fold_problems`).
- `embeddings`: the frozen encoder's last hidden state at each word's first sub-token (cached, see
  `sweep.embeddings.train_word_embeddings`), and a multinomial logistic regression (C=`WORD_C`) over the words of
  each fold's training sentences (`sweep.label_issues.linear_probabilities`: a tag that a fold never trained on gets
  probability 0 there, the columns still line up).
- `finetune`: the fine-tuned fold's softmax at each word's first sub-token.
- `cleanlab.token_classification.filter.find_label_issues` flags words (over the flattened words, `filter_by="both"`
  as the classification audit uses), `cleanlab.token_classification.rank.get_label_quality_scores` scores each word,
  `cleanlab.dataset.rank_classes_by_label_quality` estimates each tag's noise over the words.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.label_issues import (
    AUDIT_TASKS,
    AuditTask,
    ClassCount,
    LabelIssue,
    LabelIssues,
    Splits,
    _plural,
    confused_labels,
    linear_probabilities,
)

if TYPE_CHECKING:
    from datamodules import PreparedData

IGNORE_INDEX = -100  # datamodules.text_classification.IGNORE_INDEX (not imported: that module imports torch)
SENTENCE = "sentence"  # datamodules.token_preparation.SENTENCE: the training sentence of each row
FIT_NAME = "word accuracy"
# Inverse regularisation of the per-fold logistic regression over words: the sentence probe's C=1 left MiniLM's word
# features of WNUT-17 predicting O for 87% of the entity words; C=10 fits them best (see benchmarks/AUDIT.md).
WORD_C = 10.0


@dataclass(frozen=True)
class WordTags:
    """The given tags of the training words, row by row of the prepared training data.

    `tags[r]`: one tag id per word of row r; `sentences[r]`: the training sentence row r belongs to; `offsets[r]`:
    the index in that sentence of row r's first word (0 unless r is a later window of a long sentence).
    """

    tags: list[np.ndarray]
    sentences: np.ndarray
    offsets: np.ndarray

    def flat(self) -> np.ndarray:
        """Every word's tag id, rows in order."""
        return np.concatenate(self.tags) if self.tags else np.zeros(0, dtype=int)

    def starts(self) -> np.ndarray:
        """Where each row's words start in `flat()` (one more entry at the end: the number of words)."""
        return np.concatenate([[0], np.cumsum([len(t) for t in self.tags])]).astype(int)


def word_tags(labels: Sequence[Sequence[int]], sentences: Sequence[int]) -> WordTags:
    """`WordTags` of rows of sub-token labels (IGNORE_INDEX but at each word's first sub-token) and the sentence of
    each row (a sentence's windows are consecutive rows, in order)."""
    tags = [np.asarray([t for t in row if t != IGNORE_INDEX], dtype=int) for row in labels]
    offsets = np.zeros(len(tags), dtype=int)
    for r in range(1, len(tags)):
        if sentences[r] == sentences[r - 1]:
            offsets[r] = offsets[r - 1] + len(tags[r - 1])
    return WordTags(tags=tags, sentences=np.asarray(sentences, dtype=int), offsets=offsets)


def _labels(data: PreparedData) -> WordTags:
    return word_tags(data.train["labels"], data.train[SENTENCE])


def _sentence_tags(labels: WordTags) -> dict[int, set[int]]:
    """Each sentence's set of tags (over all its windows)."""
    tags: dict[int, set[int]] = {}
    for sentence, row in zip(labels.sentences.tolist(), labels.tags, strict=True):
        tags.setdefault(sentence, set()).update(row.tolist())
    return tags


def single_sentence_tags(labels: WordTags, label_names: Sequence[str]) -> dict[str, int]:
    """The tags found in one training sentence only (whichever fold holds it out trains without them), with their
    words, fewest first: the audit leaves them out while an entity tag remains (`kept_token_issues`)."""
    sentences = Counter(tag for tags in _sentence_tags(labels).values() for tag in tags)
    words = Counter(labels.flat().tolist())
    rare = sorted((t for t in sentences if sentences[t] < 2), key=lambda t: (words[t], label_names[t]))
    return {label_names[t]: words[t] for t in rare}


def leaves_entity_tags(labels: WordTags, label_names: Sequence[str], left_out: Sequence[str]) -> bool:
    """Whether an entity tag (not O) remains once `left_out` tags are set aside: else nothing is left to audit."""
    present = {label_names[t] for t in set(labels.flat().tolist())}
    return any(name != "O" for name in present - set(left_out))


def token_fold_problems(
    labels: WordTags, folds: int, label_names: Sequence[str], left_out: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """Why K folds over sentences cannot predict every word out of fold (empty when they can): fewer sentences than
    folds, or a tag in a single sentence (whichever fold holds that sentence out trains without the tag) that is not
    `left_out`."""
    if folds < 2:
        return [("--folds", f"must be at least 2, got {folds}")]
    by_sentence = _sentence_tags(labels)
    if len(by_sentence) < folds:
        return [("data.train", f"{_plural(len(by_sentence), 'training sentence')}, fewer than --folds {folds}: "
                               "lower --folds or add sentences")]  # fmt: skip
    sentences = Counter(tag for tags in by_sentence.values() for tag in tags)
    words = Counter(labels.flat().tolist())
    return [
        ("data.train", f"tag {label_names[tag]!r} occurs in 1 training sentence ({_plural(words[tag], 'word')}): a "
                       "fold that holds that sentence out has no other to learn the tag from, so every tag needs 2 "
                       "sentences or more: add sentences with it, or fix the tag")
        for tag in sorted(sentences, key=lambda t: label_names[t])
        if sentences[tag] < 2 and label_names[tag] not in left_out
    ]  # fmt: skip


def sentence_folds(labels: WordTags, folds: int, seed: int) -> Splits:
    """(train, held-out) rows per fold, every row held out once and a sentence's rows always together; stratified by
    each sentence's rarest tag (fewest sentences), so each tag's sentences spread over the folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    by_sentence = _sentence_tags(labels)
    frequency = Counter(tag for tags in by_sentence.values() for tag in tags)
    rarest = {s: min(tags, key=lambda t: (frequency[t], t)) for s, tags in by_sentence.items()}
    strata = np.asarray([rarest[s] for s in labels.sentences.tolist()])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has only n members": rare tags are expected
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(np.zeros(len(strata)), strata, groups=labels.sentences))


def word_splits(labels: WordTags, splits: Splits) -> Splits:
    """Row splits as word splits (indices into `labels.flat()`)."""
    starts = labels.starts()

    def words(rows: np.ndarray) -> np.ndarray:
        parts = [np.arange(starts[r], starts[r + 1]) for r in rows.tolist()]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=int)

    return [(words(train), words(held)) for train, held in splits]


def _word_embeddings(*args: Any, **kwargs: Any) -> tuple[Any, bool]:
    from sweep.embeddings import train_word_embeddings

    return train_word_embeddings(*args, **kwargs)


def word_probe(
    features: np.ndarray, labels: WordTags, num_tags: int, splits: Splits, on_fold: Callable[[int], None] | None = None
) -> list[np.ndarray]:
    """Out-of-fold tag probabilities of every word (one words x tags array per row): a logistic regression per fold
    on the L2-normalised word features (rows: `labels.flat()`'s words) of the fold's training sentences."""
    flat = linear_probabilities(features, labels.flat(), num_tags, folds=len(splits), seed=0, c=WORD_C,
                                on_fold=on_fold, splits=word_splits(labels, splits))  # fmt: skip
    return np.split(flat, labels.starts()[1:-1])


def _probe(
    features: np.ndarray, labels: WordTags, data: PreparedData, splits: Splits, on_fold: Callable[[int], None]
) -> list[np.ndarray]:
    return word_probe(features, labels, len(data.label_names), splits, on_fold)


def _softmax_words(module: Any, batches: Any) -> list[np.ndarray]:
    """A token classifier's tag probabilities at each word's first sub-token, one words x tags array per row."""
    import torch

    out: list[np.ndarray] = []
    for batch, logits in batches(module):
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
        words = batch["labels"].cpu().numpy() != IGNORE_INDEX
        out.extend(probs[i][words[i]] for i in range(len(probs)))
    return out


def token_issues(labels: WordTags, pred_probs: Sequence[np.ndarray], label_names: Sequence[str]) -> LabelIssues:
    """Likely tagging errors, one per word, worst first (see the module docstring for the cleanlab calls).

    The suggested tag is the most probable tag other than the given one; per-tag counts are over words and list the
    tags that occur. `examples` counts words, `accuracy` is the share of words whose most probable tag is the given
    one.
    """
    from cleanlab.dataset import rank_classes_by_label_quality
    from cleanlab.token_classification.filter import find_label_issues
    from cleanlab.token_classification.rank import get_label_quality_scores

    given = [row.tolist() for row in labels.tags]
    probs = [np.asarray(p, dtype=np.float64) for p in pred_probs]
    ranked = find_label_issues(given, probs, filter_by="both", return_indices_ranked_by="self_confidence",
                               n_jobs=1)  # fmt: skip
    _, word_scores = get_label_quality_scores(given, probs, token_score_method="self_confidence")
    issues = []
    for row, word in ranked:
        p, tag = probs[row][word], given[row][word]
        others = p.copy()
        others[tag] = -1.0
        suggested = int(others.argmax())
        issues.append(LabelIssue(
            index=int(row), given=label_names[tag], suggested=label_names[suggested],
            quality=float(word_scores[row].iloc[word]), suggested_probability=float(p[suggested]),
            position=int(labels.offsets[row] + word),
        ))  # fmt: skip
    flat_labels = labels.flat()
    flat_probs = np.concatenate(probs) if probs else np.zeros((0, len(label_names)))
    noise = rank_classes_by_label_quality(flat_labels, flat_probs)
    noise_of = dict(zip(noise["Class Index"].astype(int), noise["Label Noise"].astype(float), strict=True))
    words = Counter(flat_labels.tolist())
    flagged = Counter(label_names.index(issue.given) for issue in issues)
    classes = [
        ClassCount(label=label_names[t], examples=words[t], flagged=flagged[t], estimated_noise=noise_of.get(t, 0.0))
        for t in range(len(label_names))
        if words[t]
    ]
    return LabelIssues(
        issues=issues,
        classes=classes,
        pairs=confused_labels(issues),
        examples=len(flat_labels),
        accuracy=float((flat_probs.argmax(axis=1) == flat_labels).mean()) if len(flat_labels) else 0.0,
        fit_name=FIT_NAME,
        unit="word",
    )


def kept_token_issues(
    labels: WordTags, pred_probs: Sequence[np.ndarray], label_names: Sequence[str], left_out: Sequence[str]
) -> LabelIssues:
    """`token_issues` of the words whose given tag is not `left_out` (`single_sentence_tags`), over the other tags
    only: each word's probabilities over those (scaled to sum to 1: a fine-tuned fold's head has every tag), each
    issue's row and word those of the whole data. A row left with no word is skipped."""
    gone = {label_names.index(name) for name in left_out}
    kept = [t for t in range(len(label_names)) if t not in gone]
    new_id = np.full(len(label_names), -1, dtype=int)
    new_id[kept] = np.arange(len(kept))
    rows, words, tags, probs = [], [], [], []
    for r, (row, p) in enumerate(zip(labels.tags, pred_probs, strict=True)):
        keep = np.flatnonzero(new_id[row] >= 0)
        if not len(keep):
            continue
        sub = np.asarray(p, dtype=np.float64)[keep][:, kept]
        totals = sub.sum(axis=1, keepdims=True)
        rows.append(r)
        words.append(keep)
        tags.append(new_id[row[keep]])
        probs.append(np.where(totals > 0, sub / np.where(totals > 0, totals, 1.0), 1.0 / len(kept)))
    audited = WordTags(tags=tags, sentences=labels.sentences[rows], offsets=np.zeros(len(rows), dtype=int))
    found = token_issues(audited, probs, [label_names[t] for t in kept])
    issues = [replace(issue, index=rows[issue.index],
                      position=int(labels.offsets[rows[issue.index]] + words[issue.index][issue.position or 0]))
              for issue in found.issues]  # fmt: skip
    return replace(found, issues=issues)


TOKEN_CLASSIFICATION = AuditTask(
    labels=_labels,
    label_kind="tokens",
    fold_problems=lambda data, labels, folds: token_fold_problems(labels, folds, data.label_names),
    splits=sentence_folds,
    embed=_word_embeddings,
    probe=_probe,
    predict=_softmax_words,
    collect=lambda items, _data: list(items),
    find=lambda labels, probs, data: token_issues(labels, probs, data.label_names),
)
AUDIT_TASKS["token-classification"] = TOKEN_CLASSIFICATION
