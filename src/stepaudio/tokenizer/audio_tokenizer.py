"""The Step-Audio audio tokenizer: a wav -> vq02 + vq06 codes -> interleaved ``<audio_N>`` ids.

Loads the release's ``Step-Audio-Tokenizer/`` folder. Preparation follows the reference: resample to
16 kHz, peak-normalise (``x / max(max|x|, 0.01) * 0.999``), and for TTS voice prompts (``trim=True``)
trim silence; chat input is not trimmed. Both code streams come from that same prepared audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stepaudio.audio.io import load_audio, peak_normalize
from stepaudio.audio.trim import trim_silence
from stepaudio.errors import AudioError, CheckpointError
from stepaudio.tokenizer.interleave import AudioCodes
from stepaudio.tokenizer.linguistic import PARAFORMER_SUBDIR, LinguisticTokenizer
from stepaudio.tokenizer.semantic import SAMPLE_RATE, SemanticTokenizer
from stepaudio.tokenizer.streaming import AudioTokenStream, Vq06Policy

__all__ = ["CODEBOOK_FILE", "ONNX_FILE", "StepAudioTokenizer", "check_tokenizer_dir"]

CODEBOOK_FILE = "linguistic_tokenizer.npy"
ONNX_FILE = "speech_tokenizer_v1.onnx"
_PARAFORMER_FILES = ("model.pt", "config.yaml", "am.mvn")


def check_tokenizer_dir(path: str | Path) -> Path:
    """The folder, or a CheckpointError naming the first file it lacks."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"Step-Audio-Tokenizer folder not found: {root}")
    required = [root / CODEBOOK_FILE, root / ONNX_FILE]
    required += [root / PARAFORMER_SUBDIR / name for name in _PARAFORMER_FILES]
    for file in required:
        if not file.is_file():
            raise CheckpointError(f"Step-Audio-Tokenizer is missing {file.relative_to(root)} (looked in {root})")
    return root


@dataclass(frozen=True)
class StepAudioTokenizer:
    """vq02 (Paraformer + k-means) and vq06 (ONNX) tokenizers behind one ``encode``."""

    linguistic: LinguisticTokenizer
    semantic: SemanticTokenizer

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        weight_mode: str = "fp32",
        onnx_providers: Sequence[str] | None = None,
        onnx_threads: int | None = None,
    ) -> StepAudioTokenizer:
        """Load ``Step-Audio-Tokenizer/`` (or a model folder holding it, as ``--model-path`` does)."""
        root = Path(path)
        if not (root / ONNX_FILE).exists() and (root / "Step-Audio-Tokenizer").is_dir():
            root = root / "Step-Audio-Tokenizer"
        root = check_tokenizer_dir(root)
        linguistic = LinguisticTokenizer.from_pretrained(root, device=device, weight_mode=weight_mode)
        semantic = SemanticTokenizer.from_onnx(
            root / ONNX_FILE, providers=onnx_providers, intra_op_threads=onnx_threads
        )
        return cls(linguistic=linguistic, semantic=semantic)

    def prepare(self, audio: Any, sample_rate: int | None = None, trim: bool = False) -> np.ndarray:
        """Mono 16 kHz peak-normalised samples (silence-trimmed when ``trim``), as the reference feeds both."""
        decoded = load_audio(audio, sample_rate=SAMPLE_RATE, source_rate=sample_rate)
        samples = peak_normalize(decoded.samples)
        if trim:
            samples = trim_silence(samples, SAMPLE_RATE)
        return samples

    def encode_prepared(self, samples: np.ndarray) -> AudioCodes:
        """Codes of audio already prepared by :meth:`prepare`."""
        if samples.ndim != 1 or samples.dtype != np.float32:
            raise AudioError(f"expected prepared float32 [N] samples, got {samples.dtype} {samples.shape}")
        vq02 = self.linguistic.encode(torch.from_numpy(samples))
        vq06 = self.semantic.encode(samples)
        return AudioCodes(vq02=tuple(vq02), vq06=tuple(vq06))

    def encode(self, audio: Any, sample_rate: int | None = None, trim: bool = False) -> AudioCodes:
        """Both code streams of a wav path, encoded bytes, or a sample array (then ``sample_rate`` is required)."""
        return self.encode_prepared(self.prepare(audio, sample_rate, trim))

    def lm_ids(self, audio: Any, sample_rate: int | None = None, trim: bool = False) -> list[int]:
        """Interleaved LM ids (``STEP1.audio_offset + flow id``) of the audio."""
        return self.encode(audio, sample_rate, trim).lm_ids()

    def audio_text(self, audio: Any, sample_rate: int | None = None, trim: bool = False) -> str:
        """The ``<audio_N>`` text the chat prompt embeds for this audio."""
        return self.encode(audio, sample_rate, trim).text()

    def stream(self, policy: Vq06Policy | None = None) -> AudioTokenStream:
        """A streaming session over prepared 16 kHz audio (see :mod:`stepaudio.tokenizer.streaming`)."""
        return AudioTokenStream(self, policy)
