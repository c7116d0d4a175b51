"""Streaming EditX token2wav: the release's own scheme (`CosyVoice_stream_impl_.token2wav_stream`, unused by its
apps), reproduced so that streamed speech is the speech the reference streams.

* Tokens are the interleaved dual-codebook flow ids; the flow works on frame pairs (5 ids -> 3 frames,
  `dual_frames`). The look-ahead is `pre_lookahead_len` frames (3 = 5 ids); chunk sizes grow as the
  reference's `chunk_size_list` (15, 24, then 48 frames: 25, 40, 80 ids), so the first audio comes early.
* The caches are primed with the prompt and, as look-ahead, the first generated frames (Step-Audio 2's
  stream borrows the prompt's own first tokens instead); this waits for the first 5 ids.
* After each chunk the estimator's key/value axis (newest frames first) is cut to the newest 96 frames and
  the prompt's frames (`[:96] ++ [-prompt_frames:]`) once longer than their sum; the noise of a chunk starts
  at the cut length, as in the reference.
* The vocoder glue is Step-Audio 2's (8 mel frames re-run, 3840 source samples reused, Hamming cross-fade,
  the last 3840 samples held back); out comes float32 speech, not int16.

Streamed is not offline, in the reference either: offline, the encoder and the estimator attend over the
whole utterance (prompt, past and future frames alike); a chunk sees the prompt and the past only, and the
prompt is encoded with the first generated frames as its only future. The two agree where the attention
spans agree; how close they are elsewhere is measured by `stepaudio bench decoder-reference --family
editx` and bounded in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stepaudio.decoder.cosyvoice2.cfm import NoiseSource
from stepaudio.decoder.cosyvoice2.editx import EditXFlow, dual_frames
from stepaudio.decoder.cosyvoice2.flow import FlowCache
from stepaudio.decoder.cosyvoice2.hift import HiFT24k, HiFTDraws
from stepaudio.decoder.cosyvoice2.token2wav_stream import StreamVocoder

GROUP_IDS = 5  # interleaved ids per group of 3 frames (2 vq02 + 3 vq06)
GROUP_FRAMES = 3


@dataclass(frozen=True)
class EditXStreamConfig:
    """The reference's streaming constants: frame pairs per chunk (the last size repeats), the vocoder's
    mel context, and the estimator frames kept besides the prompt's."""

    chunk_frames: tuple[int, ...] = (15, 24, 48)
    mel_cache_frames: int = 8
    left_context_frames: int = 96

    def __post_init__(self) -> None:
        if not self.chunk_frames or any(c < GROUP_FRAMES or c % GROUP_FRAMES for c in self.chunk_frames):
            raise ValueError(f"chunk sizes are whole groups of {GROUP_FRAMES} frames, got {self.chunk_frames}")
        if self.mel_cache_frames < 1 or self.left_context_frames < 1:
            raise ValueError("mel_cache_frames and left_context_frames must be positive")


def ids_for_frames(frames: int) -> int:
    """Interleaved ids that make `frames` frame pairs (the reference's `_mixed_len`)."""
    return frames // GROUP_FRAMES * GROUP_IDS


class FloatStreamVocoder(StreamVocoder):
    """Step-Audio 2's vocoder glue with float32 speech out (EditX's stream returns floats, not PCM)."""

    def push_float(self, mel: torch.Tensor, last: bool) -> np.ndarray:
        out = self.speech(mel, last)
        return np.asarray(out[0].detach().cpu().float().numpy(), dtype=np.float32)


