"""MaskedDiffWithXvec: speech tokens + prompt (tokens, mel, x-vector) -> mel of the generated part.

`MaskedDiffWithXvec` holds the weights and the pure forward pieces (speaker projection, token
encoding, length regulation); `generate_mel` runs one padded batch of utterances through them and
the Euler sampler. Noise can be passed in, so tests and streaming comparisons are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice1.cfm import solve_euler
from stepaudio.decoder.cosyvoice1.conformer import ConformerEncoder
from stepaudio.decoder.cosyvoice1.estimator import ConditionalDecoder
from stepaudio.decoder.cosyvoice1.flow_config import FlowConfig
from stepaudio.decoder.cosyvoice1.length_regulator import InterpolateRegulator


class _CFMHolder(nn.Module):
    """Keeps the reference key prefix `decoder.estimator.*`."""

    def __init__(self, estimator: ConditionalDecoder) -> None:
        super().__init__()
        self.estimator = estimator


class MaskedDiffWithXvec(nn.Module):
    """Flow decoder weights; keys match the reference state dict (`flow.pt`), q|k|v fused."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        self.input_embedding = nn.Embedding(config.vocab_size, config.input_size)
        self.spk_embed_affine_layer = nn.Linear(config.spk_embed_dim, config.output_size)
        self.encoder = ConformerEncoder(config.encoder)
        self.encoder_proj = nn.Linear(config.encoder.output_size, config.output_size)
        self.length_regulator = InterpolateRegulator(config.length_regulator)
        self.decoder = _CFMHolder(ConditionalDecoder(config.estimator))

    @property
    def estimator(self) -> ConditionalDecoder:
        return self.decoder.estimator

    def project_speaker(self, embedding: torch.Tensor) -> torch.Tensor:
        """L2-normalised x-vector [B, 192] -> speaker vector [B, 80]."""
        return self.spk_embed_affine_layer(F.normalize(embedding, dim=1))

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids [B, N] (negative ids clamp to 0) -> `encoder_proj` output [B, N, 80]."""
        h = self.encoder(self.input_embedding(torch.clamp(tokens, min=0)), lengths)
        return self.encoder_proj(h)


@dataclass(frozen=True)
class FlowRequest:
    """One utterance: generated ids [N2], prompt ids [N1], prompt mel [T1, 80], raw x-vector [192]."""

    tokens: torch.Tensor
    prompt_tokens: torch.Tensor
    prompt_feat: torch.Tensor
    embedding: torch.Tensor


@dataclass(frozen=True)
class FlowConditioning:
    """Everything the sampler needs, padded over the batch; `mask` is None when nothing is padded."""

    mu: torch.Tensor
    mask: torch.Tensor | None
    spks: torch.Tensor
    cond: torch.Tensor
    mel_lens1: tuple[int, ...]
    mel_lens2: tuple[int, ...]


def prepare_conditioning(model: MaskedDiffWithXvec, requests: Sequence[FlowRequest]) -> FlowConditioning:
    """Encoder, length regulation, speaker vector and prompt condition for a batch of requests."""
    if not requests:
        raise ValueError("no flow requests")
    weight = model.input_embedding.weight
    device, dtype = weight.device, weight.dtype
    n1 = [int(r.prompt_tokens.numel()) for r in requests]
    n2 = [int(r.tokens.numel()) for r in requests]
    mel1 = [int(r.prompt_feat.shape[0]) for r in requests]
    mel2 = [model.config.mel_len(n) for n in n2]
    for i, m in enumerate(mel2):
        if m < 1:
            raise ValueError(f"request {i}: {n2[i]} tokens give no mel frames")
    totals = [a + b for a, b in zip(n1, n2, strict=True)]
    tokens = torch.zeros(len(requests), max(totals), dtype=torch.long, device=device)
    for i, r in enumerate(requests):
        tokens[i, : totals[i]] = torch.cat([r.prompt_tokens.reshape(-1), r.tokens.reshape(-1)]).to(device)
    lengths = torch.tensor(totals, device=device)
    h = model.encode(tokens, lengths)
    mu, mask = model.length_regulator(h, n1, n2, mel1, mel2)
    cond = torch.zeros_like(mu)
    for i, r in enumerate(requests):
        cond[i, :, : mel1[i]] = r.prompt_feat.to(device=device, dtype=dtype).transpose(0, 1)
    embeddings = torch.stack([r.embedding.reshape(-1) for r in requests]).to(device=device, dtype=dtype)
    return FlowConditioning(mu, mask, model.project_speaker(embeddings), cond, tuple(mel1), tuple(mel2))


@torch.inference_mode()
def generate_mel(
    model: MaskedDiffWithXvec,
    requests: Sequence[FlowRequest],
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Mel [80, T2] (float32) of the generated part of every request, batched as one ODE solve.

    `noise` [B, 80, >=T] is the initial state (item i uses its first `T1 + T2` frames); without it a
    standard normal draw from `generator` is used, scaled by the configured temperature.
    """
    c = prepare_conditioning(model, requests)
    b, channels, frames = c.mu.shape
    if noise is None:
        noise = torch.randn(b, channels, frames, generator=generator, device=c.mu.device, dtype=torch.float32)
    elif noise.shape[0] != b or noise.shape[1] != channels or noise.shape[2] < frames:
        raise ValueError(f"noise of shape {tuple(noise.shape)} does not cover {(b, channels, frames)}")
    z = noise[:, :, :frames].to(device=c.mu.device, dtype=c.mu.dtype) * model.config.cfm.temperature
    x = solve_euler(model.estimator, z, c.mu, c.mask, c.spks, c.cond, model.config.cfm)
    return [x[i, :, c.mel_lens1[i] : c.mel_lens1[i] + c.mel_lens2[i]].float() for i in range(b)]
