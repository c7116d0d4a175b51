from __future__ import annotations

import contextlib
import io
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepaudio.audio.io import (
    Audio,
    encode_audio,
    from_pcm16,
    load_audio,
    peak_normalize,
    resample,
    save_audio,
    to_mono,
    to_pcm16,
)
from stepaudio.errors import AudioError


def tone(freq: float, rate: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3", "opus"])
def test_every_format_round_trips_through_bytes_and_paths(fmt: str, tmp_path: Path) -> None:
    rate = 16000 if fmt != "mp3" else 22050
    original = tone(440.0, rate)
    data = encode_audio(original, rate, fmt)
    decoded = load_audio(data)
    assert decoded.sample_rate in (rate, 48000, 16000)
    assert abs(dominant_frequency(decoded.samples, decoded.sample_rate) - 440.0) < 5.0
    path = save_audio(tmp_path / f"x.{fmt}", original, rate)
    assert load_audio(path, sample_rate=16000).sample_rate == 16000
    with path.open("rb") as handle:
        assert load_audio(handle).samples.size > 0


def test_wav_is_sample_exact_at_16_bits() -> None:
    original = tone(300.0, 8000)
    decoded = load_audio(encode_audio(original, 8000, "wav"))
    assert np.max(np.abs(decoded.samples - original)) < 1.0 / 32767


def test_stereo_is_downmixed_in_either_layout() -> None:
    left, right = tone(440, 16000), np.zeros(8000, dtype=np.float32)
    channels_last = np.stack([left, right], axis=1)
    assert np.allclose(to_mono(channels_last), left / 2)
    assert np.allclose(load_audio(channels_last.T, source_rate=16000).samples, left / 2)
    buffer = io.BytesIO()
    sf.write(buffer, channels_last, 16000, format="WAV", subtype="FLOAT")
    assert np.allclose(load_audio(buffer.getvalue()).samples, left / 2, atol=1e-6)


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (16000, 22050), (8000, 16000), (22050, 16000)])
def test_resampling_up_and_down_keeps_pitch_and_length(src: int, dst: int) -> None:
    out = resample(tone(1000.0, src), src, dst)
    assert abs(len(out) - 0.5 * dst) <= 2
    assert abs(dominant_frequency(out, dst) - 1000.0) < 5.0


def test_torch_and_integer_arrays() -> None:
    ints = (tone(440, 16000) * 32767).astype(np.int16)
    assert np.allclose(load_audio(ints, source_rate=16000).samples, ints / 32768.0)
    tensor = torch.from_numpy(tone(440, 16000)).unsqueeze(0)
    assert load_audio(tensor, source_rate=16000).samples.shape == (8000,)


def test_peak_normalisation_matches_reference_rule() -> None:
    loud = np.array([0.0, 0.5, -2.0], dtype=np.float32)
    assert np.allclose(peak_normalize(loud), loud / 2.0 * 0.999)
    quiet = np.array([0.0, 0.001], dtype=np.float32)
    assert np.allclose(peak_normalize(quiet), quiet / 0.01 * 0.999)


