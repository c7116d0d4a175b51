"""Streaming audio tokenization: push 16 kHz pieces, receive codes and 2+3 groups as they become final.

vq02 streams exactly: :class:`~stepaudio.tokenizer.linguistic.LinguisticStream` re-buffers pieces into
the reference's 240 ms steps, so its codes equal the offline ones and are final at once.

vq06 has no streaming model: the graph attends over its whole (up to 30 s) window and the log-mel
floor (``max - 8``) is taken over the window, so every code may depend on audio up to 30 s later.
Two policies (:class:`Vq06Policy`):

* ``window`` (default, exact): a window's codes are emitted when the window closes (30 s of audio, or
  :meth:`AudioTokenStream.finish`). Streamed codes equal offline codes, always.
* ``lookahead`` (low latency): every ``hop_s`` of new audio, the encoder re-runs on the current window
  from ``left_context_s`` before the first unemitted code (``None``: from the window start) to the
  newest sample, and the codes that end at least ``lookahead_s`` before the newest sample are emitted
  (never revised). Segments start on a 640-sample code boundary, so mel frames and codes line up with
  the offline window's and the count per window is the offline count. Codes can differ from offline
  ones only through what the segment lacks: right context past the lookahead, left context (bounded
  mode), the window-wide mel floor, and, in bounded mode, the sinusoidal positions, which count from
  the segment start instead of the window start. :func:`code_agreement` (share of positions with equal
  codes) measures the effect; it is only meaningful on the real weights and real speech (random
  weights make every code hypersensitive). Exact cases, tested: ``lookahead_s`` past the utterance;
  prefix mode on a model whose receptive field is local; bounded mode on a local model without
  positions.

Cost: ``window`` adds nothing to the offline cost (vq06 runs once per window, at its close);
``lookahead`` re-encodes about ``(left_context_s + hop_s + lookahead_s) / hop_s`` times the audio
(prefix mode: the whole window so far at every hop), so pick ``hop_s`` of 0.5-1 s on CPU. The encode runs
inside the push that triggers it: on 2 CPU cores that push takes 170-450 ms instead of ~60 ms
(``stepaudio bench tokenizer``), so ``window`` is the policy that keeps every push within 100 ms.

Input is prepared audio (mono, 16 kHz, float32). The reference peak-normalises the whole utterance,
which a live stream cannot know in advance; offline equality is with
:meth:`~stepaudio.tokenizer.audio_tokenizer.StepAudioTokenizer.encode_prepared` of the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stepaudio.errors import AudioError
from stepaudio.tokenizer.interleave import (
    GROUP_VQ02,
    GROUP_VQ06,
    AudioCodes,
    audio_token_text,
    flow_to_lm,
    group_count,
    interleave,
)
from stepaudio.tokenizer.s3_model import code_count
from stepaudio.tokenizer.semantic import (
    MIN_WINDOW_SAMPLES,
    SAMPLE_RATE,
    SAMPLES_PER_CODE,
    WINDOW_SAMPLES,
    SemanticTokenizer,
    as_mono_samples,
)

if TYPE_CHECKING:
    from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

__all__ = ["AudioTokenStream", "SemanticStream", "TokenUpdate", "Vq06Policy", "code_agreement"]

MEL_HOP = 160


@dataclass(frozen=True)
class Vq06Policy:
    mode: str = "window"
    lookahead_s: float = 1.0
    left_context_s: float | None = 4.0
    hop_s: float = 0.24

    def __post_init__(self) -> None:
        if self.mode not in ("window", "lookahead"):
            raise ValueError(f"vq06 policy mode must be 'window' or 'lookahead', got {self.mode!r}")
        if self.lookahead_s * SAMPLE_RATE < MIN_WINDOW_SAMPLES:
            raise ValueError(f"lookahead_s must be at least {MIN_WINDOW_SAMPLES / SAMPLE_RATE} s")
        if (self.left_context_s is not None and self.left_context_s < 0) or self.hop_s <= 0:
            raise ValueError("left_context_s must be None or >= 0, and hop_s > 0")


def code_agreement(streamed: Sequence[int], offline: Sequence[int]) -> float:
    """Share of positions where streamed and offline codes are equal (1.0 for two empty lists)."""
    if len(streamed) != len(offline):
        raise ValueError(f"code counts differ: {len(streamed)} streamed, {len(offline)} offline")
    if not offline:
        return 1.0
    return float(np.mean(np.asarray(streamed) == np.asarray(offline)))


class SemanticStream:
    """vq06 codes of one utterance under a :class:`Vq06Policy`."""

    def __init__(self, tokenizer: SemanticTokenizer, policy: Vq06Policy) -> None:
        self.tokenizer = tokenizer
        self.policy = policy
        self._pieces: list[np.ndarray] = []
        self._buffered = 0  # samples of the current window
        self._emitted = 0  # codes of the current window already returned
        self._last_run = 0  # window samples at the last lookahead run
        self._finished = False

    def _window(self) -> np.ndarray:
        if len(self._pieces) > 1:
            self._pieces = [np.concatenate(self._pieces)]
        return self._pieces[0] if self._pieces else np.zeros(0, np.float32)

    def _codes_from(self, window: np.ndarray, first_code: int) -> list[int]:
        """Codes ``first_code..`` of the window, encoding only the segment they need (plus left context)."""
        context = self.policy.left_context_s
        start = 0
        if self.policy.mode == "lookahead" and context is not None:
            start = max(0, first_code - int(context * SAMPLE_RATE) // SAMPLES_PER_CODE)
        codes = self.tokenizer.encode_window(window[start * SAMPLES_PER_CODE :])
        return codes[first_code - start :]

    def _close_window(self) -> list[int]:
        window = self._window()
        out: list[int] = []
        if window.shape[0] >= MIN_WINDOW_SAMPLES:
            total = code_count(window.shape[0] // MEL_HOP)
            out = self._codes_from(window, self._emitted) if total > self._emitted else []
        self._pieces, self._buffered, self._emitted, self._last_run = [], 0, 0, 0
        return out

    def push(self, audio: Any) -> list[int]:
        """Codes made final by this piece (copied, so the caller may reuse its buffer)."""
        if self._finished:
            raise AudioError("this stream is finished; start a new one")
        samples = as_mono_samples(audio)
        out: list[int] = []
        while samples.shape[0]:
            take = min(samples.shape[0], WINDOW_SAMPLES - self._buffered)
            self._pieces.append(samples[:take].copy())
            self._buffered += take
            samples = samples[take:]
            if self._buffered == WINDOW_SAMPLES:
                out.extend(self._close_window())
        if self.policy.mode == "lookahead":
            out.extend(self._lookahead())
        return out

    def _lookahead(self) -> list[int]:
        if self._buffered - self._last_run < self.policy.hop_s * SAMPLE_RATE:
            return []
        lookahead = int(self.policy.lookahead_s * SAMPLE_RATE)
        final = max(0, (self._buffered - lookahead) // SAMPLES_PER_CODE)
        if final <= self._emitted:
            return []
        self._last_run = self._buffered
        codes = self._codes_from(self._window(), self._emitted)[: final - self._emitted]
        self._emitted += len(codes)
        return codes

    def finish(self) -> list[int]:
        if self._finished:
            raise AudioError("this stream is already finished")
        self._finished = True
        return self._close_window()


@dataclass(frozen=True)
class TokenUpdate:
    """What one push made final: new codes of each stream and new whole 2+3 groups (flow ids)."""

    vq02: tuple[int, ...]
    vq06: tuple[int, ...]
    flow_ids: tuple[int, ...]

    def lm_ids(self) -> list[int]:
        return flow_to_lm(self.flow_ids)

    def text(self) -> str:
        return audio_token_text(self.flow_ids)


class AudioTokenStream:
    """One utterance through both tokenizers; ``push`` pieces of any size, then ``finish``."""

    def __init__(self, tokenizer: StepAudioTokenizer, policy: Vq06Policy | None = None) -> None:
        self.linguistic = tokenizer.linguistic.stream()
        self.semantic = SemanticStream(tokenizer.semantic, policy or Vq06Policy())
        self._vq02: list[int] = []
        self._vq06: list[int] = []
        self._groups = 0

    def _update(self, vq02: list[int], vq06: list[int]) -> TokenUpdate:
        self._vq02.extend(vq02)
        self._vq06.extend(vq06)
        groups = group_count(len(self._vq02), len(self._vq06))
        a, b = self._groups, groups
        flow = interleave(self._vq02[a * GROUP_VQ02 : b * GROUP_VQ02], self._vq06[a * GROUP_VQ06 : b * GROUP_VQ06])
        self._groups = groups
        return TokenUpdate(vq02=tuple(vq02), vq06=tuple(vq06), flow_ids=tuple(flow))

    def push(self, audio: Any) -> TokenUpdate:
        samples = as_mono_samples(audio)
        vq02 = self.linguistic.push(torch.from_numpy(samples))
        return self._update(vq02, self.semantic.push(samples))

    def finish(self) -> TokenUpdate:
        return self._update(self.linguistic.finish(), self.semantic.finish())

    def codes(self) -> AudioCodes:
        """Every code emitted so far."""
        return AudioCodes(vq02=tuple(self._vq02), vq06=tuple(self._vq06))
