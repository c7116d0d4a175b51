"""Logit processors and token choice, in the order Hugging Face applies them.

Order: repetition penalty, the repetition-aware ban (REFERENCE.md §5), temperature, top-k, top-p.
Every processor works on a batch [B, V] and returns new logits (inputs are not modified).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen. temperature 0 means greedy (argmax after the bans)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    ban_repeats: bool = False
    ban_window: int = 10

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError(f"invalid sampling settings: {self}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


TTS_SAMPLING = SamplingConfig(temperature=0.7, top_k=50, top_p=1.0, ban_repeats=True)
CHAT_SAMPLING = SamplingConfig(temperature=0.7, top_k=50, top_p=0.9)
GREEDY = SamplingConfig(temperature=0.0)


def repetition_penalty(
    logits: torch.Tensor, history: torch.Tensor, penalty: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Divide positive (multiply negative) logits of every token in `history` [B, T].

    `valid` [B, T] marks real tokens when rows are padded (padding ids are not penalised).
    """
    if penalty == 1.0 or history.shape[1] == 0:
        return logits
    if valid is None:
        valid = torch.ones_like(history, dtype=torch.bool)
    counts = torch.zeros_like(logits, dtype=torch.int32).scatter_add(1, history, valid.to(torch.int32))
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(counts > 0, penalised, logits)


def ban_repeated_last(
    logits: torch.Tensor, history: torch.Tensor, window: int = 10, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """If the last token occurs more than once among the last `window` tokens, forbid it next.

    Applies only to rows with at least `window` tokens, as the reference processor does. Rows are
    right-aligned (left padding); `valid` [B, T] marks real tokens.
    """
    if history.shape[1] < window:
        return logits
    recent = history[:, -window:]
    full = torch.ones(history.shape[0], dtype=torch.bool, device=history.device)
    if valid is not None:
        full = valid[:, -window:].all(dim=1)
    last = recent[:, -1:]
    repeated = ((recent == last).sum(dim=1) > 1) & full
    banned = torch.zeros_like(logits, dtype=torch.bool).scatter(1, last, repeated[:, None])
    return logits.masked_fill(banned, float("-inf"))


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties with the k-th are kept); k <= 0 keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches p (at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of strictly more likely tokens
    drop_sorted = before >= p
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def process_logits(
    logits: torch.Tensor, history: torch.Tensor, cfg: SamplingConfig, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """All processors of `cfg`, in order, on fp32 logits [B, V] given the token history [B, T]."""
    logits = logits.to(torch.float32)
    logits = repetition_penalty(logits, history, cfg.repetition_penalty, valid)
    if cfg.ban_repeats:
        logits = ban_repeated_last(logits, history, cfg.ban_window, valid)
    if cfg.greedy:
        return logits
    logits = logits / cfg.temperature
    logits = top_k_filter(logits, cfg.top_k)
    return top_p_filter(logits, cfg.top_p)


def choose_tokens(
    logits: torch.Tensor,
    history: torch.Tensor,
    cfg: SamplingConfig,
    generator: torch.Generator | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next token per row [B] (int64)."""
    logits = process_logits(logits, history, cfg, valid)
    if cfg.greedy:
        return logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
