"""POST /v1/audio/edits: edit speech one instruction at a time (Step-Audio-EditX), and GET its edit types.

The request is multipart, as OpenAI's audio uploads are: `file` (the speech), `text` (what it says; the engine's
transcriber writes it when left out, where it has one; denoise and vad need none), `edit` (a type), `option`
(the emotion, style or speed), `new_text` (a paralinguistic edit's text with its tags where they go) and
`iterations` (the edit applied that many times, each output the next input, as the release's `--n-edit-iter`).
The answer is the edited audio in `response_format` (wav by default: edited audio is usually edited again) with
what it now says in `X-Edit-Text` (percent-encoded UTF-8), or with `response_format=json` one JSON object holding
the audio (base64 wav), its text and every step. The server keeps nothing: a chain of edits is the caller's
(the web page keeps its steps, plays them, undoes and downloads). An engine that cannot edit is refused with a
400 before the upload is read.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal, cast, get_args
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from stepaudio.audio.io import Audio, encode_audio
from stepaudio.engines.editx.editor import EditChain, Editor, EditResult
from stepaudio.errors import OptionError
from stepaudio.server.audio_out import MEDIA_TYPES, PCM_RATE, available_formats, check_format, encode
from stepaudio.server.context import Context, ServerContext
from stepaudio.server.errors import ApiError, error_responses
from stepaudio.server.streaming import run_blocking
from stepaudio.server.transcription import read_upload
from stepaudio.text.editx_prompts import EDIT_OPTIONS, EDIT_TYPES, PARALINGUISTIC_TAGS, Edit

router = APIRouter(tags=["audio"])

EditType = Literal["emotion", "style", "vad", "denoise", "paralinguistic", "speed"]  # = EDIT_TYPES (a test checks)
EditFormat = Literal["wav", "mp3", "flac", "opus", "pcm", "json"]
TEXTLESS = ("denoise", "vad")  # edits whose instruction does not quote the audio's text
MAX_ITERATIONS = 5
MAX_EDIT_SECONDS = 30.0  # EditX's limit (its vq06 chunk); the release asks for inputs under 30 s
MIN_EDIT_RATE = 16000  # EditX reads nothing slower: telephone-rate uploads are upsampled to it
TEXT_HEADER = "X-Edit-Text"


class EditStep(BaseModel):
    edit: EditType
    option: str | None = None
    new_text: str | None = None
    text: str = Field(description="what the audio says after this step")
    duration: float = Field(description="seconds of audio after this step")


class EditedAudio(BaseModel):
    data: str = Field(description="base64 of a wav file")
    format: Literal["wav"] = "wav"


class AudioEdit(BaseModel):
    """The `response_format=json` answer: the last step's audio and text, and every step."""

    object: Literal["audio.edit"] = "audio.edit"
    text: str = Field(description="what the edited audio says (the paralinguistic text once one was applied)")
    input_text: str = Field(description="what the input was taken to say: `text`, or its transcript")
    duration: float
    sample_rate: int
    audio: EditedAudio
    steps: list[EditStep]


class EditTypeCard(BaseModel):
    edit: EditType
    options: list[str] = Field(description="the values `option` takes; empty: the edit takes no option")
    needs_text: bool = Field(description="whether the edit needs what the audio says (`text` or a transcript)")
    needs_new_text: bool = Field(description="whether the edit needs `new_text` (paralinguistic)")


class EditTypeList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EditTypeCard] = Field(description="empty when the served engine cannot edit speech")
    paralinguistic_tags: list[str]
    max_iterations: int
    max_seconds: float


def editor_of(ctx: ServerContext) -> Editor:
    """The engine's editor, or a 400 where the engine does not declare and implement speech editing."""
    synthesizer = ctx.engine.synthesizer
    if not ctx.engine.abilities.edits_speech or not isinstance(synthesizer, Editor):
        raise ApiError(400, f"the {ctx.engine.name} engine cannot edit speech: serve --engine editx",
                       code="speech_editing_unsupported", param="edit")
    return synthesizer


def parse_edit(edit_type: str, option: str | None, new_text: str | None) -> Edit:
    """The request's edit as an `Edit`, or a 400 naming the field at fault."""
    if new_text is not None and edit_type != "paralinguistic":
        raise ApiError(400, f"new_text goes with a paralinguistic edit, not a {edit_type} edit",
                       code="invalid_edit", param="new_text")
    try:
        return Edit(edit_type, option, new_text)
    except OptionError as exc:
        param = "new_text" if edit_type == "paralinguistic" and option is None else "option"
        raise ApiError(400, str(exc), code="invalid_edit", param=param) from None


