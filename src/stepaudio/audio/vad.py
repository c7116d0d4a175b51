"""Voice activity detection, in one place: Silero VAD v6, the ONNX copy packaged inside faster-whisper (so
torch is not needed; the package is imported only when a VAD is built, so `stepaudio.audio` stays light).

Two uses:
- offline, before ASR (`SileroVad.trim`, any `Trimmer`): cut leading and trailing silence, and report that a
  recording holds no speech instead of letting Whisper invent a sentence from noise;
- live, in realtime sessions (`silero_frame_vad`, `WindowedVad`): one speech probability per 512-sample frame.
Voice prompts are trimmed by loudness with the reference's rule instead, in `stepaudio.audio.trim`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stepaudio.audio.io import Audio
from stepaudio.errors import AudioError, MissingExtraError

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # what Silero scores at 16 kHz


@dataclass(frozen=True)
class SpeechSpan:
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_ms: int = 150
    min_silence_ms: int = 300
    pad_ms: int = 200


class Trimmer(Protocol):
    """Cuts leading and trailing silence; an empty span list means no speech was heard."""

    def trim(self, audio: Audio) -> tuple[Audio, list[SpeechSpan]]: ...


class SileroVad:
    """Offline speech spans of a whole recording; a `Trimmer`."""

    def __init__(self, config: VadConfig | None = None) -> None:
        try:
            from faster_whisper import vad
        except ImportError as exc:
            raise MissingExtraError("lite", "faster_whisper") from exc
        self.config = config or VadConfig()
        self._vad = vad
        self._options = vad.VadOptions(
            threshold=self.config.threshold,
            min_speech_duration_ms=self.config.min_speech_ms,
            min_silence_duration_ms=self.config.min_silence_ms,
            speech_pad_ms=self.config.pad_ms,
        )

    def spans(self, audio: Audio) -> list[SpeechSpan]:
        samples = _as_16k(audio)
        found = self._vad.get_speech_timestamps(samples, self._options, sampling_rate=SAMPLE_RATE)
        return [SpeechSpan(item["start"] / SAMPLE_RATE, item["end"] / SAMPLE_RATE) for item in found]

    def trim(self, audio: Audio) -> tuple[Audio, list[SpeechSpan]]:
        """The recording from the first speech start to the last speech end (16 kHz), and the spans."""
        samples = _as_16k(audio)
        spans = self.spans(Audio(samples, SAMPLE_RATE))
        if not spans:
            return Audio(samples[:0], SAMPLE_RATE), spans
        start, end = int(spans[0].start * SAMPLE_RATE), int(spans[-1].end * SAMPLE_RATE)
        return Audio(samples[start:end], SAMPLE_RATE), spans

    def warmup(self) -> None:
        self.spans(Audio(np.zeros(SAMPLE_RATE // 2, dtype=np.float32), SAMPLE_RATE))


class WindowedVad:
    """Per-frame speech probabilities from a VAD that scores whole arrays.

    Some VAD models score an array chunk by chunk but reset their state on every call (faster-whisper's
    Silero ONNX does), so called on a lone frame they see no context. This scores a sliding window of the
    latest frames and keeps the last score; `reset` forgets the window (a cleared input buffer)."""

    def __init__(self, score: Callable[[np.ndarray], np.ndarray], frame_samples: int = FRAME_SAMPLES,
                 window: int = 8) -> None:
        if frame_samples <= 0 or window <= 0:
            raise ValueError("frame_samples and window must be positive")
        self.score = score
        self.frame_samples = frame_samples
        self._frames: deque[np.ndarray] = deque(maxlen=window)

    def __call__(self, frame: np.ndarray) -> float:
        samples = np.asarray(frame, dtype=np.float32).reshape(-1)
        if samples.size != self.frame_samples:
            raise AudioError(f"the VAD expects frames of {self.frame_samples} samples, got {samples.size}")
        self._frames.append(samples)
        scores = np.asarray(self.score(np.concatenate(self._frames)), dtype=np.float64).reshape(-1)
        return float(scores[-1]) if scores.size else 0.0

    def reset(self) -> None:
        self._frames.clear()


def silero_frame_vad() -> WindowedVad:
    """The realtime sessions' VAD: faster-whisper's packaged Silero model (shared, thread-safe) behind a window
    of this session's own frames."""
    try:
        from faster_whisper.vad import get_vad_model
    except ImportError as exc:
        raise MissingExtraError("lite", "faster_whisper") from exc
    return WindowedVad(get_vad_model())


def _as_16k(audio: Audio) -> np.ndarray:
    if audio.sample_rate != SAMPLE_RATE:
        audio = audio.resampled(SAMPLE_RATE)
    return np.ascontiguousarray(audio.samples, dtype=np.float32)
