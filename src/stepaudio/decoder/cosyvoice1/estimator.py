"""ConditionalDecoder: the U-Net-like 1-D vector-field estimator of the flow (97-99% of decoder time).

Input channels are `[x, mu, spks over time, cond]`. Down blocks (ResNet + transformer blocks +
stride-2 conv, the last a plain conv), mid blocks, up blocks (skip concat after cropping to the skip
length, ConvTranspose k4 s2, the last a plain conv), final block and 1x1 projection.

Speed: the part of the first ResNet that sees `mu`, `spks` and `cond` is computed once per
utterance (`condition`) and reused at every Euler step (`step`); the `x` part is computed once for
a classifier-free-guidance pair. Attention uses SDPA with one fused q|k|v projection (the loader
fills `to_qkv` from the reference's `to_q`/`to_k`/`to_v`); bf16 on CPU uses a matmul attention that
beats SDPA's CPU kernel there. With `mask=None` (no padding) every
masking multiply is skipped, which is exact; with padding, GroupNorm statistics and attention keys
ignore padded frames so a padded batch equals its items run alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice1.flow_config import EstimatorConfig
from stepaudio.decoder.masking import group_norm
from stepaudio.hardware import cpu_has_amx


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding `[sin | cos]` of `scale * t`, frequencies `exp(-i log(1e4) / (dim/2 - 1))`."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
    angle = scale * t.reshape(-1, 1).float() * freqs.unsqueeze(0)
    return torch.cat((angle.sin(), angle.cos()), dim=-1)


class Block1D(nn.Module):
    """Conv1d k3 -> GroupNorm(8) -> Mish, masked (keys `block.0`, `block.1`)."""

    def __init__(self, dim: int, dim_out: int, groups: int = 8) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(dim, dim_out, 3, padding=1), nn.GroupNorm(groups, dim_out), nn.Mish())

    @property
    def conv(self) -> nn.Conv1d:
        return cast(nn.Conv1d, self.block[0])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.activate(self.conv(_masked(x, mask)), mask)

    def activate(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Norm and Mish of an already convolved `h`."""
        return _masked(F.mish(group_norm(h, cast(nn.GroupNorm, self.block[1]), mask)), mask)


class ResnetBlock1D(nn.Module):
    """Two Block1D with a time bias between them and a 1x1 residual conv (keys `mlp.1`, `res_conv`)."""

    def __init__(self, dim: int, dim_out: int, time_emb_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_emb_dim, dim_out))
        self.block1 = Block1D(dim, dim_out, groups)
        self.block2 = Block1D(dim_out, dim_out, groups)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, temb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x, mask) + self.mlp(temb).unsqueeze(-1)
        return self.block2(h, mask) + self.res_conv(_masked(x, mask))


# score elements per block of the low-precision attention path: 2 MB of float32 scores stay in cache
_SCORE_BLOCK = 1 << 19


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention of `[B, H, T, D]` inputs, returned as `[B, T, H, D]`.

    float32 (and any GPU) uses SDPA. bf16/fp16 on CPU use batched matmuls with a float32 softmax over
    cache-sized blocks of heads and query rows (full rows, so the softmax is exact): on CPUs with
    bf16 dot products but no AMX this is 1.3-2x faster than SDPA's CPU kernel at float32 or bf16; with
    AMX, SDPA's bf16 kernel is the faster one (a whole flow run 1.2x).
    """
    if q.device.type != "cpu" or q.dtype == torch.float32 or cpu_has_amx():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask).transpose(1, 2)
    b, h, t, d = q.shape
    out = q.new_empty(b, t, h, d)
    heads = max(1, min(h, _SCORE_BLOCK // (t * t)))
    rows = t if heads > 1 or t * t <= _SCORE_BLOCK else max(16, _SCORE_BLOCK // t)
    scale = d**-0.5
    for i in range(b):
        bias = None
        if key_mask is not None:
            bias = torch.zeros(key_mask.shape[1:], device=q.device).masked_fill(~key_mask[i], float("-inf"))
        for h0 in range(0, h, heads):
            keys, values = k[i, h0 : h0 + heads].transpose(1, 2), v[i, h0 : h0 + heads]
            for r0 in range(0, t, rows):
                scores = torch.bmm(q[i, h0 : h0 + heads, r0 : r0 + rows] * scale, keys).float()
                if bias is not None:
                    scores = scores + bias
                probs = torch.softmax(scores, dim=-1).to(q.dtype)
                out[i, r0 : r0 + rows, h0 : h0 + heads] = torch.bmm(probs, values).transpose(0, 1)
    return out


class Attention(nn.Module):
    """Self-attention, heads x head_dim inner width, fused bias-free q|k|v, biased output (`to_out.0`)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        inner = heads * head_dim
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
        # dtype of the score computation when it should differ from the activations (opt-in, e.g. bf16
        # attention inside the int8 flow); None follows the input
        self.attention_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        qkv = self.to_qkv(x)
        if self.attention_dtype is not None:
            qkv = qkv.to(self.attention_dtype)
        q, k, v = qkv.view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, key_mask).to(x.dtype)
        return self.to_out[0](out.reshape(b, t, self.heads * self.head_dim))


