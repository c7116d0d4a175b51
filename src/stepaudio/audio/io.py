"""Audio in and out: any common format from a path, bytes or an array, to float32 mono at a chosen rate.

Every failure of the input (empty, corrupt, truncated, non-finite, unsupported) becomes one `AudioError`
with a message a user can act on; nothing else escapes from `load_audio`. Encoded input is checked against
the duration cap and the sample-rate bounds from its container header before any sample is decoded, then
decoded block by block into float32 mono, so a small file that declares hours of audio costs nothing.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr

from stepaudio.errors import AudioError

ENCODE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MIN_SAMPLE_RATE = 4000  # a container declaring less (e.g. 1 Hz: 500 samples = "500 s") is refused
MAX_SAMPLE_RATE = 192000
DECODE_BLOCK_SAMPLES = 1 << 20  # interleaved samples decoded at a time (4 MB of float32)
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's frame count when the header does not declare one

AudioSource = str | Path | bytes | bytearray | memoryview | BinaryIO | np.ndarray | Any


@dataclass(frozen=True)
class Audio:
    """Float32 mono samples in [-1, 1] and their sample rate."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def resampled(self, sample_rate: int) -> Audio:
        return Audio(resample(self.samples, self.sample_rate, sample_rate), sample_rate)


def load_audio(
    source: AudioSource,
    *,
    sample_rate: int | None = None,
    source_rate: int | None = None,
    max_seconds: float | None = None,
    max_bytes: int | None = None,
) -> Audio:
    """Decode `source` to mono float32, resampled to `sample_rate` when given.

    `source` is a file path, encoded bytes, a binary file object, an `Audio`, or a sample array (numpy or
    torch, `[n]`, `[channels, n]` or `[n, channels]`) whose rate must be passed as `source_rate`.
    """
    if isinstance(source, Audio):
        samples, rate = source.samples, source.sample_rate
    elif isinstance(source, str | Path):
        samples, rate = _decode_path(Path(source), max_bytes, max_seconds)
    elif isinstance(source, bytes | bytearray | memoryview):
        samples, rate = _decode_bytes(bytes(source), max_bytes, max_seconds)
    elif hasattr(source, "read"):
        data = _read_limited(source, max_bytes)  # type: ignore[arg-type]
        samples, rate = _decode_bytes(data, max_bytes, max_seconds)
    else:
        if source_rate is None:
            raise AudioError("a sample array needs its sample rate (source_rate=...)")
        samples, rate = _array_samples(source), int(source_rate)
    return _finish(samples, rate, sample_rate, max_seconds)


def _finish(samples: np.ndarray, rate: int, target_rate: int | None, max_seconds: float | None) -> Audio:
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")
    mono = to_mono(samples)
    if mono.size == 0:
        raise AudioError("the audio is empty (no samples)")
    if not np.all(np.isfinite(mono)):
        raise AudioError("the audio contains NaN or infinite samples")
    if max_seconds is not None and mono.size / rate > max_seconds:
        raise AudioError(f"the audio lasts {mono.size / rate:.1f} s, longer than the {max_seconds:g} s allowed")
    if target_rate is not None and target_rate != rate:
        mono = resample(mono, rate, target_rate)
        rate = target_rate
    return Audio(np.ascontiguousarray(mono, dtype=np.float32), rate)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of `[n]`, `[channels, n]` or `[n, channels]` (the shorter axis is channels)."""
    array = np.asarray(samples)
    if array.ndim == 1:
        return array.astype(np.float32, copy=False)
    if array.ndim != 2:
        raise AudioError(f"audio arrays must be 1-D or 2-D, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.float32)
    channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
    return array.mean(axis=channel_axis, dtype=np.float64).astype(np.float32)


def resample(samples: np.ndarray, from_rate: int, to_rate: int, quality: str = "HQ") -> np.ndarray:
    """Band-limited resampling up or down (soxr)."""
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"invalid sample rates {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    out = soxr.resample(np.asarray(samples, dtype=np.float32), from_rate, to_rate, quality=quality)
    return np.asarray(out, dtype=np.float32)


def peak_normalize(samples: np.ndarray, floor: float = 0.01, peak: float = 0.999) -> np.ndarray:
    """`x / max(max|x|, floor) * peak`, the reference's energy normalisation (quiet input is not boosted)."""
    array = np.asarray(samples, dtype=np.float32)
    top = float(np.max(np.abs(array))) if array.size else 0.0
    return (array / max(top, floor) * peak).astype(np.float32)


