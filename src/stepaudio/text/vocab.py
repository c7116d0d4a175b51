"""Token facts of each model family in one place: audio id offsets, stop ids, special tokens.

Low in the layers on purpose, so the text prompts, the audio tokenizer, the engines, training and
evaluation all read the same numbers. One frozen dataclass per family; `STEP1` and `STEP_AUDIO2` are its
only instances. Sources: ../shared/REFERENCE.md §3-§5 (Step-Audio v1), ../shared/REFERENCE-SA2.md §4-§6
(Step-Audio 2); `unverified` names the fields not read in StepFun's own code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_AUDIO_PIECE = re.compile(r"<audio_(\d+)>")


def audio_piece(n: int) -> str:
    """The text form of audio token n: `<audio_N>` (both families' vocabularies spell it this way)."""
    return f"<audio_{int(n)}>"


def audio_piece_numbers(text: str) -> list[int]:
    """N of every `<audio_N>` piece in `text`, in order (other text is ignored)."""
    return [int(m.group(1)) for m in _AUDIO_PIECE.finditer(text)]


@dataclass(frozen=True)
class Step1Vocab:
    """Step-Audio v1 (Chat, TTS-3B, EditX: one SentencePiece vocabulary). All verified (REFERENCE.md §3)."""

    pad_id: int = 0
    bos_id: int = 1  # `<s>`: encode() prepends it
    eos_id: int = 2  # `</s>`: never generated as the end; generation stops on `eot_id`
    eot_id: int = 3  # `<|EOT|>`: ends every turn, and generation
    bot_id: int = 4  # `<|BOT|>`: opens every turn
    call_start_id: int = 5
    call_end_id: int = 6
    audio_start_id: int = 31  # not used in v1 prompts
    audio_end_id: int = 32
    audio_offset: int = 65536  # `<audio_N>` is id 65536 + N
    audio_pieces: int = 9216  # `<audio_0>`..`<audio_9215>` exist; 0..5119 are used (vq02 + vq06 codes)
    vocab_size: int = 74752
    bot: str = "<|BOT|>"
    eot: str = "<|EOT|>"
    call_start: str = "<|CALL_START|>"
    call_end: str = "<|CALL_END|>"
    unverified: tuple[str, ...] = ()

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return (self.eot_id,)

    def is_audio_piece_id(self, token_id: int) -> bool:
        """Whether `token_id` is one of the vocabulary's `<audio_N>` pieces (used or not)."""
        return self.audio_offset <= token_id < self.audio_offset + self.audio_pieces


@dataclass(frozen=True)
class StepAudio2Vocab:
    """Step-Audio 2 mini (Qwen2.5 BPE plus Step specials). REFERENCE-SA2.md §4-§6; the tokenizer files were
    not readable, so ids read only in third-party code or inferred are listed in `unverified`, and the
    `<|EOT|>` id is unknown (None) until read from a real tokenizer."""

    text_ids_below: int = 151688  # ids under this are text
    audio_start_id: int = 151688  # `<audio_start>`: audio-encoder rows are spliced in right after it
    audio_end_id: int = 151689  # `<audio_end>`: start, end, patch are consecutive (conformance tiny order)
    audio_patch_id: int = 151690  # `<audio_patch>`: placeholder the spliced rows overwrite
    tts_start_id: int = 151693  # `<tts_start>`: the reply interleaves text and audio ids after it
    tts_end_id: int = 151694  # `<tts_end>`
    audio_offset: int = 151696  # audio code c is id 151696 + c
    audio_codes: int = 6561  # CosyVoice2 codes 0..6560
    audio_pad_code: int = 6561  # padding code, removed before token2wav
    eos_ids: tuple[int, ...] = (151643, 151645, 151665)  # always added to the config's eos ids
    eot_id: int | None = None  # `<|EOT|>` ends a turn and generation; its id is not known here
    bot: str = "<|BOT|>"
    eot: str = "<|EOT|>"
    audio_start: str = "<audio_start>"
    audio_end: str = "<audio_end>"
    audio_patch: str = "<audio_patch>"
    tts_start: str = "<tts_start>"
    tts_end: str = "<tts_end>"
    unverified: tuple[str, ...] = ("audio_end_id", "audio_patch_id", "tts_start_id", "tts_end_id")

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """The eos ids every release config carries, plus `<|EOT|>` once its id is known."""
        return self.eos_ids + (() if self.eot_id is None else (self.eot_id,))

    def is_audio_id(self, token_id: int) -> bool:
        """Whether a generated id is an audio code (the padding code included)."""
        return self.audio_offset <= token_id <= self.audio_offset + self.audio_pad_code


STEP1 = Step1Vocab()
STEP_AUDIO2 = StepAudio2Vocab()

