"""EditX token2wav: generated dual-codebook ids + the input/prompt audio -> 24 kHz speech, offline.

As the reference `CosyVoice.token2wav_nonstream` (stepvocoder/cosyvoice2/cli/cosyvoice.py): prompt tokens are
the prompt audio's own interleaved ids (from the trimmed 16 kHz wav, made by the caller's audio tokenizer),
the prompt mel (`mel_conf`) and the CAM++ x-vector come from the untrimmed wav and are rounded through bf16;
the mel is nearest-resized to `up_rate` frames per prompt frame pair (trimmed codes, untrimmed mel). Noise as
the reference: one fixed flow noise per instance (seeded here), HiFT draws per call (seeded, injectable).
`stream` decodes chunk by chunk as the reference's `token2wav_stream` (see `editx_stream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stepaudio.audio.features import matcha_mel
from stepaudio.audio.io import resample, to_mono
from stepaudio.decoder.cosyvoice2.cfm import NoiseSource, seeded_noise
from stepaudio.decoder.cosyvoice2.editx import (
    EditXDecoderConfig,
    EditXFlow,
    dual_frames,
    editx_config_from_yaml,
    load_editx_flow,
)
from stepaudio.decoder.cosyvoice2.editx_stream import EditXStreamConfig, EditXToken2WavStream
from stepaudio.decoder.cosyvoice2.hift import HiFT24k, HiFTDraws, SeededDraws
from stepaudio.decoder.cosyvoice2.hift_loading import load_hift24k
from stepaudio.decoder.speaker import CAMPPLUS_SAMPLE_RATE, CampPlusEmbedder
from stepaudio.errors import AudioError, CheckpointError

FLOW_IDS = 5120  # interleaved flow ids: vq02 0..1023, vq06 1024..5119


@dataclass(frozen=True)
class EditXFiles:
    """The four files the reference reads from `CosyVoice-300M-25Hz/`."""

    config: Path
    flow: Path
    hift: Path
    campplus: Path

    @classmethod
    def in_dir(cls, folder: str | Path) -> EditXFiles:
        root = Path(folder)
        files = cls(root / "cosyvoice.yaml", root / "flow.pt", root / "hift.pt", root / "campplus.onnx")
        for path in (files.config, files.flow, files.hift, files.campplus):
            if not path.is_file():
                raise CheckpointError(f"not an EditX decoder folder: {path.name} missing in {root}")
        return files


@dataclass(frozen=True)
class EditXPrompt:
    """flow ids of the trimmed prompt audio, its untrimmed mel `[T, bins]` and x-vector `[192]` (bf16-rounded)."""

    flow_ids: tuple[int, ...]
    mel: torch.Tensor
    embedding: torch.Tensor

    def __post_init__(self) -> None:
        if not self.flow_ids:
            raise AudioError("the prompt audio gave no audio tokens (too short?)")
        if self.mel.dim() != 2 or self.mel.shape[0] == 0:
            raise ValueError(f"prompt mel must be a non-empty [T, bins], got {tuple(self.mel.shape)}")


def check_flow_ids(ids: Sequence[int] | torch.Tensor) -> list[int]:
    out = [int(i) for i in torch.as_tensor(ids, dtype=torch.int64).reshape(-1).tolist()]
    bad = [i for i in out if not 0 <= i < FLOW_IDS]
    if bad:
        raise ValueError(f"flow ids must be in [0, {FLOW_IDS}), got {bad[:5]}")
    return out


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


class EditXToken2Wav:
    """Flow + HiFT (+ CAM++ for prompts); `from_dir` loads a release `CosyVoice-300M-25Hz/` folder."""

    def __init__(self, flow: EditXFlow, hift: HiFT24k, config: EditXDecoderConfig,
                 speaker: CampPlusEmbedder | None = None, *, noise: NoiseSource | None = None, seed: int = 0) -> None:
        self.flow = flow.eval()
        self.hift = hift
        self.config = config
        self.speaker = speaker
        self.seed = seed
        self.noise: NoiseSource = noise if noise is not None else seeded_noise(seed, flow.config.output_size)
        self.sample_rate = hift.sample_rate

    @classmethod
    def from_dir(cls, folder: str | Path, *, device: str | torch.device = "cpu", seed: int = 0) -> EditXToken2Wav:
        """The reference runs this decoder in fp32 (only its inputs pass through bf16)."""
        files = EditXFiles.in_dir(folder)
        config = editx_config_from_yaml(files.config)
        flow = load_editx_flow(files.flow, config.flow, device=device)
        hift = load_hift24k(files.hift, config.hift, device=device)
        return cls(flow, hift, config, CampPlusEmbedder(files.campplus), seed=seed)

    def prompt_features(self, samples: np.ndarray, sample_rate: int, flow_ids: Sequence[int]) -> EditXPrompt:
        """Mel and x-vector of the prompt wav as given (mono, untrimmed), with its (trimmed) flow ids."""
        if self.speaker is None:
            raise CheckpointError("prompt features need the CAM++ model (campplus.onnx)")
        mono = to_mono(np.asarray(samples, dtype=np.float32))
        if mono.size == 0 or not np.all(np.isfinite(mono)):
            raise AudioError("the prompt audio is empty or not finite")
        mel_conf = self.config.mel
        wav = torch.from_numpy(resample(mono, sample_rate, mel_conf.sampling_rate).copy())
        if wav.numel() <= (mel_conf.n_fft - mel_conf.hop_size) // 2 or wav.numel() < mel_conf.hop_size:
            raise AudioError("the prompt audio is too short for one mel frame")
        mel = matcha_mel(wav, n_fft=mel_conf.n_fft, num_mels=mel_conf.num_mels, sampling_rate=mel_conf.sampling_rate,
                         hop_size=mel_conf.hop_size, win_size=mel_conf.win_size, fmin=mel_conf.fmin,
                         fmax=mel_conf.fmax)
        wav16 = torch.from_numpy(resample(mono, sample_rate, CAMPPLUS_SAMPLE_RATE).copy())
        embedding = self.speaker.embed(wav16).float()
        return EditXPrompt(tuple(check_flow_ids(flow_ids)), _bf16(mel.transpose(0, 1).contiguous()),
                           _bf16(embedding))

    @torch.inference_mode()
    def mel(self, flow_ids: Sequence[int] | torch.Tensor, prompt: EditXPrompt) -> torch.Tensor:
        """Generated flow ids -> mel `[1, bins, 2 * 3 * ceil(N / 5)]` (prompt frames dropped)."""
        ids = check_flow_ids(flow_ids)
        if not ids:
            raise ValueError("no audio tokens to decode")
        param = self.flow.input_embedding.weight
        tokens = dual_frames(ids).to(param.device)[None]
        prompt_tokens = dual_frames(prompt.flow_ids).to(param.device)[None]
        frames = prompt_tokens.shape[1] * self.flow.config.up_rate
        prompt_mel = F.interpolate(prompt.mel.T[None], size=frames, mode="nearest").transpose(1, 2)
        return self.flow.inference(tokens, prompt_tokens, prompt_mel.to(param),
                                   prompt.embedding.to(param)[None], self.noise).float()

    def __call__(self, flow_ids: Sequence[int] | torch.Tensor, prompt: EditXPrompt, *,
                 draws: HiFTDraws | None = None) -> np.ndarray:
        """Whole utterance -> float32 waveform at 24 kHz (480 samples per mel frame)."""
        wav, _ = self.hift(self.mel(flow_ids, prompt), draws or SeededDraws(self.seed))
        return np.asarray(wav[0].cpu().numpy(), dtype=np.float32)

    def stream(self, prompt: EditXPrompt, *, config: EditXStreamConfig | None = None,
               draws: HiFTDraws | None = None) -> EditXToken2WavStream:
        """A streaming decoder for one utterance with this prompt (`push` / `finish`, float32 speech): the
        reference's chunking, not equal to `__call__` (see `editx_stream`)."""
        return EditXToken2WavStream(self.flow, self.hift, prompt.flow_ids, prompt.mel, prompt.embedding, self.noise,
                                    draws or SeededDraws(self.seed), config)
