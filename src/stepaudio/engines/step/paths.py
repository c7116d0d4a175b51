"""Where the Step-Audio models live: one `--model-path` holding the three release folders, or each given.

A wrong folder is the commonest set-up mistake (the TTS folder itself given as `--model-path`, a release
downloaded one level too deep), so the errors here say what the folder looks like and what to pass instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stepaudio.errors import CheckpointError

TOKENIZER_DIR = "Step-Audio-Tokenizer"
TTS_DIR = "Step-Audio-TTS-3B"
CHAT_DIR = "Step-Audio-Chat"
COSYVOICE_DIR = "CosyVoice-300M-25Hz"
COSYVOICE_MUSIC_DIR = "CosyVoice-300M-25Hz-Music"

FOLDERS = {"tokenizer": TOKENIZER_DIR, "tts": TTS_DIR, "chat": CHAT_DIR, "speakers": "speakers"}
# The engine option that points at each folder directly.
OPTIONS = {"tokenizer": "tokenizer_path", "tts": "tts_path", "chat": "chat_path", "speakers": "speakers_dir"}
HUB_ORG = "stepfun-ai"


def download_hint(part: str, folder: Path) -> str:
    """The command that puts `part`'s release into `folder` (the speakers folder ships inside TTS-3B)."""
    name = FOLDERS[part] if part != "speakers" else TTS_DIR
    return f"huggingface-cli download {HUB_ORG}/{name} --local-dir {folder}"


def looks_like(folder: Path) -> str | None:
    """Which release folder `folder` itself is, judged by the files only that folder has (None: none of them)."""
    if (folder / COSYVOICE_DIR).is_dir() or (folder / COSYVOICE_MUSIC_DIR).is_dir():
        return "tts"
    if (folder / "speech_tokenizer_v1.onnx").is_file() or (folder / "linguistic_tokenizer.npy").is_file():
        return "tokenizer"
    if (folder / "config.json").is_file() and (folder / "tokenizer.model").is_file():
        return "chat"
    if (folder / "speakers_info.json").is_file():
        return "speakers"
    return None


@dataclass(frozen=True)
class StepModelPaths:
    tokenizer: Path | None = None
    tts: Path | None = None
    chat: Path | None = None
    speakers: Path | None = None
    root: Path | None = None  # the --model-path they were looked up in

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
        """Folders found under `model_path` (as the reference CLIs take it), overridden by explicit ones.

        A `model_path` that holds none of the release folders (and nothing is given directly) is an error that
        says what the folder is instead: taking it as "no models" would only fail later, less clearly."""
        root = Path(model_path) if model_path else None
        if root is not None and not root.is_dir():
            raise CheckpointError(f"model path {root} is not a directory: pass the folder that holds "
                                  f"{TOKENIZER_DIR}/, {TTS_DIR}/ and {CHAT_DIR}/")

        def pick(explicit: str | Path | None, name: str) -> Path | None:
            if explicit:
                return Path(explicit)
            return root / name if root is not None and (root / name).is_dir() else None

        speaker_dir = pick(speakers, "speakers")
        if speaker_dir is None and root is not None and (root / TTS_DIR / "speakers").is_dir():
            speaker_dir = root / TTS_DIR / "speakers"
        found = cls(pick(tokenizer, TOKENIZER_DIR), pick(tts, TTS_DIR), pick(chat, CHAT_DIR), speaker_dir, root)
        if root is not None and found.tokenizer is None and found.tts is None and found.chat is None:
            raise CheckpointError(wrong_root(root))
        return found

    def require(self, part: str) -> Path:
        """The folder of `part` ('tokenizer', 'tts', 'chat', 'speakers'), or an error saying what to pass."""
        path = getattr(self, part)
        name, option = FOLDERS[part], OPTIONS[part]
        if path is None:
            if self.root is None:
                raise CheckpointError(f"no {name} folder: pass --model-path DIR holding {name}/, or -O {option}=DIR")
            raise CheckpointError(f"no {name} folder in {self.root}: download it there "
                                  f"({download_hint(part, self.root / name)}) or pass -O {option}=DIR")
        if not path.is_dir():
            raise CheckpointError(f"{name} folder {path} does not exist: fix -O {option}, or download it there "
                                  f"({download_hint(part, path)})")
        other = looks_like(path)
        if other is not None and other != part and (part, other) != ("tts", "chat"):  # TTS without its decoders
            raise CheckpointError(f"{path} is the {FOLDERS[other]} folder, not {name}: point -O {option} at the "
                                  f"{name} folder (or --model-path at the folder holding both)")
        return Path(path)

    def cosyvoice(self, music: bool = False) -> Path:
        """The decoder folder inside TTS-3B: the Music one serves RAP and humming."""
        tts = self.require("tts")
        folder = tts / (COSYVOICE_MUSIC_DIR if music else COSYVOICE_DIR)
        if not folder.is_dir():
            raise CheckpointError(f"{TTS_DIR} folder {tts} has no {folder.name}/ decoder folder: its download is "
                                  f"incomplete; download it again ({download_hint('tts', tts)})")
        return folder


def wrong_root(root: Path) -> str:
    """Why `root` is not a --model-path, and which folder to pass instead."""
    expected = f"{TOKENIZER_DIR}/, {TTS_DIR}/ and {CHAT_DIR}/"
    kind = looks_like(root)
    if kind in ("tts", "chat", "tokenizer"):
        return (f"{root} is the {FOLDERS[kind]} folder itself; --model-path takes the folder that holds {expected} "
                f"(--model-path {root.parent}), or pass this one as -O {OPTIONS[kind]}={root}")
    if (root / "cosyvoice.yaml").is_file() or (root / "flow.pt").is_file():
        return (f"{root} is a CosyVoice decoder folder (it belongs inside {TTS_DIR}/); --model-path takes the "
                f"folder that holds {expected}")
    nested = sorted(d for d in root.iterdir() if d.is_dir() and any((d / n).is_dir() for n in (TTS_DIR, CHAT_DIR,
                                                                                                 TOKENIZER_DIR)))
    if nested:
        return f"{root} holds no release folder, but {nested[0]} does: pass --model-path {nested[0]}"
    return (f"{root} holds none of {expected}: download them there (e.g. {download_hint('tts', root / TTS_DIR)}) "
            "or point at each with -O tokenizer_path=, tts_path=, chat_path=")
