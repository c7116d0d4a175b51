"""F0 predictor of the HiFT vocoder (CosyVoice `ConvRNNF0Predictor`): mel frames -> F0 in Hz per frame.

Weight norm of the checkpoint is folded into plain conv weights at load time (see hift_loading), so the
forward is a stack of ordinary convolutions.
"""

from __future__ import annotations

import torch
from torch import nn

from stepaudio.decoder.cosyvoice1.hift_config import F0PredictorConfig


class ConvRNNF0Predictor(nn.Module):
    """`condnet` = [Conv1d(k3, pad 1), ELU] x num_layers (keys condnet.0, .2, ...); `classifier`; abs."""

    def __init__(self, config: F0PredictorConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = config.in_channels
        for _ in range(config.num_layers):
            layers += [nn.Conv1d(channels, config.cond_channels, kernel_size=3, padding=1), nn.ELU()]
            channels = config.cond_channels
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(config.cond_channels, config.num_class)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, in_channels, T] -> f0 [B, T] (Hz, >= 0; num_class must be 1 for HiFT)."""
        hidden = self.condnet(mel).transpose(1, 2)
        return torch.abs(self.classifier(hidden).squeeze(-1))
