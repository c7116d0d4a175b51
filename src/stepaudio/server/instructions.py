"""Turning the speech request's `instructions`, extension fields and in-text tags into SpeechInstructions.

`instructions` may hold raw tags (`(高兴1)(慢速1)`) and friendly words (`happy, slow, sichuanese`). Other
words are free text this engine cannot follow: ignored, or a 400 when `strict` is set. Raw tags in the
input text are left for the engine and checked here only in strict mode.
"""

from __future__ import annotations

import re

from stepaudio.engines.base import SpeechInstructions
from stepaudio.errors import TagError
from stepaudio.server.schemas import SpeechRequest
from stepaudio.text.tags import FRIENDLY, KNOWN_TAGS, OPTION_FAMILY, TagFamily, friendly_to_tag, parse_tags

_FIELD_OF = {TagFamily.EMOTION: "emotion", TagFamily.LANGUAGE: "dialect", TagFamily.MUSIC: "style",
             TagFamily.SPEED: "speed"}
_WORDS = re.compile(r"[\s,;:.!?，。；：！？]+")


def _family_of(word: str) -> TagFamily | None:
    key = word.strip().lower().replace("-", "").replace("_", "")
    for family, table in FRIENDLY.items():
        if key in table:
            return family
    return KNOWN_TAGS.get(word)


def speech_instructions(request: SpeechRequest) -> SpeechInstructions:
    strict = request.strict
    parse_tags(request.input, on_unknown="raise" if strict else "ignore")
    fields: dict[str, str | None] = {"emotion": request.emotion, "dialect": request.dialect,
                                     "style": request.style, "speed": None}
    tags = list(request.tags or [])
    if request.instructions:
        parsed = parse_tags(request.instructions, on_unknown="ignore")
        tags += parsed.tags
        unknown_words = []
        for word in filter(None, _WORDS.split(parsed.body)):
            family = _family_of(word)
            if family is not None:
                fields[_FIELD_OF[family]] = fields[_FIELD_OF[family]] or word
            else:
                unknown_words.append(word)
        if strict and unknown_words:
            raise TagError(f"this engine cannot follow the instructions {' '.join(unknown_words)!r}; use "
                           f"instruction tags ({', '.join(KNOWN_TAGS)}) or friendly words such as happy, sad, "
                           "slow, fast, rap, sichuanese, cantonese")
    if strict:
        unknown = [tag for tag in tags if tag not in KNOWN_TAGS]
        if unknown:
            raise TagError(f"unknown instruction tag(s) {', '.join(unknown)}; known tags: {', '.join(KNOWN_TAGS)}")
        for name, value in fields.items():
            if value:
                friendly_to_tag(OPTION_FAMILY[name], value)
    speed: str | float | None = request.speed if request.speed != 1.0 else fields["speed"]
    return SpeechInstructions(emotion=fields["emotion"], dialect=fields["dialect"], speed=speed,
                              style=fields["style"], pitch=request.pitch, volume=request.volume,
                              tags=tuple(tags), strict=strict)
