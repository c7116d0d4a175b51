"""Speaker similarity with a pinned, named speaker model: Resemblyzer 0.1.4's GE2E encoder (256-d).

Similarity numbers depend on the speaker model (the SEED-TTS-eval papers use a WavLM-large verification
model; values are not comparable across models), so the model is pinned by package version and by the
sha256 of its weights, checked before use, and `SpeakerEncoder.info` goes into every report.
Measured on the pocketsphinx-testdata recordings: same speaker 0.75-0.93, different speakers 0.61-0.72.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.audio.io import Audio, load_audio
from stepaudio.errors import AudioError, CheckpointError, MissingExtraError

RESEMBLYZER_VERSION = "0.1.4"
PRETRAINED_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
SAMPLE_RATE = 16000
MIN_SPEECH_SECONDS = 0.3


@dataclass(frozen=True)
class SpeakerModelInfo:
    name: str
    package: str
    version: str
    weights: str
    sha256: str
    embedding_size: int = 256


class SpeakerEncoder:
    """Embeds speech (any rate) into L2-normalised GE2E vectors; `similarity` is their cosine."""

    def __init__(self, device: str = "cpu", threads: int = 1) -> None:
        try:
            import resemblyzer
        except ImportError as exc:
            raise MissingExtraError("eval", "resemblyzer") from exc
        version = importlib.metadata.version("resemblyzer")
        if version != RESEMBLYZER_VERSION:
            raise CheckpointError(f"speaker similarity is pinned to resemblyzer=={RESEMBLYZER_VERSION}, "
                                  f"found {version}: pip install 'resemblyzer=={RESEMBLYZER_VERSION}'")
        weights = Path(resemblyzer.__file__).parent / "pretrained.pt"
        from stepaudio.eval.report import sha256_file

        digest = sha256_file(weights) if weights.is_file() else "missing"
        if digest != PRETRAINED_SHA256:
            raise CheckpointError(f"resemblyzer weights {weights} have sha256 {digest}, expected {PRETRAINED_SHA256}; "
                                  f"reinstall resemblyzer=={RESEMBLYZER_VERSION}")
        self._resemblyzer: Any = resemblyzer
        self._threads = threads
        self._encoder = resemblyzer.VoiceEncoder(device, verbose=False)
        self.info = SpeakerModelInfo("GE2E speaker encoder (Resemblyzer)", "resemblyzer", version, str(weights),
                                     digest)

    def embed(self, audio: Audio | str | Path) -> np.ndarray:
        """Resemblyzer's preprocessing (volume normalisation, webrtcvad silence trim) then one utterance vector."""
        speech = audio if isinstance(audio, Audio) else load_audio(audio)
        samples = speech.resampled(SAMPLE_RATE).samples if speech.sample_rate != SAMPLE_RATE else speech.samples
        samples = np.asarray(samples, dtype=np.float32)
        if not samples.size or float(np.max(np.abs(samples))) < 1e-4:
            raise AudioError("silent audio has no speaker to embed")
        trimmed = self._resemblyzer.preprocess_wav(samples, source_sr=SAMPLE_RATE)
        if trimmed.size < MIN_SPEECH_SECONDS * SAMPLE_RATE:
            raise AudioError(f"too little speech for a speaker embedding ({trimmed.size / SAMPLE_RATE:.2f} s after "
                             f"silence trimming; at least {MIN_SPEECH_SECONDS} s)")
        vector = np.asarray(self._embed(trimmed), dtype=np.float64)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def _embed(self, samples: np.ndarray) -> np.ndarray:
        """The small GE2E LSTM runs fastest on one thread (0.16 s vs 1.2 s per 7 s utterance on a busy 2-core
        machine); torch's thread count is process-wide, so it is restored afterwards."""
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        try:
            return np.asarray(self._encoder.embed_utterance(samples))
        finally:
            torch.set_num_threads(previous)

    def similarity(self, a: Audio | str | Path, b: Audio | str | Path) -> float:
        return cosine(self.embed(a), self.embed(b))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    if denominator == 0.0:
        raise AudioError("cannot compare an all-zero embedding")
    return float(np.dot(a, b) / denominator)
