"""vq06 semantic tokenizer: ``speech_tokenizer_v1.onnx`` (CosyVoice, 25 Hz, 4096 codes) via onnxruntime.

The reference cuts 16 kHz audio into consecutive 30 s windows (no overlap), drops a window shorter than
480 samples, turns each into a 128-bin Whisper log-mel ``[1, 128, T]`` and feeds it with its length;
the graph's first output, flattened, is that window's codes (one per 640 samples). Input is expected
already prepared (mono 16 kHz, peak-normalised as the reference does before tokenising).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stepaudio.audio.features import whisper_log_mel
from stepaudio.errors import AudioError, CheckpointError, MissingExtraError, brief

__all__ = [
    "MIN_WINDOW_SAMPLES",
    "SAMPLES_PER_CODE",
    "WINDOW_SAMPLES",
    "SemanticTokenizer",
    "as_mono_samples",
    "default_providers",
    "window_bounds",
]

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
MIN_WINDOW_SAMPLES = 480
SAMPLES_PER_CODE = 640  # 4 mel hops of 160 samples
N_MELS = 128


def as_mono_samples(audio: Any) -> np.ndarray:
    """Float32 ``[N]`` from a numpy/torch ``[N]`` or ``[1, N]`` float array; anything else is an AudioError."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    array = np.asarray(audio)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise AudioError(f"expected mono samples [N] or [1, N], got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"expected float samples in [-1, 1], got {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise AudioError("audio contains NaN or infinite samples")
    return array


def window_bounds(n_samples: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each 30 s window the reference encodes (short last window dropped)."""
    bounds = [(s, min(s + WINDOW_SAMPLES, n_samples)) for s in range(0, n_samples, WINDOW_SAMPLES)]
    return [(s, e) for s, e in bounds if e - s >= MIN_WINDOW_SAMPLES]


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, CPU always."""
    ort = _import_ort()
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingExtraError("step", "onnxruntime") from exc
    return onnxruntime


@dataclass(frozen=True)
class SemanticTokenizer:
    """An onnxruntime session of the tokenizer graph; stateless, one instance serves many callers."""

    session: Any
    feats_name: str
    length_name: str

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        spin: bool = False,
    ) -> SemanticTokenizer:
        """``spin=False`` stops onnxruntime's idle workers busy-waiting after a run: on a few cores
        they would take a core from the Paraformer step that runs next (a streamed piece right after a
        vq06 window took twice as long with spinning on 2 cores)."""
        path = Path(path)
        ort = _import_ort()
        if not path.is_file():
            raise CheckpointError(f"vq06 tokenizer model not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=list(providers or default_providers())
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise CheckpointError(f"{path}: not a loadable ONNX model ({brief(exc)}): re-download {path.name}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 2 or len(inputs[0].shape) != 3:
            shapes = [(i.name, i.shape) for i in inputs]
            raise CheckpointError(f"{path}: expected inputs (feats [B, 128, T], feats_length [B]), got {shapes}")
        return cls(session=session, feats_name=inputs[0].name, length_name=inputs[1].name)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def encode_mel(self, mel: torch.Tensor | np.ndarray) -> list[int]:
        """Codes of one ``[128, T]`` log-mel."""
        feats = np.ascontiguousarray(np.asarray(mel, dtype=np.float32))[None]
        length = np.array([feats.shape[-1]], dtype=np.int32)
        out = self.session.run(None, {self.feats_name: feats, self.length_name: length})[0]
        return [int(c) for c in np.asarray(out).reshape(-1)]

    def encode_window(self, window: np.ndarray) -> list[int]:
        """Codes of one window (at most 30 s, more than 200 samples) of prepared 16 kHz audio."""
        if window.shape[0] > WINDOW_SAMPLES:
            raise AudioError(f"a vq06 window holds at most {WINDOW_SAMPLES} samples, got {window.shape[0]}")
        return self.encode_mel(whisper_log_mel(torch.from_numpy(window), n_mels=N_MELS))

    def encode(self, audio: Any) -> list[int]:
        """vq06 codes of a whole utterance, as the reference ``get_vq06_code`` returns them."""
        samples = as_mono_samples(audio)
        codes: list[int] = []
        for start, end in window_bounds(samples.shape[0]):
            codes.extend(self.encode_window(samples[start:end]))
        return codes
