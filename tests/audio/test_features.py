"""Feature front-ends: conformance with the reference vectors, plus shape/dtype/error behaviour."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stepaudio.audio.features import (
    KaldiFbankConfig,
    MatchaMelConfig,
    kaldi_fbank,
    kaldi_mel_banks,
    matcha_mel,
    mean_normalize,
    slaney_mel_filterbank,
    whisper_log_mel,
)
from stepaudio.errors import AudioError

# README: fp32-vs-fp64 round-off in near-silent bins reaches 2e-3 (mel) and 6e-3 (fbank) on log values.
LOG_ATOL = 1e-2


def _signal(num_samples: int, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """A chirp plus a little noise: energy in every band so log values stay well conditioned."""
    t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
    chirp = torch.sin(2 * math.pi * (100.0 * t + 2000.0 * t * t))
    noise = torch.randn(num_samples, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (0.5 * chirp + 0.01 * noise).to(torch.float32)


@pytest.fixture(scope="module")
def vectors(conformance_dir: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(conformance_dir / "features" / "features.safetensors"))
    tensors.update(load_file(str(conformance_dir / "features" / "whisper_mel.safetensors")))
    return tensors


# ----------------------------------------------------------------------------------------- conformance


@pytest.mark.conformance
def test_conformance_signal_matches_documented_formula(conformance_dir: Path, vectors: dict) -> None:
    meta = json.loads((conformance_dir / "features" / "features.json").read_text())["signal"]
    for rate in (16000, 22050):
        n = torch.arange(round(meta["dur"] * rate), dtype=torch.float64)
        t = n / rate
        k = (meta["f1"] - meta["f0"]) / meta["dur"]
        chirp = torch.sin(2 * math.pi * (meta["f0"] * t + 0.5 * k * t * t))
        env = 0.5 * (1 - torch.cos(2 * math.pi * meta["am"] * t))
        tone = torch.sin(2 * math.pi * meta["tone"] * t)
        y = meta["chirp_amp"] * chirp * (0.5 + 0.5 * env) + meta["tone_amp"] * tone
        torch.testing.assert_close(vectors[f"wav_{rate}"][0], y.float(), atol=1e-6, rtol=0)


@pytest.mark.conformance
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conformance_kaldi_fbank(vectors: dict, dtype: torch.dtype) -> None:
    feats = kaldi_fbank(vectors["wav_16000"][0].to(dtype), num_mel_bins=80)
    assert feats.dtype == dtype
    expected = vectors["fbank_kaldi_80"].to(dtype)
    assert feats.shape == expected.shape
    torch.testing.assert_close(feats, expected, atol=LOG_ATOL, rtol=0)
    # Away from the epsilon floor the agreement is much tighter.
    loud = expected > -10.0
    assert (feats - expected)[loud].abs().max() < 1e-3
    if dtype == torch.float32:  # float32 at least as close to the exact (float64) value as the reference's
        exact = kaldi_fbank(vectors["wav_16000"][0].double(), num_mel_bins=80)
        assert (feats.double() - exact).abs().max() <= (expected.double() - exact).abs().max()


@pytest.mark.conformance
def test_conformance_kaldi_fbank_mean_normalized(vectors: dict) -> None:
    wav = vectors["wav_16000"][0]
    expected = vectors["fbank_kaldi_80_mean_normalized"]
    torch.testing.assert_close(mean_normalize(kaldi_fbank(wav)), expected, atol=LOG_ATOL, rtol=0)
    torch.testing.assert_close(kaldi_fbank(wav, subtract_mean=True), expected, atol=LOG_ATOL, rtol=0)


@pytest.mark.conformance
@pytest.mark.parametrize("n_mels", [128, 80])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conformance_whisper_log_mel(vectors: dict, n_mels: int, dtype: torch.dtype) -> None:
    mel = whisper_log_mel(vectors["wav_16000"][0].to(dtype), n_mels=n_mels)
    expected = vectors[f"whisper_log_mel_{n_mels}"].to(dtype)
    assert mel.shape == expected.shape
    torch.testing.assert_close(mel, expected, atol=1e-3, rtol=0)


@pytest.mark.conformance
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conformance_matcha_mel(vectors: dict, dtype: torch.dtype) -> None:
    mel = matcha_mel(vectors["wav_22050"].to(dtype))
    expected = vectors["mel_22050_matcha"].to(dtype)
    assert mel.shape == expected.shape
    torch.testing.assert_close(mel, expected, atol=LOG_ATOL, rtol=0)
    loud = expected > -8.0
    assert (mel - expected)[loud].abs().max() < 1e-3


# ----------------------------------------------------------------------------------------- kaldi fbank


def _naive_kaldi_fbank(wave: np.ndarray, cfg: KaldiFbankConfig) -> np.ndarray:
    """Frame-by-frame float64 transcription of Kaldi's C++ (ExtractWindow + MelBanks), for cross-checks."""
    size, shift, n_fft = cfg.window_size, cfg.window_shift, cfg.n_fft
    n = len(wave)
    count = 1 + (n - size) // shift if cfg.snip_edges else (n + shift // 2) // shift
    i = np.arange(size)
    a = 2 * np.pi / (size - 1)
    window = {
        "povey": (0.5 - 0.5 * np.cos(a * i)) ** 0.85,
        "hamming": 0.54 - 0.46 * np.cos(a * i),
        "hanning": 0.5 - 0.5 * np.cos(a * i),
        "rectangular": np.ones(size),
        "blackman": 0.42 - 0.5 * np.cos(a * i) + 0.08 * np.cos(2 * a * i),
    }[cfg.window_type]

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    high = cfg.high_freq if cfg.high_freq > 0 else cfg.sample_rate / 2 + cfg.high_freq
    lo, hi = mel(cfg.low_freq), mel(high)
    delta = (hi - lo) / (cfg.num_mel_bins + 1)
    banks = np.zeros((cfg.num_mel_bins, n_fft // 2 + 1))
    for b in range(cfg.num_mel_bins):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for k in range(n_fft // 2):
            m = mel(k * cfg.sample_rate / n_fft)
            if left < m < right:
                banks[b, k] = (m - left) / (center - left) if m <= center else (right - m) / (right - center)
    out = []
    for f in range(count):
        start = f * shift if cfg.snip_edges else f * shift + shift // 2 - size // 2
        frame = np.empty(size)
        for j in range(size):
            s = start + j
            while s < 0 or s >= n:
                s = -s - 1 if s < 0 else 2 * n - 1 - s
            frame[j] = wave[s]
        if cfg.remove_dc_offset:
            frame = frame - frame.mean()
        energy = math.log(max(float(np.dot(frame, frame)), float(np.finfo(np.float32).eps)))
        if cfg.energy_floor > 0:
            energy = max(energy, math.log(cfg.energy_floor))
        for j in range(size - 1, 0, -1):
            frame[j] -= cfg.preemphasis * frame[j - 1]
        frame[0] -= cfg.preemphasis * frame[0]
        spec = np.abs(np.fft.rfft(frame * window, n=n_fft)) ** 2
        if not cfg.use_power:
            spec = np.sqrt(spec)
        row = np.log(np.maximum(banks @ spec, np.finfo(np.float32).eps))
        out.append(np.concatenate([[energy], row]) if cfg.use_energy else row)
    return np.stack(out)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"window_type": "hamming", "energy_floor": 0.0},
        {"window_type": "hanning", "snip_edges": False},
        {"window_type": "blackman", "use_energy": True, "energy_floor": 1.0, "num_mel_bins": 40},
        {"window_type": "rectangular", "use_power": False, "low_freq": 60.0, "high_freq": -400.0},
        {"round_to_power_of_two": False, "frame_length_ms": 20.0, "frame_shift_ms": 12.5},
    ],
)
def test_kaldi_fbank_matches_naive_transcription(options: dict) -> None:
    wave = _signal(3217, 16000).double() * 32768.0
    cfg = KaldiFbankConfig(**options)
    expected = _naive_kaldi_fbank(wave.numpy(), cfg)
    got = kaldi_fbank(wave, **options)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-8, rtol=1e-9)


