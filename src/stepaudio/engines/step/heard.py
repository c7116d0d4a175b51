"""Step-Audio-Chat hearing a turn while it is spoken: the turn's audio tokens are made as the audio comes, so the
end of speech leaves only the tail to tokenise.

The chat prompt tokenises a spoken turn as the reference does: peak-normalised over the whole clip, then vq02
(Paraformer) and vq06. A live turn's peak is not known in advance, so the stream scales the audio by the peak so
far and starts the vq02 stream again when a louder sample comes (rare once the first words are in); vq02 streams
exactly (`tokenizer.linguistic`), one 240 ms step at a time. At `hear(clip)` the vq02 stream's state is copied,
fed the clip's remaining samples and finished; vq06 attends over its whole window, so it runs then, over the
clip (`tokenizer.streaming`'s exact `window` policy). The codes are those of `StepAudioTokenizer.audio_text` on
the clip, always: a clip the stream cannot serve exactly (a louder sample after the last step, audio processed
past the clip's end, another sample rate) is tokenised in one pass.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import numpy as np
import torch

from stepaudio.audio.io import Audio
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.interleave import AudioCodes
from stepaudio.tokenizer.linguistic import LinguisticStream
from stepaudio.tokenizer.semantic import SAMPLE_RATE

FLOOR, PEAK = 0.01, 0.999  # audio.io.peak_normalize's


class StepHeard:
    """A `HeardStream`: `push` the turn's samples, `update` runs the vq02 steps due (all but the last
    `margin_s`, so a clip that ends a little before the newest sample can still be served), `hear(clip)` makes
    the clip's `<audio_N>` text and hands it to `keep`."""

    def __init__(self, tokenizer: Callable[[], StepAudioTokenizer], sample_rate: int,
                 keep: Callable[[Audio, str], None], margin_s: float = 0.3) -> None:
        self._tokenizer = tokenizer
        self.sample_rate = sample_rate
        self._keep = keep
        self.margin = int(margin_s * sample_rate)
        self._lock = threading.Lock()
        self._pieces: list[np.ndarray] = []
        self._count = 0
        self._stream: LinguisticStream | None = None
        self._top = 0.0  # the peak the stream's audio was scaled by
        self._processed = 0  # samples the stream has run
        self._vq02: list[int] = []
        self.restarts = 0  # vq02 streams started again for a louder sample
        self.served = 0  # clips served from the stream (the others were tokenised in one pass)

    def push(self, samples: np.ndarray) -> None:
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            self._pieces.append(data.copy())
            self._count += data.size

    def update(self) -> bool:
        if self.sample_rate != SAMPLE_RATE:
            return False  # (the clip is resampled as a whole at the end)
        with self._lock:
            tokenizer = self._tokenizer()
            step = tokenizer.linguistic.samples_per_step
            upto = self._processed + (self._count - self.margin - self._processed) // step * step
            if upto <= self._processed:
                return False
            samples = self._samples()
            top = float(np.max(np.abs(samples[:upto])))
            if self._stream is None or top > self._top:
                self.restarts += self._stream is not None
                self._stream, self._top, self._processed, self._vq02 = tokenizer.linguistic.stream(), top, 0, []
            piece = self._scaled(samples[self._processed : upto])
            self._vq02 += self._stream.push(torch.from_numpy(piece))
            self._processed = upto
            return True

    def hear(self, audio: Audio) -> None:
        tokenizer = self._tokenizer()
        with self._lock:
            n = audio.samples.size
            samples = self._samples()[:n]
            exact = (self.sample_rate == SAMPLE_RATE == audio.sample_rate and self._stream is not None
                     and samples.size == n and self._processed <= n
                     and np.array_equal(samples, audio.samples)
                     and float(np.max(np.abs(samples))) == self._top)
            if exact:
                assert self._stream is not None
                stream = _fork(self._stream)
                vq02 = [*self._vq02, *stream.push(torch.from_numpy(self._scaled(samples[self._processed :]))),
                        *stream.finish()]
                self.served += 1
        if exact:
            vq06 = tokenizer.semantic.encode(self._scaled(samples))
            text = AudioCodes(vq02=tuple(vq02), vq06=tuple(vq06)).text()
        else:
            text = tokenizer.audio_text(audio.samples, audio.sample_rate, trim=False)
        self._keep(audio, text)

    def _samples(self) -> np.ndarray:
        if len(self._pieces) > 1:
            self._pieces = [np.concatenate(self._pieces)]
        return self._pieces[0] if self._pieces else np.zeros(0, np.float32)

    def _scaled(self, samples: np.ndarray) -> np.ndarray:
        """`peak_normalize` of the clip, piece by piece: the same float32 arithmetic per sample."""
        return (np.asarray(samples, dtype=np.float32) / max(self._top, FLOOR) * PEAK).astype(np.float32)


def _fork(stream: LinguisticStream) -> LinguisticStream:
    """A copy of the stream's state (frontend, encoder cache, pending samples) sharing its tokenizer."""
    twin = copy.copy(stream)
    for name, value in vars(stream).items():
        if name not in ("tokenizer", "generator"):
            setattr(twin, name, copy.deepcopy(value))
    return twin