class GeluProjection(nn.Module):
    """Linear then GELU (key `proj`)."""

    def __init__(self, dim: int, inner: int, approximate: str) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


class FeedForward(nn.Module):
    """GELU MLP with 4x width (keys `net.0.proj`, `net.2`; `net.1` is the reference's dropout)."""

    def __init__(self, dim: int, approximate: str) -> None:
        super().__init__()
        self.net = nn.ModuleList([GeluProjection(dim, 4 * dim, approximate), nn.Identity(), nn.Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.net[2](self.net[0](x)))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention and GELU feed-forward (keys `norm1`, `attn1`, `norm3`, `ff.net.{0,2}`)."""

    def __init__(self, dim: int, heads: int, head_dim: int, act_fn: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, "tanh" if act_fn == "gelu-approximate" else "none")

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), key_mask)
        return x + self.ff(self.norm3(x))


class TimestepMLP(nn.Module):
    """`linear_2(silu(linear_1(emb)))`."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim, out)
        self.linear_2 = nn.Linear(out, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class Downsample1D(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample1D(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(dim, dim, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Stage(nn.Module):
    """One U-Net stage: ResNet, transformer blocks, optional resampling conv (keys `0`, `1.M`, `2`)."""

    def __init__(self, resnet: ResnetBlock1D, blocks: nn.ModuleList, resample: nn.Module | None) -> None:
        super().__init__()
        self.add_module("0", resnet)
        self.add_module("1", blocks)
        if resample is not None:
            self.add_module("2", resample)

    @property
    def resnet(self) -> ResnetBlock1D:
        return cast(ResnetBlock1D, self._modules["0"])

    @property
    def blocks(self) -> nn.ModuleList:
        return cast(nn.ModuleList, self._modules["1"])

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self._modules["2"](x))  # type: ignore[misc]


@dataclass(frozen=True)
class EstimatorCondition:
    """What stays fixed across Euler steps: masks and the `mu|spks|cond` share of the first ResNet.

    `copies` batches of `x` share one `x`: item `c * B + i` uses `x[i]` (CFG pairs use 2).
    """

    mask: torch.Tensor | None
    first_conv: torch.Tensor
    first_res: torch.Tensor
    copies: int


class ConditionalDecoder(nn.Module):
    """The estimator; `forward` matches the reference call, `condition` + `step` serve the solver."""

    def __init__(self, config: EstimatorConfig) -> None:
        super().__init__()
        self.config = config
        # how the sampler runs the guidance pair: True two concurrent halves, False one batch, None its
        # default (see `cfm.solve_euler`); a setting of the model so callers deep in a pipeline can pick it
        self.parallel_guidance: bool | None = None
        ch = config.channels
        temb = ch[0] * 4
        self.time_mlp = TimestepMLP(config.in_channels, temb)

        def transformers(dim: int) -> nn.ModuleList:
            return nn.ModuleList(
                TransformerBlock(dim, config.num_heads, config.attention_head_dim, config.act_fn)
                for _ in range(config.n_blocks)
            )

        self.down_blocks = nn.ModuleList()
        out_ch = config.in_channels
        for i, c in enumerate(ch):
            in_ch, out_ch = out_ch, c
            last = i == len(ch) - 1
            down: nn.Module = nn.Conv1d(out_ch, out_ch, 3, padding=1) if last else Downsample1D(out_ch)
            self.down_blocks.append(Stage(ResnetBlock1D(in_ch, out_ch, temb), transformers(out_ch), down))
        self.mid_blocks = nn.ModuleList(
            Stage(ResnetBlock1D(ch[-1], ch[-1], temb), transformers(ch[-1]), None)
            for _ in range(config.num_mid_blocks)
        )
        up_ch = (*ch[::-1], ch[0])
        self.up_blocks = nn.ModuleList()
        for i in range(len(up_ch) - 1):
            out_ch = up_ch[i + 1]
            last = i == len(up_ch) - 2
            up: nn.Module = nn.Conv1d(out_ch, out_ch, 3, padding=1) if last else Upsample1D(out_ch)
            self.up_blocks.append(Stage(ResnetBlock1D(2 * up_ch[i], out_ch, temb), transformers(out_ch), up))
        self.final_block = Block1D(up_ch[-1], up_ch[-1])
        self.final_proj = nn.Conv1d(up_ch[-1], config.out_channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        mu: torch.Tensor,
        t: torch.Tensor,
        spks: torch.Tensor,
        cond: torch.Tensor,
    ) -> torch.Tensor:
        """Reference signature: `x, mu, cond` [N, 80, T], `mask` [N, 1, T] or None, `t` [N], `spks` [N, 80]."""
        if mask is not None and bool(mask.all()):
            mask = None
        return self.step(x, t, self.condition(mu, spks, cond, mask))

    def condition(
        self, mu: torch.Tensor, spks: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None, copies: int = 1
    ) -> EstimatorCondition:
        """Precompute the first ResNet's `mu|spks|cond` share (bias included) for every Euler step."""
        resnet = self._first_stage.resnet
        n_x = self.config.in_channels - mu.shape[1] - spks.shape[1] - cond.shape[1]
        rest = torch.cat([mu, spks.unsqueeze(-1).expand(-1, -1, mu.shape[-1]), cond], dim=1)
        rest = _masked(rest, mask)
        conv = resnet.block1.conv
        first_conv = F.conv1d(rest, conv.weight[:, n_x:], conv.bias, padding=1)
        first_res = F.conv1d(rest, resnet.res_conv.weight[:, n_x:], resnet.res_conv.bias)
        return EstimatorCondition(mask, first_conv, first_res, copies)

    @property
    def _first_stage(self) -> Stage:
        return cast(Stage, self.down_blocks[0])

    def _first_resnet(self, x: torch.Tensor, cond: EstimatorCondition, temb: torch.Tensor) -> torch.Tensor:
        resnet = self._first_stage.resnet
        n_x = x.shape[1]
        b, t = x.shape[0], x.shape[-1]
        xm = _masked(x, None if cond.mask is None else cond.mask[:b])

        def tiled(part: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
            c = const.shape[1]
            return (part.unsqueeze(0) + const.view(cond.copies, b, c, t)).view(cond.copies * b, c, t)

        conv = resnet.block1.conv
        h = tiled(F.conv1d(xm, conv.weight[:, :n_x], None, padding=1), cond.first_conv)
        h = resnet.block1.activate(h, cond.mask) + resnet.mlp(temb).unsqueeze(-1)
        res = tiled(F.conv1d(xm, resnet.res_conv.weight[:, :n_x]), cond.first_res)
        return resnet.block2(h, cond.mask) + res

    def _transformers(self, blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        key_mask = None if mask is None else mask.bool().unsqueeze(1)  # [N, 1, 1, T]
        h = x.transpose(1, 2).contiguous()
        for block in blocks:
            h = block(h, key_mask)
        return h.transpose(1, 2).contiguous()

    def step(self, x: torch.Tensor, t: torch.Tensor, cond: EstimatorCondition) -> torch.Tensor:
        """Velocity for state `x` [B, 80, T] at times `t` [copies * B] under a precomputed condition."""
        temb = self.time_mlp(timestep_embedding(t, self.config.in_channels).to(x.dtype))
        mask = cond.mask
        masks = [mask]
        hiddens = []
        h = x
        for i, stage in enumerate(cast(list[Stage], self.down_blocks)):
            m = masks[-1]
            h = self._first_resnet(x, cond, temb) if i == 0 else stage.resnet(h, m, temb)
            h = self._transformers(stage.blocks, h, m)
            hiddens.append(h)
            h = stage.resample(_masked(h, m))
            masks.append(None if m is None else m[:, :, ::2])
        masks.pop()
        m = masks[-1]
        for stage in cast(list[Stage], self.mid_blocks):
            h = self._transformers(stage.blocks, stage.resnet(h, m, temb), m)
        for stage in cast(list[Stage], self.up_blocks):
            m = masks.pop()
            skip = hiddens.pop()
            h = torch.cat([h[:, :, : skip.shape[-1]], skip], dim=1)
            h = self._transformers(stage.blocks, stage.resnet(h, m, temb), m)
            h = stage.resample(_masked(h, m))
        h = self.final_block(h, m)
        return _masked(self.final_proj(_masked(h, m)), mask)