_AUDIO_MEDIA = sorted({MEDIA_TYPES[f] for f in get_args(EditFormat) if f in MEDIA_TYPES})
_HEADERS = {
    TEXT_HEADER: {"schema": {"type": "string"}, "description": "what the edited audio says, percent-encoded UTF-8 "
                  "(decodeURIComponent in a browser, urllib.parse.unquote in Python)"},
    "X-Sample-Rate": {"schema": {"type": "string", "pattern": "^[0-9]+$"},
                      "description": "the audio's sample rate (raw pcm: always 24000)"},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AudioEdit, "content": {media: {} for media in _AUDIO_MEDIA},
          "description": "the edited audio in `response_format`, or with `json` the `AudioEdit` object",
          "headers": _HEADERS},
    **error_responses(400, 413, 503),
}


@router.post("/v1/audio/edits", response_class=Response, responses=_RESPONSES)
async def create_edit(
    ctx: Context,
    file: Annotated[UploadFile, File(description="the speech to edit: wav, flac, mp3, ogg/opus")],
    edit: Annotated[EditType, Form(description="the kind of edit; GET /v1/audio/edits/options lists them")],
    option: Annotated[str | None, Form(max_length=32, description="emotion, style or speed to apply")] = None,
    text: Annotated[str | None, Form(description="what the audio says (transcribed when left out, where the "
                                             "engine can transcribe; denoise and vad need none)")] = None,
    new_text: Annotated[str | None, Form(description="paralinguistic: the text with its tags where they go, e.g. "
                                                 "'so I said [Laughter] no'")] = None,
    iterations: Annotated[int, Form(ge=1, le=MAX_ITERATIONS, description="apply the edit this many times, each "
                                                                         "output the next input")] = 1,
    response_format: Annotated[EditFormat, Form(description="the audio format, or json")] = "wav",
    model: Annotated[str | None, Form(max_length=256, description="accepted; the served engine edits")] = None,
) -> Response:
    """Edit speech with one instruction (`iterations` times, each output the next input). The answer is the edited
    audio in `response_format` with what it now says in the `X-Edit-Text` header (percent-encoded UTF-8), or with
    `json` an `AudioEdit` object (base64 wav, text, every step). The server keeps nothing: to chain edits, send
    each answer back with its text. Engines that cannot edit speech (/health `speech_editing`) answer 400."""
    editor = editor_of(ctx)
    change = parse_edit(edit, option, new_text)
    limit = ctx.settings.max_input_chars
    for name, value in (("text", text), ("new_text", new_text)):
        if value is not None and len(value) > limit:
            raise ApiError(400, f"{name} has {len(value)} characters; at most {limit} are allowed",
                           code="input_too_long", param=name)
    needs_text = edit not in TEXTLESS and not (text or "").strip()
    if needs_text and ctx.engine.transcriber is None:
        raise ApiError(400, f"a {edit} edit needs 'text', what the audio says (the {ctx.engine.name} engine "
                       "cannot transcribe it)", code="missing_text", param="text")
    fmt = "json" if response_format == "json" else check_format(response_format)
    data = await read_upload(file, ctx.settings.max_upload_bytes)
    audio = await ctx.decode_audio(data, MAX_EDIT_SECONDS)
    if audio.sample_rate < MIN_EDIT_RATE:
        audio = await run_blocking(audio.resampled, MIN_EDIT_RATE)
    source_text = (text or "").strip()
    if needs_text:
        source_text = await _transcribe(ctx, audio)
    chain = EditChain.from_audio(editor, audio.samples, audio.sample_rate, source_text)
    async with ctx.gate.hold("synthesizer"):
        for _ in range(iterations):  # one worker call a step: a server stopping stops between steps
            await run_blocking(chain.apply, change)
    steps = list(chain.steps[1:])
    last = steps[-1]
    if fmt == "json":
        body = await run_blocking(_json_body, steps, source_text)
        return JSONResponse(body, headers=_headers(last.text, last.sample_rate))
    encoded = await run_blocking(encode, last.samples, last.sample_rate, fmt)
    return Response(encoded, media_type=MEDIA_TYPES[fmt],
                    headers=_headers(last.text, PCM_RATE if fmt == "pcm" else last.sample_rate))


