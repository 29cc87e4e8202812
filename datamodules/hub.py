"""Labelled tables from the Hugging Face hub: `hub:NAME[:CONFIG[:SPLIT]]` (needs a network; `datasets` on first use)."""

from __future__ import annotations

from collections.abc import Callable

from datamodules.cleaning import is_missing
from datamodules.errors import DataError

HUB_PREFIX = "hub:"


def parse_hub_source(source: str, split: str) -> tuple[str, str | None, str]:
    """`hub:NAME[:CONFIG[:SPLIT]]` -> (name, config or None, split); an explicit SPLIT overrides `split`."""
    parts = source[len(HUB_PREFIX) :].split(":")
    name = parts[0].strip()
    config = parts[1].strip() or None if len(parts) > 1 else None
    chosen = parts[2].strip() if len(parts) > 2 and parts[2].strip() else split
    return name, config, chosen


def read_hub(
    source: str, *, field: str, split: str, label_column: str
) -> tuple[list[str], Callable[[str], list[object]]]:
    """Load a hub dataset split; ClassLabel label ids become their names (negative ids: missing)."""
    import datasets  # on first use: importing it takes most of a second

    name, config, split = parse_hub_source(source, split)
    if not name or source.count(":") > 3:
        raise DataError(
            [
                (
                    field,
                    f"cannot read {source!r}: write hub:<dataset>, hub:<dataset>:<config> or "
                    "hub:<dataset>:<config>:<split>",
                )
            ]
        )
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the hub, the network, a config or split name: all mean "cannot load this"
        raise DataError(
            [
                (
                    field,
                    f"could not load {source} (split {split!r}) from the Hugging Face hub: {type(err).__name__}: {err}",
                )
            ]
        ) from err
    feature = dataset.features.get(label_column)

    def values(column: str) -> list[object]:
        raw = [None if is_missing(v) else v for v in dataset[column]]
        if column == label_column and isinstance(feature, datasets.ClassLabel):
            return [None if v is None or int(v) < 0 else feature.int2str(int(v)) for v in raw]
        return raw

    return list(dataset.column_names), values
