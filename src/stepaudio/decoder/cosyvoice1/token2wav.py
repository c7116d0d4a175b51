"""Token2Wav: flow ids + a voice prompt -> 22.05 kHz speech, offline, batched or streamed.

Loads a real `CosyVoice-300M-25Hz/` (or `-Music/`) folder: `cosyvoice.yaml` read as numbers (nothing
constructed), `flow.pt`, `hift.pt` (weight norm folded) and `campplus.onnx`. Every random draw (the
flow's initial noise per mel frame, HiFT's sine phases and per-sample noise) is a function of the seed
and the position, so `offline(tokens, seed=s)`, item i of `offline_batch(..., seed=s)` and a stream
with seed s all see the same noise for the same frame.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from stepaudio.audio.features import matcha_mel
from stepaudio.audio.io import resample, to_mono
from stepaudio.decoder.cosyvoice1.flow import FlowRequest, MaskedDiffWithXvec, generate_mel
from stepaudio.decoder.cosyvoice1.flow_config import flow_config_from_yaml
from stepaudio.decoder.cosyvoice1.flow_loading import load_flow
from stepaudio.decoder.cosyvoice1.hift_fast import FastHiFT
from stepaudio.decoder.cosyvoice1.hift_loading import load_hift_from_dir
from stepaudio.decoder.cosyvoice1.prompt_features import PromptFeatures
from stepaudio.decoder.cosyvoice1.stream_vocoder import Vocoder, vocode_offline
from stepaudio.decoder.cosyvoice1.token2wav_stream import (
    StreamingConfig,
    Token2WavStream,
    check_tokens,
    flow_noise,
    new_seed,
)
from stepaudio.decoder.speaker import CAMPPLUS_SAMPLE_RATE, CampPlusEmbedder
from stepaudio.errors import AudioError, CheckpointError
from stepaudio.kernels.choices import Measured

__all__ = ["PromptFeatures", "StreamingConfig", "Token2Wav", "Token2WavStream"]

MEL_SAMPLE_RATE = 22050


FLOW_DTYPE_QUESTION = "flow-dtype/1"
FLOW_CANDIDATES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def preferred_flow_dtype(device: str | torch.device, *, remeasure: bool | None = None) -> torch.dtype:
    """bf16 on CUDA; on a CPU, float32 unless bf16 runs the estimator faster here, timed once and cached
    (`stepaudio.kernels.choices`): bf16 wins where the CPU multiplies bf16 natively (AMX: 1.9x float32, AVX-512
    bf16 EPYCs: about 1.7x) and loses 2-12x where it is emulated (AVX2-only CPUs such as AMD Zen 3).
    Either stays within the reference's own distance from exact (its shipped flow is bf16)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16
    if kind != "cpu":
        return torch.float32
    from stepaudio.kernels.choices import choose

    return FLOW_CANDIDATES[choose(FLOW_DTYPE_QUESTION, measure_flow_dtypes, remeasure=remeasure).choice]


def measure_flow_dtypes() -> Measured:
    """Median time of one ResNet block and one transformer block of the estimator at its real width (256
    channels, 8 x 64 heads) over a guidance pair of 128 frames, per candidate dtype; float32 first."""
    from stepaudio.decoder.cosyvoice1.estimator import ResnetBlock1D, TransformerBlock
    from stepaudio.kernels.choices import fastest, time_calls

    frames, width = 128, 256
    with torch.random.fork_rng(devices=[]):  # module init draws: leave the caller's generator as it was
        torch.manual_seed(0)
        resnet, block = ResnetBlock1D(width, width, 4 * width), TransformerBlock(width, 8, 64, "gelu")
    x, temb = torch.randn(2, width, frames), torch.randn(2, 4 * width)

    def run(dtype: torch.dtype) -> Callable[[], object]:
        r, b = copy.deepcopy(resnet).to(dtype), copy.deepcopy(block).to(dtype)
        xd, td = x.to(dtype), temb.to(dtype)
        return lambda: b(r(xd, None, td).transpose(1, 2), None)

    with torch.inference_mode():
        times = time_calls({name: run(dtype) for name, dtype in FLOW_CANDIDATES.items()}, repeats=7, budget_s=0.5)
    return Measured(fastest(times), {"step": times})