def to_pcm16(samples: np.ndarray) -> bytes:
    """Little-endian 16-bit PCM of float samples (clipped to [-1, 1])."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return np.round(clipped * 32767.0).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    if len(data) % 2:
        raise AudioError(f"16-bit PCM needs an even number of bytes, got {len(data)}")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """Encoded bytes in `fmt`: wav, flac, ogg, opus, mp3 or pcm (raw 16-bit little-endian)."""
    fmt = fmt.lower()
    if fmt == "pcm":
        return to_pcm16(samples)
    if fmt not in ENCODE_FORMATS:
        raise AudioError(f"unsupported output format {fmt!r}; choose one of pcm, {', '.join(ENCODE_FORMATS)}")
    container, subtype = ENCODE_FORMATS[fmt]
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    if fmt == "opus" and sample_rate not in OPUS_RATES:
        target = min(r for r in OPUS_RATES if r >= min(sample_rate, 48000))
        data, sample_rate = resample(data, sample_rate, target), target
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def save_audio(path: str | Path, samples: np.ndarray, sample_rate: int, fmt: str | None = None) -> Path:
    """Write `samples`; the format follows the suffix unless `fmt` is given."""
    target = Path(path)
    chosen = (fmt or target.suffix.lstrip(".") or "wav").lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode_audio(samples, sample_rate, chosen))
    return target


def _decode_path(path: Path, max_bytes: int | None, max_seconds: float | None) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise AudioError(f"{path.name} is {size} bytes, more than the {max_bytes} allowed")
    return _decode_bytes(path.read_bytes(), max_bytes, max_seconds, name=path.name)


def _read_limited(handle: BinaryIO, max_bytes: int | None) -> bytes:
    data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    return bytes(data)


def _decode_bytes(data: bytes, max_bytes: int | None, max_seconds: float | None,
                  name: str = "audio data") -> tuple[np.ndarray, int]:
    if max_bytes is not None and len(data) > max_bytes:
        raise AudioError(f"{name} is larger than the {max_bytes} bytes allowed")
    if not data:
        raise AudioError(f"{name} is empty (0 bytes)")
    _check_wav_complete(data, name)
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            rate, channels, frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
            _check_header(name, rate, channels, frames, max_seconds)
            return _decode_mono(handle, channels), rate
    except AudioError:
        raise
    except Exception as exc:  # libsndfile reports corrupt and unknown data in several exception types
        raise AudioError(f"cannot decode {name}: not a supported audio format or corrupt ({exc})") from exc


def _check_header(name: str, rate: int, channels: int, frames: int, max_seconds: float | None) -> None:
    """Refuse from what the container declares, before decoding: the decoder never reads past `frames`."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name} declares a sample rate of {rate} Hz; "
                         f"supported rates are {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
    if channels < 1:
        raise AudioError(f"{name} declares {channels} channels")
    if frames >= UNKNOWN_FRAMES:
        raise AudioError(f"{name} does not declare its length (a FLAC written as a stream?); "
                         "re-encode it to a file with a complete header, e.g. ffmpeg -i in.flac out.wav")
    if max_seconds is not None and frames / rate > max_seconds:
        raise AudioError(f"{name} declares {frames / rate:.1f} s of audio, longer than the {max_seconds:g} s allowed")


def _decode_mono(handle: sf.SoundFile, channels: int) -> np.ndarray:
    """All declared frames as float32 mono, decoded and mixed a bounded block at a time."""
    block = max(1, DECODE_BLOCK_SAMPLES // channels)
    pieces: list[np.ndarray] = []
    while True:
        chunk = handle.read(block, dtype="float32", always_2d=True)
        if not len(chunk):
            break
        mono = chunk[:, 0].copy() if channels == 1 else chunk.mean(axis=1, dtype=np.float64).astype(np.float32)
        pieces.append(mono)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def _check_wav_complete(data: bytes, name: str) -> None:
    """libsndfile silently returns the first part of a cut WAV file; a cut upload should be an error."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        if chunk_id == b"data":
            streaming = size in (0, 0xFFFFFFFF)
            if not streaming and offset + 8 + size > len(data):
                raise AudioError(
                    f"{name} is truncated: its WAV header declares {size} bytes of samples, "
                    f"only {len(data) - offset - 8} are present"
                )
            return
        offset += 8 + size + (size & 1)


def _array_samples(source: Any) -> np.ndarray:
    if hasattr(source, "detach"):  # a torch tensor, without importing torch here
        source = source.detach().cpu().float().numpy()
    array = np.asarray(source)
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if array.dtype == np.int32:
        return (array.astype(np.float64) / 2147483648.0).astype(np.float32)
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"unsupported sample dtype {array.dtype}")
    return array.astype(np.float32, copy=False)
