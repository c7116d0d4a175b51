"""POST /v1/voices/design: a new voice designed as a weighted blend of the engine's built-in voices.

Named for what it is: the result mixes the timbres of built-in voices (the lite engine's Kokoro voices); it is
not a clone of anyone's voice and needs no recording. The blend is stored in the voice store under its name and
is then usable wherever a voice is: speech, chat audio and realtime sessions (`voice` = its id or name).
"""

from __future__ import annotations

import math
from typing import Literal, Protocol, runtime_checkable

from fastapi import APIRouter
from pydantic import BaseModel, Field

from stepaudio.server.context import Context
from stepaudio.server.errors import ApiError, error_responses
from stepaudio.server.streaming import run_blocking
from stepaudio.store.voices import MAX_NAME_CHARS, StoredVoice

router = APIRouter(tags=["voices"])
MAX_PARTS = 8


@runtime_checkable
class Blender(Protocol):
    """A synthesizer that speaks blends (the engine declares `designs_voices`) names the voices it can mix."""

    def blendable_voices(self) -> list[str]: ...


class BlendPart(BaseModel):
    voice: str = Field(min_length=1, max_length=64, description="a built-in voice, e.g. zh-yunjian")
    weight: float = Field(gt=0, le=100, description="relative weight; the weights are normalised to sum to 1")


class VoiceDesignRequest(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    blend: list[BlendPart] = Field(min_length=1, max_length=MAX_PARTS)


class DesignedVoice(BaseModel):
    id: str
    object: Literal["audio.voice"] = "audio.voice"
    name: str
    type: Literal["blend"] = "blend"
    created_at: int
    blend: list[BlendPart]


def designed(voice: StoredVoice) -> DesignedVoice:
    parts = []
    for item in (voice.blend or "").split("+"):
        name, _, weight = item.partition("*")
        parts.append(BlendPart(voice=name, weight=float(weight or 1)))
    return DesignedVoice(id=voice.id, name=voice.name, created_at=voice.created_at, blend=parts)


@router.post("/v1/voices/design", response_model=DesignedVoice, status_code=201,
             responses=error_responses(400, 409, 503))
async def design_voice(body: VoiceDesignRequest, ctx: Context) -> DesignedVoice:
    """Store a blend of built-in voices as a new named voice (not a clone)."""
    ctx.require_design()
    synthesizer = ctx.synthesizer()
    if not isinstance(synthesizer, Blender):
        raise ApiError(400, f"the {ctx.engine.name} engine cannot blend voices", code="voice_design_unsupported")
    known = await run_blocking(synthesizer.blendable_voices)
    unknown = sorted({part.voice for part in body.blend} - set(known))
    if unknown:
        raise ApiError(400, f"not built-in voices that blend: {', '.join(unknown)}; these blend: "
                       f"{', '.join(known) or '(none installed)'}", code="voice_not_found", param="blend")
    total = sum(part.weight for part in body.blend)
    if not math.isfinite(total) or total <= 0:
        raise ApiError(400, "the blend's weights must add up to a positive number", param="blend")
    formula = "+".join(f"{part.voice}*{part.weight / total:.4g}" for part in body.blend)
    return designed(await run_blocking(ctx.store.add_blend, body.name, formula))
