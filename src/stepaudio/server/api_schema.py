"""The published `/openapi.json`: FastAPI's document of the routes, made true to this server when the app is built.

FastAPI sees the routes and their pydantic models; what it cannot see is added here, from the same values the
server enforces, so that the schema and the server cannot disagree:
- the error envelope (errors.py) on every status an operation can answer: the edge's (guard.py: Host 400,
  Origin 403, API key 401, body 408/413/415), validation's 422, the route's own, and 500;
- the limits of `ServerSettings` (speech input, chat messages and text, input audio bytes);
- the output formats this build can encode and the engine's abilities (word timestamps, who transcribes);
- form fields as multipart carries them: files with their audio media types, no `null`s.
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from stepaudio.engines.base import WordTranscriber
from stepaudio.server.audio_out import MEDIA_TYPES, available_formats
from stepaudio.server.chat_convert import base64_chars
from stepaudio.server.context import ServerContext
from stepaudio.server.edits import document_form, editor_of
from stepaudio.server.errors import STATUS_DESCRIPTIONS, ApiError, error_responses
from stepaudio.server.guard import body_rule, key_required
from stepaudio.server.instructions import PY_SPACE, strict_rule
from stepaudio.server.schemas import (
    AssistantMessage,
    AudioOutput,
    ChatRequest,
    ErrorResponse,
    FunctionCallIn,
    InputAudio,
    SpeechRequest,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from stepaudio.store.voices import NAME_REFUSED, VOICE_ID_PATTERN

# What the audio decoder reads (audio/io.py); uploads are sniffed, not trusted by their declared type.
AUDIO_UPLOAD_TYPES = ("audio/wav", "audio/flac", "audio/mpeg", "audio/ogg")
AUDIO_FORMAT = "audio-base64"  # input_audio.data: a base64 audio file (or raw pcm16), see `InputAudio`
_REF = "#/components/schemas/"
_SECURITY = {"bearer": {"type": "http", "scheme": "bearer", "description": "the server's --api-key"},
             "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}}


@dataclass(frozen=True)
class SchemaLimit:
    """A keyword of one model's property set from a server setting (the tighter of it and the model's own)."""

    model: str
    field: str
    keyword: str  # maxLength or maxItems: applied to the string or array branch of the property
    value: Callable[[ServerContext], int]


def _text_chars(ctx: ServerContext) -> int:
    return ctx.settings.max_chat_text_chars


LIMITS = (
    SchemaLimit(SpeechRequest.__name__, "input", "maxLength", lambda ctx: ctx.settings.max_input_chars),
    SchemaLimit(ChatRequest.__name__, "messages", "maxItems", lambda ctx: ctx.settings.max_chat_messages),
    *(SchemaLimit(model.__name__, "content", "maxLength", _text_chars)
      for model in (SystemMessage, UserMessage, AssistantMessage, ToolMessage)),
    SchemaLimit(TextPart.__name__, "text", "maxLength", _text_chars),
    SchemaLimit(FunctionCallIn.__name__, "arguments", "maxLength", _text_chars),
    SchemaLimit(InputAudio.__name__, "data", "maxLength", lambda ctx: base64_chars(ctx.settings.max_upload_bytes)),
)
_BRANCH_TYPE = {"maxLength": "string", "maxItems": "array"}


def install_openapi(app: FastAPI, context: ServerContext) -> None:
    """Serve `openapi_document` as the app's schema (built on first use, then kept)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app, context)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_document(app: FastAPI, context: ServerContext) -> dict[str, Any]:
    doc = copy.deepcopy(get_openapi(title=app.title, version=app.version, description=app.description,
                                    routes=app.routes))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_component_schemas(ErrorResponse))
    _unoffered(doc, context)
    for path, method, operation in _operations(doc):
        _errors(operation, path, method, context)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for limit in LIMITS:
        _apply_limit(schemas, limit, limit.value(context))
    _formats(doc, schemas)
    schemas[SpeechRequest.__name__]["allOf"].append(strict_rule())
    _input_audio(schemas, context)
    _transcription_form(doc, context)
    if "post" in doc["paths"].get("/v1/voices", {}):
        _voice_form(doc, context)
    if "post" in doc["paths"].get("/v1/audio/edits", {}):
        _edit_form(doc, context)
    if context.settings.api_key:
        doc["components"]["securitySchemes"] = copy.deepcopy(_SECURITY)
    return doc


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def _unoffered(doc: dict[str, Any], context: ServerContext) -> None:
    """Leave out the operations this engine refuses whatever the request (the route's own up-front check says
    so): registering a cloned voice where it cannot clone, designing one where it cannot blend, editing speech
    where it cannot edit."""
    for path, method, check in (("/v1/voices", "post", context.require_cloning),
                                ("/v1/voices/design", "post", context.require_design),
                                ("/v1/audio/edits", "post", lambda: editor_of(context))):
        try:
            check()
        except ApiError:
            doc["paths"].get(path, {}).pop(method, None)
    doc["paths"] = {path: item for path, item in doc["paths"].items() if item}


