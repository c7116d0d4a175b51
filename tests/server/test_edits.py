"""POST /v1/audio/edits and GET /v1/audio/edits/options: a fake editor for the route's rules (refusals up front, the
text header, the json variant, iterations, transcription, the schema that states exactly what the route refuses,
schemathesis over the operation), then the tiny EditX release folder end to end: a voice registered through the
store with the official openai client speaks through /v1/audio/speech, and a three-step edit chain."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args
from urllib.parse import unquote

import httpx
import numpy as np
import pytest
import soundfile as sf

from stepaudio.audio.io import resample
from stepaudio.engines.base import Abilities, Engine
from stepaudio.engines.editx.editor import Editor, EditResult
from stepaudio.server.api_schema import openapi_document
from stepaudio.server.app import create_app
from stepaudio.server.edits import MAX_ITERATIONS, EditType, EditTypeList
from stepaudio.server.settings import ServerSettings
from stepaudio.store.voices import VoiceStore
from stepaudio.text.editx_prompts import EDIT_OPTIONS, EDIT_TYPES, Edit

from .conftest import DurationTranscriber, ToneSynthesizer, tiny_engine

EDIT_RATE = 24000
SETTINGS = ServerSettings(max_upload_bytes=400_000, max_input_chars=200, idle_timeout_s=5.0)


@dataclass
class ToneEditor(ToneSynthesizer):
    """Edits by rule: the audio at 24 kHz, 0.8 times as loud; `faster` halves it, `slower` doubles it."""

    edits: list[tuple[int, str, Edit]] = field(default_factory=list)

    def edit(self, samples: np.ndarray, sample_rate: int, audio_text: str, edit: Edit,
             cancel: Any = None) -> EditResult:
        self.edits.append((sample_rate, audio_text, edit))
        out = resample(np.asarray(samples, dtype=np.float32).reshape(-1), sample_rate, EDIT_RATE) * 0.8
        if edit.option in ("faster", "slower"):
            out = out[::2] if edit.option == "faster" else np.repeat(out, 2)
        return EditResult(out.astype(np.float32), EDIT_RATE, edit.result_text(audio_text), edit, edit.label)


def editing_engine(transcribes: bool = True) -> Engine:
    return Engine("tiny-edit", DurationTranscriber() if transcribes else None, None, ToneEditor(),
                  Abilities(clones_voices=True, edits_speech=True))


def editor(server: Any) -> ToneEditor:
    synthesizer = server.engine.synthesizer
    assert isinstance(synthesizer, ToneEditor)
    return synthesizer


@pytest.fixture(scope="module")
def edit_server(server_factory: Any) -> Any:
    return server_factory(SETTINGS, editing_engine())


@pytest.fixture(scope="module")
def textless_server(server_factory: Any) -> Any:
    return server_factory(SETTINGS, editing_engine(transcribes=False))


def post_edit(server: Any, audio: bytes, **fields: Any) -> httpx.Response:
    data = {name: str(value) for name, value in fields.items() if value is not None}
    return httpx.post(server.url + "/v1/audio/edits", data=data, files={"file": ("in.wav", audio, "audio/wav")},
                      timeout=60)


def wav_info(data: bytes) -> tuple[int, float]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    return rate, len(samples) / rate


def test_an_edit_returns_the_audio_and_what_it_says(edit_server: Any, tone: Any) -> None:
    response = post_edit(edit_server, tone(1.0), edit="emotion", option="happy", text="hello there")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert unquote(response.headers["x-edit-text"]) == "hello there"
    assert response.headers["x-sample-rate"] == str(EDIT_RATE)
    assert wav_info(response.content) == (EDIT_RATE, pytest.approx(1.0, abs=0.01))
    rate, text, edit = editor(edit_server).edits[-1]
    assert (rate, text, edit) == (16000, "hello there", Edit("emotion", "happy"))
    raw = post_edit(edit_server, tone(1.0), edit="denoise", response_format="pcm")  # no text needed
    assert raw.status_code == 200 and raw.headers["content-type"] == "audio/pcm"
    assert raw.headers["x-sample-rate"] == "24000" and len(raw.content) == pytest.approx(2 * 24000, abs=4)


def test_paralinguistic_text_travels_in_the_header(edit_server: Any, tone: Any) -> None:
    new = "我觉得[Uhm]这个计划可行。 100% & more"
    response = post_edit(edit_server, tone(0.8), edit="paralinguistic", text="我觉得这个计划可行。", new_text=new)
    assert response.status_code == 200, response.text
    assert response.headers["x-edit-text"].isascii() and unquote(response.headers["x-edit-text"]) == new
    assert editor(edit_server).edits[-1][1:] == ("我觉得这个计划可行。", Edit("paralinguistic", new_text=new))


def test_iterations_chain_and_the_json_variant(edit_server: Any, tone: Any) -> None:
    response = post_edit(edit_server, tone(1.6, rate=8000), edit="speed", option="faster", text="quick",
                         iterations=3, response_format="json")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "audio.edit" and body["text"] == body["input_text"] == "quick"
    assert [s["duration"] for s in body["steps"]] == pytest.approx([0.8, 0.4, 0.2], abs=0.01)
    assert [(s["edit"], s["option"]) for s in body["steps"]] == [("speed", "faster")] * 3
    assert body["audio"]["format"] == "wav" and body["sample_rate"] == EDIT_RATE
    assert wav_info(base64.b64decode(body["audio"]["data"])) == (EDIT_RATE, pytest.approx(0.2, abs=0.01))
    rates = [rate for rate, _, _ in editor(edit_server).edits[-3:]]
    assert rates == [16000, EDIT_RATE, EDIT_RATE]  # 8 kHz upsampled to 16 kHz; each output the next input


def test_the_text_is_transcribed_when_left_out(edit_server: Any, tone: Any) -> None:
    response = post_edit(edit_server, tone(2.0), edit="style", option="whisper", response_format="json")
    assert response.status_code == 200, response.text
    assert response.json()["input_text"] == "heard 2.0 seconds"
    assert editor(edit_server).edits[-1][1] == "heard 2.0 seconds"


@pytest.mark.parametrize(("fields", "status", "code", "param"), [
    ({"edit": "emotion", "option": "ecstatic", "text": "x"}, 400, "invalid_edit", "option"),
    ({"edit": "emotion", "text": "x"}, 400, "invalid_edit", "option"),
    ({"edit": "paralinguistic", "text": "x"}, 400, "invalid_edit", "new_text"),
    ({"edit": "paralinguistic", "text": "x", "new_text": "  "}, 400, "invalid_edit", "new_text"),
    ({"edit": "style", "option": "whisper", "text": "x", "new_text": "y"}, 400, "invalid_edit", "new_text"),
    ({"edit": "emotion", "option": "sad", "text": "x" * 201}, 400, "input_too_long", "text"),
    ({"edit": "emotion", "option": "sad", "text": "x", "response_format": "aac"}, 422, "invalid_value",
     "response_format"),
    ({"edit": "emotion", "option": "sad", "text": "x", "iterations": MAX_ITERATIONS + 1}, 422, "invalid_value",
     "iterations"),
    ({"edit": "louder", "text": "x"}, 422, "invalid_value", "edit"),
])
def test_refusals_name_the_field(edit_server: Any, tone: Any, fields: dict[str, Any], status: int, code: str,
                                 param: str) -> None:
    before = len(editor(edit_server).edits)
    response = post_edit(edit_server, tone(1.0), **fields)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    assert len(editor(edit_server).edits) == before


def test_audio_limits(edit_server: Any, tone: Any) -> None:
    too_long = post_edit(edit_server, tone(31.0, rate=8000, fmt="flac"), edit="vad")
    assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "audio_too_long"
    garbage = post_edit(edit_server, b"RIFF not audio at all", edit="vad")
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_audio"


def test_engines_that_cannot_edit_refuse_before_any_work(server_factory: Any, tone: Any) -> None:
    """The tiny engine speaks and clones but does not edit: a 400 before the (unreadable) upload is looked at, no
    capability on /health, no types on the options list, no operation in /openapi.json."""
    server = server_factory(SETTINGS)
    response = post_edit(server, b"not audio", edit="emotion", option="happy", text="x")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "speech_editing_unsupported"
    assert httpx.get(server.url + "/health").json()["capabilities"]["speech_editing"] is False
    assert EditTypeList.model_validate(httpx.get(server.url + "/v1/audio/edits/options").json()).data == []
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert "/v1/audio/edits" not in paths and "get" in paths["/v1/audio/edits/options"]
    # declaring the ability is not enough: the synthesizer must be an Editor too
    liar = dataclasses.replace(tiny_engine(), abilities=Abilities(edits_speech=True))
    assert not isinstance(liar.synthesizer, Editor)
    refused = post_edit(server_factory(SETTINGS, liar), tone(1.0), edit="vad")
    assert refused.json()["error"]["code"] == "speech_editing_unsupported"


def test_health_and_the_options_list(edit_server: Any) -> None:
    assert httpx.get(edit_server.url + "/health").json()["capabilities"]["speech_editing"] is True
    listing = EditTypeList.model_validate(httpx.get(edit_server.url + "/v1/audio/edits/options").json())
    assert [card.edit for card in listing.data] == list(EDIT_TYPES) == list(get_args(EditType))
    assert {card.edit: tuple(card.options) for card in listing.data} == dict(EDIT_OPTIONS)
    assert [card.edit for card in listing.data if not card.needs_text] == ["vad", "denoise"]
    assert [card.edit for card in listing.data if card.needs_new_text] == ["paralinguistic"]
    assert listing.max_iterations == MAX_ITERATIONS and "[Laughter]" in listing.paralinguistic_tags


@pytest.fixture(scope="module")
def edit_operations(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, dict[str, Any]]:
    """POST /v1/audio/edits as /openapi.json documents it, for an editor with a transcriber (True) and without."""
    operations = {}
    for transcribes in (True, False):
        store = VoiceStore(tmp_path_factory.mktemp("voices"))
        try:
            app = create_app(editing_engine(transcribes), SETTINGS, store)
            operations[transcribes] = openapi_document(app, app.state.context)["paths"]["/v1/audio/edits"]["post"]
        finally:
            store.close()
    return operations


def test_the_operation_is_documented(edit_operations: dict[bool, dict[str, Any]]) -> None:
    operation = edit_operations[False]
    media = operation["requestBody"]["content"]["multipart/form-data"]
    assert media["encoding"]["file"]["contentType"].startswith("audio/wav")
    assert media["schema"]["properties"]["file"]["format"] == "binary"
    assert media["schema"]["properties"]["text"]["maxLength"] == SETTINGS.max_input_chars
    assert {"400", "413", "415", "422", "503"} <= set(operation["responses"])
    assert {"X-Edit-Text", "X-Sample-Rate"} <= set(operation["responses"]["200"]["headers"])
    assert "audio/wav" in operation["responses"]["200"]["content"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/AudioEdit")


@pytest.mark.parametrize(("form", "valid_with", "valid_without"), [
    # valid with a transcriber / without one: the server accepts exactly these (test_schema_matches_the_server)
    ({"edit": "emotion", "option": "happy", "text": "x"}, True, True),
    ({"edit": "emotion", "option": "happy"}, True, False),
    ({"edit": "emotion", "option": "happy", "text": " "}, True, False),
    ({"edit": "emotion", "option": "whisper", "text": "x"}, False, False),
    ({"edit": "emotion", "text": "x"}, False, False),
    ({"edit": "style", "option": "remove", "text": "x", "iterations": 5}, True, True),
    ({"edit": "speed", "option": "more faster", "text": "x"}, True, True),
    ({"edit": "vad"}, True, True),
    ({"edit": "vad", "option": "", "new_text": ""}, True, True),  # empty form fields are read as left out
    ({"edit": "emotion", "option": "", "text": "x"}, False, False),
    ({"edit": "denoise", "option": "faster"}, False, False),
    ({"edit": "paralinguistic", "new_text": "a [Sigh] b", "text": "a b"}, True, True),
    ({"edit": "paralinguistic", "new_text": "a [Sigh] b"}, True, False),
    ({"edit": "paralinguistic", "text": "a b"}, False, False),
    ({"edit": "paralinguistic", "new_text": "\t", "text": "a b"}, False, False),
    ({"edit": "style", "option": "shy", "text": "x", "new_text": "y"}, False, False),
    ({"edit": "vad", "text": "x" * 201}, False, False),
    ({"edit": "vad", "response_format": "aac"}, False, False),
])
def test_schema_matches_the_server(edit_operations: dict[bool, dict[str, Any]], textless_server: Any, tone: Any,
                                   form: dict[str, Any], valid_with: bool, valid_without: bool) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    for transcribes, valid in ((True, valid_with), (False, valid_without)):
        schema = edit_operations[transcribes]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert jsonschema_rs.validator_for(schema).is_valid({**form, "file": "<audio>"}) is valid, (transcribes, form)
    response = post_edit(textless_server, tone(0.6), **form)
    assert (response.status_code == 200) is valid_without, response.text


SCHEMATHESIS_CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
"""