def test_pcm16_round_trip_and_clipping() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.5, -1.5], dtype=np.float32)
    back = from_pcm16(to_pcm16(samples))
    assert np.allclose(back, np.clip(samples, -1, 1), atol=1e-4)
    with pytest.raises(AudioError, match="even number"):
        from_pcm16(b"\x00")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"", "empty"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "cannot decode"),
        (b"\x00\x01garbage" * 20, "cannot decode"),
        (np.array([], dtype=np.float32), "empty"),
        (np.array([0.1, np.nan], dtype=np.float32), "NaN"),
        (np.zeros((2, 2, 2), dtype=np.float32), "1-D or 2-D"),
        (np.array(["a"]), "dtype"),
    ],
)
def test_bad_input_gets_the_typed_error(source: object, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        load_audio(source, source_rate=16000)


def test_truncated_wav_is_an_error_not_a_short_clip() -> None:
    data = encode_audio(tone(440, 16000), 16000, "wav")
    with pytest.raises(AudioError, match="truncated"):
        load_audio(data[: len(data) // 2])


def test_limits_and_missing_rate(tmp_path: Path) -> None:
    data = encode_audio(tone(440, 16000, seconds=2.0), 16000, "wav")
    with pytest.raises(AudioError, match="longer than"):
        load_audio(data, max_seconds=1.0)
    with pytest.raises(AudioError, match="larger than"):
        load_audio(data, max_bytes=100)
    with pytest.raises(AudioError, match="source_rate"):
        load_audio(np.zeros(10, dtype=np.float32))
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="unsupported output format"):
        encode_audio(np.zeros(10, dtype=np.float32), 16000, "aac")


def test_a_small_file_declaring_an_hour_is_refused_before_decoding(silent_flac: Any) -> None:
    bomb = silent_flac(3600.0)  # ~180 kB of FLAC, 230 MB of float32 samples once decoded
    assert len(bomb) < 300_000
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=r"declares 3600.0 s of audio, longer than the 600 s allowed"):
            load_audio(bomb, max_seconds=600.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000, f"{peak} bytes allocated before refusing"


def test_a_flac_without_a_declared_length_is_refused(silent_flac: Any) -> None:
    data = bytearray(silent_flac(2.0))
    streaminfo = 8  # 'fLaC' and the metadata block header; the 36-bit total sample count ends STREAMINFO's 18th byte
    fields = int.from_bytes(data[streaminfo + 10 : streaminfo + 18], "big") & ~((1 << 36) - 1)
    data[streaminfo + 10 : streaminfo + 18] = fields.to_bytes(8, "big")
    with pytest.raises(AudioError, match="does not declare its length"):
        load_audio(bytes(data))


@pytest.mark.parametrize("rate", [1, 3999, 192001])
def test_sample_rates_outside_4k_to_192k_are_refused(rate: int) -> None:
    data = bytearray(encode_audio(np.zeros(500, dtype=np.float32), 8000, "wav"))
    data[24:32] = struct.pack("<II", rate, rate * 2)  # the fmt chunk's sample rate and byte rate
    with pytest.raises(AudioError, match=f"declares a sample rate of {rate} Hz; supported rates are 4000 to 192000"):
        load_audio(bytes(data))
    assert load_audio(encode_audio(np.zeros(500, dtype=np.float32), 4000, "wav")).duration == 0.125


def test_multichannel_files_mix_to_float32_mono_block_by_block() -> None:
    rng = np.random.default_rng(1)
    channels = rng.uniform(-0.5, 0.5, (3, 1_500_000)).astype(np.float32)  # more than one decode block
    buffer = io.BytesIO()
    sf.write(buffer, channels.T, 48000, format="WAV", subtype="FLOAT")
    decoded = load_audio(buffer.getvalue())
    assert decoded.samples.dtype == np.float32 and decoded.samples.shape == (1_500_000,)
    np.testing.assert_array_equal(decoded.samples, to_mono(channels))


def test_audio_value_object() -> None:
    audio = Audio(tone(440, 16000), 16000)
    assert audio.duration == pytest.approx(0.5)
    assert audio.resampled(8000).samples.shape == (4000,)
    assert load_audio(audio, sample_rate=8000).sample_rate == 8000


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash_with_anything_but_audio_error(data: bytes) -> None:
    try:
        audio = load_audio(data)
    except AudioError:
        return
    assert audio.samples.dtype == np.float32 and audio.samples.size > 0


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=2048), st.integers(0, 200))
def test_wav_header_with_random_payload(payload: bytes, cut: int) -> None:
    data = encode_audio(tone(440, 8000, seconds=0.05), 8000, "wav")[:44] + payload
    with contextlib.suppress(AudioError):
        load_audio(data[: max(1, len(data) - cut)])