def _component_schemas(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF + "{model}")
    defs = schema.pop("$defs", {})
    return {**defs, model.__name__: schema}


def _error_object(status: int) -> dict[str, Any]:
    spec = error_responses(status)[status]
    out: dict[str, Any] = {"description": STATUS_DESCRIPTIONS[status],
                           "content": {"application/json": {"schema": {"$ref": _REF + ErrorResponse.__name__}}}}
    if "headers" in spec:
        out["headers"] = copy.deepcopy(spec["headers"])
    return out


def _errors(operation: dict[str, Any], path: str, method: str, context: ServerContext) -> None:
    """Every error status of the operation with the envelope: what the route declared, what the edge adds."""
    settings = context.settings
    statuses = {400, 403, 500}  # Host and Origin checks (guard.py, origin.py), unexpected failures
    if "requestBody" in operation:
        statuses |= {408, 413}  # every body is read with the idle timeout and a size cap
    if body_rule(settings, method, path) is not None:
        statuses.add(415)  # and these routes read one content type
    if key_required(settings, path):
        statuses.add(401)
        operation["security"] = [{name: []} for name in _SECURITY]
    responses = operation.setdefault("responses", {})
    statuses |= {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    for status in sorted(statuses):
        responses[str(status)] = _error_object(status)


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in schema.get("anyOf", [schema]) if isinstance(b, dict)]


def _apply_limit(schemas: dict[str, Any], limit: SchemaLimit, value: int) -> None:
    prop = schemas[limit.model]["properties"][limit.field]  # a KeyError here: a model no longer matches LIMITS
    kind = _BRANCH_TYPE[limit.keyword]
    targets = [b for b in _branches(prop) if b.get("type") == kind]
    if not targets:
        raise KeyError(f"{limit.model}.{limit.field} has no {kind} to limit")
    for branch in targets:
        branch[limit.keyword] = min(branch.get(limit.keyword, value), value)