def test_kaldi_fbank_hamming_paraformer_call_in_float32() -> None:
    wave = _signal(4000, 16000)
    got = kaldi_fbank(wave * 32768, window_type="hamming", energy_floor=0.0)
    cfg = KaldiFbankConfig(window_type="hamming")
    expected = _naive_kaldi_fbank(wave.double().numpy() * 32768, cfg)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-3, rtol=0)


@pytest.mark.parametrize("window_type", ["povey", "hamming"])
def test_kaldi_fbank_float32_is_exact_on_quiet_input(window_type: str) -> None:
    """A -60 dBFS chirp and tone at Kaldi's 16-bit scale leave hundreds of bins just above the log floor, where
    float32 round-off in the DC removal, pre-emphasis and FFT moved log values by up to 0.065."""
    t = torch.arange(16000, dtype=torch.float64) / 16000
    clean = 0.5 * torch.sin(2 * math.pi * (110.0 * t + 1845.0 * t * t)) + 0.25 * torch.sin(2 * math.pi * 440.0 * t)
    quiet = (clean * 32768 * 1e-3).to(torch.float32)
    exact = kaldi_fbank(quiet.double(), window_type=window_type)
    floor = math.log(torch.finfo(torch.float32).eps)
    if window_type == "povey":
        assert ((exact > floor) & (exact < floor + 2)).sum() > 100  # the test looks where the drift was
    got = kaldi_fbank(quiet, window_type=window_type)
    assert got.dtype == torch.float32
    assert (got.double() - exact).abs().max() < 1e-5  # float32's own rounding of values down to -16


