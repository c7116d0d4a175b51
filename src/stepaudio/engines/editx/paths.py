"""Where Step-Audio-EditX lives: `--model-path` is the parent of `Step-Audio-Tokenizer/` and `Step-Audio-EditX/`
(the release's fixed names, REFERENCE-EDITX.md §1); the decoder is `CosyVoice-300M-25Hz/` inside the LM folder,
the text tokenizer the LM folder's own `tokenizer.model`. Each folder may also be given directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stepaudio.errors import CheckpointError

TOKENIZER_DIR = "Step-Audio-Tokenizer"
EDITX_DIR = "Step-Audio-EditX"
EDITX_AWQ_DIR = "Step-Audio-EditX-AWQ-4bit"
DECODER_DIR = "CosyVoice-300M-25Hz"
HUB_ORG = "stepfun-ai"


def download_hint(name: str, folder: Path) -> str:
    return f"huggingface-cli download {HUB_ORG}/{name} --local-dir {folder}"


@dataclass(frozen=True)
class EditXPaths:
    tokenizer: Path
    lm: Path

    @property
    def decoder(self) -> Path:
        return self.lm / DECODER_DIR

    @classmethod
    def resolve(cls, model_path: str | Path | None = None, *, tokenizer: str | Path | None = None,
                lm: str | Path | None = None) -> EditXPaths:
        """The two folders, checked for the files the release reads; errors say what to pass or fetch."""
        root = Path(model_path) if model_path else None
        if root is not None and not root.is_dir():
            raise CheckpointError(f"model path {root} is not a directory: pass the folder that holds "
                                  f"{TOKENIZER_DIR}/ and {EDITX_DIR}/")
        if root is not None and (root / DECODER_DIR).is_dir() and not (root / EDITX_DIR).is_dir() and lm is None:
            raise CheckpointError(f"{root} is the {EDITX_DIR} folder itself; --model-path takes its parent "
                                  f"(--model-path {root.parent}), or pass -O lm_path={root}")

        def pick(explicit: str | Path | None, name: str, option: str) -> Path:
            if explicit:
                folder = Path(explicit)
            elif root is not None:
                folder = root / name
            else:
                raise CheckpointError(f"no {name} folder: pass --model-path DIR holding {name}/, or -O {option}=DIR")
            if not folder.is_dir():
                raise CheckpointError(f"{name} folder {folder} does not exist: download it there "
                                      f"({download_hint(name, folder)}) or pass -O {option}=DIR")
            return folder

        found = cls(pick(tokenizer, TOKENIZER_DIR, "tokenizer_path"), pick(lm, EDITX_DIR, "lm_path"))
        for path, what in ((found.lm / "config.json", "its config.json"),
                           (found.lm / "tokenizer.model", "its tokenizer.model"),
                           (found.decoder, f"its {DECODER_DIR}/ decoder folder")):
            if not path.exists():
                raise CheckpointError(f"{EDITX_DIR} folder {found.lm} lacks {what}: the download is incomplete; "
                                      f"fetch it again ({download_hint(EDITX_DIR, found.lm)})")
        return found
