"""Padded batches and length buckets."""

from __future__ import annotations

import torch

from stepaudio.train.batching import PAD_ID, bucketed_batches, collate
from stepaudio.train.examples import IGNORE_INDEX, TrainExample


def _example(n_prompt: int, n_answer: int, start: int = 10) -> TrainExample:
    ids = tuple(range(start, start + n_prompt + n_answer))
    return TrainExample.of(f"{start:016x}", ids, n_prompt)


def test_collate_pads_right_and_labels_only_the_answer() -> None:
    batch = collate([_example(3, 2), _example(2, 1, start=50)])
    assert batch.input_ids.tolist() == [[10, 11, 12, 13, 14], [50, 51, 52, PAD_ID, PAD_ID]]
    assert batch.valid.tolist() == [[True] * 5, [True, True, True, False, False]]
    assert batch.labels.tolist() == [[IGNORE_INDEX] * 3 + [13, 14], [IGNORE_INDEX] * 2 + [52] + [IGNORE_INDEX] * 2]
    assert batch.target_tokens == 3


def test_buckets_cover_every_example_once_reproducibly_and_cut_padding() -> None:
    lengths = [int(x) for x in torch.randint(5, 500, (257,), generator=torch.Generator().manual_seed(0))]
    batches = bucketed_batches(lengths, 8, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(257))
    assert batches == bucketed_batches(lengths, 8, seed=1, epoch=0)
    assert batches != bucketed_batches(lengths, 8, seed=1, epoch=1)

    def padding(bs: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)

    unsorted = [list(range(i, min(i + 8, 257))) for i in range(0, 257, 8)]
    assert padding(batches) < 0.2 * padding(unsorted)