@pytest.mark.parametrize("num_samples", [400, 401, 559, 560, 561, 8000, 16000 * 3 + 7])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_kaldi_fbank_frame_counts(num_samples: int, snip_edges: bool) -> None:
    feats = kaldi_fbank(_signal(num_samples, 16000), snip_edges=snip_edges)
    expected = 1 + (num_samples - 400) // 160 if snip_edges else (num_samples + 80) // 160
    assert feats.shape == (expected, 80)
    assert KaldiFbankConfig(snip_edges=snip_edges).num_frames(num_samples) == expected
    assert torch.isfinite(feats).all()


def test_kaldi_fbank_batch_equals_single() -> None:
    batch = torch.stack([_signal(3000, 16000, seed=s) for s in range(3)])
    feats = kaldi_fbank(batch, window_type="hamming")
    assert feats.shape == (3, 17, 80)
    for i in range(3):
        torch.testing.assert_close(feats[i], kaldi_fbank(batch[i], window_type="hamming"))


def test_kaldi_fbank_deterministic_without_dither_and_seeded_with_dither() -> None:
    wave = _signal(2000, 16000)
    torch.testing.assert_close(kaldi_fbank(wave), kaldi_fbank(wave), atol=0, rtol=0)
    a = kaldi_fbank(wave, dither=1.0, generator=torch.Generator().manual_seed(3))
    b = kaldi_fbank(wave, dither=1.0, generator=torch.Generator().manual_seed(3))
    c = kaldi_fbank(wave, dither=1.0, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c)


def test_kaldi_fbank_silence_hits_epsilon_floor() -> None:
    feats = kaldi_fbank(torch.zeros(1000))
    torch.testing.assert_close(feats, torch.full_like(feats, math.log(torch.finfo(torch.float32).eps)))


