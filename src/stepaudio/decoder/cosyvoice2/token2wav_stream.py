"""Streaming token2wav as the reference does it (`Token2wav.set_stream_cache` / `stream`, client chunking of
`examples-vllm-stream.py`).

* Tokens are decoded `chunk_tokens` (25) at a time, each chunk carrying the next `pre_lookahead_len` (3)
  tokens as look-ahead; the remainder goes out with `finish()` as the last chunk (look-ahead zero-padded).
* The flow keeps encoder and estimator caches; after each chunk the estimator's key/value axis (newest
  frames first) is cut to `[:prompt_frames] ++ [-estimator_keep:]` once longer than their sum, exactly as the
  reference does (it keeps the newest prompt_frames and the oldest estimator_keep frames).
* The vocoder re-runs the last 8 mel frames of the previous chunk with the new one, reuses their 3840
  source samples, cross-fades 3840 samples with a Hamming(7680) window and holds the last 3840 back until
  the next chunk (or the end).

Streamed audio is NOT the offline audio, in the reference either: offline, the encoder and the estimator
attend over the whole utterance (future frames included) and the prompt is encoded together with the
tokens; streamed, a chunk sees only the past and the prompt is encoded with its own first tokens as
look-ahead. With the prompt alone as context and one chunk, the flow equals the offline flow (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stepaudio.decoder.cosyvoice2.cfm import NoiseSource
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec, FlowCache
from stepaudio.decoder.cosyvoice2.hift import HiFT24k, HiFTDraws
from stepaudio.decoder.cosyvoice2.prompt import Prompt


@dataclass(frozen=True)
class StreamConfig:
    """The reference's hard-coded streaming constants."""

    chunk_tokens: int = 25
    mel_cache_frames: int = 8
    estimator_keep: int = 100

    def __post_init__(self) -> None:
        if self.chunk_tokens < 1 or self.mel_cache_frames < 1 or self.estimator_keep < 1:
            raise ValueError("stream sizes must be positive")


def to_pcm16(speech: torch.Tensor) -> np.ndarray:
    """float `[1, N]` -> int16 `[N]`: clip to [-1, 1], scale by 32767, truncate (as the reference)."""
    wav = np.clip(speech.detach().cpu().float().numpy().reshape(-1), -1.0, 1.0)
    return (wav * np.float32(32767.0)).astype(np.int16)


class StreamVocoder:
    """The reference's vocoder glue: mel chunks in, int16 PCM out."""

    def __init__(self, hift: HiFT24k, draws: HiFTDraws, mel_cache_frames: int = 8) -> None:
        self.hift = hift
        self.draws = draws
        self.mel_cache_frames = mel_cache_frames
        self.source_cache_len = mel_cache_frames * hift.samples_per_frame
        self.window = torch.from_numpy(np.hamming(2 * self.source_cache_len))
        self._mel: torch.Tensor | None = None
        self._source: torch.Tensor | None = None
        self._speech: torch.Tensor | None = None

    def crossfade(self, speech: torch.Tensor) -> torch.Tensor:
        """Fade the held-back tail of the previous chunk out over the first samples of this one."""
        if self._speech is None:
            return speech
        n = self.source_cache_len
        out = speech.clone()
        window = self.window.to(speech.device)
        out[..., :n] = speech[..., :n] * window[:n] + self._speech[..., -n:] * window[n:]
        return out

    def push(self, mel: torch.Tensor, last: bool) -> np.ndarray:
        """mel chunk `[1, 80, T]` -> the PCM that is final now (all of it when `last`)."""
        return to_pcm16(self.speech(mel, last))

    def speech(self, mel: torch.Tensor, last: bool) -> torch.Tensor:
        """mel chunk `[1, 80, T]` -> the float speech `[1, N]` that is final now; the tail is held back to
        crossfade into the next chunk (all of it comes out when `last`)."""
        if self._mel is not None:
            mel = torch.cat([self._mel, mel], dim=2)
        speech, source = self.hift(mel, self.draws, self._source)
        speech = self.crossfade(speech)
        n = self.source_cache_len
        self._mel = mel[..., -self.mel_cache_frames :]
        self._source = source[:, :, -n:]
        self._speech = speech[:, -n:]
        return speech if last else speech[:, :-n]


class Token2WavStream:
    """One utterance in one voice: `push(tokens)` returns the PCM decoded so far, `finish()` the rest."""

    def __init__(
        self,
        flow: CausalMaskedDiffWithXvec,
        hift: HiFT24k,
        prompt: Prompt,
        noise: NoiseSource,
        draws: HiFTDraws,
        config: StreamConfig | None = None,
    ) -> None:
        self.flow = flow
        self.config = config or StreamConfig()
        self.lookahead = flow.config.pre_lookahead_len
        if prompt.tokens.numel() < max(self.lookahead, 2):
            raise ValueError(f"streaming needs a prompt of at least {max(self.lookahead, 2)} tokens")
        self.prompt = prompt
        self.noise = noise
        device = flow.input_embedding.weight.device
        dtype = flow.input_embedding.weight.dtype
        self._embedding = prompt.embedding.to(device=device, dtype=dtype)[None]
        tokens = prompt.tokens.to(device)[None]
        with torch.inference_mode():
            self._cache: FlowCache = flow.setup_cache(
                torch.cat([tokens, tokens[:, : self.lookahead]], dim=1),
                prompt.mel.to(device=device, dtype=dtype)[None], self._embedding, noise,
            )  # fmt: skip
        self.vocoder = StreamVocoder(hift, draws, self.config.mel_cache_frames)
        self._buffer: list[int] = []
        self._finished = False
        self.last_mel: torch.Tensor | None = None

    def _chunk(self, tokens: Sequence[int], last: bool) -> np.ndarray:
        ids = torch.tensor([list(tokens)], dtype=torch.int64, device=self._embedding.device)
        with torch.inference_mode():
            mel, cache = self.flow.inference_chunk(ids, self._embedding, self._cache, last, self.noise)
        keep_first = self.prompt.frames
        self._cache = FlowCache(cache.encoder, cache.estimator.trimmed(keep_first, self.config.estimator_keep))
        self.last_mel = mel
        return self.vocoder.push(mel.float(), last)

    def push(self, tokens: Sequence[int]) -> np.ndarray:
        """Add tokens; decode every full chunk (chunk_tokens + look-ahead available) -> int16 PCM (maybe empty)."""
        if self._finished:
            raise RuntimeError("push after finish(): start a new stream")
        self._buffer.extend(int(t) for t in tokens)
        pieces = [np.zeros(0, dtype=np.int16)]
        window = self.config.chunk_tokens + self.lookahead
        while len(self._buffer) >= window:
            pieces.append(self._chunk(self._buffer[:window], last=False))
            self._buffer = self._buffer[self.config.chunk_tokens :]
        return np.concatenate(pieces)

    def finish(self) -> np.ndarray:
        """Decode what is left as the last chunk and release the held-back samples -> int16 PCM."""
        if self._finished:
            return np.zeros(0, dtype=np.int16)
        self._finished = True
        if not self._buffer:
            return np.zeros(0, dtype=np.int16)
        out = self._chunk(self._buffer, last=True)
        self._buffer = []
        return out
