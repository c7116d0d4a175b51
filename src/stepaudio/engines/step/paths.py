"""Where the Step-Audio models live: one `--model-path` holding the three release folders, or each given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stepaudio.errors import CheckpointError

TOKENIZER_DIR = "Step-Audio-Tokenizer"
TTS_DIR = "Step-Audio-TTS-3B"
CHAT_DIR = "Step-Audio-Chat"
COSYVOICE_DIR = "CosyVoice-300M-25Hz"
COSYVOICE_MUSIC_DIR = "CosyVoice-300M-25Hz-Music"


@dataclass(frozen=True)
class StepModelPaths:
    tokenizer: Path | None = None
    tts: Path | None = None
    chat: Path | None = None
    speakers: Path | None = None

    @classmethod
    def resolve(
        cls,
        model_path: str | Path | None = None,
        *,
        tokenizer: str | Path | None = None,
        tts: str | Path | None = None,
        chat: str | Path | None = None,
        speakers: str | Path | None = None,
    ) -> StepModelPaths:
        """Folders found under `model_path` (as the reference CLIs take it), overridden by explicit ones."""
        root = Path(model_path) if model_path else None
        if root is not None and not root.is_dir():
            raise CheckpointError(f"model path {root} is not a directory")

        def pick(explicit: str | Path | None, name: str) -> Path | None:
            if explicit:
                return Path(explicit)
            return root / name if root is not None and (root / name).is_dir() else None

        speaker_dir = pick(speakers, "speakers")
        if speaker_dir is None and root is not None and (root / TTS_DIR / "speakers").is_dir():
            speaker_dir = root / TTS_DIR / "speakers"
        return cls(pick(tokenizer, TOKENIZER_DIR), pick(tts, TTS_DIR), pick(chat, CHAT_DIR), speaker_dir)

    def require(self, part: str) -> Path:
        """The folder of `part` ('tokenizer', 'tts', 'chat', 'speakers'), or an error saying what to pass."""
        path = getattr(self, part)
        names = {"tokenizer": TOKENIZER_DIR, "tts": TTS_DIR, "chat": CHAT_DIR, "speakers": "speakers"}
        if path is None:
            raise CheckpointError(
                f"no {names[part]} folder: pass --model-path holding {names[part]}/ or point to it directly"
            )
        if not path.is_dir():
            raise CheckpointError(f"{names[part]} folder {path} does not exist")
        return Path(path)

    def cosyvoice(self, music: bool = False) -> Path:
        """The decoder folder inside TTS-3B: the Music one serves RAP and humming."""
        folder = self.require("tts") / (COSYVOICE_MUSIC_DIR if music else COSYVOICE_DIR)
        if not folder.is_dir():
            raise CheckpointError(f"decoder folder {folder} does not exist")
        return folder
