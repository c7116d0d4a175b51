"""The REST routes driven by the official `openai` client against a live server with the tiny engine."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from stepaudio.audio.io import load_audio
from stepaudio.engines.base import Abilities, Transcript, Voice, Word
from stepaudio.server.settings import ServerSettings
from stepaudio.text.tokenizer import StepTokenizer

from .conftest import tone_seconds

openai = pytest.importorskip("openai")

TONE_RATE = 16000
PCM_RATE = 24000
SECONDS_PER_CHAR = 0.01


def expected_samples(text: str, speed: float = 1.0) -> int:
    sentences = [s for s in text.replace("!", ".").split(".") if s.strip()] or [text]
    return sum(round(len(s) * SECONDS_PER_CHAR / speed * TONE_RATE) for s in sentences)


def expected_pcm(samples: int) -> int:
    """Raw pcm is 24 kHz whatever rate the synthesizer speaks at."""
    return round(samples * PCM_RATE / TONE_RATE)


def sse_events(body: bytes) -> list[Any]:
    events = []
    for block in body.decode().split("\n\n"):
        if block.startswith("data: "):
            payload = block[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_models_and_health(tiny_server: Any) -> None:
    client = tiny_server.client()
    assert sorted(m.id for m in client.models.list().data) == ["tiny-asr", "tiny-chat", "tiny-tts"]
    assert client.models.retrieve("tiny-tts").id == "tiny-tts"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")
    health = httpx.get(tiny_server.url + "/health").json()
    assert health["engine"] == "tiny" and health["capabilities"] == {
        "transcription": True, "chat": True, "speech": True, "voice_cloning": True, "speech_editing": False,
        "audio_input": False, "tools": True}


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus"])
def test_speech_formats(tiny_server: Any, fmt: str) -> None:
    text = "Hello there. How are you"
    audio = tiny_server.client().audio.speech.create(model="tts-1", voice="alloy", input=text, response_format=fmt)
    samples, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    seconds = expected_samples(text) / TONE_RATE
    assert abs(len(samples) / rate - seconds) < (0.1 if fmt in ("mp3", "opus") else 1e-3)


def test_speech_pcm_streams_and_speed(tiny_server: Any) -> None:
    client = tiny_server.client()
    text = "One two three. Four five"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="low", input=text, response_format="pcm", speed=2.0
    ) as response:
        assert response.headers["x-sample-rate"] == "24000"
        pieces = list(response.iter_bytes())
    data = b"".join(pieces)
    assert len(data) == 2 * expected_pcm(expected_samples(text, speed=2.0))
    _, voice, instructions = tiny_server.engine.synthesizer.calls[-1]
    assert voice == "low" and instructions.speed == 2.0


def test_speech_sse_events(tiny_server: Any) -> None:
    text = "First sentence. Second one"
    response = httpx.post(tiny_server.url + "/v1/audio/speech", json={
        "model": "tts-1", "input": text, "voice": "tone", "response_format": "pcm", "stream_format": "sse"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2 and events[-1]["type"] == "speech.audio.done"
    assert sum(len(base64.b64decode(e["audio"])) for e in deltas) == 2 * expected_pcm(expected_samples(text))
    assert events[-1]["seconds"] == round(expected_samples(text) / TONE_RATE, 3)


def test_speech_instruction_extensions(tiny_server: Any) -> None:
    client = tiny_server.client()
    client.audio.speech.create(model="tts-1", voice="tone", input="(高兴1)hi", response_format="wav",
                               instructions="(四川话) sad, slow", extra_body={"style": "rap", "strict": True})
    _, _, instructions = tiny_server.engine.synthesizer.calls[-1]
    assert instructions.tags == ("四川话",) and instructions.emotion == "sad" and instructions.speed == "slow"
    assert instructions.style == "rap" and instructions.strict
    client.audio.speech.create(model="tts-1", voice="tone", input="hi", instructions="Speak like a pirate")
    with pytest.raises(openai.BadRequestError, match="pirate"):
        client.audio.speech.create(model="tts-1", voice="tone", input="hi", instructions="Speak like a pirate",
                                   extra_body={"strict": True})
    with pytest.raises(openai.BadRequestError, match="unknown instruction tag"):
        client.audio.speech.create(model="tts-1", voice="tone", input="(开心)hi", extra_body={"strict": True})
    with pytest.raises(openai.BadRequestError) as info:  # raised by the engine at its first step
        client.audio.speech.create(model="tts-1", voice="tone", input="hi", response_format="pcm",
                                   extra_body={"strict": True, "emotion": "happy", "tags": ["(bored)"]})
    assert info.value.body["code"] == "invalid_instruction"


def test_speech_errors(tiny_server: Any) -> None:
    client = tiny_server.client()
    with pytest.raises(openai.NotFoundError, match="/v1/voices") as info:
        client.audio.speech.create(model="tts-1", voice="nobody", input="hi")
    assert info.value.body == {"message": info.value.body["message"], "type": "not_found_error",
                               "param": "voice", "code": "voice_not_found"}
    with pytest.raises(openai.BadRequestError, match="aac"):
        client.audio.speech.create(model="tts-1", voice="tone", input="hi", response_format="aac")
    with pytest.raises(openai.BadRequestError, match="500"):
        client.audio.speech.create(model="tts-1", voice="tone", input="x" * 501)
    with pytest.raises(openai.UnprocessableEntityError):
        client.audio.speech.create(model="tts-1", voice="tone", input="hi", speed=9.0)
    with pytest.raises(openai.BadRequestError, match="sse"):
        client.audio.speech.create(model="tts-1", voice="tone", input="hi", stream_format="sse",
                                   response_format="mp3")


def test_cloned_voice_lifecycle(tiny_server: Any, tone: Any) -> None:
    client = tiny_server.client()
    response = httpx.post(tiny_server.url + "/v1/voices", data={"name": "Grace", "transcript": "a tone"},
                          files={"file": ("p.wav", tone(1.0), "audio/wav")})
    assert response.status_code == 201, response.text
    card = response.json()
    assert card["object"] == "audio.voice" and card["name"] == "Grace" and card["id"].startswith("voice_")
    for voice in ({"id": card["id"]}, "Grace", "grace"):
        client.audio.speech.create(model="tts-1", voice=voice, input="hi", response_format="wav")
        _, used, _ = tiny_server.engine.synthesizer.calls[-1]
        assert isinstance(used, Voice) and used.prompt_text == "a tone"
        assert used.prompt_audio == tiny_server.store.root / "audio" / f"{card['id']}.wav"
    listed = httpx.get(tiny_server.url + "/v1/voices").json()["data"]
    assert [v["name"] for v in listed] == ["Grace", "tone", "low"]
    assert httpx.get(tiny_server.url + f"/v1/voices/{card['id']}").json()["transcript"] == "a tone"
    duplicate = httpx.post(tiny_server.url + "/v1/voices", data={"name": "GRACE", "transcript": "x"},
                           files={"file": ("p.wav", tone(1.0), "audio/wav")})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "voice_exists"
    deleted = client.audio.voices.delete(card["id"])
    assert deleted.deleted and deleted.id == card["id"]
    with pytest.raises(openai.NotFoundError):
        client.audio.voices.delete(card["id"])
    with pytest.raises(openai.NotFoundError, match="/v1/voices"):
        client.audio.speech.create(model="tts-1", voice={"id": card["id"]}, input="hi")


def test_openai_client_voice_create_transcribes_without_transcript(tiny_server: Any, tone: Any) -> None:
    client = tiny_server.client()
    created = client.audio.voices.create(name="Auto", audio_sample=("s.wav", tone(2.0), "audio/wav"),
                                         consent="cons_1")
    assert created.name == "Auto" and created.object == "audio.voice"
    card = httpx.get(tiny_server.url + f"/v1/voices/{created.id}").json()
    assert card["transcript"] == "heard 2.0 seconds"
    client.audio.voices.delete(created.id)


@pytest.mark.parametrize("fmt", ["json", "text", "verbose_json", "srt", "vtt"])
def test_transcription_formats(tiny_server: Any, tone: Any, fmt: str) -> None:
    client = tiny_server.client()
    result: Any = client.audio.transcriptions.create(model="whisper-1", file=("a.flac", tone(3.0, fmt="flac")),
                                                     response_format=fmt, language="en")
    if fmt == "json":
        assert result.text == "heard 3.0 seconds"
    elif fmt == "verbose_json":
        assert result.duration == 3.0 and result.language == "en" and len(result.segments) == 2
        assert result.segments[1].end == 3.0
    elif fmt == "text":
        assert result.strip() == "heard 3.0 seconds"
    elif fmt == "srt":
        assert result.startswith("1\n00:00:00,000 --> 00:00:01,500\nheard\n\n2\n")
    else:
        assert result.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nheard\n")


@dataclasses.dataclass
class WordTimer:
    """The tiny transcriber, with its segments as words: a `WordTranscriber`."""

    inner: Any

    def transcribe(self, audio: Any, language: str | None = None) -> Transcript:
        return self.inner.transcribe(audio, language)  # type: ignore[no-any-return]

    def transcribe_words(self, audio: Any, language: str | None = None) -> Transcript:
        result = self.inner.transcribe(audio, language)
        return dataclasses.replace(result, words=tuple(Word(s.start, s.end, s.text.strip()) for s in result.segments))


def test_word_timestamps(server_factory: Any, make_engine: Any, tone: Any) -> None:
    engine = make_engine()
    server = server_factory(ServerSettings(), dataclasses.replace(engine, transcriber=WordTimer(engine.transcriber)))
    client = server.client()
    words: Any = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", tone(3.0)),
                                                    response_format="verbose_json", timestamp_granularities=["word"])
    assert [(w.word, w.start, w.end) for w in words.words] == [("heard", 0.0, 1.5), ("3.0 seconds", 1.5, 3.0)]
    assert words.segments is None  # words only, as OpenAI answers ["word"]
    both: Any = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", tone(3.0)),
                                                   response_format="verbose_json",
                                                   timestamp_granularities=["word", "segment"])
    assert len(both.words) == 2 and len(both.segments) == 2
    plain: Any = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", tone(3.0)),
                                                    response_format="verbose_json")
    assert plain.words is None and len(plain.segments) == 2
    with pytest.raises(openai.BadRequestError, match="verbose_json"):
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", tone(1.0)), response_format="json",
                                           timestamp_granularities=["word"])


def test_word_timestamps_are_refused_where_the_transcriber_cannot_time_words(tiny_server: Any, tone: Any) -> None:
    client = tiny_server.client()
    with pytest.raises(openai.BadRequestError, match="cannot time words") as info:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", tone(1.0)),
                                           response_format="verbose_json", timestamp_granularities=["word"])
    assert info.value.body["param"] == "timestamp_granularities"
    result: Any = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", tone(1.0)),
                                                     response_format="verbose_json",
                                                     timestamp_granularities=["segment"])
    assert len(result.segments) == 2


def test_transcription_stream(tiny_server: Any, tone: Any) -> None:
    stream = tiny_server.client().audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", tone(2.0)),
                                                              stream=True)
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert "".join(deltas) == "heard 2.0 seconds" and len(deltas) == 2
    assert events[-1].type == "transcript.text.done" and events[-1].text == "heard 2.0 seconds"


def test_chat_text_and_stream(tiny_server: Any) -> None:
    client = tiny_server.client()
    completion = client.chat.completions.create(model="m", messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "good morning"}])
    assert completion.choices[0].message.content == "You said: good morning."
    assert completion.choices[0].finish_reason == "stop" and completion.object == "chat.completion"
    chunks = list(client.chat.completions.create(model="m", stream=True, max_tokens=2,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "one two three"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said:"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 2)
    assert completion.usage is not None and completion.usage.prompt_tokens == 4  # "be brief", "good morning"
    assert completion.usage.total_tokens == 4 + 4


def test_chat_tools(tiny_server: Any) -> None:
    client = tiny_server.client()
    tools: Any = [{"type": "function", "function": {"name": "lookup", "description": "search",
                                                    "parameters": {"type": "object", "properties": {}}}}]
    completion = client.chat.completions.create(model="m", tools=tools,
                                                messages=[{"role": "user", "content": "call weather"}])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"query": "weather"}
    follow = client.chat.completions.create(model="m", tools=tools, messages=[
        {"role": "user", "content": "call weather"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert follow.choices[0].message.content == "You said: sunny."
    seen = tiny_server.engine.chat.seen[-1]
    assert seen[1].tool_calls[0].name == "lookup" and seen[2].tool_call_id == call.id
    streamed = list(client.chat.completions.create(model="m", tools=tools, stream=True,
                                                   messages=[{"role": "user", "content": "call x"}]))
    calls = [tc for c in streamed for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "lookup" and calls[0].index == 0
    assert streamed[-1].choices[0].finish_reason == "tool_calls"


def test_chat_audio_in_and_out(tiny_server: Any, tone: Any) -> None:
    client = tiny_server.client()
    spoken = base64.b64encode(tone(1.5)).decode()
    completion = client.chat.completions.create(
        model="m", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
        messages=[{"role": "user", "content": [{"type": "input_audio",
                                                "input_audio": {"data": spoken, "format": "wav"}}]}])
    message = completion.choices[0].message
    assert message.audio is not None and message.audio.transcript == "You said: heard 1.5 seconds."
    samples, rate = sf.read(io.BytesIO(base64.b64decode(message.audio.data)))
    assert rate == TONE_RATE and len(samples) == round(tone_seconds(message.audio.transcript) * TONE_RATE)
    turn = tiny_server.engine.chat.seen[-1][-1]
    assert turn.audio is None and turn.content == "heard 1.5 seconds"  # this engine reads: a transcript


def test_chat_streamed_audio(tiny_server: Any) -> None:
    client = tiny_server.client()
    chunks = list(client.chat.completions.create(
        model="m", modalities=["text", "audio"], audio={"voice": "tone", "format": "pcm16"}, stream=True,
        messages=[{"role": "user", "content": "Hi. Bye"}]))
    audio = [c.choices[0].delta.audio for c in chunks if c.choices and getattr(c.choices[0].delta, "audio", None)]
    audio = [a if isinstance(a, dict) else a.model_dump() for a in audio]
    transcript = "".join(a.get("transcript") or "" for a in audio)
    assert transcript == "You said: Hi. Bye."
    pcm = b"".join(base64.b64decode(a["data"]) for a in audio if a.get("data"))
    assert len(pcm) == 2 * sum(expected_pcm(expected_samples(a["transcript"].strip())) for a in audio
                               if a.get("transcript"))
    assert "expires_at" in audio[-1] and len({a["id"] for a in audio}) == 1
    with pytest.raises(openai.BadRequestError, match="pcm16"):
        client.chat.completions.create(model="m", modalities=["audio"], audio={"voice": "tone", "format": "wav"},
                                       stream=True, messages=[{"role": "user", "content": "x"}])


def test_chat_limits(tiny_server: Any, tone: Any) -> None:
    client = tiny_server.client()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}] * 9)
    assert info.value.status_code == 413
    long_audio = base64.b64encode(tone(11.0, 8000)).decode()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": long_audio, "format": "wav"}}]}])
    assert info.value.status_code == 413 and info.value.body["code"] == "audio_too_long"
    with pytest.raises(openai.BadRequestError, match="base64"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "not base64!", "format": "wav"}}]}])
    with pytest.raises(openai.NotFoundError, match="/v1/voices"):
        client.chat.completions.create(model="m", modalities=["audio"], audio={"voice": "ghost", "format": "wav"},
                                       messages=[{"role": "user", "content": "x"}])


def test_raw_pcm_samples_match(tiny_server: Any) -> None:
    audio = tiny_server.client().audio.speech.create(model="tts-1", voice="tone", input="abc",
                                                     response_format="pcm")
    samples = np.frombuffer(audio.content, dtype="<i2")
    assert len(samples) == expected_pcm(expected_samples("abc")) and np.abs(samples).max() > 9000


def test_chat_stream_failure_ends_with_an_error_event(tiny_server: Any) -> None:
    response = httpx.post(tiny_server.url + "/v1/chat/completions", json={
        "model": "m", "stream": True, "messages": [{"role": "user", "content": "fail midway"}]})
    events = sse_events(response.content)
    assert events[1]["choices"][0]["delta"] == {"content": "Well"}
    assert events[-1]["error"]["message"] == "the model fell over" and events[-1]["error"]["type"] == "server_error"
    completion = tiny_server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "ok"}])
    assert completion.choices[0].message.content == "You said: ok."


def test_chat_models_that_listen_get_audio_and_text_untranscribed(server_factory: Any, make_engine: Any,
                                                                   tone: Any) -> None:
    engine = dataclasses.replace(make_engine(), abilities=Abilities(hears_audio=True))
    server = server_factory(ServerSettings(), engine)
    spoken = base64.b64encode(tone(1.0)).decode()
    server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this sound?"},
        {"type": "input_audio", "input_audio": {"data": spoken, "format": "wav"}}]}])
    turn = engine.chat.seen[-1][-1]
    assert turn.content == "What is this sound?" and turn.audio is not None and engine.transcriber.heard == []


def test_step_chat_hears_a_spoken_message_once(server_factory: Any, step_stack: Path,
                                               chat_prompts: list[list[int]]) -> None:
    """Through the official client, a spoken user message reaches Step-Audio-Chat as audio tokens, one pass."""
    from stepaudio.engines.registry import create_engine

    engine = create_engine("step", model_path=str(step_stack), seed=0, chat_max_tokens=4)
    server = server_factory(ServerSettings(), engine)
    spoken = base64.b64encode((step_stack / "speakers" / "Tingting_prompt.wav").read_bytes()).decode()
    completion = server.client().chat.completions.create(model="step-audio-chat", messages=[
        {"role": "user", "content": [{"type": "text", "text": "听听这个"},
                                     {"type": "input_audio", "input_audio": {"data": spoken, "format": "wav"}}]}])
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert len(chat_prompts) == 1
    audio_ids = [i for i in chat_prompts[0] if i >= 65536]
    assert 80 <= len(audio_ids) <= 85  # the 2 s message, once
    text = StepTokenizer(step_stack / "Step-Audio-Chat").decode([i for i in chat_prompts[0] if i < 65536])
    assert "听听这个" in text  # and its text beside the audio
    assert completion.usage is not None and completion.usage.prompt_tokens == len(chat_prompts[0])



def test_step_speech_requests_at_once_are_decoded_together(server_factory: Any, step_stack: Path) -> None:
    """With `lm_batch=2` the server lets two speech requests in at once; the TTS LM decodes them in shared steps,
    and each gets the audio it gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    from stepaudio.engines.registry import create_engine

    engine = create_engine("step", model_path=str(step_stack), seed=0, max_segment_tokens=40, lm_batch=2,
                           dtype="fp32", quant="none")  # exact: int8 rows would share activation scales
    server = server_factory(ServerSettings(), engine)
    texts = ["你好，今天天气很好。", "我们一起去公园散步吧。"]

    def speak(text: str) -> bytes:
        return server.client().audio.speech.create(model="tts-1", voice="Tingting", input=text,
                                                   response_format="pcm").content

    alone = [speak(text) for text in texts]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(speak, texts))
    assert all(len(pcm) > 0 for pcm in alone) and [len(pcm) for pcm in together] == [len(pcm) for pcm in alone]
    for mine, theirs in zip(alone, together, strict=True):  # float rounding apart (see test_engine.py's twin)
        difference = np.frombuffer(mine, "<i2").astype(np.int32) - np.frombuffer(theirs, "<i2").astype(np.int32)
        assert np.abs(difference).max() <= 33
    core = engine.synthesizer._lm.get().batcher.core
    assert core.row_steps > core.steps


def test_an_engine_that_cannot_clone_refuses_clones_up_front(server_factory: Any, make_engine: Any,
                                                             tone: Any) -> None:
    engine = dataclasses.replace(make_engine(), abilities=Abilities(clones_voices=False))
    server = server_factory(ServerSettings(), engine)
    health = httpx.get(server.url + "/health").json()
    assert health["capabilities"]["voice_cloning"] is False and health["capabilities"]["speech"] is True
    response = httpx.post(server.url + "/v1/voices", data={"name": "Tony", "transcript": "a tone"},
                          files={"file": ("p.wav", tone(1.0), "audio/wav")})
    assert response.status_code == 400 and response.json()["error"]["code"] == "voice_cloning_unsupported"
    assert "cannot clone" in response.json()["error"]["message"]
    assert httpx.get(server.url + "/v1/voices").json()["data"] == [
        v for v in httpx.get(server.url + "/v1/voices").json()["data"] if v["type"] == "builtin"]  # nothing stored
    server.store.add("Old", load_audio(tone(1.0)), "a tone")  # a clone stored before, by an engine that could
    with pytest.raises(openai.BadRequestError, match="cannot clone"):
        server.client().audio.speech.create(model="tts-1", voice="Old", input="hello")  # type: ignore[arg-type]