class Token2Wav:
    """Flow + HiFT (+ CAM++ for prompt features). Models are passed in; `from_dir` loads a release folder."""

    def __init__(self, flow: MaskedDiffWithXvec, hift: Vocoder, speaker: CampPlusEmbedder | None = None) -> None:
        if hift.config.sampling_rate != MEL_SAMPLE_RATE or hift.config.upsample_total != flow.config.hop_size:
            raise CheckpointError("HiFT and flow disagree on sample rate or hop size")
        self.flow = flow.eval()
        self.hift = hift
        self.speaker = speaker
        self.sample_rate: int = hift.config.sampling_rate

    @classmethod
    def from_dir(
        cls,
        cosyvoice_dir: str | Path,
        *,
        device: str | torch.device = "cpu",
        flow_dtype: torch.dtype = torch.float32,
        speaker: CampPlusEmbedder | None = None,
        fast_hift: bool = True,
    ) -> Token2Wav:
        """Load `cosyvoice.yaml`, `flow.pt`, `hift.pt` and (unless `speaker` is given) `campplus.onnx`."""
        root = Path(cosyvoice_dir)
        yaml_path = root / "cosyvoice.yaml"
        if not yaml_path.is_file():
            raise CheckpointError(f"not a CosyVoice folder (no cosyvoice.yaml): {root}")
        flow = load_flow(root / "flow.pt", flow_config_from_yaml(yaml_path), device=device, dtype=flow_dtype)
        plain = load_hift_from_dir(root, device=device)
        hift: Vocoder = FastHiFT(plain) if fast_hift else plain
        if speaker is None:
            speaker = CampPlusEmbedder(root / "campplus.onnx")
        return cls(flow, hift, speaker)

    @property
    def device(self) -> torch.device:
        return self.flow.input_embedding.weight.device

    def prompt_features(self, samples: np.ndarray, sample_rate: int, flow_tokens: Sequence[int]) -> PromptFeatures:
        """Prompt mel (original wav at 22.05 kHz) and x-vector (original at 16 kHz), as the reference does.

        Neither is normalised nor trimmed; `flow_tokens` come from the caller's tokenizer (which the
        reference feeds trimmed, normalised 16 kHz audio).
        """
        if self.speaker is None:
            raise CheckpointError("prompt features need a CAM++ speaker model (campplus.onnx)")
        mono = to_mono(np.asarray(samples, dtype=np.float32))
        if mono.size == 0 or not np.all(np.isfinite(mono)):
            raise AudioError("the prompt audio is empty or not finite")
        wav22 = torch.from_numpy(resample(mono, sample_rate, MEL_SAMPLE_RATE).copy())
        mel = matcha_mel(wav22).transpose(0, 1).contiguous().float()
        wav16 = torch.from_numpy(resample(mono, sample_rate, CAMPPLUS_SAMPLE_RATE).copy())
        embedding = self.speaker.embed(wav16).float()
        tokens = check_tokens(flow_tokens, self.flow.config.vocab_size)
        return PromptFeatures(tokens, mel, embedding)

    def offline(self, flow_tokens: Sequence[int], prompt: PromptFeatures, *, seed: int | None = None) -> np.ndarray:
        """Whole utterance -> float32 mono waveform (mel_len(N) * 256 samples)."""
        return self.offline_batch([(flow_tokens, prompt)], seed=seed)[0]

    @torch.inference_mode()
    def offline_batch(
        self, items: Sequence[tuple[Sequence[int], PromptFeatures]], *, seed: int | None = None
    ) -> list[np.ndarray]:
        """Several utterances; the flow runs as one padded batch, HiFT per item (exact per-item lengths).

        With a seed, item i equals `offline(*items[i], seed=seed)`; without one each item draws its own.
        """
        if not items:
            return []
        seeds = [new_seed() if seed is None else seed for _ in items]
        requests = []
        for tokens, prompt in items:
            ids = check_tokens(tokens, self.flow.config.vocab_size)
            if self.flow.config.mel_len(int(ids.numel())) < 1:
                raise ValueError(f"{ids.numel()} flow tokens are too few for one mel frame")
            requests.append(FlowRequest(ids, prompt.flow_tokens, prompt.mel, prompt.embedding))
        mel_len = self.flow.config.mel_len
        frames = max(r.prompt_feat.shape[0] + mel_len(int(r.tokens.numel())) for r in requests)
        noise = torch.stack([flow_noise(s).columns(0, frames) for s in seeds])
        mels = generate_mel(self.flow, requests, noise=noise)
        return [vocode_offline(self.hift, mel, s) for mel, s in zip(mels, seeds, strict=True)]

    def stream(
        self, prompt: PromptFeatures, *, config: StreamingConfig | None = None, seed: int | None = None
    ) -> Token2WavStream:
        """A streaming state object for one utterance in this voice."""
        return Token2WavStream(self.flow, self.hift, prompt, config, seed)
