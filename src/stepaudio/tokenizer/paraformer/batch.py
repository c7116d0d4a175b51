"""Offline Paraformer-online encoding with every streaming step in one batch, layer by layer.

A streaming step is bandwidth-bound: 9 frames through 158M parameters read all 632 MB of weights for
little arithmetic. Yet layer ``i`` of step ``c`` depends only on layer ``i - 1`` of the same step and on
the look-back keys/values of layer ``i`` of earlier steps, never on a deeper layer of an earlier step.
So a whole utterance can run layer by layer with all steps stacked as a batch: each weight is read once
per layer instead of once per step, the matmuls become compute-bound, and the arithmetic per step is
the same as :meth:`ParaformerEncoder.forward_chunk` (outputs agree to float rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stepaudio.tokenizer.paraformer.encoder import ChunkConfig, ParaformerEncoder, SanmLayer, stream_position_encoding

__all__ = ["encode_steps"]


def encode_steps(
    encoder: ParaformerEncoder, steps: Sequence[torch.Tensor], chunk: ChunkConfig, group: int = 64
) -> list[torch.Tensor]:
    """Encode each step's LFR features ``[f_c, input_size]`` as consecutive ``forward_chunk`` calls from a new
    cache would; returns, per step, its own ``f_c`` output frames (after the final norm).

    Steps run ``group`` at a time (bounded memory); each group carries the look-back keys/values of the one
    before it, per layer, exactly as the streaming cache does.
    """
    if not steps:
        return []
    param = encoder.after_norm.weight
    windows, lengths = _input_windows(encoder, steps, chunk, param.device, param.dtype)
    frames = [int(s.shape[0]) for s in steps]
    keeps = [n - chunk.chunk_size[2] for n in lengths]  # what the cache keeps: all but the look-ahead
    carry: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    outs: list[torch.Tensor] = []
    for first in range(0, len(steps), group):
        part = slice(first, first + group)
        batch = torch.nn.utils.rnn.pad_sequence(windows[part], batch_first=True)
        x, carry = _encode_group(encoder, batch, lengths[part], keeps[part], chunk, carry)
        outs.extend(x[c, n - f : n] for c, (n, f) in enumerate(zip(lengths[part], frames[part], strict=True)))
    return outs


def _encode_group(
    encoder: ParaformerEncoder,
    x: torch.Tensor,
    lengths: Sequence[int],
    keeps: Sequence[int],
    chunk: ChunkConfig,
    carry: Sequence[tuple[torch.Tensor, torch.Tensor]] | None,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    device = x.device
    valid = torch.arange(x.shape[1], device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
    carried = 0 if carry is None else int(carry[0][0].shape[0])
    past_index, past_valid = _look_back_index(keeps, carried, chunk, device)
    tail = chunk.cache_positions if chunk.look_back >= 0 else None
    new_carry = []
    for i, layer in enumerate(encoder.layers):
        x, kept = _layer(layer, x, valid, keeps, None if carry is None else carry[i], past_index, past_valid, tail)
        new_carry.append(kept)
    if encoder.config.normalize_before:
        x = encoder.after_norm(x)
    return x, new_carry


def _input_windows(
    encoder: ParaformerEncoder,
    steps: Sequence[torch.Tensor],
    chunk: ChunkConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[list[torch.Tensor], list[int]]:
    """The layer-0 input of every step: the previous step's last ``overlap`` embedded frames, then its own."""
    depth = encoder.config.input_size
    overlap = torch.zeros(chunk.overlap, depth, device=device, dtype=dtype)
    windows: list[torch.Tensor] = []
    start = 0
    for feats in steps:
        length = feats.shape[0]
        x = feats.to(device=device, dtype=dtype) * math.sqrt(encoder.config.output_size)
        x = x + stream_position_encoding(start, length, depth, x.dtype).to(device)
        window = torch.cat([overlap, x])
        overlap = window[-chunk.overlap :]
        windows.append(window)
        start += length
    return windows, [int(w.shape[0]) for w in windows]


def _look_back_index(
    keeps: Sequence[int], carried: int, chunk: ChunkConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every step, the positions of the cached keys it sees in ``carried`` positions from earlier groups
    followed by all kept positions of this group (the cache keeps the last ``look_back * chunk``), padded,
    with a validity mask."""
    ends = carried + torch.tensor([0, *keeps], device=device).cumsum(0)[:-1]
    if chunk.look_back == 0:
        empty = torch.zeros(len(keeps), 0, dtype=torch.long, device=device)
        return empty, empty.bool()
    width = max(chunk.cache_positions if chunk.look_back > 0 else int(ends.max()), 1)
    index = ends[:, None] + torch.arange(-width, 0, device=device)[None, :]
    return index.clamp_min(0), index >= 0


def _layer(
    layer: SanmLayer,
    x: torch.Tensor,
    valid: torch.Tensor,
    keeps: Sequence[int],
    carry: tuple[torch.Tensor, torch.Tensor] | None,
    past_index: torch.Tensor,
    past_valid: torch.Tensor,
    tail: int | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One SANM block over a batch of step windows; also returns the kept keys/values the next group sees."""
    attn_module = layer.self_attn
    normed = layer.norm1(x) if layer.normalize_before else x
    b, t, _ = x.shape
    heads, d_k = attn_module.heads, attn_module.d_k
    q, k, v = attn_module.linear_q_k_v(normed).split(heads * d_k, dim=-1)
    v = v * valid[..., None]  # padding must read as the zeros the per-step conv pads with
    taps = F.pad(v, (0, 0, *attn_module.padding)).unfold(1, attn_module.fsmn_block.kernel_size[0], 1)
    memory = (taps * attn_module.fsmn_block.weight[:, 0, :]).sum(-1) + v
    kept_k = torch.cat([*([] if carry is None else [carry[0]]), *(k[c, :keep] for c, keep in enumerate(keeps))])
    kept_v = torch.cat([*([] if carry is None else [carry[1]]), *(v[c, :keep] for c, keep in enumerate(keeps))])
    keys = torch.cat([kept_k[past_index], k], dim=1)
    values = torch.cat([kept_v[past_index], v], dim=1)
    mask = torch.cat([past_valid, valid], dim=1)
    q_h, k_h, v_h = (z.reshape(b, -1, heads, d_k).transpose(1, 2) for z in (q, keys, values))
    scores = torch.matmul(q_h * d_k**-0.5, k_h.transpose(-2, -1))
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    context = torch.matmul(torch.softmax(scores, dim=-1), v_h)
    context = context.transpose(1, 2).reshape(b, t, heads * d_k)
    attn = attn_module.linear_out(context) + memory
    x = x + attn if layer.residual_attention else attn
    if not layer.normalize_before:
        x = layer.norm1(x)
    y = x + layer.feed_forward(layer.norm2(x) if layer.normalize_before else x)
    if not layer.normalize_before:
        y = layer.norm2(y)
    start = 0 if tail is None else max(0, kept_k.shape[0] - tail)
    return y, (kept_k[start:], kept_v[start:])
