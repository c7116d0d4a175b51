"""The published /openapi.json tells the truth: error statuses with their envelope, the server's own limits,
the refusals it can state, and a schemathesis run (every check) against a live server that finds nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepaudio.engines.base import Abilities, Engine
from stepaudio.errors import TagError
from stepaudio.server.api_schema import openapi_document
from stepaudio.server.app import create_app
from stepaudio.server.audio_out import available_formats
from stepaudio.server.chat_convert import base64_chars
from stepaudio.server.instructions import speech_instructions
from stepaudio.server.schemas import SpeechRequest
from stepaudio.server.settings import ServerSettings
from stepaudio.store.voices import VoiceStore, VoiceStoreError, validate_name, validate_transcript

from .conftest import tiny_engine

jsonschema_rs = pytest.importorskip("jsonschema_rs")
pytest.importorskip("schemathesis")

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
ROUTES = {"GET /v1/models", "GET /v1/models/{model_id}", "GET /health", "POST /v1/audio/speech",
          "POST /v1/audio/transcriptions", "POST /v1/chat/completions", "POST /v1/voices", "GET /v1/voices",
          "GET /v1/voices/{voice_id}", "DELETE /v1/voices/{voice_id}"}
API_KEY = "st-key"
FUZZ_SETTINGS = ServerSettings(api_key=API_KEY, max_upload_bytes=200_000, max_input_chars=200, max_chat_messages=8,
                               max_chat_text_chars=5000, max_new_tokens=16, max_voice_seconds=5.0, idle_timeout_s=5.0)
# Examples per operation and phase; with the coverage and stateful phases the run makes well over 2,000 cases.
MAX_EXAMPLES = 160
MIN_CASES = 2000


def document(tmp_path: Path, settings: ServerSettings | None = None, engine: Engine | None = None) -> dict[str, Any]:
    settings = settings or ServerSettings()
    store = VoiceStore(tmp_path / "voices", max_seconds=settings.max_voice_seconds)
    try:
        app = create_app(engine or tiny_engine(), settings, store)
        return openapi_document(app, app.state.context)
    finally:
        store.close()


def request_schema(doc: dict[str, Any], path: str, media: str = "application/json") -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"][media]["schema"]
    return schema


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON-schema validator of `schema` whose $refs resolve in the document."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


def test_every_route_and_error_is_documented(tmp_path: Path) -> None:
    doc = document(tmp_path)
    operations = {f"{method.upper()} {path}": op for path, item in doc["paths"].items() for method, op in item.items()}
    assert set(operations) >= ROUTES
    for label, operation in operations.items():
        errors = {int(code) for code in operation["responses"] if int(code) >= 400}
        assert {400, 403, 500} <= errors, label  # Host, Origin, unexpected
        for code in errors:
            body = operation["responses"][str(code)]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorResponse"}, (label, code)
        if label.startswith("POST"):
            assert {408, 413, 415, 422} <= errors, label
        assert "security" not in operation and 401 not in errors  # no API key configured
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert operations["GET /v1/voices/{voice_id}"]["responses"].keys() >= {"404"}
    assert operations["POST /v1/voices"]["responses"].keys() >= {"409", "503"}
    assert "Retry-After" in operations["POST /v1/audio/speech"]["responses"]["503"]["headers"]


def test_operations_the_engine_refuses_are_left_out(tmp_path: Path) -> None:
    """The tiny engine clones but cannot blend; without cloning, registering a voice is refused too (400)."""
    assert "/v1/voices/design" not in document(tmp_path)["paths"]
    plain = tiny_engine()
    plain = Engine(plain.name, plain.transcriber, plain.chat, plain.synthesizer, Abilities(clones_voices=False))
    paths = document(tmp_path, engine=plain)["paths"]
    assert "post" not in paths["/v1/voices"] and "get" in paths["/v1/voices"]


def test_api_key_is_declared_where_it_is_asked(tmp_path: Path) -> None:
    doc = document(tmp_path, ServerSettings(api_key="k"))
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKeyHeader"}
    assert "security" not in doc["paths"]["/health"]["get"]  # probes need no key
    speech = doc["paths"]["/v1/audio/speech"]["post"]
    assert speech["security"] and "WWW-Authenticate" in speech["responses"]["401"]["headers"]


@pytest.mark.parametrize("settings", [ServerSettings(), FUZZ_SETTINGS])
def test_limits_follow_the_settings(tmp_path: Path, settings: ServerSettings) -> None:
    schemas = document(tmp_path, settings)["components"]["schemas"]
    assert schemas["SpeechRequest"]["properties"]["input"]["maxLength"] == settings.max_input_chars
    speed = schemas["SpeechRequest"]["properties"]["speed"]
    assert (speed["minimum"], speed["maximum"]) == (0.25, 4.0)
    assert schemas["ChatRequest"]["properties"]["messages"]["maxItems"] == settings.max_chat_messages
    assert schemas["TextPart"]["properties"]["text"]["maxLength"] == settings.max_chat_text_chars
    data = schemas["InputAudio"]["properties"]["data"]
    assert data["maxLength"] == base64_chars(settings.max_upload_bytes) and data["format"] == "audio-base64"
    assert schemas["SpeechRequest"]["properties"]["response_format"]["enum"] == [
        f for f in ("mp3", "opus", "aac", "flac", "wav", "pcm") if f in available_formats()]


def test_engine_abilities_shape_the_forms(tmp_path: Path) -> None:
    doc = document(tmp_path)
    form = request_schema(doc, "/v1/audio/transcriptions", "multipart/form-data")
    assert form["properties"]["timestamp_granularities[]"]["items"]["enum"] == ["segment"]  # no word timing here
    assert all({"type": "null"} not in prop.get("anyOf", []) for prop in form["properties"].values())
    encoding = doc["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert encoding["encoding"]["file"]["contentType"].startswith("audio/wav")


@pytest.mark.parametrize(("body", "valid"), [
    ({"input": "hi", "stream_format": "sse", "response_format": "wav"}, True),
    ({"input": "hi", "stream_format": "sse"}, False),  # sse needs pcm or wav; the default is mp3
    ({"input": "(高兴1) hi", "strict": True, "instructions": "happy, slow", "emotion": "sad"}, True),
    ({"input": "(cheerful) hi", "strict": True}, False),
    ({"input": "(cheerful) hi"}, True),
    ({"input": "hi", "strict": True, "instructions": "happy bored"}, False),
    ({"input": "hi", "strict": True, "dialect": "9"}, False),
])
def test_speech_refusals_are_in_the_schema(tmp_path: Path, body: dict[str, Any], valid: bool) -> None:
    doc = document(tmp_path)
    assert validator(doc, request_schema(doc, "/v1/audio/speech")).is_valid(body) is valid
    if body.get("strict"):  # and the server refuses exactly these
        try:
            speech_instructions(SpeechRequest.model_validate(body))
        except TagError:
            assert not valid
        else:
            assert valid


@pytest.mark.parametrize(("body", "valid"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, True),
    ({"messages": [{"role": "system", "content": "be brief"}]}, False),  # no turn to answer
    ({"messages": [{"role": "tool", "content": "sunny"}]}, False),  # no tool_call_id
    ({"messages": [{"role": "assistant", "content": [{"type": "input_audio", "input_audio": {"data": ""}}]}]}, False),
    ({"messages": [{"role": "user", "content": "hi"}], "audio": {"voice": "tone"}}, False),  # audio without modality
    ({"messages": [{"role": "user", "content": "hi"}], "modalities": ["text", "audio"]}, False),  # modality, no audio
    ({"messages": [{"role": "user", "content": "hi"}], "modalities": ["audio"], "audio": {"voice": "tone"}}, True),
    ({"messages": [{"role": "user", "content": "hi"}], "modalities": ["audio"], "audio": {"voice": "tone"},
      "stream": True}, False),  # streamed audio is pcm16
    ({"messages": [{"role": "user", "content": "hi"}], "seed": True}, False),
])
def test_chat_refusals_are_in_the_schema(tmp_path: Path, body: dict[str, Any], valid: bool) -> None:
    doc = document(tmp_path)
    assert validator(doc, request_schema(doc, "/v1/chat/completions")).is_valid(body) is valid


NAMES = ["Grace", " Grace ", "", "   ", "a\tb", "\x1cGrace\x1f", "zero\u200bwidth", "\ue000private", "é字😍",
         "voice_" + "0" * 24, " voice_" + "a" * 24 + " ", "voice_x", "-]^\\[", "x" * 64]
TRANSCRIPTS = ["a tone", "", "  ", "line\nbreak\ttab", "bell\x07", "\x0b padded \x0c", "\r\n", "é字"]


def test_store_rules_are_in_the_voice_form(tmp_path: Path) -> None:
    """The name and transcript patterns refuse exactly what the store refuses, read by a Rust regex engine
    (jsonschema_rs) and by Python's."""
    properties = request_schema(document(tmp_path), "/v1/voices", "multipart/form-data")["properties"]
    for field, samples, check in (("name", NAMES, validate_name), ("transcript", TRANSCRIPTS, validate_transcript)):
        schema = properties[field]
        rust = jsonschema_rs.validator_for(schema)
        for text in samples:
            try:
                check(text) if text.strip() or field == "name" else None
                accepted = True
            except VoiceStoreError:
                accepted = False
            python = bool(re.search(schema["pattern"], text)) and not re.search(
                schema.get("not", {}).get("pattern", "(?!)"), text)
            assert rust.is_valid(text) is accepted and python is accepted, (field, text)


