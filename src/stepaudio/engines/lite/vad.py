"""Voice activity detection with Silero VAD v6 (the ONNX copy inside faster-whisper, so torch is not needed).

Used to find where speech starts and ends in a recording, to cut silence before ASR, and to report that a
file holds no speech instead of letting Whisper invent a sentence from noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stepaudio.audio.io import Audio
from stepaudio.errors import MissingExtraError

SAMPLE_RATE = 16000


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


class SileroVad:
    """Offline speech spans of a whole recording."""

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


def _as_16k(audio: Audio) -> np.ndarray:
    if audio.sample_rate != SAMPLE_RATE:
        audio = audio.resampled(SAMPLE_RATE)
    return np.ascontiguousarray(audio.samples, dtype=np.float32)
