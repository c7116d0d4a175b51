"""What the lite voices can do with Step's instructions: speed, pitch, volume and a language or dialect voice.

Emotions, RAP and humming need the Step TTS model; here they are reported (TagError when `strict`, else a
warning that names them), never dropped silently.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from stepaudio.audio.stretch import MAX_SPEED, MIN_SPEED
from stepaudio.engines.base import SpeechInstructions
from stepaudio.errors import TagError
from stepaudio.text.tags import KNOWN_TAGS, TagFamily, friendly_to_tag

SPEED_FACTORS = {"慢速1": 0.8, "慢速2": 0.65, "快速1": 1.25, "快速2": 1.5}
# language tag -> lite voice. Sichuanese has no voice here: Mandarin, with a warning.
LANGUAGE_VOICES = {"中文": "cmn", "英文": "joe", "韩语": "ko", "日语": "ja", "粤语": "yue", "广东话": "yue",
                   "四川话": "cmn"}
APPROXIMATED = {"四川话": "Sichuanese is spoken with the Mandarin voice"}


@dataclass(frozen=True)
class SpeechPlan:
    """Resolved controls for one synthesis."""

    speed: float = 1.0
    pitch: float = 0.0  # semitones
    volume: float = 1.0
    voice: str | None = None  # from a language tag; None = pick per sentence from the text


def plan_speech(instructions: SpeechInstructions | None, text_tags: tuple[str, ...] = ()) -> SpeechPlan:
    """Combine `instructions` with the tags that led the text; raise or warn for what cannot be applied."""
    ins = instructions or SpeechInstructions()
    tags = list(text_tags) + list(ins.tags)
    for option_family, value in ((TagFamily.EMOTION, ins.emotion), (TagFamily.LANGUAGE, ins.dialect),
                                 (TagFamily.MUSIC, ins.style)):
        if value:
            tags.append(friendly_to_tag(option_family, value))
    speed = 1.0
    if isinstance(ins.speed, int | float) and not isinstance(ins.speed, bool):
        speed = float(ins.speed)
    elif isinstance(ins.speed, str) and ins.speed:
        tags.append(friendly_to_tag(TagFamily.SPEED, ins.speed))
    voice: str | None = None
    unsupported: list[str] = []
    notes: list[str] = []
    for tag in tags:
        family = KNOWN_TAGS.get(tag)
        if family is TagFamily.SPEED:
            speed *= SPEED_FACTORS[tag]
        elif family is TagFamily.LANGUAGE:
            voice = LANGUAGE_VOICES[tag]
            if tag in APPROXIMATED:
                notes.append(APPROXIMATED[tag])
        else:  # emotion, music, or a tag the lite voices do not know
            unsupported.append(tag)
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise TagError(f"the speed factor {speed:g} (with the speed tags applied) is outside "
                       f"{MIN_SPEED:g}..{MAX_SPEED:g}")
    _report(unsupported, notes, ins.strict)
    return SpeechPlan(speed=speed, pitch=float(ins.pitch or 0.0), volume=float(ins.volume or 1.0), voice=voice)


def _report(unsupported: list[str], notes: list[str], strict: bool) -> None:
    if unsupported:
        message = (
            f"the lite engine cannot apply {', '.join(dict.fromkeys(unsupported))} (emotion, RAP and humming need "
            "the Step TTS model: --engine step); speed, pitch, volume and language/dialect voices are supported"
        )
        if strict:
            raise TagError(message)
        warnings.warn(message + "; speaking without them", UserWarning, stacklevel=3)
    if notes:
        message = "; ".join(notes)
        if strict:
            raise TagError(f"the lite engine only approximates this: {message}")
        warnings.warn(message, UserWarning, stacklevel=3)
