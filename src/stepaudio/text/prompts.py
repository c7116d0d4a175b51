"""Prompt builders for Step-Audio-Chat (a string, encoded once) and Step-Audio-TTS-3B (assembled ids).

Both reproduce the reference byte for byte: the TTS prompt is built from separate `encode()` calls, each
of which prepends BOS, so a BOS follows every `<|BOT|>` there, while the chat prompt is one string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stepaudio.text import system_prompts
from stepaudio.text.tags import MUSIC_TAGS, leading_instruction
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1, audio_piece

ASSISTANT_HEADER = f"{STEP1.bot}assistant\n"
_ROLE_NAMES = {"user": "human"}

Message = Mapping[str, Any]


# ---- TTS (Step-Audio-TTS-3B) -------------------------------------------------------------------


def tts_system_prompt(text: str, speaker: str | None) -> str:
    """The system prompt the reference picks: music tags first, then named speaker or clone."""
    instruction = leading_instruction(text)
    if instruction in MUSIC_TAGS:
        # The reference chooses humming whenever the text mentions 哼唱 anywhere, even under a RAP tag.
        return system_prompts.TTS_HUMMING if "哼唱" in text else system_prompts.TTS_RAP
    if speaker:
        return system_prompts.TTS_NAMED_SPEAKER.format(speaker)
    return system_prompts.TTS_CLONE


def builtin_speaker_key(speaker: str, text: str) -> str:
    """The speakers-file entry of a built-in voice: `Tingting`, or `TingtingRAP` / `Tingting哼唱` for music."""
    instruction = leading_instruction(text)
    return speaker + instruction if instruction in MUSIC_TAGS else speaker


def build_tts_prompt(
    tokenizer: StepTokenizer,
    *,
    text: str,
    prompt_text: str,
    prompt_audio_ids: Sequence[int],
    speaker: str | None = None,
    system_prompt: str | None = None,
) -> list[int]:
    """Ids for TTS-3B: system turn, the voice prompt as one human/assistant exchange, then the target text.

    `prompt_audio_ids` are LM audio ids (`STEP1.audio_offset` + flow id). `speaker` is the built-in speaker
    name; a clone passes None (the reference passes an empty name) and gets the speaker-less system prompt.
    """
    for i in prompt_audio_ids:
        if not STEP1.is_audio_piece_id(int(i)):
            raise ValueError(f"prompt audio id {i} is not an <audio_N> LM id")
    system = system_prompt if system_prompt is not None else tts_system_prompt(text, speaker)
    enc = tokenizer.encode
    newline_len = len(enc("\n"))

    def after_newline(value: str) -> list[int]:
        # Tokenised as if it followed a newline, so the text gets no leading `▁`.
        return enc("\n" + value)[newline_len:]

    human, assistant = enc("human\n"), enc("assistant\n")
    bot, eot = STEP1.bot_id, STEP1.eot_id
    return (
        [STEP1.bos_id, bot, *enc("system\n" + system), eot]
        + [bot, *human, *after_newline(prompt_text), eot]
        + [bot, *assistant, *(int(i) for i in prompt_audio_ids), eot]
        + [bot, *human, *after_newline(text), eot]
        + [bot, *assistant]
    )


# ---- Chat (Step-Audio-Chat) --------------------------------------------------------------------


def content_text(content: Any) -> str:
    """The prompt text of one message content: a string, a typed part, or a list of parts.

    Audio parts carry LM ids (`audio_tokens`) or ready `<audio_N>` text (`audio_text`); turning a wav into
    tokens is the audio tokenizer's job, done before the prompt is built.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        kind = content.get("type")
        if kind == "text":
            return str(content.get("text", ""))
        if kind == "audio":
            if "audio_text" in content:
                return str(content["audio_text"])
            tokens = content.get("audio_tokens")
            if tokens is None:
                raise ValueError("an audio part needs 'audio_tokens' (LM ids) or 'audio_text'; tokenize the wav first")
            return "".join(audio_piece(int(t) - STEP1.audio_offset) for t in tokens)
        raise ValueError(f"unsupported content part type {kind!r}")
    if isinstance(content, Iterable):
        return "".join(content_text(part) for part in content)
    raise ValueError(f"unsupported message content {type(content).__name__}")


def chat_prompt_text(messages: Sequence[Message], default_system: str | None = None) -> str:
    """`<|BOT|>{role}\\n{content}<|EOT|>` per message (user written `human`), ending `<|BOT|>assistant\\n`.

    A message whose content is None opens its turn without closing it (the reference's way to prefill
    the assistant). `default_system` adds a system turn when the first message is not one.
    """
    parts: list[str] = []
    if default_system and (not messages or messages[0].get("role") != "system"):
        parts.append(f"{STEP1.bot}system\n{default_system}{STEP1.eot}")
    for message in messages:
        role = str(message.get("role", ""))
        if not role:
            raise ValueError("every chat message needs a 'role'")
        role = _ROLE_NAMES.get(role, role)
        content = message.get("content")
        if content is None:
            parts.append(f"{STEP1.bot}{role}\n")
        else:
            parts.append(f"{STEP1.bot}{role}\n{content_text(content)}{STEP1.eot}")
    text = "".join(parts)
    if not text.endswith(ASSISTANT_HEADER):
        text += ASSISTANT_HEADER
    return text


def build_chat_prompt(
    tokenizer: StepTokenizer, messages: Sequence[Message], default_system: str | None = None
) -> list[int]:
    return tokenizer.encode(chat_prompt_text(messages, default_system=default_system))
