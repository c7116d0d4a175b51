"""Where a Step-Audio 2 release lives: `--model-path` is the release folder itself (config.json, the
safetensors shards, tokenizer.json, token2wav/), as `huggingface-cli download` writes it. A wrong folder is
said plainly, with what to pass instead."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stepaudio.errors import CheckpointError

RELEASE = "stepfun-ai/Step-Audio-2-mini"
TOKEN2WAV_DIR = "token2wav"
VOICES_DIR = "voices"


def download_hint(folder: Path | str) -> str:
    return f"huggingface-cli download {RELEASE} --local-dir {folder}"


@dataclass(frozen=True)
class Step2Paths:
    release: Path
    token2wav: Path | None  # None: no speech out (a download without the decoder)
    voices: Path | None

    @classmethod
    def resolve(cls, model_path: str | Path | None, voices: str | Path | None = None) -> Step2Paths:
        if not model_path:
            raise CheckpointError(f"the step2 engine needs --model-path: the Step-Audio 2 release folder "
                                  f"({download_hint('Step-Audio-2-mini')})")
        root = Path(model_path).expanduser()
        config = root / "config.json"
        if not config.is_file():
            nested = [d for d in sorted(root.iterdir()) if (d / "config.json").is_file()] if root.is_dir() else []
            hint = f"; {nested[0]} has one: pass --model-path {nested[0]}" if nested else f" ({download_hint(root)})"
            raise CheckpointError(f"{root} is not a Step-Audio 2 release folder (no config.json){hint}")
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        if model_type != "step_audio_2":
            raise CheckpointError(f"{root} holds a {model_type!r} model, not Step-Audio 2 (step_audio_2): the step "
                                  "engine serves Step-Audio v1 folders")
        token2wav = root / TOKEN2WAV_DIR
        voices_dir = Path(voices).expanduser() if voices else root / VOICES_DIR
        if voices and not voices_dir.is_dir():
            raise CheckpointError(f"voices folder {voices_dir} does not exist: it holds NAME.wav prompt files")
        return cls(root, token2wav if token2wav.is_dir() else None, voices_dir if voices_dir.is_dir() else None)
