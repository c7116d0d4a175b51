"""Step-Audio 2's audio encoder (Whisper-style) and adaptor: padded mels in, LM-width rows out.

Pure forward. Module names follow the checkpoint keys (`encoder.blocks.N.attn.query.weight`,
`adapter.linear1.weight`, ...), so the model's state dict is the key map. Numbers and the reference's
quirks: REFERENCE-SA2.md §3 (the last conv2 frame is masked as a key even without padding; q and k are each
scaled by (C/H)^-0.25; exact GELU; LayerNorm eps 1e-5, computed in fp32; a learned positional table added
after conv2). Rows past a length are padding: computed, never meaningful.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.audio_encoder.config import ADAPTER_HIDDEN, AudioEncoderConfig
from stepaudio.audio_encoder.frontend import pad_mels

LAYER_NORM_EPS = 1e-5
MASKED = -1e10  # the reference's additive key-padding bias


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back, so a bf16 encoder normalises as the fp32 reference does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class EncoderAttention(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__()
        c = cfg.n_audio_state
        self.heads = cfg.n_audio_head
        self.query = nn.Linear(c, c, device=device, dtype=dtype)
        self.key = nn.Linear(c, c, bias=False, device=device, dtype=dtype)
        self.value = nn.Linear(c, c, device=device, dtype=dtype)
        self.out = nn.Linear(c, c, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x [B, n, C]; bias [B, 1, 1, n] added to every query's scores (0 or MASKED)."""
        b, n, c = x.shape
        d = c // self.heads
        scale = d**-0.25  # on q and on k, as the reference does, rather than d^-0.5 on the product

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d).transpose(1, 2)

        q, k, v = heads(self.query(x) * scale), heads(self.key(x) * scale), heads(self.value(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
        return self.out(out.transpose(1, 2).reshape(b, n, c))


class EncoderBlock(nn.Module):
    """Whisper's pre-LN block: x += attn(ln(x)); x += mlp(ln(x))."""

    def __init__(self, cfg: AudioEncoderConfig, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__()
        c = cfg.n_audio_state
        self.attn = EncoderAttention(cfg, device, dtype)
        self.attn_ln = LayerNorm(c, eps=LAYER_NORM_EPS, device=device, dtype=dtype)
        self.mlp = nn.Sequential(
            nn.Linear(c, 4 * c, device=device, dtype=dtype), nn.GELU(), nn.Linear(4 * c, c, device=device, dtype=dtype)
        )
        self.mlp_ln = LayerNorm(c, eps=LAYER_NORM_EPS, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), bias)
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """conv1 -> GELU -> conv2 (stride 2) -> GELU -> + positions -> blocks -> avg-pool 2 -> LayerNorm: 25 Hz rows."""

    def __init__(self, cfg: AudioEncoderConfig, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__()
        c = cfg.n_audio_state
        self.conv1 = nn.Conv1d(cfg.n_mels, c, 3, padding=1, device=device, dtype=dtype)
        self.conv2 = nn.Conv1d(c, c, 3, stride=2, padding=1, device=device, dtype=dtype)
        self.positional_embedding = nn.Embedding(cfg.n_audio_ctx, c, device=device, dtype=dtype)
        self.blocks = nn.ModuleList(EncoderBlock(cfg, device, dtype) for _ in range(cfg.n_audio_layer))
        self.after_norm = LayerNorm(c, eps=LAYER_NORM_EPS, device=device, dtype=dtype)

    def forward(self, mels: torch.Tensor, mel_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mels [B, n_mels, T] with lengths [B] (T - 2 per mel, `pad_mels`) -> rows [B, n // 2, C], lengths."""
        frames = mels.shape[-1]
        x = F.gelu(self.conv1(mels))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        n = x.shape[1]
        table = self.positional_embedding.weight
        if n > table.shape[0]:
            raise ValueError(f"{frames} mel frames give {n} positions, the encoder has {table.shape[0]}")
        x = x + table[:n]
        # The reference's quirk: the key mask is built at the conv1 rate from the length T - 2 and subsampled
        # from index (T + 1) % 2, so the last conv2 frame is never a key, even for one unpadded mel.
        at_conv1 = torch.arange(frames, device=mels.device)[None] < mel_lens.to(mels.device)[:, None]
        keys = at_conv1[:, (frames + 1) % 2 :: 2]
        bias = torch.zeros(keys.shape, dtype=torch.float32, device=mels.device).masked_fill(~keys, MASKED)
        bias = bias.clamp(min=torch.finfo(x.dtype).min)[:, None, None, :]  # -1e10 overflows fp16
        for block in self.blocks:
            x = block(x, bias)
        x = F.avg_pool1d(x.transpose(1, 2), 2, 2).transpose(1, 2)
        return self.after_norm(x), encoder_lengths(mel_lens)


class Adaptor(nn.Module):
    """conv (stride `adapter_stride`) -> GELU -> Linear(C, 2048) -> ReLU -> Linear(2048, llm_dim): 12.5 Hz rows."""

    def __init__(self, cfg: AudioEncoderConfig, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__()
        c = cfg.n_audio_state
        self.conv = nn.Conv1d(c, c, cfg.kernel_size, stride=cfg.adapter_stride, padding=1, device=device, dtype=dtype)
        self.linear1 = nn.Linear(c, ADAPTER_HIDDEN, device=device, dtype=dtype)
        self.linear2 = nn.Linear(ADAPTER_HIDDEN, cfg.llm_dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.linear2(F.relu(self.linear1(x)))


def encoder_lengths(mel_lens: torch.Tensor) -> torch.Tensor:
    """Valid encoder rows of mels with lengths `mel_lens` (T - 2): two halvings, conv2 and the pooling."""
    return (mel_lens + 1) // 2 // 2


def adapter_lengths(lengths: torch.Tensor, cfg: AudioEncoderConfig) -> torch.Tensor:
    """Valid adaptor rows of encoder outputs with `lengths` rows (the adaptor conv's output length)."""
    return (lengths + 2 - cfg.kernel_size) // cfg.adapter_stride + 1


class AudioEncoder(nn.Module):
    """The encoder and adaptor of a Step-Audio 2 checkpoint (`encoder.*`, `adapter.*`)."""

    def __init__(
        self, config: AudioEncoderConfig, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = WhisperEncoder(config, device, dtype)
        self.adapter = Adaptor(config, device, dtype)
        self.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.encoder.conv1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv1.weight.dtype

    def forward(self, mels: torch.Tensor, mel_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded mels [B, n_mels, T] and lengths [B] (`pad_mels`) -> LM rows [B, L, llm_dim] and lengths [B]."""
        x, lengths = self.encoder(mels, mel_lens)
        return self.adapter(x), adapter_lengths(lengths, self.config)

    def encode(self, mels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The LM rows [n_i, llm_dim] of each mel [n_mels, T_i], run as one padded batch like the reference
        (so a short mel's rows may differ from a run on its own by the mask quirk; see `WhisperEncoder`)."""
        batch, lengths = pad_mels([m.to(device=self.device, dtype=self.dtype) for m in mels])
        with torch.inference_mode():
            rows, counts = self(batch, lengths)
        return [r[: int(n)] for r, n in zip(rows, counts.tolist(), strict=True)]