@pytest.mark.slow
def test_schemathesis_finds_nothing_in_the_edit_operation(server_factory: Any, tmp_path: Path) -> None:
    """Every check and phase over POST /v1/audio/edits and its options list, with an editor and no transcriber
    (the if/then rules of the form are in play); the whole-API run in test_api_schema.py serves an engine that
    cannot edit, where the operation is left out."""
    server = server_factory(dataclasses.replace(SETTINGS, api_key="k"), editing_engine(transcribes=False))
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    report = tmp_path / "report.json"
    hooks = Path(__file__).with_name("schemathesis_hooks.py")
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
               f"{server.url}/openapi.json", "--include-path-regex", "^/v1/audio/edits", "--checks", "all",
               "--max-examples", "300", "--seed", "1", "--workers", "1", "--header", "Authorization: Bearer k",
               "--request-timeout", "30", "--report", "json", "--report-json-path", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "SCHEMATHESIS_HOOKS": str(hooks)})
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
    summary = json.loads(report.read_text())
    assert summary["complete"] and not summary["failures"] and not summary["errors"], summary
    assert summary["test_cases"]["generated"] >= 500, summary["test_cases"]


# The tiny EditX release folder, end to end.

PROMPT_TEXT = "一段测试的语音。"


@pytest.fixture(scope="module")
def editx_server(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory, server_factory: Any) -> Iterator[Any]:
    import torch

    from stepaudio.engines.registry import create_engine
    from stepaudio.testing.tiny_editx import write_tiny_editx_stack

    stack = write_tiny_editx_stack(tmp_path_factory.mktemp("editx"), conformance_dir / "text" / "tokenizer.model")
    engine = create_engine("editx", model_path=str(stack), seed=0, max_new_tokens=40)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine run far faster on one thread
    server = server_factory(ServerSettings(max_voice_seconds=10.0), engine)
    server.prompt = stack / "prompt.wav"
    yield server
    torch.set_num_threads(threads)