@router.get("/v1/audio/edits/options", response_model=EditTypeList)
async def list_edit_types(ctx: Context) -> EditTypeList:
    """The edit types and options of POST /v1/audio/edits (none where the engine cannot edit)."""
    try:
        editor_of(ctx)
        types = EDIT_TYPES
    except ApiError:
        types = ()
    cards = [EditTypeCard(edit=cast(EditType, name), options=list(EDIT_OPTIONS[name]), needs_text=name not in TEXTLESS,
                          needs_new_text=name == "paralinguistic") for name in types]
    return EditTypeList(data=cards, paralinguistic_tags=list(PARALINGUISTIC_TAGS), max_iterations=MAX_ITERATIONS,
                        max_seconds=MAX_EDIT_SECONDS)


async def _transcribe(ctx: ServerContext, audio: Audio) -> str:
    transcriber = ctx.transcriber()
    async with ctx.gate.hold("transcriber"):
        heard = (await run_blocking(transcriber.transcribe, audio, None)).text.strip()
    if not heard:
        raise ApiError(400, "no speech was recognised in the audio; send 'text', what it says",
                       code="missing_text", param="text")
    return heard


def _headers(text: str, sample_rate: int) -> dict[str, str]:
    return {TEXT_HEADER: quote(text, safe=""), "X-Sample-Rate": str(sample_rate)}


def _json_body(steps: list[EditResult], input_text: str) -> dict[str, Any]:
    last = steps[-1]
    wav = encode_audio(np.asarray(last.samples, dtype=np.float32), last.sample_rate, "wav")
    cards = [EditStep(edit=cast(EditType, step.edit.edit_type), option=step.edit.option, new_text=step.edit.new_text,
                      text=step.text, duration=round(step.duration, 3)) for step in steps if step.edit is not None]
    return AudioEdit(text=last.text, input_text=input_text, duration=round(last.duration, 3),
                     sample_rate=last.sample_rate, audio=EditedAudio(data=base64.b64encode(wav).decode()),
                     steps=cards).model_dump()


def document_form(schema: dict[str, Any], ctx: ServerContext) -> None:
    """The rules this route enforces, as JSON schema on its (inlined) multipart body: the option each type takes,
    `new_text` only for paralinguistic edits, `text` where nothing could transcribe, the limits and the formats
    this build encodes (api_schema.py calls this when it builds /openapi.json)."""
    props = schema["properties"]
    settings = ctx.settings
    props["file"]["description"] = (f"the speech to edit: wav, flac, mp3, ogg/opus; at most {settings.max_upload_bytes}"
                                    f" bytes and {MAX_EDIT_SECONDS:g} s")
    for name in ("text", "new_text"):
        props[name]["maxLength"] = settings.max_input_chars
    options = sorted({value for values in EDIT_OPTIONS.values() for value in values})
    props["option"]["enum"] = ["", *options]
    props["option"].pop("maxLength", None)
    props["response_format"]["enum"] = [f for f in get_args(EditFormat) if f == "json" or f in available_formats()]
    rules: list[dict[str, Any]] = []
    empty = {"const": ""}  # a form field sent empty is read as left out (FastAPI's multipart rule)
    for name, values in EDIT_OPTIONS.items():
        kind = {"properties": {"edit": {"const": name}}, "required": ["edit"]}
        then: dict[str, Any] = {"required": ["option"], "properties": {"option": {"enum": list(values)}}} if values \
            else {"properties": {"option": empty}}
        if name == "paralinguistic":
            then = {"allOf": [then, {"required": ["new_text"], "properties": {"new_text": {"pattern": r"\S"}}}]}
        else:
            then = {"allOf": [then, {"properties": {"new_text": empty}}]}
        rules.append({"if": kind, "then": then})
    if ctx.engine.transcriber is None:  # nothing could write the text an edit quotes
        needs = {"properties": {"edit": {"enum": [t for t in EDIT_TYPES if t not in TEXTLESS]}}, "required": ["edit"]}
        rules.append({"if": needs, "then": {"required": ["text"], "properties": {"text": {"pattern": r"\S"}}}})
    schema["allOf"] = rules
