"""End to end with real models: the lite engine (Whisper base, SmolLM2, Piper) behind a live server, driven by
the official `openai` client. The engine is built once per session; tests skip when its packages are absent.
The audio tests are marked slow (tens of seconds on the shared 2-core machine): run with `-m slow`; tool calls
run on the default chat model (Qwen2.5-Coder-0.5B-Instruct) in the default run."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stepaudio.engines.base import Engine
from stepaudio.errors import StepAudioError
from stepaudio.server.settings import ServerSettings

openai = pytest.importorskip("openai")


@pytest.fixture(scope="session")
def lite_engine() -> Engine:
    from stepaudio.engines.registry import create_engine

    try:
        engine = create_engine("lite", chat_model="smollm2", max_new_tokens=40)
        engine.synthesizer.voices()  # type: ignore[union-attr]  # loads Piper: fails here when absent
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite engine is not usable here: {exc}")
    return engine


@pytest.fixture(scope="module")
def lite_server(lite_engine: Engine, server_factory: Any) -> Iterator[Any]:
    yield server_factory(ServerSettings(max_new_tokens=40), lite_engine)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.mark.slow
def test_speech_then_transcription_round_trip(lite_server: Any) -> None:
    client = lite_server.client()
    sentence = "The quick brown fox jumps over the lazy dog."
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input=sentence, response_format="wav")
    samples, rate = sf.read(io.BytesIO(speech.content), dtype="float32")
    assert rate == 22050 and 1.0 < len(samples) / rate < 8.0 and np.abs(samples).max() > 0.05
    heard = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", speech.content), language="en")
    assert len(set(words(sentence)) & set(words(heard.text))) >= 6, heard.text
    verbose = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", speech.content),
                                                 response_format="verbose_json")
    assert verbose.language == "en" and verbose.segments and verbose.duration > 1.0


@pytest.mark.slow
def test_streamed_speech_matches_a_whole_file(lite_server: Any) -> None:
    client = lite_server.client()
    text = "Good morning. Streaming works sentence by sentence."
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="joe", input=text,
                                                            response_format="pcm") as response:
        pieces = list(response.iter_bytes())
    streamed = np.frombuffer(b"".join(pieces), dtype="<i2")
    whole, rate = sf.read(io.BytesIO(client.audio.speech.create(model="tts-1", voice="joe", input=text,
                                                                 response_format="wav").content), dtype="int16")
    # Piper samples its phoneme durations (VITS noise), so two syntheses differ by a few percent; raw pcm is 24 kHz
    assert rate == 22050 and abs(len(streamed) / 24000 - len(whole) / rate) < 0.15 * len(whole) / rate
    assert np.abs(streamed).max() > 1000


@pytest.mark.slow
def test_chat_with_spoken_question_and_spoken_answer(lite_server: Any) -> None:
    client = lite_server.client()
    question = client.audio.speech.create(model="tts-1", voice="alloy", input="What color is the sky?",
                                          response_format="wav").content
    completion = client.chat.completions.create(
        model="lite-chat", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}, max_tokens=30,
        messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(question).decode(), "format": "wav"}}]}])
    audio = completion.choices[0].message.audio
    assert audio is not None and audio.transcript.strip()
    samples, rate = sf.read(io.BytesIO(base64.b64decode(audio.data)))
    assert rate == 22050 and len(samples) > rate * 0.3
    stream = client.chat.completions.create(model="lite-chat", stream=True, max_tokens=20,
                                            messages=[{"role": "user", "content": "Say hello."}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.strip()


def test_two_chat_requests_are_answered_at_once(lite_server: Any) -> None:
    """The lite engine serves `chat_parallel` replies at once (llama.cpp decodes them in one batch), so the server
    lets two chat requests in together: each streams while the other does, and says what it says alone."""
    client = lite_server.client()
    questions = ("Tell me a short story about a brave knight.", "Describe the ocean at night.")

    def ask(question: str) -> tuple[str, list[float]]:
        stream = client.chat.completions.create(model="lite-chat", stream=True, max_tokens=40, temperature=0,
                                                seed=1, messages=[{"role": "user", "content": question}])
        text, marks = [], []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
                marks.append(time.monotonic())
        return "".join(text), marks

    alone = [ask(question)[0] for question in questions]
    together: dict[str, tuple[str, list[float]]] = {}
    start = threading.Barrier(len(questions))

    def run(question: str) -> None:
        start.wait()
        together[question] = ask(question)

    threads = [threading.Thread(target=run, args=(question,)) for question in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [together[question][0] for question in questions] == alone and all(text.strip() for text in alone)
    first_pieces = [marks[0] for _, marks in together.values()]
    last_pieces = [marks[-1] for _, marks in together.values()]
    assert max(first_pieces) < min(last_pieces)  # both were streaming at once, not one after the other


@pytest.fixture(scope="module")
def default_lite_server(server_factory: Any) -> Any:
    """The lite engine as users get it: its chat model is the packaged Qwen2.5-Coder-0.5B-Instruct."""
    from stepaudio.engines.lite import models, resolver
    from stepaudio.engines.registry import create_engine

    try:
        resolver.resolve(models.QWEN25_CODER_05B)
        engine = create_engine("lite")
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite chat model is not usable here: {exc}")
    return server_factory(ServerSettings(max_new_tokens=80), engine)


def test_chat_completions_hand_out_a_tool_call_and_answer_from_its_result(default_lite_server: Any) -> None:
    """The client runs the tool the model called (the server declares it, never runs it), sends the result back
    and gets an answer built on it; ~10 s with the real 0.5B model."""
    client = default_lite_server.client()
    tools: Any = [{"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {
            "name": "calculate", "description": "Evaluate an arithmetic expression such as 2 * (3 + 4).",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                           "required": ["expression"]}}}]
    messages: Any = [{"role": "user", "content": "What's the weather like in Paris?"}]
    first = client.chat.completions.create(model="lite-chat", messages=messages, tools=tools, temperature=0, seed=0)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    result = {"city": "Paris", "temperature_celsius": 17, "sky": "light rain"}
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": calls[0].id, "content": json.dumps(result)}]
    stream = client.chat.completions.create(model="lite-chat", messages=messages, tools=tools, temperature=0,
                                            seed=0, stream=True)
    answer = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert "17" in answer and "rain" in answer.lower() and "{" not in answer, answer
