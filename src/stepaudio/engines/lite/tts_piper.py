"""English speech with a Piper VITS voice (ONNX, 22.05 kHz for the packaged `joe` medium voice)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stepaudio.errors import MissingExtraError


class PiperSpeaker:
    """One Piper voice; `speak` renders a sentence at the voice's own rate (speed factors are applied afterwards by
    `stepaudio.audio.stretch`: VITS `length_scale` does not scale durations in proportion)."""

    def __init__(self, model_path: str | Path, threads: int = 2) -> None:
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as exc:
            raise MissingExtraError("lite", "piper") from exc
        self.model_path = Path(model_path)
        config = json.loads(Path(f"{model_path}.json").read_text(encoding="utf-8"))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        self._voice = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        self.sample_rate = int(self._voice.config.sample_rate)

    def speak(self, text: str) -> np.ndarray:
        pieces = [chunk.audio_float_array for chunk in self._voice.synthesize(text)]
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces).astype(np.float32, copy=False)
