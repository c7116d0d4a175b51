"""CausalMaskedDiffWithXvec: speech tokens + voice prompt -> 80-bin mel at 50 Hz (2 frames per token).

Offline (`inference`): prompt and new tokens are encoded together, the CFM runs over all frames with the
prompt mel as condition, and the prompt frames are dropped. Streaming (`setup_cache`, `inference_chunk`):
the prompt is encoded once with its first look-ahead tokens borrowed from itself (as the reference's
`Token2wav.set_stream_cache` does), then each chunk attends to the cached encoder and estimator states.
The two paths differ by design (offline is non-causal in both encoder and estimator); see
`token2wav_stream`. EditX's decoder has the same flow with another token embedding (two half-width
lookups of the dual codebook); only `input_embedding` would change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice2.cfm import CausalConditionalCFM, EstimatorCache, NoiseSource
from stepaudio.decoder.cosyvoice2.config import FlowConfig
from stepaudio.decoder.cosyvoice2.dit import DiT
from stepaudio.decoder.cosyvoice2.encoder import EncoderCache, UpsampleConformerEncoderV2


@dataclass(frozen=True)
class FlowCache:
    """Everything a chunk needs from the earlier ones."""

    encoder: EncoderCache
    estimator: EstimatorCache


class CausalMaskedDiffWithXvec(nn.Module):
    """Key names as the reference `flow.pt`: `input_embedding`, `spk_embed_affine_layer`, `encoder.*`,
    `encoder_proj`, `decoder.estimator.*`."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        self.input_embedding = nn.Embedding(config.vocab_size, config.input_size)
        self.spk_embed_affine_layer = nn.Linear(config.spk_embed_dim, config.output_size)
        self.encoder = UpsampleConformerEncoderV2(config.encoder)
        self.encoder_proj = nn.Linear(config.encoder.output_size, config.output_size)
        self.decoder = CausalConditionalCFM(DiT(config.estimator), config.cfm)

    def project_speaker(self, embedding: torch.Tensor) -> torch.Tensor:
        """Raw x-vector `[B, 192]` -> `[B, 80]` (L2-normalised first)."""
        return self.spk_embed_affine_layer(F.normalize(embedding, dim=1))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens `[1, N]` -> mu `[1, N * up_rate, 80]` (time-major), whole sequence at once."""
        h = self.encoder(self.input_embedding(torch.clamp(tokens, min=0)))
        return self.encoder_proj(h)

    def inference(
        self,
        tokens: torch.Tensor,
        prompt_tokens: torch.Tensor,
        prompt_mel: torch.Tensor,
        embedding: torch.Tensor,
        noise: NoiseSource,
    ) -> torch.Tensor:
        """tokens `[1, N2]`, prompt_tokens `[1, N1]`, prompt_mel `[1, N1 * up_rate, 80]`, embedding `[1, 192]`
        -> mel `[1, 80, N2 * up_rate]`; noise column j is mel frame j (prompt frames first)."""
        if tokens.shape[0] != 1:
            raise ValueError("the flow decodes one utterance at a time")
        spks = self.project_speaker(embedding)
        mu = self.encode(torch.cat([prompt_tokens, tokens], dim=1))
        frames, prompt_frames = mu.shape[1], prompt_mel.shape[1]
        if prompt_frames != prompt_tokens.shape[1] * self.config.up_rate:
            raise ValueError(f"prompt mel has {prompt_frames} frames, expected {self.config.up_rate} per prompt token")
        cond = torch.zeros_like(mu)
        cond[:, :prompt_frames] = prompt_mel
        z = noise.columns(0, frames).to(mu)[None]
        mel = self.decoder(mu.transpose(1, 2), None, spks, cond.transpose(1, 2), z)
        return mel[:, :, prompt_frames:]

    def setup_cache(
        self, tokens: torch.Tensor, mel: torch.Tensor, embedding: torch.Tensor, noise: NoiseSource
    ) -> FlowCache:
        """Prime the caches with the prompt: tokens `[1, N1 + L]` (L look-ahead tokens at the end), its mel
        `[1, N1 * up_rate, 80]` as condition."""
        look = self.config.pre_lookahead_len
        if (tokens.shape[1] - look) * self.config.up_rate != mel.shape[1]:
            raise ValueError(
                f"prompt of {tokens.shape[1]} tokens (with {look} look-ahead) and {mel.shape[1]} mel frames"
            )
        spks = self.project_speaker(embedding)
        h, encoder_cache = self.encoder.forward_chunk(self.input_embedding(tokens), None, last_chunk=False)
        mu = self.encoder_proj(h).transpose(1, 2)
        z = noise.columns(0, mu.shape[2]).to(mu)[None]
        _, estimator_cache = self.decoder.forward_chunk(mu, spks, mel.transpose(1, 2), z, None)
        return FlowCache(encoder_cache, estimator_cache)

    def inference_chunk(
        self, tokens: torch.Tensor, embedding: torch.Tensor, cache: FlowCache, last_chunk: bool, noise: NoiseSource
    ) -> tuple[torch.Tensor, FlowCache]:
        """tokens `[1, T + L]` (T + 0 when last) -> mel `[1, 80, T * up_rate]` and the new cache. The noise
        columns start at the estimator cache's current length (the reference's offset, which shrinks after
        a trim)."""
        spks = self.project_speaker(embedding)
        h, encoder_cache = self.encoder.forward_chunk(self.input_embedding(tokens), cache.encoder, last_chunk)
        mu = self.encoder_proj(h).transpose(1, 2)
        offset = cache.estimator.frames
        z = noise.columns(offset, offset + mu.shape[2]).to(mu)[None]
        mel, estimator_cache = self.decoder.forward_chunk(mu, spks, torch.zeros_like(mu), z, cache.estimator)
        return mel, FlowCache(encoder_cache, estimator_cache)