def test_405_lists_every_method_of_the_path(server_factory: Any) -> None:
    server = server_factory(ServerSettings())
    response = httpx.request("PUT", server.url + "/v1/voices/voice_" + "0" * 24)
    assert response.status_code == 405 and response.headers["allow"] == "DELETE, GET"
    assert response.json()["error"]["message"].startswith("PUT is not allowed")
    assert httpx.options(server.url + "/v1/audio/speech").headers["allow"] == "POST"


SCHEMATHESIS_CONFIG = """
# 413 is this server's refusal of a request over a size or count limit (the schema states those limits as
# maxLength and maxItems): a rejection like 400 or 422, which the default list of this check leaves out.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
"""


def test_schemathesis_finds_nothing(server_factory: Any, tmp_path: Path) -> None:
    """Every check, every phase (examples, coverage, fuzzing, stateful), a fixed seed; 0 failures."""
    server = server_factory(FUZZ_SETTINGS)
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
               f"{server.url}/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "1",
               "--workers", "1", "--header", f"Authorization: Bearer {API_KEY}", "--request-timeout", "30",
               "--report", "json", "--report-json-path", str(report)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-30_000:] + result.stderr[-5_000:]
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    assert summary["complete"] and not summary["failures"] and not summary["errors"], summary
    assert cases["generated"] >= MIN_CASES and cases["with_failures"] == cases["errored"] == 0, cases
    assert set(summary["phases"]) >= {"coverage", "fuzzing", "stateful"}, summary["phases"]
