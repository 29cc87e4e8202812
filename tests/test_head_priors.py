"""Heads over many sparse labels start at the training frequencies (their output bias), not at 0.

From a zero bias a multi-label head scores every label 0.5 and a token head gives O the same chance as every entity
tag; the optimizer then spends hundreds of steps learning the frequencies before it learns the texts (MiniLM on
NLU++ and WNUT-17 stayed at the trivial baselines for whole runs). See tests/test_learning.py for the measurements.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.multilabel import MultiLabelClassifier
from models.token_classifier import TokenClassifier


def _output_bias(model: torch.nn.Module, size: int) -> list[float]:
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == size]
    return layers[-1].bias.detach().tolist()


def test_multilabel_head_starts_at_each_labels_log_odds(tiny_bert: Path) -> None:
    priors = [0.5, 0.1, 0.01]
    module = MultiLabelClassifier(encoder_name_or_path=str(tiny_bert), label_names=["a", "b", "c"],
                                  learning_rate=1e-3, label_priors=priors)  # fmt: skip
    assert _output_bias(module.model, 3) == pytest.approx([math.log(p / (1 - p)) for p in priors], abs=1e-5)
    with torch.no_grad():  # so every label's sigmoid score starts at its training frequency, whatever the text
        scores = torch.sigmoid(module({"input_ids": torch.tensor([[2, 5, 3]]), "attention_mask": torch.ones(1, 3)}))
    assert scores[0].tolist() == pytest.approx(priors, abs=0.2)
    plain = MultiLabelClassifier(encoder_name_or_path=str(tiny_bert), label_names=["a", "b", "c"], learning_rate=1e-3)
    assert _output_bias(plain.model, 3) == pytest.approx([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="label_priors: one frequency in \\[0, 1\\] per label"):
        MultiLabelClassifier(encoder_name_or_path=str(tiny_bert), label_names=["a", "b"], learning_rate=1e-3,
                             label_priors=[0.5])  # fmt: skip


def test_token_head_starts_at_the_tag_frequencies(tiny_bert: Path) -> None:
    priors = [0.9, 0.06, 0.04]
    module = TokenClassifier(encoder_name_or_path=str(tiny_bert), label_names=["O", "B-x", "I-x"],
                             learning_rate=1e-3, label_priors=priors)  # fmt: skip
    assert _output_bias(module.model, 3) == pytest.approx([math.log(p) for p in priors], abs=1e-5)


def test_the_objective_gives_the_heads_the_training_frequencies() -> None:
    import datasets

    from sweep.objective import _label_priors

    class Data:  # the fields of PreparedData that _label_priors reads
        def __init__(self, train: datasets.Dataset, report: dict, label_names: list[str]) -> None:
            self.train, self.report, self.label_names = train, report, label_names

    tagged = Data(datasets.Dataset.from_dict({"labels": [[0, 1, -100, 2], [0, 0]], "sentence": [0, 1]}), {},
                  ["O", "B-x", "I-x"])  # fmt: skip
    assert _label_priors(tagged) == pytest.approx([3 / 5, 1 / 5, 1 / 5])  # type: ignore[arg-type]
    multi = Data(datasets.Dataset.from_dict({"labels": [[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]}),
                 {"multi_label": True, "class_distribution": {"train": {"a": 3, "b": 2}}}, ["a", "b"])  # fmt: skip
    assert _label_priors(multi) == pytest.approx([0.75, 0.5])  # type: ignore[arg-type]
    single = Data(datasets.Dataset.from_dict({"labels": [0, 1]}), {}, ["a", "b"])
    assert _label_priors(single) is None  # type: ignore[arg-type]
