"""Server test fixtures: a tiny deterministic engine, a real uvicorn server on a loopback port, and the lite
engine (loaded once per session) for end-to-end tests with real models.

The tiny engine makes server behaviour checkable without models: its speech is a tone whose length and pitch
encode what was asked (characters, voice, speed), its transcriber reports the duration it heard, and its chat
echoes the last user turn word by word (or calls the first tool when asked to "call").
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from stepaudio.audio.io import Audio
from stepaudio.engines.base import (
    Abilities,
    AudioChunk,
    CancelToken,
    ChatDelta,
    ChatMessage,
    Engine,
    GenerationOptions,
    Segment,
    SpeechInstructions,
    ToolCall,
    ToolSpec,
    Transcript,
    Usage,
    Voice,
)
from stepaudio.errors import StepAudioError, TagError
from stepaudio.realtime.turn import TurnSettings
from stepaudio.server.settings import ServerSettings
from stepaudio.store.voices import VoiceStore
from stepaudio.text.sentences import split_sentences
from stepaudio.text.tags import parse_tags

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

uvicorn = pytest.importorskip("uvicorn", reason="the server extra is not installed (pip install 'stepaudio[server]')")
pytest.importorskip("fastapi", reason="the server extra is not installed (pip install 'stepaudio[server]')")

TONE_RATE = 16000
SECONDS_PER_CHAR = 0.01
VOICE_PITCH = {"tone": 440.0, "low": 220.0}
CLONE_PITCH = 330.0


def tone_seconds(reply: str, speed: float = 1.0) -> float:
    """Seconds of tone a whole spoken reply becomes: the turn speaks it piece by piece (its first piece cut early,
    `TurnSettings`), and `ToneSynthesizer` makes each sentence of a piece a tone."""
    settings = TurnSettings()
    pieces = split_sentences(reply, settings.max_sentence_chars, settings.first_sentence_chars,
                             settings.first_clause_chars, settings.first_clause_words)
    parts = [part for piece in pieces for part in piece.replace("!", ".").split(".") if part.strip()]
    return sum(len(part) for part in parts) * SECONDS_PER_CHAR / speed


@dataclass
class ToneSynthesizer:
    """Each sentence becomes a tone of `SECONDS_PER_CHAR` per character (divided by a numeric speed)."""

    sample_rate: int = TONE_RATE
    calls: list[tuple[str, Voice | str | None, SpeechInstructions | None]] = field(default_factory=list)
    delay: float = 0.0

    def voices(self) -> list[str]:
        return list(VOICE_PITCH)

    def synthesize(self, text: str, voice: Voice | str | None = None,
                   instructions: SpeechInstructions | None = None,
                   cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        self.calls.append((text, voice, instructions))
        if instructions is not None and instructions.strict:
            parse_tags(text, on_unknown="raise")
            if instructions.emotion == "bored":
                raise TagError("this engine cannot sound bored")
        pitch = CLONE_PITCH if isinstance(voice, Voice) else VOICE_PITCH.get(voice or "tone", 440.0)
        speed = instructions.speed if instructions and isinstance(instructions.speed, float) else 1.0
        sentences = [s for s in text.replace("!", ".").split(".") if s.strip()] or [text]
        for index, sentence in enumerate(sentences):
            if cancel is not None and cancel.cancelled:
                return
            time.sleep(self.delay)
            n = round(len(sentence) * SECONDS_PER_CHAR / speed * self.sample_rate)
            t = np.arange(n) / self.sample_rate
            samples = (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)
            yield AudioChunk(samples, self.sample_rate, sentence, is_last=index == len(sentences) - 1)


@dataclass
class DurationTranscriber:
    heard: list[Audio] = field(default_factory=list)

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        self.heard.append(audio)
        seconds = round(audio.duration, 1)
        half = audio.duration / 2
        return Transcript(text=f"heard {seconds} seconds", language=language or "en", duration=audio.duration,
                          segments=(Segment(0.0, half, " heard"), Segment(half, audio.duration, f" {seconds} seconds")))


@dataclass
class EchoChat:
    """Replies 'You said: <last user text>.' one word per delta; 'call ...' calls the first tool."""

    delay: float = 0.0
    seen: list[list[ChatMessage]] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        self.seen.append(list(messages))
        last = next((m for m in reversed(messages) if m.role in ("user", "tool")), ChatMessage("user"))
        if tools and last.content.startswith("call"):
            arguments = json.dumps({"query": last.content[5:]})
            yield ChatDelta(tool_calls=(ToolCall("call_1", tools[0].name, arguments),), finish_reason="tool_calls")
            return
        if last.content == "fail midway":
            yield ChatDelta(text="Well")
            raise StepAudioError("the model fell over")
        words = f"You said: {last.content}.".split(" ")
        limit = (options or GenerationOptions()).max_new_tokens
        completed = False
        try:
            for index, word in enumerate(words[:limit]):
                if cancel is not None and cancel.cancelled:
                    yield ChatDelta(finish_reason="cancelled")
                    return
                time.sleep(self.delay)
                yield ChatDelta(text=word if index == 0 else " " + word)
            prompt = sum(len(m.content.split()) for m in messages)  # one token a word, as this model counts
            yield ChatDelta(finish_reason="length" if len(words) > limit else "stop",
                            usage=Usage(prompt, min(len(words), limit)))
            completed = True
        finally:
            if not completed:  # stopped by the token or closed by the caller
                self.cancelled.set()


def tiny_engine(chat_delay: float = 0.0, synth_delay: float = 0.0) -> Engine:
    return Engine("tiny", DurationTranscriber(), EchoChat(delay=chat_delay), ToneSynthesizer(delay=synth_delay),
                  Abilities(clones_voices=True))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A real uvicorn server in a thread on a free loopback port."""

    def __init__(self, engine: Engine, settings: ServerSettings, store_dir: Path,
                 mount_realtime: Callable[..., None] | None = None) -> None:
        from stepaudio.server.app import create_app

        self.engine = engine
        self.store = VoiceStore(store_dir, max_seconds=settings.max_voice_seconds)
        self.settings = settings
        self.app = create_app(engine, settings, self.store, mount_realtime=mount_realtime)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_keep_alive=int(max(settings.idle_timeout_s, 1)))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str = "unused", **kwargs: object):  # type: ignore[no-untyped-def]
        openai = pytest.importorskip("openai")
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=60, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = ServerSettings(max_upload_bytes=1_000_000, max_input_chars=500, max_chat_messages=8,
                              max_chat_audio_seconds=10.0, max_transcription_seconds=20.0, max_voice_seconds=5.0,
                              idle_timeout_s=1.0, max_queue=4)
    server = LiveServer(tiny_engine(), settings, tmp_path_factory.mktemp("voices"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LiveServer]]:
    """`make(settings, engine=None, store_dir=None, mount_realtime=None)`: a live server (the tiny engine by
    default, a new store unless one is named), stopped with the module."""
    servers: list[LiveServer] = []

    def make(settings: ServerSettings, engine: Engine | None = None, store_dir: Path | None = None,
             mount_realtime: Callable[..., None] | None = None) -> LiveServer:
        server = LiveServer(engine or tiny_engine(), settings, store_dir or tmp_path_factory.mktemp("voices"),
                            mount_realtime)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def tone_wav(seconds: float = 1.0, rate: int = 16000, fmt: str = "wav") -> bytes:
    from stepaudio.audio.io import encode_audio

    t = np.arange(int(seconds * rate)) / rate
    return encode_audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, fmt)


@pytest.fixture(scope="session")
def tone() -> object:
    """`tone(seconds, rate, fmt)`: encoded bytes of a 220 Hz tone."""
    return tone_wav


@pytest.fixture(scope="session")
def make_engine() -> Callable[..., Engine]:
    """`make_engine(chat_delay=0, synth_delay=0)`: a fresh tiny engine."""
    return tiny_engine


def append_audio(ws: ClientConnection, data: bytes, chunk: int = 4800) -> None:
    """Send PCM16 `data` to a realtime socket as `input_audio_buffer.append` events of `chunk` bytes."""
    for start in range(0, len(data), chunk):
        ws.send(json.dumps({"type": "input_audio_buffer.append",
                            "audio": base64.b64encode(data[start : start + chunk]).decode()}))


def recv_until(ws: ClientConnection, wanted: str, timeout: float = 15.0, *,
               errors: bool = True) -> list[dict[str, Any]]:
    """Events up to and including the first of type `wanted`; with `errors=False` an `error` event fails the test."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        assert errors or event["type"] != "error", event
        events.append(event)
        if event["type"] == wanted:
            return events
