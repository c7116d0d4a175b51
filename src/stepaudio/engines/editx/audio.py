"""Input audio as Step-Audio-EditX prepares it, for a clone prompt and an edit input alike (REFERENCE-EDITX.md §3).

Channels are averaged and a peak above 0.6 is scaled down to 0.6 (against clipping when outputs are edited
again and again); that wav, untrimmed and at its own rate, gives the decoder's prompt mel and x-vector. The
LM's audio tokens come from it resampled to 16 kHz, peak-normalised and silence-trimmed (the v1 tokenizer's
`trim=True` path). The raw samples as loaded also name a clone (`clone_voice_id`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stepaudio.audio.io import Audio, load_audio
from stepaudio.decoder.cosyvoice2.editx_token2wav import EditXPrompt, EditXToken2Wav
from stepaudio.errors import AudioError
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.interleave import lm_to_flow

PEAK_CAP = 0.6
MIN_SAMPLE_RATE = 16000  # the reference's resampler asserts it; lower rates are refused
MAX_SECONDS = 30.0  # the vq06 chunk; the release README asks for inputs under 30 s


@dataclass(frozen=True)
class RawAudio:
    """Samples `[channels, n]` float32 exactly as loaded (16-bit WAV: int / 32768) and their rate."""

    channels: np.ndarray
    sample_rate: int

    def mono(self) -> np.ndarray:
        return np.ascontiguousarray(self.channels.mean(axis=0, dtype=np.float64), dtype=np.float32)


@dataclass(frozen=True)
class PreparedAudio:
    """What a clone prompt or an edit input contributes: LM audio ids (trimmed 16 kHz) and decoder prompt
    features (untrimmed, capped)."""

    lm_ids: tuple[int, ...]
    features: EditXPrompt
    duration: float


def read_raw(source: Any, sample_rate: int | None = None) -> RawAudio:
    """A path, encoded bytes, an `Audio`, or samples (`[n]` or `[channels, n]`, with `sample_rate`)."""
    if isinstance(source, Audio):
        return RawAudio(np.asarray(source.samples, dtype=np.float32)[None], source.sample_rate)
    if isinstance(source, str | Path | bytes | bytearray):
        try:
            handle: Any = io.BytesIO(bytes(source)) if isinstance(source, bytes | bytearray) else str(source)
            data, rate = sf.read(handle, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError):
            decoded = load_audio(source)  # other containers (mp3, ...): mono is all we can get
            return RawAudio(decoded.samples[None], decoded.sample_rate)
        return RawAudio(np.ascontiguousarray(data.T), int(rate))
    if sample_rate is None:
        raise AudioError("a sample array needs its sample rate")
    array = np.asarray(source, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise AudioError(f"audio arrays must be [n] or [channels, n], got {array.shape}")
    return RawAudio(np.ascontiguousarray(array), int(sample_rate))


def cap_peak(samples: np.ndarray, peak: float = PEAK_CAP) -> np.ndarray:
    """Scale down so that max |x| = `peak` when it is above; quieter audio is untouched."""
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    if top > peak:
        return (samples / top * peak).astype(np.float32)
    return samples.astype(np.float32, copy=False)


def prepare(raw: RawAudio, tokenizer: StepAudioTokenizer, decoder: EditXToken2Wav) -> PreparedAudio:
    """Tokens from the trimmed 16 kHz wav, mel and x-vector from the untrimmed one (both after the peak cap)."""
    if raw.sample_rate < MIN_SAMPLE_RATE:
        raise AudioError(f"the audio is sampled at {raw.sample_rate} Hz; EditX needs at least {MIN_SAMPLE_RATE} Hz "
                         "(the reference refuses lower rates): record or export it at 16 kHz or more")
    samples = raw.mono()
    if samples.size == 0 or not np.all(np.isfinite(samples)):
        raise AudioError("the audio is empty or not finite")
    duration = samples.size / raw.sample_rate
    if duration > MAX_SECONDS:
        raise AudioError(f"the audio lasts {duration:.1f} s; EditX takes at most {MAX_SECONDS:g} s (cut it first)")
    samples = cap_peak(samples)
    lm_ids = tuple(tokenizer.lm_ids(samples, raw.sample_rate, trim=True))
    if not lm_ids:
        raise AudioError("the audio is too short to give any audio tokens")
    features = decoder.prompt_features(samples, raw.sample_rate, lm_to_flow(list(lm_ids)))
    return PreparedAudio(lm_ids, features, duration)
