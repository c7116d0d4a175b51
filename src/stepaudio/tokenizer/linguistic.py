"""vq02 linguistic tokenizer: 16 kHz audio -> Paraformer-online encoder -> nearest k-means centroid.

The reference cuts audio into pieces of ``chunk_size[1] * 960`` samples (240 ms) and runs one
frontend + encoder step per piece, then one final step for the tail. The encoder output depends
on that grouping, so :class:`LinguisticStream` re-buffers whatever piece sizes it is fed into
exactly those steps: streamed codes equal offline codes, and each step's codes are final as soon
as the step runs (16.7 codes/s, 4 per step). Input is expected already prepared (mono 16 kHz,
peak-normalised as the reference does before tokenising).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stepaudio.errors import AudioError, CheckpointError
from stepaudio.tokenizer.paraformer.batch import encode_steps
from stepaudio.tokenizer.paraformer.encoder import ChunkConfig, EncoderCache, ParaformerEncoder
from stepaudio.tokenizer.paraformer.fast import reduce_encoder_weights
from stepaudio.tokenizer.paraformer.frontend import FrontendState, OnlineFrontend, load_cmvn
from stepaudio.tokenizer.paraformer.loading import load_encoder, load_encoder_state, load_paraformer_config

__all__ = ["PARAFORMER_SUBDIR", "LinguisticStream", "LinguisticTokenizer", "nearest_centroid"]

PARAFORMER_SUBDIR = "dengcunqin/speech_paraformer-large_asr_nat-zh-cantonese-en-16k-vocab8501-online"
SAMPLES_PER_CHUNK_UNIT = 960  # 60 ms of 16 kHz audio per unit of chunk_size[1]


def nearest_centroid(
    features: torch.Tensor, codebook: torch.Tensor, codebook_sq_norms: torch.Tensor | None = None
) -> torch.Tensor:
    """Index of the Euclidean-nearest centroid for each row of ``features`` ``[n, d]``.

    Squared distances ``|x|^2 - 2 x.c + |c|^2`` in float64, so the expansion loses nothing that
    a near-tie would need; ``codebook_sq_norms`` may be passed precomputed (float64).
    """
    c = codebook.to(torch.float64)
    x = features.detach().to(device=c.device, dtype=torch.float64)
    norms = (c * c).sum(1) if codebook_sq_norms is None else codebook_sq_norms
    dist = (x * x).sum(1, keepdim=True) - 2.0 * (x @ c.T) + norms[None, :]
    return dist.argmin(dim=1)


@dataclass(frozen=True)
class LinguisticTokenizer:
    """Frontend + encoder + codebook; stateless, so one instance serves many streams."""

    frontend: OnlineFrontend
    encoder: ParaformerEncoder
    codebook: torch.Tensor  # [codes, output_size]
    _codebook64: torch.Tensor = field(init=False, repr=False, compare=False)
    _codebook_sq_norms: torch.Tensor = field(init=False, repr=False, compare=False)
    chunk: ChunkConfig = field(default_factory=ChunkConfig)

    def __post_init__(self) -> None:
        if self.codebook.dim() != 2 or self.codebook.shape[1] != self.encoder.config.output_size:
            raise CheckpointError(
                f"codebook shape {tuple(self.codebook.shape)} does not match encoder output "
                f"size {self.encoder.config.output_size}"
            )
        codebook64 = self.codebook.detach().to(torch.float64)
        object.__setattr__(self, "_codebook64", codebook64)
        object.__setattr__(self, "_codebook_sq_norms", (codebook64 * codebook64).sum(1))

    @classmethod
    def from_pretrained(
        cls,
        tokenizer_dir: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        chunk: ChunkConfig | None = None,
        weight_mode: str = "fp32",
    ) -> LinguisticTokenizer:
        """Load from a ``Step-Audio-Tokenizer`` directory (or the Paraformer folder beside a codebook).

        ``weight_mode`` other than ``fp32`` opts into the reduced-precision or pre-packed matmul
        weights of :mod:`stepaudio.tokenizer.paraformer.fast` (faster on CPU; codes may differ
        from fp32 at near-ties).
        """
        root = Path(tokenizer_dir)
        model_dir = root / PARAFORMER_SUBDIR if (root / PARAFORMER_SUBDIR).is_dir() else root
        codebook_path = root / "linguistic_tokenizer.npy"
        if not codebook_path.is_file():
            raise CheckpointError(f"k-means codebook not found: {codebook_path}")
        encoder_config, frontend_config = load_paraformer_config(model_dir / "config.yaml")
        weights = model_dir / "model.pt"
        if not weights.is_file() and (model_dir / "model.safetensors").is_file():
            weights = model_dir / "model.safetensors"
        encoder = load_encoder(encoder_config, load_encoder_state(weights), device=device, dtype=dtype)
        encoder = reduce_encoder_weights(encoder, weight_mode)
        frontend = OnlineFrontend(frontend_config, load_cmvn(model_dir / "am.mvn"))
        try:
            codebook = torch.from_numpy(np.load(codebook_path).astype(np.float32)).to(device)
        except (OSError, ValueError, EOFError) as exc:  # cut, foreign or pickled data
            raise CheckpointError(f"{codebook_path}: not a readable codebook ({exc}): re-download "
                                  f"{codebook_path.name}") from exc
        return cls(frontend=frontend, encoder=encoder, codebook=codebook, chunk=chunk or ChunkConfig())

    @property
    def samples_per_step(self) -> int:
        return self.chunk.chunk_size[1] * SAMPLES_PER_CHUNK_UNIT

    def warm_up(self) -> None:
        """Run a short throw-away stream past the point where the look-back is full, so that one-time
        work (kernel selection; compiling the steady step in mode ``fp32-compiled``) happens now and
        not inside a live stream."""
        steps = max(self.chunk.look_back, 0) + 3
        noise = torch.randn(steps * self.samples_per_step, generator=torch.Generator().manual_seed(0)) * 0.1
        self.stream().push_features(noise)

    def stream(self, generator: torch.Generator | None = None) -> LinguisticStream:
        return LinguisticStream(self, generator)

    def frontend_steps(
        self, wav: torch.Tensor | np.ndarray, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """LFR features of each encoder step of a whole utterance, grouped as a stream would run them."""
        samples = _as_samples(wav)
        state = self.frontend.new_state()
        step = self.samples_per_step
        full = (samples.shape[0] // step) * step
        pieces = [(samples[i : i + step], False) for i in range(0, full, step)]
        if samples.shape[0] > full:
            pieces.append((samples[full:], True))
        feats = [self.frontend(state, piece, is_final, generator) for piece, is_final in pieces]
        return [f for f in feats if f.shape[0] > 0]

    def encode_features(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Final encoder features ``[F, output_size]`` of a whole utterance (what gets quantised).

        Equal to streaming the utterance step by step, but all steps run as one batch per layer
        (:mod:`stepaudio.tokenizer.paraformer.batch`), which reads the weights once instead of once a step.
        """
        steps = self.frontend_steps(wav)
        if not steps:
            return torch.zeros(0, self.encoder.config.output_size)
        with torch.inference_mode():
            outs = encode_steps(self.encoder, steps, self.chunk)
        return torch.cat(outs).float()

    def encode(self, wav: torch.Tensor | np.ndarray) -> list[int]:
        """vq02 codes of a whole 16 kHz utterance, as the reference ``get_vq02_code`` returns them."""
        return self.quantize(self.encode_features(wav))

    def quantize(self, features: torch.Tensor) -> list[int]:
        if features.shape[0] == 0:
            return []
        indices = nearest_centroid(features, self._codebook64, self._codebook_sq_norms)
        return [int(i) for i in indices.tolist()]


