"""Instruction tags: `(高兴1)(四川话)(慢速1)今天天气真好` parsed, validated and built from friendly options.

Tags lead the text in ASCII `(...)` or full-width `（...）` brackets and may be chained. Only the first
tag chooses the TTS system prompt and the vocoder; every tag stays in the text the model reads.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from enum import Enum

from stepaudio.errors import TagError


class TagFamily(str, Enum):
    EMOTION = "emotion"
    LANGUAGE = "language"
    MUSIC = "music"
    SPEED = "speed"


KNOWN_TAGS: dict[str, TagFamily] = {
    **dict.fromkeys(["高兴1", "高兴2", "生气1", "生气2", "悲伤1", "撒娇1"], TagFamily.EMOTION),
    **dict.fromkeys(["中文", "英文", "韩语", "日语", "四川话", "粤语", "广东话"], TagFamily.LANGUAGE),
    **dict.fromkeys(["RAP", "哼唱"], TagFamily.MUSIC),
    **dict.fromkeys(["慢速1", "慢速2", "快速1", "快速2"], TagFamily.SPEED),
}
MUSIC_TAGS = frozenset(tag for tag, family in KNOWN_TAGS.items() if family is TagFamily.MUSIC)

FRIENDLY: dict[TagFamily, dict[str, str]] = {
    TagFamily.EMOTION: {
        "happy": "高兴1", "happy1": "高兴1", "happy2": "高兴2", "excited": "高兴2",
        "angry": "生气1", "angry1": "生气1", "angry2": "生气2", "furious": "生气2",
        "sad": "悲伤1", "sad1": "悲伤1", "coquettish": "撒娇1", "cute": "撒娇1",
    },
    TagFamily.LANGUAGE: {
        "chinese": "中文", "mandarin": "中文", "zh": "中文", "english": "英文", "en": "英文",
        "korean": "韩语", "ko": "韩语", "japanese": "日语", "ja": "日语", "sichuanese": "四川话",
        "cantonese": "粤语", "yue": "粤语", "guangdonghua": "广东话",
    },
    TagFamily.MUSIC: {"rap": "RAP", "humming": "哼唱", "hum": "哼唱"},
    TagFamily.SPEED: {"slow": "慢速1", "slow1": "慢速1", "slower": "慢速2", "slow2": "慢速2",
                      "fast": "快速1", "fast1": "快速1", "faster": "快速2", "fast2": "快速2"},
}
# The family each friendly keyword argument fills; music comes first because the first tag decides.
OPTION_FAMILY = {"style": TagFamily.MUSIC, "emotion": TagFamily.EMOTION,
                 "dialect": TagFamily.LANGUAGE, "language": TagFamily.LANGUAGE, "speed": TagFamily.SPEED}

_LEADING_TAG = re.compile(r"^\s*[(（]([^()（）]*)[)）]")


@dataclass(frozen=True)
class TaggedText:
    """Leading tags and the text after them; `text` is the original, tags included."""

    tags: tuple[str, ...]
    body: str
    text: str

    @property
    def first(self) -> str | None:
        return self.tags[0] if self.tags else None

    @property
    def is_music(self) -> bool:
        return self.first in MUSIC_TAGS

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(tag for tag in self.tags if tag not in KNOWN_TAGS)


def leading_instruction(text: str) -> str:
    """The content of the first leading bracket group, as the reference detects it ('' when none)."""
    match = _LEADING_TAG.match(text)
    return match.group(1).strip() if match else ""


def parse_tags(text: str, on_unknown: str = "warn") -> TaggedText:
    """Split chained leading tags from `text`; unknown tags 'warn', 'raise' (TagError) or are 'ignore'd."""
    if on_unknown not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_unknown must be 'warn', 'raise' or 'ignore', not {on_unknown!r}")
    tags: list[str] = []
    rest = text
    while True:
        match = _LEADING_TAG.match(rest)
        if not match:
            break
        tags.append(match.group(1).strip())
        rest = rest[match.end() :]
    parsed = TaggedText(tags=tuple(tags), body=rest.lstrip(), text=text)
    if parsed.unknown and on_unknown != "ignore":
        message = (
            f"unknown instruction tag(s) {', '.join(parsed.unknown)}; known tags: {', '.join(KNOWN_TAGS)}"
        )
        if on_unknown == "raise":
            raise TagError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return parsed


def friendly_to_tag(family: TagFamily, value: str) -> str:
    """Map a friendly option value (or an already-valid tag of that family) to its tag."""
    if KNOWN_TAGS.get(value) is family:
        return value
    key = value.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    tag = FRIENDLY[family].get(key)
    if tag is None:
        choices = sorted(set(FRIENDLY[family]) | {t for t, f in KNOWN_TAGS.items() if f is family})
        raise TagError(f"unknown {family.value} {value!r}; choose one of: {', '.join(choices)}")
    return tag


def build_tagged_text(
    text: str,
    *,
    style: str | None = None,
    emotion: str | None = None,
    dialect: str | None = None,
    language: str | None = None,
    speed: str | None = None,
) -> str:
    """Prefix `text` with tags for the friendly options, music style first (it selects the prompt)."""
    options = {"style": style, "emotion": emotion, "dialect": dialect, "language": language, "speed": speed}
    prefix = "".join(
        f"({friendly_to_tag(OPTION_FAMILY[name], value)})" for name, value in options.items() if value
    )
    return prefix + text
