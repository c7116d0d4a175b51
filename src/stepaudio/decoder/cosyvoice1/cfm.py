"""Conditional flow matching sampler: fixed-step Euler ODE solve with classifier-free guidance.

The time arithmetic copies the reference exactly (`t += dt`, then `dt = t_span[k+1] - t`), in the
model dtype, so the ten estimator times match it bit for bit. The conditional and unconditional
(zero mu, speaker and condition) branches run as one batch of 2B; their fixed parts are prepared
once (`ConditionalDecoder.condition`) instead of at every step.
"""

from __future__ import annotations

import math

import torch

from stepaudio.decoder.cosyvoice1.estimator import ConditionalDecoder
from stepaudio.decoder.cosyvoice1.flow_config import CFMConfig


def time_span(n_steps: int, scheduler: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`n_steps + 1` times from 0 to 1; the cosine schedule spends more steps near t = 0."""
    span = torch.linspace(0, 1, n_steps + 1, device=device, dtype=dtype)
    if scheduler == "cosine":
        span = 1 - torch.cos(span * 0.5 * math.pi)
    return span


def euler_times(span: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(t, dt) of every step, accumulated the way the reference does."""
    t, dt = span[0], span[1] - span[0]
    out = []
    for step in range(1, len(span)):
        out.append((t, dt))
        t = t + dt
        if step < len(span) - 1:
            dt = span[step + 1] - t
    return out


def solve_euler(
    estimator: ConditionalDecoder,
    noise: torch.Tensor,
    mu: torch.Tensor,
    mask: torch.Tensor | None,
    spks: torch.Tensor,
    cond: torch.Tensor,
    config: CFMConfig,
) -> torch.Tensor:
    """Integrate from `noise` [B, 80, T] to a mel [B, 80, T]; `mask` [B, 1, T] or None (no padding)."""
    b = noise.shape[0]
    rate = config.inference_cfg_rate
    if rate > 0:
        copies = 2
        both_mask = None if mask is None else torch.cat([mask, mask], dim=0)
        prepared = estimator.condition(
            torch.cat([mu, torch.zeros_like(mu)]),
            torch.cat([spks, torch.zeros_like(spks)]),
            torch.cat([cond, torch.zeros_like(cond)]),
            both_mask,
            copies=2,
        )
    else:
        copies = 1
        prepared = estimator.condition(mu, spks, cond, mask)
    span = time_span(config.n_timesteps, config.t_scheduler, noise.dtype, noise.device)
    x = noise
    for t, dt in euler_times(span):
        velocity = estimator.step(x, t.expand(copies * b), prepared)
        if copies == 2:
            v_cond, v_uncond = velocity.chunk(2, dim=0)
            velocity = (1.0 + rate) * v_cond - rate * v_uncond
        x = x + dt * velocity
    return x
