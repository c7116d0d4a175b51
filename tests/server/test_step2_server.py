"""The step2 engine behind a live server, driven by the official `openai` client: a spoken question sent as
`input_audio` is heard by the model as audio features and answered in text and 24 kHz speech."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
import soundfile as sf

from stepaudio.audio.io import encode_audio
from stepaudio.audio_encoder.frontend import mel_frames, placeholder_count
from stepaudio.engines.registry import create_engine
from stepaudio.engines.step2.model import Step2Model
from stepaudio.server.settings import ServerSettings
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.testing.tiny_step2 import PromptSpy, write_tiny_step2_stack

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def step2_server(server_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    stack = write_tiny_step2_stack(tmp_path_factory.mktemp("step2"))
    engine = create_engine("step2", model_path=str(stack), seed=0, max_segment_tokens=40)
    yield server_factory(ServerSettings(max_new_tokens=8), engine)


def test_a_spoken_question_through_chat_completions(step2_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = PromptSpy()
    monkeypatch.setattr(Step2Model, "prompt_embeds", spy.wrap(Step2Model.prompt_embeds))
    question = base64.b64encode(encode_audio(speech_like(2.0, 16000, 3), 16000, "wav")).decode()
    client = step2_server.client()
    completion = client.chat.completions.create(
        model="step-audio-2-mini", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
        max_tokens=8, seed=0,
        messages=[{"role": "user", "content": [{"type": "input_audio",
                                                "input_audio": {"data": question, "format": "wav"}}]}])
    heard = [mels for _, mels in spy.calls if mels]
    assert len(heard) == 1 and heard[0][0].shape[1] == mel_frames(32000)
    first = next(i for i, (_, mels) in enumerate(spy.calls) if mels)
    assert spy.placeholders(first) == placeholder_count(mel_frames(32000))
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length") and completion.usage.prompt_tokens == len(spy.calls[first][0])
    audio = choice.message.audio
    assert audio is not None and audio.transcript.strip()
    samples, rate = sf.read(io.BytesIO(base64.b64decode(audio.data)))
    assert rate == 24000 and len(samples) > 0


def test_streamed_text_reply_and_speech(step2_server: Any) -> None:
    client = step2_server.client()
    stream = client.chat.completions.create(model="step-audio-2-mini", stream=True, max_tokens=6, seed=0,
                                            messages=[{"role": "user", "content": "Say hello."}])
    chunks = [c for c in stream if c.choices]
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    speech = client.audio.speech.create(model="tts-1", voice="default_female", input="Hello there.",
                                        response_format="wav")
    samples, rate = sf.read(io.BytesIO(speech.content))
    assert rate == 24000 and len(samples) > 0
