"""Audio feature front-ends of the Step-Audio reference, in plain torch.

Three features, each reproducing the reference numbers (see ``shared/conformance/features``):

* :func:`kaldi_fbank` — Kaldi-compatible log mel filterbank (CAM++ speaker frontend with the povey
  window; Paraformer frontend with the hamming window), same numbers as
  ``torchaudio.compliance.kaldi.fbank`` without depending on torchaudio.
* :func:`whisper_log_mel` — the openai-whisper log-mel fed to the vq06 ONNX tokenizer.
* :func:`matcha_mel` — the CosyVoice/matcha 22.05 kHz mel used as the flow prompt feature.

Every function takes a waveform with optional leading batch dimensions (``[..., N]``), keeps the
input's device and floating dtype, and returns the features with the same leading dimensions.
Filterbanks and windows are pure cached functions of their parameters (CPU, float64), moved to
the caller's device and dtype per call, so there is no module-level mutable state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from stepaudio.errors import AudioError

__all__ = [
    "KALDI_WINDOW_TYPES",
    "KaldiFbankConfig",
    "MatchaMelConfig",
    "compute_kaldi_fbank",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "matcha_mel",
    "mean_normalize",
    "slaney_mel_filterbank",
    "whisper_log_mel",
]

KALDI_WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "blackman")

# torchaudio floors mel energies at float32 machine epsilon before the log, whatever the dtype.
_LOG_FLOOR = float(torch.finfo(torch.float32).eps)


def _as_float_waveform(waveform: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.dtype]:
    """Validate a ``[..., N]`` waveform; return it in a computable float dtype and the output dtype.

    Integer input is converted to float32 without scaling. Half precision is computed in float32
    (CPU FFTs do not support it, and log features need the range) and cast back at the end.
    """
    if not isinstance(waveform, torch.Tensor):
        raise AudioError(f"{what}: expected a torch.Tensor waveform, got {type(waveform).__name__}")
    if waveform.dim() == 0:
        raise AudioError(f"{what}: expected a waveform of shape [..., N], got a scalar")
    if waveform.shape[-1] == 0 or waveform.numel() == 0:
        raise AudioError(f"{what}: the waveform is empty (shape {tuple(waveform.shape)})")
    if waveform.dtype in (torch.float32, torch.float64):
        return waveform, waveform.dtype
    out_dtype = waveform.dtype if waveform.is_floating_point() else torch.float32
    return waveform.to(torch.float32), out_dtype


def _like(table: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """A cached CPU float64 table on ``ref``'s device and dtype (read-only use: may alias the cache)."""
    return table.to(device=ref.device, dtype=ref.dtype)


