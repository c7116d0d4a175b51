"""Length-bucketed, right-padded batches: similar lengths share a batch so little compute goes to padding.

Labels follow the Hugging Face convention: `labels[b, t]` is the token at t where the loss mask is set and
-100 elsewhere; the loss compares the logits at t - 1 with `labels[b, t]`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stepaudio.train.examples import IGNORE_INDEX, TrainExample

PAD_ID = 0


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [B, T] long, PAD_ID after each row's end
    valid: torch.Tensor  # [B, T] bool, True on real tokens
    labels: torch.Tensor  # [B, T] long, IGNORE_INDEX outside the loss mask

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.valid.to(device), self.labels.to(device))


def collate(examples: Sequence[TrainExample]) -> Batch:
    """Right-pad to the longest example."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    valid = torch.zeros((len(examples), width), dtype=torch.bool)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for b, example in enumerate(examples):
        row = torch.from_numpy(example.input_ids.astype(np.int64))
        ids[b, : len(row)] = row
        valid[b, : len(row)] = True
        labels[b, example.answer_start : len(row)] = row[example.answer_start :]
    return Batch(ids, valid, labels)


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, window: int = 64
) -> list[list[int]]:
    """One epoch of batches (indices into `lengths`), reproducible from (seed, epoch).

    Indices are shuffled, cut into windows of `window` batches, sorted by length inside each window and
    batched; the batch order is shuffled again, so lengths vary from step to step but not within a batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * window
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches
