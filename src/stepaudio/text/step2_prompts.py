"""Step-Audio 2 chat prompts, built as the reference's `apply_chat_template` builds them (REFERENCE-SA2.md §5).

A prompt is a list of segments: strings, each tokenized on its own, and id lists inserted verbatim (a replayed
assistant turn). Per turn: `<|BOT|>{role}\\n{content}<|EOT|>` (`user` is written `human`); a list content opens
the turn in a segment of its own, then one segment per item; `eot=False` leaves the turn open (the assistant
prefill), `content=None` writes only the header. Audio is a block per 25 s piece,
`<audio_start>` + `<audio_patch>` x n + `<audio_end>`, n from the audio layer (`placeholder_count`); the
encoder rows replace the placeholders later. Built here from counts alone, so this layer needs no audio code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stepaudio.text.vocab import STEP_AUDIO2, StepAudio2Vocab

# System prompts of the reference recipes (examples.py, examples-think.py).
ASR_SYSTEM = "请记录下你所听到的语音内容。"
S2TT_ZH_SYSTEM = "请仔细聆听这段语音，然后将其内容翻译成中文。"
THINK_SYSTEM = "请激活深度思考模式，通过逐步分析、逻辑推理来解决用户的问题。"
DEFAULT_SYSTEM = "You are a helpful assistant."
# The base model's TTS instruction (examples-base.py); the chat model gets it as its system turn [inferred].
TTS_SYSTEM = "以自然的语速读出下面的文字。"

THINK_OPEN = "\n<think>\n"  # the assistant prefill that starts the thinking
THINK_CLOSE = "</think>"
AFTER_THINK = "\n\n"  # written after `</think>`, before the answer (and its `<tts_start>`)

ROLE_NAMES = {"user": "human"}
TOOLS_ROLE = "tool_json_schemas"  # the declared tools, as a JSON list of OpenAI-style function entries
TOOL_RESULT_ROLE = "input"  # a tool's result, read by the model as this turn


@dataclass(frozen=True)
class Audio:
    """A spoken item: the `<audio_patch>` count of each 25 s piece, in order."""

    placeholders: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.placeholders or any(n < 1 for n in self.placeholders):
            raise ValueError(f"every audio piece needs at least one placeholder, got {self.placeholders}")


@dataclass(frozen=True)
class Tokens:
    """Ids inserted as they are (a previous assistant reply replayed with its speech tokens)."""

    ids: tuple[int, ...]


Item = str | Audio | Tokens
Segment = str | tuple[int, ...]


@dataclass(frozen=True)
class Turn:
    """One message: `content` None writes the header only; `eot=False` leaves the turn open for the model."""

    role: str
    content: str | tuple[Item, ...] | None
    eot: bool = True


def audio_block(placeholders: int, vocab: StepAudio2Vocab = STEP_AUDIO2) -> str:
    """The text that reserves one audio piece's rows."""
    return vocab.audio_start + vocab.audio_patch * placeholders + vocab.audio_end


def render(turns: Iterable[Turn], vocab: StepAudio2Vocab = STEP_AUDIO2) -> list[Segment]:
    """The segments of a conversation, in the reference's order and split."""
    segments: list[Segment] = []
    for turn in turns:
        header = f"{vocab.bot}{ROLE_NAMES.get(turn.role, turn.role)}\n"
        if turn.content is None:
            segments.append(header)
        elif isinstance(turn.content, str):
            segments.append(header + turn.content + (vocab.eot if turn.eot else ""))
        else:
            segments.append(header)
            for item in turn.content:
                segments.extend(_item_segments(item, vocab))
            if turn.eot:
                segments.append(vocab.eot)
    return segments


def render_base(items: Iterable[Item], vocab: StepAudio2Vocab = STEP_AUDIO2) -> list[Segment]:
    """The base model's prompt (`StepAudio2Base`): a bare list of items, no roles."""
    return [segment for item in items for segment in _item_segments(item, vocab)]


def _item_segments(item: Item, vocab: StepAudio2Vocab) -> list[Segment]:
    if isinstance(item, str):
        return [item]
    if isinstance(item, Audio):
        return [audio_block(n, vocab) for n in item.placeholders]
    return [tuple(int(i) for i in item.ids)]


def prompt_ids(segments: Sequence[Segment], encode: Callable[[str], Sequence[int]]) -> list[int]:
    """Each string segment encoded on its own, id segments kept, all concatenated (as the reference)."""
    ids: list[int] = []
    for segment in segments:
        ids.extend(int(i) for i in (encode(segment) if isinstance(segment, str) else segment))
    return ids


def joined_text(segments: Sequence[Segment]) -> str:
    """The prompt as one string (id segments left out): for logs and for counting."""
    return "".join(s for s in segments if isinstance(s, str))


def tools_content(tools: Iterable[Mapping[str, Any]]) -> str:
    """The `tool_json_schemas` turn's content: OpenAI-style function entries as JSON (non-ASCII kept, as the
    reference's examples write it). Each tool is a mapping with `name`, `description`, `parameters`."""
    entries = [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                 "parameters": t.get("parameters", {})}} for t in tools]
    return json.dumps(entries, ensure_ascii=False)


def think_prefill(thinking: str | None = None) -> str:
    """The open assistant turn of think mode: before the thinking (None), or after it, ready for the answer."""
    if thinking is None:
        return THINK_OPEN
    return THINK_OPEN + thinking + THINK_CLOSE + AFTER_THINK
