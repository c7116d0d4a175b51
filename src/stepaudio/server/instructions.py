"""Turning the speech request's `instructions`, extension fields and in-text tags into SpeechInstructions.

`instructions` may hold raw tags (`(高兴1)(慢速1)`) and friendly words (`happy, slow, sichuanese`). Other
words are free text this engine cannot follow: ignored, or a 400 when `strict` is set. Raw tags in the
input text are left for the engine and checked here only in strict mode.
"""

from __future__ import annotations

import re
from typing import Any

from stepaudio.engines.base import SpeechInstructions
from stepaudio.errors import TagError
from stepaudio.server.schemas import SpeechRequest
from stepaudio.text.tags import FRIENDLY, KNOWN_TAGS, OPTION_FAMILY, TagFamily, friendly_to_tag, parse_tags

_FIELD_OF = {TagFamily.EMOTION: "emotion", TagFamily.LANGUAGE: "dialect", TagFamily.MUSIC: "style",
             TagFamily.SPEED: "speed"}
_WORDS = re.compile(r"[\s,;:.!?，。；：！？]+")
# Python's `\s` spelled out, so that schema validators (which read `\s` as Unicode White_Space) agree with it.
PY_SPACE = r"[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


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


def strict_rule() -> dict[str, Any]:
    """What `strict` refuses, as a JSON-schema rule of the speech request: with `strict`, the leading tags of
    `input` are known tags, `instructions` holds only known tags and friendly words, `tags` only known tags,
    and `emotion`, `dialect` and `style` name a value of their family (in the canonical spelling)."""
    known = "|".join(re.escape(tag) for tag in KNOWN_TAGS)
    tag = rf"[(（]{PY_SPACE}*(?:{known}){PY_SPACE}*[)）]"
    separator = _WORDS.pattern.replace("\\s", PY_SPACE[1:-1]).removesuffix("+")
    words = sorted({key for table in FRIENDLY.values() for key in table} | set(KNOWN_TAGS), key=len, reverse=True)
    word = "(?:" + "|".join(re.escape(w) for w in words) + ")"
    # After the known leading tags, `input` must not open another complete (so unknown) tag.
    untagged = rf"{PY_SPACE}*(?:$|[^(（{PY_SPACE[1:-1]}]|[(（][^()（）]*(?:$|[(（]))"
    options = {name: sorted({*FRIENDLY[family], *(t for t, f in KNOWN_TAGS.items() if f is family), ""})
               for name, family in OPTION_FAMILY.items() if name in ("emotion", "dialect", "style")}
    properties: dict[str, Any] = {
        "input": {"pattern": rf"^(?:{PY_SPACE}*{tag})*{untagged}"},
        "instructions": {"anyOf": [{"type": "null"},
                                   {"pattern": rf"^(?:{PY_SPACE}*{tag})*{separator}*(?:{word}{separator}+)*{word}?$"}]},
        "tags": {"anyOf": [{"type": "null"}, {"items": {"enum": list(KNOWN_TAGS)}}]},
        **{name: {"anyOf": [{"type": "null"}, {"enum": values}]} for name, values in options.items()},
    }
    return {"if": {"properties": {"strict": {"const": True}}, "required": ["strict"]},
            "then": {"properties": properties}}