@pytest.mark.parametrize("bad", [torch.zeros(0), torch.zeros(2, 0), torch.zeros(399), torch.tensor(1.0)])
def test_kaldi_fbank_rejects_empty_or_short(bad: torch.Tensor) -> None:
    with pytest.raises(AudioError, match="kaldi_fbank"):
        kaldi_fbank(bad)


def test_kaldi_fbank_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="window_type"):
        kaldi_fbank(_signal(1000, 16000), window_type="gaussian")
    with pytest.raises(ValueError, match="mel range"):
        KaldiFbankConfig(low_freq=9000.0)


def test_kaldi_fbank_integer_input_is_converted_without_scaling() -> None:
    pcm = (_signal(1200, 16000) * 32767).round().to(torch.int16)
    torch.testing.assert_close(kaldi_fbank(pcm), kaldi_fbank(pcm.float()))


def test_kaldi_mel_banks_shape_and_peaks() -> None:
    banks = kaldi_mel_banks(80, 512, 16000.0, 20.0, 0.0)
    assert banks.shape == (80, 257)
    assert torch.all(banks[:, -1] == 0)
    assert torch.all(banks >= 0) and torch.all(banks <= 1)
    peaks = banks.argmax(dim=1)
    assert torch.all(peaks[1:] >= peaks[:-1])
    assert banks[:, 0].sum() == 0  # 0 Hz lies below low_freq


# ----------------------------------------------------------------------------------------- slaney mel