def _formats(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Only the output formats this build can encode (audio_out.available_formats)."""
    available = available_formats()
    speech = schemas[SpeechRequest.__name__]["properties"]["response_format"]
    speech["enum"] = [f for f in speech["enum"] if f in available]
    chat = schemas[AudioOutput.__name__]["properties"]["format"]
    chat["enum"] = [f for f in chat["enum"] if ("pcm" if f == "pcm16" else f) in available]
    content = doc["paths"]["/v1/audio/speech"]["post"]["responses"]["200"]["content"]
    for fmt, media in MEDIA_TYPES.items():
        if fmt not in available:
            content.pop(media, None)


def _input_audio(schemas: dict[str, Any], context: ServerContext) -> None:
    data = schemas[InputAudio.__name__]["properties"]["data"]
    data["format"] = AUDIO_FORMAT
    data["description"] = (f"base64 of a wav, flac, mp3 or ogg file, or of raw pcm16 (24 kHz mono) with format "
                           f"'pcm16'; all input audio of a request lasts at most "
                           f"{context.settings.max_chat_audio_seconds:g} s")


def _form_schema(doc: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A multipart route's media type object and its (inlined) body schema, with form-shaped fields: multipart
    cannot send null, so an optional field is absent, never null; a file is binary in an audio media type."""
    media = doc["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = media["schema"]["$ref"]
    schema = doc["components"]["schemas"].pop(ref.rsplit("/", 1)[-1])
    media["schema"] = schema
    for name, prop in schema["properties"].items():
        branches = [b for b in _branches(prop) if b.get("type") != "null"]
        if len(branches) == 1 and "anyOf" in prop:
            extra = {k: v for k, v in prop.items() if k != "anyOf"}
            prop.clear()
            prop.update(branches[0] | extra)
        if prop.get("contentMediaType") == "application/octet-stream":
            del prop["contentMediaType"]
            prop["format"] = "binary"
            media.setdefault("encoding", {})[name] = {"contentType": ", ".join(AUDIO_UPLOAD_TYPES)}
    return media, schema


def _transcription_form(doc: dict[str, Any], context: ServerContext) -> None:
    _, schema = _form_schema(doc, "/v1/audio/transcriptions")
    settings = context.settings
    schema["properties"]["file"]["description"] = (
        f"audio: wav, flac, mp3, ogg/opus; at most {settings.max_upload_bytes} bytes and "
        f"{settings.max_transcription_seconds:g} s")
    granularities = schema["properties"]["timestamp_granularities[]"]
    if not isinstance(context.engine.transcriber, WordTranscriber):  # word timestamps are refused (400)
        granularities["items"]["enum"] = ["segment"]
    words = {"properties": {"timestamp_granularities[]": {"contains": {"const": "word"}}},
             "required": ["timestamp_granularities[]"]}
    schema["allOf"] = [{"if": words, "then": {"properties": {"response_format": {"const": "verbose_json"}},
                                              "required": ["response_format"]}}]


def _edit_form(doc: dict[str, Any], context: ServerContext) -> None:
    _, schema = _form_schema(doc, "/v1/audio/edits")
    document_form(schema, context)
    content = doc["paths"]["/v1/audio/edits"]["post"]["responses"]["200"]["content"]
    for fmt, kind in MEDIA_TYPES.items():
        if fmt not in available_formats():
            content.pop(kind, None)


def _voice_form(doc: dict[str, Any], context: ServerContext) -> None:
    _, schema = _form_schema(doc, "/v1/voices")
    store, settings = context.store, context.settings
    for name in ("file", "audio_sample"):
        schema["properties"][name]["description"] = (
            f"prompt audio, {store.min_seconds:g}-{store.max_seconds:g} s, at most "
            f"{min(settings.max_upload_bytes, store.max_bytes)} bytes" + (" (alias of file)" if name != "file" else ""))
    schema["anyOf"] = [{"required": ["file"]}, {"required": ["audio_sample"]}]
    _store_rules(schema["properties"])
    if context.engine.transcriber is None:  # nothing could write the transcript
        schema["required"] = [*schema.get("required", []), "transcript"]
        schema["properties"]["transcript"]["pattern"] = r"\S"


def _store_rules(fields: dict[str, Any]) -> None:
    """The voice store's name and transcript rules (store/voices.py) as patterns. They judge the text stripped of
    Python's whitespace, by Python's Unicode tables, so the classes are spelled out from those tables: a
    validator with other tables (another regex engine, a newer Unicode) reads them the same way."""
    space = PY_SPACE[1:-1]
    control = "".join(_class_range(a, b) for a, b in _ranges(lambda c: unicodedata.category(c) in NAME_REFUSED))
    cc = "\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f"  # Cc but newline and tab
    fields["name"]["pattern"] = f"^{PY_SPACE}*[^{control}{space}](?:[^{control}]*[^{control}{space}])?{PY_SPACE}*$"
    fields["name"]["not"] = {"pattern": f"^{PY_SPACE}*{VOICE_ID_PATTERN.pattern}{PY_SPACE}*$"}
    fields["transcript"]["pattern"] = f"^{PY_SPACE}*(?:[^{cc}{space}](?:[^{cc}]*[^{cc}{space}])?)?{PY_SPACE}*$"


def _ranges(test: Callable[[str], bool]) -> Iterator[tuple[int, int]]:
    """Runs of code points passing `test`, surrogates left out (UTF-8 text cannot carry them)."""
    start = None
    for point in range(0x110000):
        hit = test(chr(point)) and not 0xD800 <= point <= 0xDFFF
        if hit and start is None:
            start = point
        elif not hit and start is not None:
            yield start, point - 1
            start = None
    if start is not None:
        yield start, 0x10FFFF


def _class_range(first: int, last: int) -> str:
    """`first-last` inside a character class, as literal characters (escape syntax beyond the BMP differs
    between regex dialects; a literal does not)."""
    def char(point: int) -> str:
        text = chr(point)
        return "\\" + text if text in "\\]^-[" else text

    return char(first) if first == last else f"{char(first)}-{char(last)}"
