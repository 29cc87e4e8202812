"""Data for fine-tuning text encoders: load, clean, split, tokenize (cached) and batch.

A sibling of `models`; imports neither `sweep`, `models` nor `optuna`. The names that pull in pandas,
datasets, transformers or Lightning are imported on first use, so `from datamodules import DataError`
stays fast (importing Lightning alone takes ~10 s on a small CPU machine).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from datamodules.cleaning import CleanResult, clean_examples, normalize_text
from datamodules.errors import DataError
from datamodules.splitting import check_label_coverage, remove_overlap, sorted_labels, stratified_split

if TYPE_CHECKING:
    from datamodules.hub import HUB_PREFIX
    from datamodules.loading import DATA_SUFFIXES, DEFAULT_TEXT_SEPARATOR, DELIMITERS, RawTable, load_table
    from datamodules.multilabel import prepare_multilabel_data
    from datamodules.preparation import PreparedData, prepare_classification_data
    from datamodules.text_classification import TextClassificationDataModule

_LAZY = {
    "DATA_SUFFIXES": "datamodules.loading",
    "DEFAULT_TEXT_SEPARATOR": "datamodules.loading",
    "DELIMITERS": "datamodules.loading",
    "HUB_PREFIX": "datamodules.hub",
    "RawTable": "datamodules.loading",
    "load_table": "datamodules.loading",
    "PreparedData": "datamodules.preparation",
    "prepare_classification_data": "datamodules.preparation",
    "prepare_multilabel_data": "datamodules.multilabel",
    "TextClassificationDataModule": "datamodules.text_classification",
}

__all__ = [
    "DATA_SUFFIXES",
    "DEFAULT_TEXT_SEPARATOR",
    "DELIMITERS",
    "HUB_PREFIX",
    "CleanResult",
    "DataError",
    "PreparedData",
    "RawTable",
    "TextClassificationDataModule",
    "check_label_coverage",
    "clean_examples",
    "load_table",
    "normalize_text",
    "prepare_classification_data",
    "prepare_multilabel_data",
    "remove_overlap",
    "sorted_labels",
    "stratified_split",
]


def __getattr__(name: str) -> Any:
    """Import the heavier public names on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
