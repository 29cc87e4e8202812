"""Length-grouped batches: every row once per epoch, little padding, seeded."""

from __future__ import annotations

import numpy as np

from datamodules.text_classification import LengthGroupedBatches


def padding(batches: list[list[int]], lengths: np.ndarray) -> int:
    return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)


def test_each_row_once_and_less_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=1000)
    sampler = LengthGroupedBatches(lengths.tolist(), 16, seed=3)
    epoch1, epoch2 = list(sampler), list(sampler)
    for batches in (epoch1, epoch2):
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(1000))
        assert all(1 <= len(b) <= 16 for b in batches) and len(batches) == len(sampler) == 63
    assert epoch1 != epoch2  # a new order each epoch

    shuffled = rng.permutation(1000)
    random_batches = [shuffled[i : i + 16].tolist() for i in range(0, 1000, 16)]
    assert padding(epoch1, lengths) < 0.2 * padding(random_batches, lengths)


def test_seeded() -> None:
    lengths = list(range(100))
    assert list(LengthGroupedBatches(lengths, 8, seed=1)) == list(LengthGroupedBatches(lengths, 8, seed=1))
    assert list(LengthGroupedBatches(lengths, 8, seed=1)) != list(LengthGroupedBatches(lengths, 8, seed=2))
