"""CAM++ speaker embedding (`campplus.onnx` of CosyVoice) through onnxruntime.

Frontend as in the reference: 16 kHz mono samples in [-1, 1] (not scaled to int16 range), 80-bin
Kaldi fbank (povey window, dither 0), minus its mean over time, fed as `[1, T, 80]` float32 under
the model's first input name. Output: the raw 192-d x-vector (the flow model L2-normalises it).
onnxruntime is an optional dependency (`stepaudio[step]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stepaudio.audio.features import kaldi_fbank, mean_normalize
from stepaudio.errors import AudioError, CheckpointError, MissingExtraError, brief

CAMPPLUS_SAMPLE_RATE = 16000
CAMPPLUS_MEL_BINS = 80


def campplus_features(wav_16k: torch.Tensor, sample_rate: int = CAMPPLUS_SAMPLE_RATE) -> torch.Tensor:
    """Mono 16 kHz waveform `[N]` or `[1, N]` -> mean-normalised fbank `[1, T, 80]` float32."""
    if sample_rate != CAMPPLUS_SAMPLE_RATE:
        raise AudioError(f"CAM++ needs {CAMPPLUS_SAMPLE_RATE} Hz audio, got {sample_rate} Hz: resample first")
    if not isinstance(wav_16k, torch.Tensor):
        raise AudioError(f"CAM++: expected a torch.Tensor waveform, got {type(wav_16k).__name__}")
    if wav_16k.dim() == 2 and wav_16k.shape[0] == 1:
        wav_16k = wav_16k[0]
    if wav_16k.dim() != 1:
        raise AudioError(f"CAM++: expected mono audio [N] or [1, N], got shape {tuple(wav_16k.shape)}")
    wav = wav_16k.detach().to(device="cpu", dtype=torch.float32)
    if not bool(torch.isfinite(wav).all()):
        raise AudioError("CAM++: the waveform contains NaN or infinite samples")
    feats = kaldi_fbank(wav, sample_rate=CAMPPLUS_SAMPLE_RATE, num_mel_bins=CAMPPLUS_MEL_BINS, dither=0.0)
    return mean_normalize(feats).unsqueeze(0).contiguous()


class CampPlusEmbedder:
    """Holds one onnxruntime session; `embed(wav)` -> `[192]` float32 tensor."""

    def __init__(
        self,
        onnx_path: str | Path,
        *,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingExtraError("step", "onnxruntime") from None
        path = Path(onnx_path)
        if not path.is_file():
            raise CheckpointError(f"CAM++ model not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        try:
            self._session: Any = ort.InferenceSession(
                str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            raise CheckpointError(f"{path}: not a loadable ONNX model ({brief(exc)}): re-download "
                                  f"{path.name}") from exc
        self.input_name: str = self._session.get_inputs()[0].name

    def embed_features(self, feats: torch.Tensor) -> torch.Tensor:
        """`[1, T, 80]` normalised fbank -> `[D]` embedding (D = 192 for campplus.onnx)."""
        array = np.ascontiguousarray(feats.detach().cpu().numpy(), dtype=np.float32)
        (output, *_) = self._session.run(None, {self.input_name: array})
        return torch.from_numpy(np.asarray(output, dtype=np.float32).reshape(-1).copy())

    def embed(self, wav_16k: torch.Tensor, sample_rate: int = CAMPPLUS_SAMPLE_RATE) -> torch.Tensor:
        """Mono 16 kHz waveform -> speaker embedding `[D]` (not normalised)."""
        return self.embed_features(campplus_features(wav_16k, sample_rate))
