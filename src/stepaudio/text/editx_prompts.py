"""Prompt builders for Step-Audio-EditX: zero-shot cloning and one-instruction speech edits.

Both reproduce the reference (`StepAudioTTS._encode_audio_edit_clone_prompt` / `_encode_audio_edit_prompt`)
id for id: every piece is a separate fast-tokenizer `encode()` with BOS, so a BOS follows every `<|BOT|>`,
and an edit's human text opens with a second BOS. A clone puts the prompt audio in the *system* turn and the
target text (as given, not stripped) in the human turn; an edit uses one fixed system prompt for every type
and writes the instruction, a blank line and the input audio's `<audio_N>` string in the human turn.
Dialects are plain tags at the start of the target text (`[Sichuanese]...`), polyphones pinyin with a tone
digit (`guo4`); neither is parsed here, the model reads them as text. REFERENCE-EDITX.md §4.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stepaudio.errors import OptionError
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1, audio_piece

CLONE_SYSTEM_TEMPLATE = """Generate audio with the following timbre, prosody and speaking style

[speaker_start]
speaker name: {speaker}
speaker prompt text: 
{prompt_text}
speaker audio tokens: 
{prompt_wav_tokens}
[speaker_end]
"""  # noqa: W291 - the trailing spaces after "text:" and "tokens:" are the reference's (id 324 each)

EDIT_SYSTEM_PROMPT = (
    "As a highly skilled audio editing and tuning specialist, you excel in interpreting user instructions and "
    "applying precise adjustments to meet their needs. Your expertise spans a wide range of enhancement "
    "capabilities, including but not limited to:\n"
    "# Emotional Enhancement\n"
    "# Speaking Style Transfer\n"
    "# Non-linguistic Adjustments\n"
    "# Audio Tuning & Editing\n"
    "Note: You will receive instructions in natural language and are expected to accurately interpret and execute "
    "the most suitable audio edits and enhancements.\n"
)

# The release's edit types and options (config/edit_config.py), in its order; `clone` is not an edit.
EDIT_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "emotion": ("happy", "angry", "sad", "humour", "confusion", "disgusted", "empathy", "embarrass", "fear",
                "surprised", "excited", "depressed", "coldness", "admiration", "remove"),
    "style": ("serious", "arrogant", "child", "older", "girl", "pure", "sister", "sweet", "ethereal", "whisper",
              "gentle", "recite", "generous", "act_coy", "warm", "shy", "comfort", "authority", "chat", "radio",
              "soulful", "story", "vivid", "program", "news", "advertising", "roar", "murmur", "shout", "deeply",
              "loudly", "remove", "exaggerated"),
    "vad": (),
    "denoise": (),
    "paralinguistic": (),
    "speed": ("faster", "slower", "more faster", "more slower"),
}
EDIT_TYPES = tuple(EDIT_OPTIONS)
PARALINGUISTIC_TAGS = ("[Breathing]", "[Laughter]", "[Surprise-oh]", "[Confirmation-en]", "[Uhm]",
                       "[Surprise-ah]", "[Surprise-wa]", "[Sigh]", "[Question-ei]", "[Dissatisfaction-hnn]")
DIALECT_TAGS = ("[Sichuanese]", "[Cantonese]", "[Japanese]", "[Korean]")

_DENOISE = ("Remove any noise from the given audio while preserving the voice content clearly. Ensure that the "
            "speech quality remains intact with minimal distortion, and eliminate all noise from the audio.\n")
_VAD = ("Remove any silent portions from the given audio while preserving the voice content clearly. Ensure that "
        "the speech quality remains intact with minimal distortion, and eliminate all silence from the audio.\n")


@dataclass(frozen=True)
class Edit:
    """One edit: a type of `EDIT_TYPES`, its option (emotion, style, speed), and for `paralinguistic` the new
    text with the non-verbal tags written where they go."""

    edit_type: str
    option: str | None = None
    new_text: str | None = None

    def __post_init__(self) -> None:
        if self.edit_type not in EDIT_OPTIONS:
            raise OptionError(f"unknown edit type {self.edit_type!r}; the types are {', '.join(EDIT_TYPES)}")
        options = EDIT_OPTIONS[self.edit_type]
        if options and self.option not in options:
            raise OptionError(f"{self.edit_type} edit needs one of {', '.join(options)}, not {self.option!r}")
        if not options and self.option is not None:
            raise OptionError(f"a {self.edit_type} edit takes no option (got {self.option!r})")
        if self.edit_type == "paralinguistic" and not (self.new_text and self.new_text.strip()):
            raise OptionError("a paralinguistic edit needs the new text with its tags, e.g. "
                              "'so I said [Laughter] no'; tags: " + " ".join(PARALINGUISTIC_TAGS))

    def result_text(self, audio_text: str) -> str:
        """What the edited audio says: the new text for paralinguistic edits, else the input's text (the
        audio text of the next edit in a chain)."""
        return self.new_text if self.edit_type == "paralinguistic" and self.new_text else audio_text

    def instruction(self, audio_text: str) -> str:
        return edit_instruction(audio_text, self.edit_type, self.option, self.new_text)

    @property
    def label(self) -> str:
        return f"{self.edit_type}:{self.option}" if self.option else self.edit_type


def edit_instruction(audio_text: str | None, edit_type: str, option: str | None = None,
                     text: str | None = None) -> str:
    """The reference's instruction sentence (`_build_audio_edit_instruction`), option and texts used as given
    (only the audio text is stripped); unknown types are refused, options are not checked here (`Edit` does)."""
    audio_text = audio_text.strip() if audio_text else ""
    if edit_type in ("emotion", "speed"):
        if option == "remove":
            return f"Remove any emotion in the following audio and the reference text is: {audio_text}\n"
        return f"Make the following audio more {option}. The text corresponding to the audio is: {audio_text}\n"
    if edit_type == "style":
        if option == "remove":
            return f"Remove any speaking styles in the following audio and the reference text is: {audio_text}\n"
        return (f"Make the following audio more {option} style. The text corresponding to the audio is: "
                f"{audio_text}\n")
    if edit_type == "denoise":
        return _DENOISE
    if edit_type == "vad":
        return _VAD
    if edit_type == "paralinguistic":
        return (f"Add some non-verbal sounds to make the audio more natural, the new text is : {text}\n"
                f"  The text corresponding to the audio is: {audio_text}\n")
    raise OptionError(f"unsupported edit type {edit_type!r}; the types are {', '.join(EDIT_TYPES)}")


def audio_token_string(prompt_audio_ids: Sequence[int]) -> str:
    """LM audio ids (`STEP1.audio_offset` + flow id) as the `<audio_N>` text the prompts embed."""
    pieces = []
    for i in prompt_audio_ids:
        if not STEP1.is_audio_piece_id(int(i)):
            raise ValueError(f"prompt audio id {i} is not an <audio_N> LM id")
        pieces.append(audio_piece(int(i) - STEP1.audio_offset))
    return "".join(pieces)


def clone_system_prompt(speaker: str, prompt_text: str, prompt_audio_ids: Sequence[int]) -> str:
    return CLONE_SYSTEM_TEMPLATE.format(speaker=speaker, prompt_text=prompt_text,
                                        prompt_wav_tokens=audio_token_string(prompt_audio_ids))


def _turns(tokenizer: StepTokenizer, system: str, human: list[int]) -> list[int]:
    enc = tokenizer.encode
    bot, eot = STEP1.bot_id, STEP1.eot_id
    return ([STEP1.bos_id, bot, *enc("system\n" + system), eot]
            + [bot, *enc("human\n"), *human, eot]
            + [bot, *enc("assistant\n")])


def build_clone_prompt(tokenizer: StepTokenizer, *, target_text: str, prompt_text: str, speaker: str,
                       prompt_audio_ids: Sequence[int]) -> list[int]:
    """Ids of a clone: the voice (name, transcript, audio) in the system turn, the target text (tokenized as
    if after a newline, so with no leading `▁`) in the human turn."""
    system = clone_system_prompt(speaker, prompt_text, prompt_audio_ids)
    prefix = len(tokenizer.encode("\n"))
    return _turns(tokenizer, system, tokenizer.encode("\n" + target_text)[prefix:])


def build_edit_prompt(tokenizer: StepTokenizer, *, instruction: str, prompt_audio_ids: Sequence[int]) -> list[int]:
    """Ids of an edit: the fixed system prompt, then `instruction + "\\n" + <audio_N>... + "\\n"` encoded whole
    (with its own BOS) in the human turn."""
    audio = audio_token_string(prompt_audio_ids).strip()
    return _turns(tokenizer, EDIT_SYSTEM_PROMPT, tokenizer.encode(f"{instruction}\n{audio}\n"))


def clone_voice_id(prompt_text: str, samples: np.ndarray) -> str:
    """The reference's speaker name for a clone: `clone_` + 16 hex of SHA-256 over the UTF-8 transcript and the
    float32 bytes of the raw samples (`[channels, n]` as loaded, channel-major; the first and last 1000 values
    when there are more than 2000). The model accepts any name; this one keeps prompts identical."""
    flat = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    if flat.size > 2000:
        flat = np.concatenate([flat[:1000], flat[-1000:]])
    hasher = hashlib.sha256()
    hasher.update(prompt_text.encode("utf-8"))
    hasher.update(flat.astype("<f4").tobytes())
    return f"clone_{hasher.hexdigest()[:16]}"
