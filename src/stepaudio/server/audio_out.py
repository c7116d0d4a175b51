"""Output audio formats: which ones this build can encode, their media types, and streamable framing.

wav and pcm stream chunk by chunk (a WAV header with open-ended sizes, then 16-bit samples); flac, mp3 and
opus are encoded once the whole utterance exists, because their encoders here are not incremental.
Raw `pcm` carries no rate, so it is always OpenAI's: 24 kHz 16-bit mono little-endian, whatever rate the
synthesizer speaks at (a client playing 22.05 kHz samples as 24 kHz would speak 9 % fast).
"""

from __future__ import annotations

import struct
from functools import cache

import numpy as np
import soundfile as sf
import soxr

from stepaudio.audio.io import encode_audio, resample, to_pcm16
from stepaudio.server.errors import ApiError

MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg",
               "opus": "audio/ogg; codecs=opus", "aac": "audio/aac"}
STREAMABLE = frozenset({"wav", "pcm"})
PCM_RATE = 24000  # raw pcm, as OpenAI sends it (speech, chat audio, realtime)


@cache
def available_formats() -> frozenset[str]:
    """The formats libsndfile can write here (mp3 and opus depend on how it was built)."""
    formats = {"wav", "pcm", "flac"}
    if "MP3" in sf.available_formats():
        formats.add("mp3")
    if "OPUS" in sf.available_subtypes("OGG"):
        formats.add("opus")
    return frozenset(formats)


def check_format(fmt: str, param: str = "response_format") -> str:
    name = "pcm" if fmt == "pcm16" else fmt
    if name not in available_formats():
        raise ApiError(400, f"the {fmt!r} format is not available on this server; choose one of "
                       f"{', '.join(sorted(available_formats()))}", code="unsupported_format", param=param)
    return name


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say 'unknown length', for audio streamed as it is made."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", unknown) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", unknown)


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A whole utterance in `fmt`; raw pcm is resampled to `PCM_RATE`, containers keep the rate they declare."""
    if fmt in ("pcm", "pcm16"):
        return pcm_bytes(samples, sample_rate)
    return encode_audio(samples, sample_rate, fmt)


def pcm_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A whole piece of audio (an utterance, a sentence) at `sample_rate` as raw pcm at `PCM_RATE`."""
    return to_pcm16(resample(samples, sample_rate, PCM_RATE))


class PcmStream:
    """Audio pushed chunk by chunk as raw pcm at `PCM_RATE`: one soxr stream for the whole utterance, so chunk
    edges leave no clicks and the pieces add up to the resampled whole (`finish`, called once, returns the
    filter's tail)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._stream = None if sample_rate == PCM_RATE else soxr.ResampleStream(sample_rate, PCM_RATE, 1,
                                                                                 dtype="float32")

    def push(self, samples: np.ndarray) -> bytes:
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._stream is not None:
            data = self._stream.resample_chunk(data)
        return to_pcm16(data)

    def finish(self) -> bytes:
        if self._stream is None:
            return b""
        return to_pcm16(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
