"""Token2Wav (Step-Audio 2): speech tokens (25 Hz, codes 0..6560) + a voice prompt -> 24 kHz speech.

`Token2Wav.from_dir` reads the release's `token2wav/` folder (`ReleaseFiles`): `flow.yaml` (read as data),
`flow.pt`, `hift.pt`, `campplus.onnx`; `speech_tokenizer_v2_25hz.onnx` (the S3 tokenizer v2 that turns the
prompt wav into tokens) is located here but run by the caller's tokenizer layer (`prepare_prompt(tokenize=...)`).
Randomness as in the reference: one fixed flow noise per instance (seeded here, reference: drawn once at
load), HiFT phases/noise per call (seeded here, injectable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stepaudio.decoder.cosyvoice2.cfm import NoiseSource, seeded_noise
from stepaudio.decoder.cosyvoice2.config import flow_config_from_yaml
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
from stepaudio.decoder.cosyvoice2.flow_loading import load_flow
from stepaudio.decoder.cosyvoice2.hift import HiFT24k, HiFTDraws, SeededDraws
from stepaudio.decoder.cosyvoice2.hift_loading import load_hift24k
from stepaudio.decoder.cosyvoice2.prompt import Prompt, PromptTokenizer, prepare_prompt
from stepaudio.decoder.cosyvoice2.token2wav_stream import StreamConfig, Token2WavStream
from stepaudio.decoder.speaker import CampPlusEmbedder
from stepaudio.errors import CheckpointError


@dataclass(frozen=True)
class ReleaseFiles:
    """The files of Step-Audio 2's `token2wav/` folder."""

    flow_yaml: Path
    flow: Path
    hift: Path
    campplus: Path
    speech_tokenizer: Path

    @classmethod
    def in_dir(cls, folder: str | Path) -> ReleaseFiles:
        """Locate the files; CheckpointError naming the first missing one (the tokenizer may be absent:
        prompts can also be given as tokens)."""
        root = Path(folder)
        files = cls(root / "flow.yaml", root / "flow.pt", root / "hift.pt", root / "campplus.onnx",
                    root / "speech_tokenizer_v2_25hz.onnx")
        for path in (files.flow_yaml, files.flow, files.hift):
            if not path.is_file():
                raise CheckpointError(f"not a Step-Audio 2 token2wav folder: {path.name} missing in {root}")
        return files


def check_tokens(tokens: Sequence[int] | torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Speech codes as int64 `[N]`, each in [0, vocab_size)."""
    ids = torch.as_tensor(tokens, dtype=torch.int64).reshape(-1)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"speech tokens must be in [0, {vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
    return ids


class Token2Wav:
    """Flow + HiFT (+ CAM++ for prompts); models are passed in, `from_dir` loads a release folder."""

    def __init__(
        self,
        flow: CausalMaskedDiffWithXvec,
        hift: HiFT24k,
        speaker: CampPlusEmbedder | None = None,
        *,
        noise: NoiseSource | None = None,
        seed: int = 0,
    ) -> None:
        if flow.config.output_size != hift.config.in_channels:
            raise CheckpointError("flow and HiFT disagree on mel bins")
        self.flow = flow.eval()
        self.hift = hift
        self.speaker = speaker
        self.seed = seed
        self.noise: NoiseSource = noise if noise is not None else seeded_noise(seed, flow.config.output_size)
        self.sample_rate = hift.sample_rate

    @classmethod
    def from_dir(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> Token2Wav:
        """Load a release `token2wav/` folder (CAM++ only when campplus.onnx is there)."""
        files = ReleaseFiles.in_dir(folder)
        flow = load_flow(files.flow, flow_config_from_yaml(files.flow_yaml), device=device, dtype=dtype)
        hift = load_hift24k(files.hift, device=device)
        speaker = CampPlusEmbedder(files.campplus) if files.campplus.is_file() else None
        return cls(flow, hift, speaker, seed=seed)

    @property
    def device(self) -> torch.device:
        return self.flow.input_embedding.weight.device

    def prompt(self, samples: np.ndarray, sample_rate: int, tokenize: PromptTokenizer) -> Prompt:
        """Prompt tokens, 24 kHz mel and x-vector of a voice sample."""
        if self.speaker is None:
            raise CheckpointError("prompt features need the CAM++ model (campplus.onnx)")
        return prepare_prompt(samples, sample_rate, tokenize, self.speaker, self.flow.config.up_rate)

    @torch.inference_mode()
    def mel(self, tokens: Sequence[int] | torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """Tokens `[N]` -> mel `[1, 80, N * up_rate]` (prompt frames dropped)."""
        ids = check_tokens(tokens, self.flow.config.vocab_size)
        if ids.numel() == 0:
            raise ValueError("no speech tokens to decode")
        param = self.flow.input_embedding.weight
        return self.flow.inference(
            ids.to(param.device)[None], check_tokens(prompt.tokens, self.flow.config.vocab_size).to(param.device)[None],
            prompt.mel.to(param)[None], prompt.embedding.to(param)[None], self.noise,
        ).float()  # fmt: skip

    def __call__(
        self, tokens: Sequence[int] | torch.Tensor, prompt: Prompt, *, draws: HiFTDraws | None = None
    ) -> np.ndarray:
        """Whole utterance -> float32 waveform `[N * up_rate * 480]` at 24 kHz."""
        wav, _ = self.hift(self.mel(tokens, prompt), draws or SeededDraws(self.seed))
        return wav[0].cpu().numpy()

    def stream(
        self, prompt: Prompt, *, config: StreamConfig | None = None, draws: HiFTDraws | None = None
    ) -> Token2WavStream:
        """A streaming decoder for one utterance in this voice (`push` / `finish`, int16 PCM)."""
        return Token2WavStream(self.flow, self.hift, prompt, self.noise, draws or SeededDraws(self.seed), config)