def _as_samples(audio: torch.Tensor | np.ndarray | Sequence[float]) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(audio)) if not isinstance(audio, torch.Tensor) else audio
    if tensor.dim() == 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 1:
        raise AudioError(f"expected mono samples [N] or [1, N], got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise AudioError(f"expected float samples in [-1, 1], got {tensor.dtype}")
    tensor = tensor.detach().to(device="cpu", dtype=torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise AudioError("audio contains NaN or infinite samples")
    return tensor


class LinguisticStream:
    """One utterance: `push` audio pieces of any size, get codes as soon as they are final; `finish` once."""

    def __init__(self, tokenizer: LinguisticTokenizer, generator: torch.Generator | None = None) -> None:
        self.tokenizer = tokenizer
        self.generator = generator
        self._pending = torch.zeros(0)
        self._frontend: FrontendState = tokenizer.frontend.new_state()
        encoder = tokenizer.encoder
        param = encoder.after_norm.weight
        self._cache: EncoderCache = encoder.new_cache(tokenizer.chunk, device=param.device, dtype=param.dtype)
        self._finished = False

    def _step(self, samples: torch.Tensor, is_final: bool) -> torch.Tensor:
        tok = self.tokenizer
        feats = tok.frontend(self._frontend, samples, is_final, self.generator)
        if feats.shape[0] == 0:
            return feats.new_zeros(0, tok.encoder.config.output_size)
        param = tok.encoder.after_norm.weight
        x = feats.to(device=param.device, dtype=param.dtype)[None]
        with torch.inference_mode():
            out, self._cache = tok.encoder.forward_chunk(x, self._cache, tok.chunk)
        return out[0, -feats.shape[0] :].float()

    def push_features(self, audio: torch.Tensor | np.ndarray | Sequence[float]) -> torch.Tensor:
        """Encoder features of every complete step the new audio allows."""
        if self._finished:
            raise AudioError("this stream is finished; start a new one")
        samples = _as_samples(audio)
        pending = torch.cat([self._pending, samples])
        step = self.tokenizer.samples_per_step
        outs = [self._step(pending[i : i + step], False) for i in range(0, pending.shape[0] - step + 1, step)]
        self._pending = pending[(pending.shape[0] // step) * step :]
        return torch.cat(outs) if outs else torch.zeros(0, self.tokenizer.encoder.config.output_size)

    def finish_features(self) -> torch.Tensor:
        """Features of the final step (the tail); the reference skips it when no tail is left."""
        if self._finished:
            raise AudioError("this stream is already finished")
        self._finished = True
        if self._pending.shape[0] == 0:
            return torch.zeros(0, self.tokenizer.encoder.config.output_size)
        tail, self._pending = self._pending, torch.zeros(0)
        return self._step(tail, True)

    def push(self, audio: torch.Tensor | np.ndarray | Sequence[float]) -> list[int]:
        return self.tokenizer.quantize(self.push_features(audio))

    def finish(self) -> list[int]:
        return self.tokenizer.quantize(self.finish_features())
