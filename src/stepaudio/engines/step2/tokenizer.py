"""Step-Audio 2's text tokenizer: the release's Hugging Face `tokenizer.json` through the `tokenizers` library,
and the token facts read off it by name.

The special ids are looked up by their spelling (`<|EOT|>`, `<audio_start>`, `<audio_0>`, ...) instead of
taken from constants: several were never read in StepFun's own code (REFERENCE-SA2.md §6), `<|EOT|>` not at
all, and a tiny test vocabulary puts them elsewhere. A missing one is a CheckpointError naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stepaudio.errors import CheckpointError, MissingExtraError
from stepaudio.text.vocab import STEP_AUDIO2, StepAudio2Vocab, audio_piece

TOKENIZER_FILE = "tokenizer.json"
# Qwen2.5's end-of-text and end-of-turn; the release's config adds them (and a third) to the eos ids.
_QWEN_ENDS = ("<|endoftext|>", "<|im_end|>")


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as exc:
        raise MissingExtraError("step", "tokenizers") from exc
    return tokenizers


class Step2Tokenizer:
    """encode / decode / incremental decode over one `tokenizers.Tokenizer`."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.vocab = vocab_of(self)

    @classmethod
    def from_dir(cls, folder: str | Path) -> Step2Tokenizer:
        """The release folder's `tokenizer.json`."""
        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(f"no {TOKENIZER_FILE} in {folder}: the Step-Audio 2 download is incomplete")
        try:
            tokenizer = _tokenizers().Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises its own exception type for a broken file
            raise CheckpointError(f"{path}: not a tokenizers file ({exc})") from exc
        return cls(tokenizer)

    def encode(self, text: str) -> list[int]:
        """Ids of one prompt segment, as the reference's `tokenizer(text)` (the file's post-processor applies)."""
        return list(self._tokenizer.encode(text, add_special_tokens=True).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens))

    def token_id(self, token: str) -> int | None:
        found = self._tokenizer.token_to_id(token)
        return None if found is None else int(found)

    def stream(self) -> TextStream:
        """An incremental decoder for one reply."""
        return TextStream(self, _tokenizers().decoders.DecodeStream(skip_special_tokens=False))


@dataclass
class TextStream:
    """Text ids in, the text each adds out (empty while a multi-byte character is still incomplete)."""

    tokenizer: Step2Tokenizer
    _stream: Any

    def push(self, token_id: int) -> str:
        return str(self._stream.step(self.tokenizer._tokenizer, int(token_id)) or "")


def vocab_of(tokenizer: Step2Tokenizer) -> StepAudio2Vocab:
    """The token facts of this vocabulary, every special id looked up by its spelling."""
    base = STEP_AUDIO2

    def need(token: str) -> int:
        found = tokenizer.token_id(token)
        if found is None:
            raise CheckpointError(f"the tokenizer has no {token!r} token: not a Step-Audio 2 tokenizer.json")
        return found

    start = need(base.audio_start)
    ends = tuple(i for i in (tokenizer.token_id(t) for t in _QWEN_ENDS) if i is not None)
    return replace(
        base,
        text_ids_below=start,
        audio_start_id=start,
        audio_end_id=need(base.audio_end),
        audio_patch_id=need(base.audio_patch),
        tts_start_id=need(base.tts_start),
        tts_end_id=need(base.tts_end),
        audio_offset=need(audio_piece(0)),
        eos_ids=ends,
        eot_id=need(base.eot),
        unverified=(),
    )