def test_slaney_filterbank_properties() -> None:
    fb = slaney_mel_filterbank(16000, 400, 128)
    assert fb.shape == (128, 201) and fb.dtype == torch.float64
    assert torch.all(fb >= 0)
    assert torch.all(fb.sum(dim=1) > 0)  # no empty filter
    peaks = fb.argmax(dim=1)
    assert torch.all(peaks[1:] >= peaks[:-1])
    # Slaney norm: unit area in Hz, i.e. sum(weights) * bin width ≈ 1 for filters wide in bins.
    wide = fb[72:] * (16000 / 400)
    torch.testing.assert_close(wide.sum(dim=1), torch.ones(56, dtype=torch.float64), atol=0.1, rtol=0)
    fine = slaney_mel_filterbank(22050, 1024, 80, 0.0, 8000.0) * (22050 / 1024)
    torch.testing.assert_close(fine.sum(dim=1), torch.ones(80, dtype=torch.float64), atol=0.1, rtol=0)
    # Below 1 kHz the scale is linear: 200/3 Hz per mel.
    edges_hz = slaney_mel_filterbank(22050, 1024, 80, 0.0, 8000.0)
    assert edges_hz.shape == (80, 513)
    assert edges_hz[:, 8000 * 1024 // 22050 + 2 :].abs().max() == 0  # nothing above fmax


def test_slaney_filterbank_known_value() -> None:
    # First filter of librosa.filters.mel(sr=16000, n_fft=400, n_mels=80): edges 0, c, 2c Hz (linear
    # region), weight at bin 1 (40 Hz) = min(up, down) ramp times the Slaney norm 2 / (2c).
    fb = slaney_mel_filterbank(16000, 400, 80)
    center = 200.0 / 3.0 * _slaney_mel(8000.0) / 81
    high = 2 * center
    weight = min(40.0 / center, (high - 40.0) / (high - center)) * 2.0 / high
    assert fb[0, 0] == 0
    torch.testing.assert_close(fb[0, 1].item(), weight, atol=1e-12, rtol=1e-9)
    assert fb[0, 2:].abs().max() == 0


def _slaney_mel(hz: float) -> float:
    return hz / (200.0 / 3.0) if hz < 1000 else 15.0 + math.log(hz / 1000.0) / (math.log(6.4) / 27.0)


# ----------------------------------------------------------------------------------------- whisper


@pytest.mark.parametrize("num_samples", [201, 480, 16000, 16000 * 2 + 33])
def test_whisper_log_mel_shapes_and_range(num_samples: int) -> None:
    mel = whisper_log_mel(_signal(num_samples, 16000))
    assert mel.shape == (128, num_samples // 160)
    assert mel.max() - mel.min() <= 2.0 + 1e-6  # the max - 8 floor, scaled by 1/4
    assert torch.isfinite(mel).all()


def test_whisper_log_mel_batch_equals_single() -> None:
    batch = torch.stack([_signal(4000, 16000, seed=s) * (s + 1) for s in range(3)])
    mel = whisper_log_mel(batch, n_mels=80)
    assert mel.shape == (3, 80, 25)
    for i in range(3):
        torch.testing.assert_close(mel[i], whisper_log_mel(batch[i], n_mels=80), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [torch.zeros(0), torch.zeros(200)])
def test_whisper_log_mel_rejects_short(bad: torch.Tensor) -> None:
    with pytest.raises(AudioError, match="whisper_log_mel"):
        whisper_log_mel(bad)


# ----------------------------------------------------------------------------------------- matcha


@pytest.mark.parametrize("num_samples", [385, 1000, 22050, 22050 * 2 + 101])
def test_matcha_mel_frame_counts(num_samples: int) -> None:
    mel = matcha_mel(_signal(num_samples, 22050))
    assert mel.shape == (80, (num_samples + 768 - 1024) // 256 + 1)
    assert mel.shape[-1] == MatchaMelConfig().num_frames(num_samples)
    assert mel.min() >= math.log(1e-5) - 1e-6


def test_matcha_mel_batch_equals_single() -> None:
    batch = torch.stack([_signal(5000, 22050, seed=s) for s in range(2)])
    mel = matcha_mel(batch)
    assert mel.shape == (2, 80, 19)
    for i in range(2):
        torch.testing.assert_close(mel[i : i + 1], matcha_mel(batch[i : i + 1]), atol=1e-5, rtol=0)
        torch.testing.assert_close(mel[i], matcha_mel(batch[i]), atol=1e-5, rtol=0)


def test_matcha_mel_float64_and_determinism() -> None:
    wave = _signal(6000, 22050)
    m32, m64 = matcha_mel(wave), matcha_mel(wave.double())
    assert m64.dtype == torch.float64
    torch.testing.assert_close(m32, m64.float(), atol=LOG_ATOL, rtol=0)
    torch.testing.assert_close(matcha_mel(wave), m32, atol=0, rtol=0)


@pytest.mark.parametrize("bad", [torch.zeros(0), torch.zeros(1, 384)])
def test_matcha_mel_rejects_short(bad: torch.Tensor) -> None:
    with pytest.raises(AudioError, match="matcha_mel"):
        matcha_mel(bad)


# ----------------------------------------------------------------------------------------- dtypes, devices


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(dtype: torch.dtype) -> None:
    wave16, wave22 = _signal(3000, 16000).to(dtype), _signal(3000, 22050).to(dtype)
    for fn, wave in ((kaldi_fbank, wave16), (whisper_log_mel, wave16), (matcha_mel, wave22)):
        out = fn(wave)
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), fn(wave.float()), atol=0.1, rtol=0.01)


def test_public_filterbanks_are_copies_of_the_cache() -> None:
    before = kaldi_fbank(_signal(1000, 16000))
    kaldi_mel_banks(80, 512, 16000.0, 20.0, 0.0).zero_()
    slaney_mel_filterbank(16000, 400, 128).zero_()
    torch.testing.assert_close(kaldi_fbank(_signal(1000, 16000)), before, atol=0, rtol=0)
    assert slaney_mel_filterbank(16000, 400, 128).sum() > 0


@pytest.mark.gpu
def test_features_on_cuda_match_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    wave16, wave22 = _signal(8000, 16000), _signal(11025, 22050)
    for fn, wave in ((kaldi_fbank, wave16), (whisper_log_mel, wave16), (matcha_mel, wave22)):
        out = fn(wave.cuda())
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), fn(wave), atol=LOG_ATOL, rtol=0)
