"""What the speech decoder needs from a voice prompt, computed once per voice and reused per utterance."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PromptFeatures:
    """Flow ids `[N1]` int64 (LM id - 65536), matcha mel `[T1, 80]` at 22.05 kHz, raw CAM++ x-vector `[192]`."""

    flow_tokens: torch.Tensor
    mel: torch.Tensor
    embedding: torch.Tensor

    def __post_init__(self) -> None:
        if self.flow_tokens.dim() != 1:
            raise ValueError(f"prompt flow_tokens must be [N1], got {tuple(self.flow_tokens.shape)}")
        if self.mel.dim() != 2 or self.mel.shape[1] != 80:
            raise ValueError(f"prompt mel must be [T1, 80], got {tuple(self.mel.shape)}")
        if self.embedding.dim() != 1:
            raise ValueError(f"prompt embedding must be [D], got {tuple(self.embedding.shape)}")
        if (self.flow_tokens.numel() == 0) != (self.mel.shape[0] == 0):
            raise ValueError("a prompt needs both tokens and mel frames, or neither")

    @property
    def frames(self) -> int:
        return int(self.mel.shape[0])
