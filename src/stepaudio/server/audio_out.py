"""Output audio formats: which ones this build can encode, their media types, and streamable framing.

wav and pcm stream chunk by chunk (a WAV header with open-ended sizes, then 16-bit samples); flac, mp3 and
opus are encoded once the whole utterance exists, because their encoders here are not incremental.
"""

from __future__ import annotations

import struct
from functools import cache

import numpy as np
import soundfile as sf

from stepaudio.audio.io import encode_audio, to_pcm16
from stepaudio.server.errors import ApiError

MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg",
               "opus": "audio/ogg; codecs=opus", "aac": "audio/aac"}
STREAMABLE = frozenset({"wav", "pcm"})


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
    return encode_audio(samples, sample_rate, "pcm" if fmt == "pcm16" else fmt)


def pcm_bytes(samples: np.ndarray) -> bytes:
    return to_pcm16(samples)