class EditXToken2WavStream:
    """One utterance: `push(flow_ids)` returns the speech that is final so far, `finish()` the rest."""

    def __init__(self, flow: EditXFlow, hift: HiFT24k, prompt_ids: Sequence[int], prompt_mel: torch.Tensor,
                 embedding: torch.Tensor, noise: NoiseSource, draws: HiFTDraws,
                 config: EditXStreamConfig | None = None) -> None:
        """`prompt_ids`: the prompt's flow ids; `prompt_mel` `[T, 80]` (any length: nearest-resized to the prompt's
        frames, as offline); `embedding` `[192]`."""
        self.flow = flow
        self.config = config or EditXStreamConfig()
        look = flow.config.pre_lookahead_len
        if look % GROUP_FRAMES:
            raise ValueError(f"EditX streaming needs a look-ahead of whole groups, not {look} frames")
        self.lookahead_ids = ids_for_frames(look)
        param = flow.input_embedding.weight
        self._device, self._dtype = param.device, param.dtype
        self._prompt = dual_frames(prompt_ids).to(self._device)[None]
        self.prompt_frames = self._prompt.shape[1] * flow.config.up_rate
        self._prompt_mel = F.interpolate(prompt_mel.T[None].float(), size=self.prompt_frames,
                                         mode="nearest").transpose(1, 2).to(param)
        self._embedding = embedding.to(param)[None]
        self.noise = noise
        self.vocoder = FloatStreamVocoder(hift, draws, self.config.mel_cache_frames)
        self._cache: FlowCache | None = None
        self._schedule = list(self.config.chunk_frames)
        self._buffer: list[int] = []
        self._finished = False
        self.chunk_ids: list[int] = []  # ids per decoded chunk, look-ahead included (what each chunk saw)
        self.last_mel: torch.Tensor | None = None  # the flow's mel of the latest chunk `[1, 80, frames]`

    @property
    def primed(self) -> bool:
        return self._cache is not None

    def _setup(self, lookahead: Sequence[int]) -> None:
        frames = dual_frames(lookahead).to(self._device)[None]
        with torch.inference_mode():
            self._cache = self.flow.setup_cache(torch.cat([self._prompt, frames], dim=1), self._prompt_mel,
                                                self._embedding, self.noise)

    def _chunk(self, ids: Sequence[int], last: bool) -> np.ndarray:
        assert self._cache is not None
        frames = dual_frames(ids).to(self._device)[None]
        with torch.inference_mode():
            mel, cache = self.flow.inference_chunk(frames, self._embedding, self._cache, last, self.noise)
        self._cache = FlowCache(cache.encoder,
                                cache.estimator.trimmed(self.config.left_context_frames, self.prompt_frames))
        self.chunk_ids.append(len(ids))
        self.last_mel = mel
        if len(self._schedule) > 1:
            self._schedule.pop(0)
        return self.vocoder.push_float(mel.float(), last)

    def push(self, ids: Sequence[int]) -> np.ndarray:
        """Add flow ids (0..5119); decode every chunk whose look-ahead is in -> float32 speech (maybe empty)."""
        if self._finished:
            raise RuntimeError("push after finish(): start a new stream")
        self._buffer.extend(int(i) for i in ids)
        pieces = [np.zeros(0, dtype=np.float32)]
        if self._cache is None:
            if len(self._buffer) < self.lookahead_ids:
                return pieces[0]
            self._setup(self._buffer[: self.lookahead_ids])
        while len(self._buffer) >= ids_for_frames(self._schedule[0]) + self.lookahead_ids:
            size = ids_for_frames(self._schedule[0])
            pieces.append(self._chunk(self._buffer[: size + self.lookahead_ids], last=False))
            self._buffer = self._buffer[size:]
        return np.concatenate(pieces)

    def finish(self) -> np.ndarray:
        """Decode what is left as the last chunk (zero look-ahead) and release the held-back samples."""
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        self._finished = True
        if not self._buffer:
            return np.zeros(0, dtype=np.float32)
        if self._cache is None:  # fewer ids than one look-ahead: it is one padded group, as dual_frames pads
            self._setup(self._buffer[: self.lookahead_ids])
        out = self._chunk(self._buffer, last=True)
        self._buffer = []
        return out
