"""Interpolating length regulator: token-rate encoder features -> mel-rate `mu`.

At inference the prompt part and the generated part are interpolated separately (so the prompt
mel frames line up exactly with the prompt tokens), concatenated, then smoothed by a conv stack
(Conv1d k3 -> GroupNorm -> Mish per sampling ratio, then a 1x1 conv; keys `model.K`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice1.flow_config import LengthRegulatorConfig
from stepaudio.decoder.masking import group_norm, lengths_to_mask


class InterpolateRegulator(nn.Module):
    """`model` holds the conv stack with the reference's indices (Mish layers carry no weights)."""

    def __init__(self, config: LengthRegulatorConfig) -> None:
        super().__init__()
        channels = config.channels
        layers: list[nn.Module] = []
        for _ in config.sampling_ratios:
            layers += [nn.Conv1d(channels, channels, 3, 1, 1), nn.GroupNorm(config.groups, channels), nn.Mish()]
        layers.append(nn.Conv1d(channels, config.out_channels or channels, 1, 1))
        self.model = nn.Sequential(*layers)

    def smooth(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Conv stack over `[B, C, T]`; `mask` [B, 1, T] (None: no padding) keeps padding out of it."""
        for layer in self.model:
            if isinstance(layer, nn.Conv1d):
                x = layer(x if mask is None else x * mask)
            elif isinstance(layer, nn.GroupNorm):
                x = group_norm(x, layer, mask)
            else:
                x = layer(x)
        return x if mask is None else x * mask

    def forward(
        self,
        h: torch.Tensor,
        prompt_lens: Sequence[int],
        target_lens: Sequence[int],
        mel_lens1: Sequence[int],
        mel_lens2: Sequence[int],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Regulate `h` [B, N, C] (item i: `prompt_lens[i]` prompt rows then `target_lens[i]` rows).

        Returns `mu` [B, C, T] with item i's `mel_lens1[i] + mel_lens2[i]` frames first, and the
        frame mask [B, 1, T] (None when every item fills T).
        """
        batch, _, channels = h.shape
        totals = [m1 + m2 for m1, m2 in zip(mel_lens1, mel_lens2, strict=True)]
        frames = max(totals)
        x = h.new_zeros(batch, channels, frames)
        for i in range(batch):
            n1, n2, m1, m2 = prompt_lens[i], target_lens[i], mel_lens1[i], mel_lens2[i]
            if (n1 == 0) != (m1 == 0):
                raise ValueError(f"item {i}: {n1} prompt tokens but {m1} prompt mel frames")
            part = h[i : i + 1, n1 : n1 + n2].transpose(1, 2)
            x[i, :, m1 : m1 + m2] = F.interpolate(part, size=m2, mode="linear", align_corners=False)[0]
            if n1:
                prompt = h[i : i + 1, :n1].transpose(1, 2)
                x[i, :, :m1] = F.interpolate(prompt, size=m1, mode="linear", align_corners=False)[0]
        mask = None
        if min(totals) < frames:
            lengths = torch.tensor(totals, device=h.device)
            mask = lengths_to_mask(lengths, frames).unsqueeze(1).to(h.dtype)
        return self.smooth(x, mask), mask