def test_editx_clones_through_the_voice_store_and_speech(editx_server: Any) -> None:
    client = editx_server.client()
    capabilities = httpx.get(editx_server.url + "/health").json()["capabilities"]
    assert capabilities["voice_cloning"] and capabilities["speech_editing"]
    created = client.audio.voices.create(name="Tester", audio_sample=("p.wav", editx_server.prompt.read_bytes(),
                                                                      "audio/wav"), consent="cons_1",
                                         extra_body={"transcript": PROMPT_TEXT})
    assert created.name == "Tester"
    for voice in (created.id, "Tester", {"id": created.id}):
        speech = client.audio.speech.create(model="editx-tts", voice=voice, input="今天天气好得很。",  # type: ignore[arg-type]
                                            response_format="wav")
        rate, seconds = wav_info(speech.read())
        assert rate == 24000 and seconds > 0
    openai = pytest.importorskip("openai")
    with pytest.raises(openai.APIStatusError, match="only clones"):  # no built-in voices: a voice is a clone
        client.audio.speech.create(model="editx-tts", voice="alloy", input="你好", response_format="wav")
    client.audio.voices.delete(created.id)


def test_editx_three_step_edit_chain(editx_server: Any) -> None:
    audio, text = editx_server.prompt.read_bytes(), PROMPT_TEXT
    steps = [{"edit": "paralinguistic", "new_text": "一段[Uhm]测试的语音。"}, {"edit": "emotion", "option": "sad"},
             {"edit": "style", "option": "whisper", "response_format": "json"}]
    for fields in steps:
        response = post_edit(editx_server, audio, text=text, **fields)
        assert response.status_code == 200, response.text
        text = unquote(response.headers["x-edit-text"])
        audio = response.content
    body = json.loads(audio)
    assert text == body["text"] == body["input_text"] == "一段[Uhm]测试的语音。"
    rate, seconds = wav_info(base64.b64decode(body["audio"]["data"]))
    assert rate == 24000 and seconds == pytest.approx(body["duration"], abs=1e-3) and seconds > 0
    denoised = post_edit(editx_server, editx_server.prompt.read_bytes(), edit="denoise", iterations=2,
                         response_format="flac")
    assert denoised.status_code == 200 and denoised.headers["content-type"] == "audio/flac"