# --------------------------------------------------------------------------------------------
# Kaldi fbank
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KaldiFbankConfig:
    """Options of Kaldi's ``compute-fbank-feats``.

    Defaults are those of ``torchaudio.compliance.kaldi.fbank`` except ``dither`` (0 here, 1 there)
    and ``num_mel_bins`` (80 here, 23 there), so a default call is deterministic and is the
    Step-Audio CAM++ frontend.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    window_type: str = "povey"
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    energy_floor: float = 0.0
    use_energy: bool = False
    raw_energy: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0
    snip_edges: bool = True
    round_to_power_of_two: bool = True
    use_log: bool = True
    use_power: bool = True
    subtract_mean: bool = False

    def __post_init__(self) -> None:
        if self.window_type not in KALDI_WINDOW_TYPES:
            raise ValueError(f"window_type must be one of {KALDI_WINDOW_TYPES}, got {self.window_type!r}")
        if self.window_size < 2:
            raise ValueError(f"frame_length_ms {self.frame_length_ms} gives a window under 2 samples")
        if self.window_shift < 1:
            raise ValueError(f"frame_shift_ms {self.frame_shift_ms} gives a shift under 1 sample")
        if self.num_mel_bins < 3:
            raise ValueError(f"num_mel_bins must be at least 3, got {self.num_mel_bins}")
        nyquist = 0.5 * self.sample_rate
        high = self.high_freq if self.high_freq > 0.0 else self.high_freq + nyquist
        if not (0.0 <= self.low_freq < nyquist and 0.0 < high <= nyquist and self.low_freq < high):
            raise ValueError(f"bad mel range: low_freq {self.low_freq}, high_freq {self.high_freq}, nyquist {nyquist}")

    @property
    def window_size(self) -> int:
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def window_shift(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def n_fft(self) -> int:
        size = self.window_size
        return 1 << (size - 1).bit_length() if self.round_to_power_of_two else size

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi produces for ``num_samples`` samples (0 when shorter than one window)."""
        if num_samples < self.window_size:
            return 0
        if self.snip_edges:
            return 1 + (num_samples - self.window_size) // self.window_shift
        return (num_samples + self.window_shift // 2) // self.window_shift


@lru_cache(maxsize=32)
def _kaldi_window(window_type: str, size: int) -> torch.Tensor:
    """Kaldi's symmetric analysis windows (float64, CPU)."""
    n = torch.arange(size, dtype=torch.float64)
    a = 2.0 * math.pi / (size - 1)
    if window_type == "hanning":
        return 0.5 - 0.5 * torch.cos(a * n)
    if window_type == "povey":
        return (0.5 - 0.5 * torch.cos(a * n)).pow(0.85)
    if window_type == "hamming":
        return 0.54 - 0.46 * torch.cos(a * n)
    if window_type == "blackman":
        return 0.42 - 0.5 * torch.cos(a * n) + 0.08 * torch.cos(2.0 * a * n)
    if window_type == "rectangular":
        return torch.ones(size, dtype=torch.float64)
    raise ValueError(f"unknown window type {window_type!r}")


def _kaldi_mel(freq: torch.Tensor | float) -> torch.Tensor:
    return 1127.0 * torch.log1p(torch.as_tensor(freq, dtype=torch.float64) / 700.0)


def kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    """Kaldi triangular mel filters ``[num_bins, n_fft // 2 + 1]`` (float64, CPU; last column zero).

    Triangles are linear in Kaldi's mel scale ``1127 ln(1 + f / 700)``, equally spaced between
    ``low_freq`` and ``high_freq`` (``<= 0`` means an offset from Nyquist).
    """
    return _kaldi_mel_banks(num_bins, n_fft, float(sample_rate), float(low_freq), float(high_freq)).clone()


@lru_cache(maxsize=32)
def _kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    mel_low = float(_kaldi_mel(low_freq))
    mel_high = float(_kaldi_mel(high_freq))
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins, dtype=torch.float64).unsqueeze(1)
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    fft_mel = _kaldi_mel(torch.arange(n_fft // 2, dtype=torch.float64) * (sample_rate / n_fft)).unsqueeze(0)
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    # Kaldi has no weight on the Nyquist bin.
    return torch.nn.functional.pad(banks, (0, 1))


def compute_kaldi_fbank(
    waveform: torch.Tensor, config: KaldiFbankConfig, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Kaldi fbank of ``waveform [..., N]`` -> ``[..., T, num_mel_bins]`` (``+1`` column with energy).

    The samples are used as given: Kaldi-trained frontends (Paraformer) expect them scaled by 32768.
    ``generator`` seeds the Gaussian dither when ``config.dither != 0``.
    """
    waveform, out_dtype = _as_float_waveform(waveform, "kaldi_fbank")
    noise_dtype = waveform.dtype  # dither drawn as before, so a seeded generator gives the same noise
    # Computed in float64 and rounded at the end: float32 round-off in the DC removal, pre-emphasis and FFT
    # (not in the power or mel sums) moves quiet bins near the log floor by up to 0.05 (0.006 in the
    # reference's float32 on its conformance signal); MPS has no float64.
    if waveform.device.type != "mps":
        waveform = waveform.to(torch.float64)
    num_samples = waveform.shape[-1]
    size, shift = config.window_size, config.window_shift
    num_frames = config.num_frames(num_samples)
    if num_frames < 1:
        raise AudioError(
            f"kaldi_fbank: {num_samples} samples is too short for one {size}-sample frame "
            f"({config.frame_length_ms} ms at {config.sample_rate} Hz)"
        )
    if not config.snip_edges:
        # Kaldi reflects the signal at both edges so frames centre on multiples of the shift.
        pad = size // 2 - shift // 2
        flipped = waveform.flip(-1)
        if pad > 0:
            waveform = torch.cat((flipped[..., -pad:], waveform, flipped), dim=-1)
        else:
            waveform = torch.cat((waveform[..., -pad:], flipped), dim=-1)
    frames = waveform.unfold(-1, size, shift)[..., :num_frames, :]
    dtype, device = frames.dtype, frames.device

    if config.dither != 0.0:
        noise = torch.randn(frames.shape, generator=generator, dtype=noise_dtype, device=device).to(dtype)
        frames = frames + config.dither * noise
    if config.remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    log_floor = torch.tensor(_LOG_FLOOR, dtype=dtype, device=device)
    energy: torch.Tensor | None = None
    if config.use_energy and config.raw_energy:
        energy = torch.maximum(frames.pow(2).sum(-1), log_floor).log()
    if config.preemphasis != 0.0:
        previous = torch.cat((frames[..., :1], frames[..., :-1]), dim=-1)
        frames = frames - config.preemphasis * previous
    frames = frames * _like(_kaldi_window(config.window_type, size), frames)
    if config.use_energy and not config.raw_energy:
        energy = torch.maximum(frames.pow(2).sum(-1), log_floor).log()

    spectrum = torch.fft.rfft(frames, n=config.n_fft)
    power = spectrum.real.square() + spectrum.imag.square()
    if not config.use_power:
        power = power.sqrt()
    banks = _kaldi_mel_banks(
        config.num_mel_bins, config.n_fft, float(config.sample_rate), config.low_freq, config.high_freq
    )
    banks = _like(banks, power)
    feats = torch.matmul(power, banks.T)
    if config.use_log:
        feats = torch.maximum(feats, log_floor).log()
    if energy is not None:
        if config.energy_floor > 0.0:
            energy = torch.clamp(energy, min=math.log(config.energy_floor))
        feats = torch.cat((energy.unsqueeze(-1), feats), dim=-1)
    if config.subtract_mean:
        feats = mean_normalize(feats)
    return feats.to(out_dtype)


def kaldi_fbank(
    waveform: torch.Tensor,
    *,
    sample_rate: int = 16000,
    num_mel_bins: int = 80,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    dither: float = 0.0,
    window_type: str = "povey",
    preemphasis: float = 0.97,
    remove_dc_offset: bool = True,
    energy_floor: float = 0.0,
    use_energy: bool = False,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    snip_edges: bool = True,
    round_to_power_of_two: bool = True,
    use_log: bool = True,
    use_power: bool = True,
    subtract_mean: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Kaldi-compatible log mel fbank: ``[N] -> [T, num_mel_bins]`` (``[B, N] -> [B, T, bins]``).

    Same numbers as ``torchaudio.compliance.kaldi.fbank`` (see :class:`KaldiFbankConfig` for the
    defaults). Unlike torchaudio, a ``[1, N]`` input keeps its leading dimension. The Paraformer
    frontend is ``kaldi_fbank(wav * 32768, window_type="hamming", energy_floor=0.0, dither=...)``.
    """
    config = KaldiFbankConfig(
        sample_rate=sample_rate,
        num_mel_bins=num_mel_bins,
        frame_length_ms=frame_length_ms,
        frame_shift_ms=frame_shift_ms,
        dither=dither,
        window_type=window_type,
        preemphasis=preemphasis,
        remove_dc_offset=remove_dc_offset,
        energy_floor=energy_floor,
        use_energy=use_energy,
        low_freq=low_freq,
        high_freq=high_freq,
        snip_edges=snip_edges,
        round_to_power_of_two=round_to_power_of_two,
        use_log=use_log,
        use_power=use_power,
        subtract_mean=subtract_mean,
    )
    return compute_kaldi_fbank(waveform, config, generator=generator)


def mean_normalize(feats: torch.Tensor) -> torch.Tensor:
    """Subtract the per-bin mean over time from ``[..., T, bins]`` (the CAM++ input normalisation)."""
    return feats - feats.mean(dim=-2, keepdim=True)


# --------------------------------------------------------------------------------------------
# Slaney mel filterbank (librosa.filters.mel defaults: Slaney mel scale, Slaney area norm)
# --------------------------------------------------------------------------------------------

_SLANEY_LINEAR_STEP = 200.0 / 3.0  # Hz per mel below 1 kHz
_SLANEY_LOG_START_HZ = 1000.0
_SLANEY_LOG_START_MEL = _SLANEY_LOG_START_HZ / _SLANEY_LINEAR_STEP
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def _slaney_hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    linear = freq / _SLANEY_LINEAR_STEP
    log = _SLANEY_LOG_START_MEL + torch.log(torch.clamp(freq, min=_SLANEY_LOG_START_HZ) / 1000.0) / (_SLANEY_LOG_STEP)
    return torch.where(freq >= _SLANEY_LOG_START_HZ, log, linear)


def _slaney_mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    linear = mel * _SLANEY_LINEAR_STEP
    log = _SLANEY_LOG_START_HZ * torch.exp(
        _SLANEY_LOG_STEP * (torch.clamp(mel, min=_SLANEY_LOG_START_MEL) - _SLANEY_LOG_START_MEL)
    )
    return torch.where(mel >= _SLANEY_LOG_START_MEL, log, linear)


def slaney_mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Slaney-style mel filters ``[n_mels, n_fft // 2 + 1]`` (float64, CPU).

    The same matrix as ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)`` (htk=False,
    norm="slaney"): triangles equally spaced on the Slaney mel scale (linear below 1 kHz, log
    above), each scaled by ``2 / bandwidth`` so every filter has unit area. openai-whisper's
    ``mel_filters.npz`` and the matcha/CosyVoice mel both use it.
    """
    fmax = None if fmax is None else float(fmax)
    return _slaney_mel_filterbank(int(sample_rate), int(n_fft), int(n_mels), float(fmin), fmax).clone()


@lru_cache(maxsize=32)
def _slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> torch.Tensor:
    if fmax is None:
        fmax = sample_rate / 2.0
    fft_freqs = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(
        float(_slaney_hz_to_mel(torch.tensor(float(fmin), dtype=torch.float64))),
        float(_slaney_hz_to_mel(torch.tensor(float(fmax), dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )
    edges = _slaney_mel_to_hz(mel_edges)
    widths = edges[1:] - edges[:-1]
    ramps = edges.unsqueeze(1) - fft_freqs.unsqueeze(0)
    lower = -ramps[:-2] / widths[:-1].unsqueeze(1)
    upper = ramps[2:] / widths[1:].unsqueeze(1)
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    return weights * (2.0 / (edges[2:] - edges[:-2])).unsqueeze(1)


@lru_cache(maxsize=16)
def _hann_window(size: int) -> torch.Tensor:
    """Periodic Hann window (``torch.hann_window`` default), float64 on CPU."""
    return torch.hann_window(size, periodic=True, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# Whisper log-mel
# --------------------------------------------------------------------------------------------

WHISPER_N_FFT = 400
WHISPER_HOP = 160


def whisper_log_mel(audio_16k: torch.Tensor, n_mels: int = 128) -> torch.Tensor:
    """openai-whisper ``log_mel_spectrogram`` without padding: ``[N] -> [n_mels, N // 160]``.

    Batched input ``[B, N]`` gives ``[B, n_mels, T]``; the ``max - 8`` floor is taken per item
    (whisper takes it over the whole tensor, which is the same for one item).
    """
    audio, out_dtype = _as_float_waveform(audio_16k, "whisper_log_mel")
    if audio.shape[-1] <= WHISPER_N_FFT // 2:
        raise AudioError(
            f"whisper_log_mel: {audio.shape[-1]} samples is too short, need more than {WHISPER_N_FFT // 2}"
        )
    lead = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1])
    window = _like(_hann_window(WHISPER_N_FFT), flat)
    stft = torch.stft(
        flat,
        WHISPER_N_FFT,
        WHISPER_HOP,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )[..., :-1]
    power = stft.real.square() + stft.imag.square()
    filters = _like(_slaney_mel_filterbank(16000, WHISPER_N_FFT, n_mels, 0.0, None), flat)
    log_spec = torch.clamp(torch.matmul(filters, power), min=1e-10).log10()
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return ((log_spec + 4.0) / 4.0).reshape(*lead, n_mels, -1).to(out_dtype)


# --------------------------------------------------------------------------------------------
# matcha / CosyVoice mel
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchaMelConfig:
    """Mel parameters of the CosyVoice flow prompt feature (22.05 kHz, hop 256)."""

    n_fft: int = 1024
    num_mels: int = 80
    sampling_rate: int = 22050
    hop_size: int = 256
    win_size: int = 1024
    fmin: float = 0.0
    fmax: float | None = 8000.0

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples: ``(N + 2 * pad - n_fft) // hop + 1``."""
        pad = (self.n_fft - self.hop_size) // 2
        return (num_samples + 2 * pad - self.n_fft) // self.hop_size + 1


def matcha_mel(
    wav_22050: torch.Tensor,
    n_fft: int = 1024,
    num_mels: int = 80,
    sampling_rate: int = 22050,
    hop_size: int = 256,
    win_size: int = 1024,
    fmin: float = 0.0,
    fmax: float | None = 8000.0,
) -> torch.Tensor:
    """matcha/CosyVoice log-mel: ``[B, N] -> [B, num_mels, T]`` (``[N] -> [num_mels, T]``).

    Reflect-pads ``(n_fft - hop) / 2`` on both sides, STFT without centring, magnitude with a
    ``1e-9`` guard, Slaney mel filters, then natural ``log(clamp(x, 1e-5))``.
    """
    wav, out_dtype = _as_float_waveform(wav_22050, "matcha_mel")
    pad = (n_fft - hop_size) // 2
    num_samples = wav.shape[-1]
    if num_samples <= pad or num_samples + 2 * pad < n_fft:
        raise AudioError(f"matcha_mel: {num_samples} samples is too short for n_fft {n_fft} with hop {hop_size}")
    lead = wav.shape[:-1]
    flat = wav.reshape(-1, 1, num_samples)
    flat = torch.nn.functional.pad(flat, (pad, pad), mode="reflect").squeeze(1)
    window = _like(_hann_window(win_size), flat)
    stft = torch.stft(
        flat,
        n_fft,
        hop_length=hop_size,
        win_length=win_size,
        window=window,
        center=False,
        return_complex=True,
    )
    magnitude = torch.sqrt(stft.real.square() + stft.imag.square() + 1e-9)
    fmax = None if fmax is None else float(fmax)
    basis = _like(_slaney_mel_filterbank(sampling_rate, n_fft, num_mels, float(fmin), fmax), flat)
    mel = torch.matmul(basis, magnitude)
    return torch.clamp(mel, min=1e-5).log().reshape(*lead, num_mels, -1).to(out_dtype)
