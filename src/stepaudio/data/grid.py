"""The instruction grid: voices x emotions x dialects x speeds x styles -> one cell per combination.

Each cell carries its Step tags (music style first, because the first tag selects the TTS prompt and the
vocoder; then emotion, dialect, speed) and the `SpeechInstructions` that ask an engine for exactly those
tags, strictly, so an engine that cannot honour a cell says so (TagError) and the generator skips it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stepaudio.engines.base import SpeechInstructions
from stepaudio.errors import TagError
from stepaudio.text.tags import TagFamily, friendly_to_tag

DEFAULT_VOICE = "default"
# Values that mean "no tag of this family" in a grid axis.
NONE_VALUES = frozenset({"", "none", "neutral", "normal", "default", "-"})
_FAMILY_ORDER = (
    ("style", TagFamily.MUSIC), ("emotion", TagFamily.EMOTION),
    ("dialect", TagFamily.LANGUAGE), ("speed", TagFamily.SPEED),
)


@dataclass(frozen=True)
class GridSpec:
    """The axes as the user wrote them (friendly names or tags); an empty axis means 'none' only."""

    voices: tuple[str, ...] = ()
    emotions: tuple[str, ...] = ()
    dialects: tuple[str, ...] = ()
    speeds: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        return {"voices": list(self.voices), "emotions": list(self.emotions), "dialects": list(self.dialects),
                "speeds": list(self.speeds), "styles": list(self.styles)}


@dataclass(frozen=True)
class GridCell:
    """One combination: the voice to ask for (None = the engine's default) and the Step tags."""

    voice: str | None
    tags: tuple[str, ...]

    @property
    def voice_label(self) -> str:
        """The speaker name a row records."""
        return self.voice or DEFAULT_VOICE

    @property
    def key(self) -> str:
        return self.voice_label + "".join(f"({tag})" for tag in self.tags)

    def instructions(self) -> SpeechInstructions:
        return SpeechInstructions(tags=self.tags, strict=True)


def parse_axis(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """`"happy,sad"` or `["happy", "sad,none"]` -> ("happy", "sad", "none"), whitespace trimmed."""
    if values is None:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


def expand_grid(spec: GridSpec) -> list[GridCell]:
    """Every distinct cell of the grid, in axis order; an unknown value is a TagError naming it."""
    voices: list[str | None] = [None if v.lower() in NONE_VALUES else v for v in spec.voices] or [None]
    axes = {"style": spec.styles, "emotion": spec.emotions, "dialect": spec.dialects, "speed": spec.speeds}
    tag_axes = [_tag_axis(family, axes[name]) for name, family in _FAMILY_ORDER]
    cells: dict[tuple[str | None, tuple[str, ...]], GridCell] = {}
    for voice in dict.fromkeys(voices):
        for combination in itertools.product(*tag_axes):
            tags = tuple(tag for tag in combination if tag is not None)
            cells.setdefault((voice, tags), GridCell(voice, tags))
    return list(cells.values())


def _tag_axis(family: TagFamily, values: Sequence[str]) -> list[str | None]:
    out: list[str | None] = []
    for value in values or ("none",):
        if value.strip().lower() in NONE_VALUES:
            out.append(None)
            continue
        try:
            out.append(friendly_to_tag(family, value))
        except TagError as exc:
            raise TagError(f"grid: {exc}") from exc
    return list(dict.fromkeys(out))
