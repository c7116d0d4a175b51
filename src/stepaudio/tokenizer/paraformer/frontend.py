"""Online Paraformer frontend: 16 kHz samples -> Kaldi fbank -> LFR (m=7, n=6) -> CMVN, chunk by chunk.

It reproduces the reference ``WavFrontendOnline`` call by call, because the encoder's output
depends on how frames are grouped into calls: a sample cache keeps the samples that do not yet
fill a frame, an LFR splice cache keeps the fbank frames that do not yet fill a stacked frame, the
very first fbank frame is replicated ``(lfr_m - 1) // 2`` times on the left, and only the final
call pads the last stacked frame by repeating the last fbank frame. The reference's quirks are
kept: a call whose frames plus splice cache are fewer than ``lfr_m`` yields nothing (on the final
call that tail is dropped), and a final call with no new fbank frame flushes the splice cache
only when it holds more than ``(lfr_m - 1) // 2`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stepaudio.audio.features import kaldi_fbank
from stepaudio.errors import CheckpointError

__all__ = ["Cmvn", "FrontendConfig", "FrontendState", "OnlineFrontend", "load_cmvn", "parse_cmvn"]


@dataclass(frozen=True)
class FrontendConfig:
    """The ``frontend_conf`` numbers of the Paraformer ``config.yaml`` (reference defaults)."""

    fs: int = 16000
    window: str = "hamming"
    n_mels: int = 80
    frame_length: int = 25
    frame_shift: int = 10
    lfr_m: int = 7
    lfr_n: int = 6
    dither: float = 1.0
    snip_edges: bool = True
    upsacle_samples: bool = True

    @property
    def frame_samples(self) -> int:
        return int(self.frame_length * self.fs / 1000)

    @property
    def shift_samples(self) -> int:
        return int(self.frame_shift * self.fs / 1000)

    @property
    def output_size(self) -> int:
        return self.n_mels * self.lfr_m


@dataclass(frozen=True)
class Cmvn:
    """Global CMVN applied as ``(x + shift) * scale`` (the ``<AddShift>`` / ``<Rescale>`` of am.mvn)."""

    shift: torch.Tensor
    scale: torch.Tensor

    def apply(self, feats: torch.Tensor) -> torch.Tensor:
        dim = feats.shape[-1]
        if self.shift.numel() < dim or self.scale.numel() < dim:
            raise CheckpointError(
                f"am.mvn has {self.shift.numel()} shift / {self.scale.numel()} scale values, "
                f"features have {dim}"
            )
        return (feats + self.shift[:dim].to(feats)) * self.scale[:dim].to(feats)


def _vector_after(lines: list[str], index: int, tag: str) -> np.ndarray:
    """Values of the ``<LearnRateCoef> c [ v1 v2 ... ]`` line that follows a component tag."""
    if index + 1 >= len(lines):
        raise CheckpointError(f"am.mvn: {tag} is the last line, its values are missing")
    items = lines[index + 1].split()
    if len(items) < 4 or items[0] != "<LearnRateCoef>" or items[2] != "[" or items[-1] != "]":
        raise CheckpointError(f"am.mvn: expected '<LearnRateCoef> c [ ... ]' after {tag}")
    try:
        return np.array([float(v) for v in items[3:-1]], dtype=np.float32)
    except ValueError as exc:
        raise CheckpointError(f"am.mvn: non-numeric value after {tag}: {exc}") from exc


def parse_cmvn(text: str) -> Cmvn:
    """Parse the Kaldi nnet text format of ``am.mvn``."""
    lines = text.splitlines()
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None
    for i, line in enumerate(lines):
        items = line.split()
        if not items:
            continue
        if items[0] == "<AddShift>":
            shift = _vector_after(lines, i, "<AddShift>")
        elif items[0] == "<Rescale>":
            scale = _vector_after(lines, i, "<Rescale>")
    if shift is None or scale is None:
        raise CheckpointError("am.mvn: missing <AddShift> or <Rescale> component")
    if shift.shape != scale.shape:
        raise CheckpointError(f"am.mvn: <AddShift> has {shift.shape[0]} values, <Rescale> {scale.shape[0]}")
    return Cmvn(shift=torch.from_numpy(shift), scale=torch.from_numpy(scale))


def load_cmvn(path: str | Path) -> Cmvn:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"CMVN file not found: {path}")
    return parse_cmvn(path.read_text(encoding="utf-8"))


@dataclass
class FrontendState:
    """What one stream carries between calls."""

    samples: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    splice: torch.Tensor | None = None  # fbank frames not yet consumed by LFR; None before the first


class OnlineFrontend:
    """Stateless transform; the stream's caches live in a :class:`FrontendState`."""

    def __init__(self, config: FrontendConfig, cmvn: Cmvn | None) -> None:
        self.config = config
        self.cmvn = cmvn

    def new_state(self) -> FrontendState:
        return FrontendState()

    def _fbank(self, samples: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        cfg = self.config
        scaled = samples * (1 << 15) if cfg.upsacle_samples else samples
        return kaldi_fbank(
            scaled,
            sample_rate=cfg.fs,
            num_mel_bins=cfg.n_mels,
            frame_length_ms=float(cfg.frame_length),
            frame_shift_ms=float(cfg.frame_shift),
            dither=cfg.dither,
            window_type=cfg.window,
            energy_floor=0.0,
            snip_edges=cfg.snip_edges,
            generator=generator,
        )

    def _lfr(self, frames: torch.Tensor, is_final: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack ``lfr_m`` frames every ``lfr_n``; returns (stacked, splice cache for the next call)."""
        m, n = self.config.lfr_m, self.config.lfr_n
        total = frames.shape[0]
        count = max(0, -(-(total - (m - 1) // 2) // n))  # ceil, minus the right context
        out = []
        consumed = count
        for i in range(count):
            start = i * n
            if start + m <= total:
                out.append(frames[start : start + m].reshape(-1))
            elif is_final:
                pad = frames[-1:].expand(m - (total - start), -1)
                out.append(torch.cat([frames[start:], pad]).reshape(-1))
            else:
                consumed = i
                break
        splice = frames[min(total - 1, consumed * n) :]
        if not out:
            return frames.new_zeros(0, m * frames.shape[1]), splice
        return torch.stack(out), splice

    def __call__(
        self,
        state: FrontendState,
        samples: torch.Tensor,
        is_final: bool,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Feed 1-D float samples in [-1, 1]; returns the new ``[f, n_mels * lfr_m]`` features."""
        cfg = self.config
        dim = cfg.output_size
        audio = torch.cat([state.samples.to(samples), samples.reshape(-1)])
        n_frames = 0
        if audio.shape[0] >= cfg.frame_samples:
            n_frames = (audio.shape[0] - cfg.frame_samples) // cfg.shift_samples + 1
        state.samples = audio[n_frames * cfg.shift_samples :] if n_frames else audio
        if n_frames == 0:
            if not is_final or state.splice is None:
                return audio.new_zeros(0, dim)
            frames = state.splice
            if frames.shape[0] <= (cfg.lfr_m - 1) // 2:
                return audio.new_zeros(0, dim)
        else:
            fbank = self._fbank(audio[: (n_frames - 1) * cfg.shift_samples + cfg.frame_samples], generator)
            if state.splice is None:
                state.splice = fbank[:1].expand((cfg.lfr_m - 1) // 2, -1)
            frames = torch.cat([state.splice, fbank])
            if frames.shape[0] < cfg.lfr_m:
                state.splice = frames
                return audio.new_zeros(0, dim)
        feats, state.splice = self._lfr(frames, is_final)
        if self.cmvn is not None:
            feats = self.cmvn.apply(feats)
        return feats
