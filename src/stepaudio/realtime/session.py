"""A real-time conversation: feeds audio through a VAD into the controller and executes its actions.

The session owns what the controller must not touch: the input audio buffer, the VAD, the conversation
context, a worker thread running transcription, chat and synthesis jobs (each with a `CancelToken`), a
listener thread that lets the engine hear each turn while it is spoken (`realtime.listening`: at the end of
speech only its tail is left to recognise), an optional ticker thread, and the output sink (a callback, or a
queue read with `next_output`). Every decision is the controller's; events from the caller, the worker and the
ticker are serialised under one lock so actions run in the order decided.

Use (a WebSocket server maps OpenAI client events onto these calls and serialises each output by its
`openai_type`; output audio comes at the synthesiser's rate, input at any rate):

    session = RealtimeSession(engine, vad, SessionConfig(system_prompt="..."), on_output=send_to_client)
    session.append_audio(pcm, 24000)          # input_audio_buffer.append
    session.send(ev.ResponseCreate())         # response.create, ev.TextInput, ev.ResponseCancel, ...
    session.update(voice="joe", tools=(...))  # session.update
    session.close()

`on_output` runs under the session lock: it must not block, nor call back into the session.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import soxr

from stepaudio.audio.io import Audio
from stepaudio.engines.base import (
    CancelToken,
    ChatMessage,
    Engine,
    GenerationOptions,
    PreparingChat,
    SpeechInstructions,
    ToolSpec,
    Voice,
)
from stepaudio.errors import AudioError, StepAudioError
from stepaudio.realtime import events as ev
from stepaudio.realtime.buffer import AudioBuffer
from stepaudio.realtime.context import ContextStats, ConversationContext, TokenCounter, estimate_tokens
from stepaudio.realtime.controller import Controller, ControllerConfig, Phase
from stepaudio.realtime.listening import Listening, LiveClips, LiveTranscriber
from stepaudio.realtime.speculative import SpeculationMetrics
from stepaudio.realtime.turn import Transcripts, reply_prompt
from stepaudio.realtime.turns import TurnDetectionConfig
from stepaudio.realtime.worker import SpeechSettings, run_generation, run_transcription

Vad = Callable[[np.ndarray], Any]  # one frame of float32 samples -> speech probability (or per-frame array)
OutputSink = Callable[[ev.Output], None]


@dataclass(frozen=True)
class SessionConfig:
    sample_rate: int = 16000  # input buffer, VAD and transcriber rate
    frame_ms: int = 32  # VAD frame (silero: 512 samples at 16 kHz)
    turn_detection: TurnDetectionConfig | None = field(default_factory=TurnDetectionConfig)
    modalities: tuple[str, ...] = ("audio",)
    system_prompt: str = ""
    max_context_tokens: int = 4096
    voice: Voice | str | None = None
    speech_instructions: SpeechInstructions | None = None
    language: str | None = None
    generation: GenerationOptions | None = None
    tools: tuple[ToolSpec, ...] = ()
    transcribe_input: bool = True  # transcripts of user audio even where the engine hears it (display, context)
    max_buffer_seconds: float = 600.0
    tick_interval_s: float | None = 0.05  # None: the caller calls tick()
    listen: bool = True  # the engine hears each turn while it is spoken, where it can (turn detection on)
    listen_pause_ms: int = 64  # no new hypothesis once the speaker has been quiet this long (the turn may be ending)

    def __post_init__(self) -> None:
        if self.sample_rate * self.frame_ms % 1000:
            raise StepAudioError(f"frame_ms {self.frame_ms} is not a whole number of samples at {self.sample_rate} Hz")


class RealtimeSession:
    def __init__(
        self,
        engine: Engine,
        vad: Vad | None = None,
        config: SessionConfig | None = None,
        on_output: OutputSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        count_tokens: TokenCounter = estimate_tokens,
    ) -> None:
        self.config = config or SessionConfig()
        if self.config.turn_detection is not None and vad is None:
            raise StepAudioError("server_vad turn detection needs a VAD callable (or turn_detection=None)")
        self.engine = engine
        self.vad = vad
        self.clock = clock
        self.context = ConversationContext(self.config.system_prompt, self.config.max_context_tokens, count_tokens)
        self._controller = Controller(self._controller_config(self.config))
        self._settings = self._speech_settings(self.config)
        self._sink = on_output
        self._outputs: queue.Queue[ev.Output] = queue.Queue()
        self._lock = threading.RLock()
        self._frame = self.config.sample_rate * self.config.frame_ms // 1000
        self._pending = np.zeros(0, np.float32)  # samples short of a whole frame
        self._buffer = AudioBuffer()  # sample i is input time i / sample_rate
        self._resampler: tuple[int, Any] | None = None
        self._tokens: dict[str, CancelToken] = {}
        self._live = LiveClips()
        self._listening: Listening | None = None  # the turn being spoken, heard by the engine
        self._listen_updates = 0
        self._heard = threading.Condition()  # new audio for the listener: pushes counted, and those it caught up with
        self._pushes = self._caught_up = 0
        transcriber = None if engine.transcriber is None else LiveTranscriber(engine.transcriber, self._live)
        self._transcripts = Transcripts(transcriber, self.config.language)
        self._clips: dict[tuple[str, int], Audio] = {}  # one object per span: transcripts are kept per clip
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._closed = threading.Event()
        self._worker = threading.Thread(target=self._work, name="realtime-worker", daemon=True)
        self._worker.start()
        self._listener = threading.Thread(target=self._listen_loop, name="realtime-listener", daemon=True)
        self._listener.start()
        self._ticker: threading.Thread | None = None
        if self.config.tick_interval_s is not None:
            self._ticker = threading.Thread(target=self._tick_loop, name="realtime-ticker", daemon=True)
            self._ticker.start()

    # ------------------------------------------------------------ caller API

    @property
    def phase(self) -> Phase:
        return self._controller.phase

    @property
    def metrics(self) -> SpeculationMetrics:
        return self._controller.metrics

    def context_stats(self) -> ContextStats:
        with self._lock:
            return self.context.stats()

    def stats(self) -> dict[str, float]:
        """Speculation, barge-in and context numbers in one flat dict (for logs and metrics endpoints)."""
        with self._lock:
            context = self.context.stats()
            state = self._controller.state
            return {
                **state.metrics.as_dict(),
                "interruptions": state.interruptions,
                "context_turns": context.turns,
                "context_tokens": context.context_tokens,
                "context_dropped_turns": context.dropped_turns,
                "audio_tokens_replaced": context.audio_tokens_replaced,
                "text_tokens_kept": context.text_tokens_kept,
                "compression_ratio": context.compression_ratio,
                "listen_updates": self._listen_updates,  # recognition passes made while users spoke
            }

    def update(self, **changes: Any) -> SessionConfig:
        """session.update: change any `SessionConfig` field but the audio format; running jobs keep the old."""
        with self._lock:
            config = replace(self.config, **changes)
            if (config.sample_rate, config.frame_ms) != (self.config.sample_rate, self.config.frame_ms):
                raise StepAudioError("the input sample rate and frame size of a running session cannot change")
            if config.turn_detection is not None and self.vad is None:
                raise StepAudioError("server_vad turn detection needs a VAD callable; this session has none")
            self.config = config
            self.context.system_prompt = config.system_prompt
            self.context.max_tokens = config.max_context_tokens
            self._settings = self._speech_settings(config)
            self._transcripts.language = config.language
            self._dispatch(ev.ConfigUpdate(self._controller_config(config)))
            return config

    def append_audio(self, samples: np.ndarray, sample_rate: int | None = None) -> None:
        """Add client audio (input_audio_buffer.append): resampled, cut into VAD frames, fed to the controller."""
        if self._closed.is_set():
            raise StepAudioError("the session is closed")
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(data)):
            raise AudioError("input audio contains NaN or infinite samples")
        with self._lock:
            data = self._resample(data, sample_rate or self.config.sample_rate)
            data = np.concatenate([self._pending, data])
            whole = len(data) // self._frame * self._frame
            self._pending = data[whole:]
            self._ingest(data[:whole])

    def _ingest(self, data: np.ndarray) -> None:
        """Whole frames: buffer them, let the engine hear them, run the VAD, feed the controller."""
        self._buffer.append(data)  # sliced by time, so being ahead of the controller is fine
        if self._listening is not None:  # before the controller sees them: a clip it asks for is all pushed
            self._listening.push(data)
            self._wake_listener()
        for start in range(0, len(data), self._frame):
            frame = data[start : start + self._frame]
            prob = None if self.config.turn_detection is None else self._speech_prob(frame)
            self._dispatch(ev.AudioFrame(self.config.frame_ms, prob))
        self._trim_buffer()

    def send(self, event: ev.Event | ev.InputAudio) -> None:
        """A client event (text, response.create/cancel, commit, clear, playback progress, truncate)."""
        if isinstance(event, ev.InputAudio):
            self.append_audio(event.samples, event.sample_rate)
            return
        with self._lock:
            if isinstance(event, ev.InputAudioCommit):
                self._flush_input()
            if isinstance(event, ev.ResponseCreate) and event.modalities is not None:
                event = replace(event, modalities=self._modalities(event.modalities))
            self._dispatch(event)

    def tick(self) -> None:
        with self._lock:
            self._dispatch(ev.Tick())

    def next_output(self, timeout: float | None = None) -> ev.Output | None:
        """The next output when no `on_output` callback was given; None after `timeout` seconds."""
        try:
            return self._outputs.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the worker has no queued job and the listener has caught up with the audio (tests, batch
        use). False on timeout."""
        deadline = time.monotonic() + timeout
        with self._heard:
            if not self._heard.wait_for(lambda: self._caught_up >= self._pushes, timeout):
                return False
        done = threading.Event()
        self._jobs.put(done.set)
        return done.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            for token in self._tokens.values():
                token.cancel()
        self._jobs.put(None)
        self._wake_listener()
        self._worker.join(timeout=10.0)
        self._listener.join(timeout=10.0)
        if self._ticker is not None:
            self._ticker.join(timeout=1.0)

    def __enter__(self) -> RealtimeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _controller_config(self, config: SessionConfig) -> ControllerConfig:
        transcribe = config.transcribe_input or not self.engine.abilities.hears_audio
        detection = config.turn_detection
        if detection is not None:
            detection = detection.for_engine(self.engine.speculative_silence_ms)
        return ControllerConfig(detection, self._modalities(config.modalities), transcribe)

    def _speech_settings(self, config: SessionConfig) -> SpeechSettings:
        return SpeechSettings(config.voice, config.speech_instructions, config.language, config.generation,
                              config.tools, transcribe=config.transcribe_input)

    def _modalities(self, wanted: tuple[str, ...]) -> tuple[str, ...]:
        """Audio out needs a synthesiser: without one, replies come as text."""
        return wanted if self.engine.synthesizer is not None or "audio" not in wanted else ("text",)

    # ------------------------------------------------------------ dispatch and actions

    def _dispatch(self, event: ev.Event) -> None:
        with self._lock:
            for action in self._controller.handle(event, self.clock()):
                self._execute(action)
            if self._listening is not None and self._controller.state.speech_item_id != self._listening.item_id:
                self._listening = None  # the turn ended (stopped, committed, cleared): its clips keep its streams

    def _execute(self, action: ev.Action) -> None:
        match action:
            case ev.StartGeneration():
                self._start_generation(action)
            case ev.CancelGeneration():
                token = self._tokens.pop(action.response_id, None)
                if token is not None:
                    token.cancel()
            case ev.TranscribeItem():
                span, audio = action.span, self._slice(action.span)
                self._jobs.put(lambda: run_transcription(self._transcripts, span, audio, self._post))
            case ev.AddUserTurn(span=ev.ItemSpan() as span):  # held as audio: no transcript is needed
                clip = self._slice(span)
                if clip is not None:
                    self.context.add_user_audio("", duration=action.audio_ms / 1000, item_id=action.item_id,
                                                audio=clip)
            case ev.AddUserTurn():
                if action.audio_ms > 0:
                    self.context.add_user_audio(action.text, duration=action.audio_ms / 1000, item_id=action.item_id)
                else:
                    self.context.add_user(action.text, item_id=action.item_id)
            case ev.AddAssistantTurn():
                self.context.add_assistant(action.text, duration=action.audio_ms / 1000, item_id=action.item_id,
                                           tool_calls=action.tool_calls)
            case ev.AddToolResult():
                self.context.add_tool_result(action.call_id, action.output)
            case ev.TruncateAssistantTurn():
                tokens = round(action.audio_ms / 1000 * self.context.audio_tokens_per_second)
                self.context.truncate_assistant(action.item_id, action.text, tokens)
            case ev.Output():
                if isinstance(action, ev.SpeechStarted):
                    self._listen(action)
                if isinstance(action, ev.ResponseDone):
                    self._tokens.pop(action.response_id, None)
                elif isinstance(action, ev.BufferCleared) and callable(getattr(self.vad, "reset", None)):
                    self.vad.reset()  # type: ignore[union-attr]
                self._emit(action)
            case _:
                pass  # CommitSpeculation / DiscardSpeculation: bookkeeping only (a cancel follows a discard)

    def _start_generation(self, command: ev.StartGeneration) -> None:
        token = CancelToken()
        self._tokens[command.response_id] = token
        history = self.context.messages()
        if command.instructions is not None:
            system = [ChatMessage("system", command.instructions)] if command.instructions else []
            history = system + [message for message in history if message.role != "system"]
        audio = {span.item_id: clip for span in command.user_items
                 if span.text is None and (clip := self._slice(span)) is not None}
        settings = self._settings

        def job() -> None:
            for clip in audio.values():  # a model that hears audio: its input of a heard turn is made now
                if not token.cancelled and (listening := self._live.find(clip)) is not None:
                    listening.hear(clip)
            if not token.cancelled:
                run_generation(self.engine, self._transcripts, command, history, audio, settings, token,
                               self._post)

        self._jobs.put(job)

    def _post(self, event: ev.Event) -> None:
        if not self._closed.is_set():
            self._dispatch(event)

    def _emit(self, output: ev.Output) -> None:
        if self._sink is not None:
            self._sink(output)
        else:
            self._outputs.put(output)

    # ------------------------------------------------------------ audio buffer

    def _slice(self, span: ev.ItemSpan) -> Audio | None:
        """The span's audio, the same object each time it is asked for (while the buffer or the last 64 kept
        spans hold it)."""
        key = (span.item_id, span.end_ms)
        if key in self._clips:
            return self._clips[key]
        rate = self.config.sample_rate
        samples = self._buffer.slice(span.start_ms * rate // 1000, span.end_ms * rate // 1000)
        if not samples.size:
            return None
        clip = self._clips[key] = Audio(samples, rate)
        self._live.tie(span.item_id, span.start_ms, clip)
        while len(self._clips) > 64:
            del self._clips[next(iter(self._clips))]
        return clip

    def _trim_buffer(self) -> None:
        """Drop audio before the start of the uncommitted input (and beyond the size cap)."""
        rate = self.config.sample_rate
        state = self._controller.state
        keep_from = state.buffer_start_ms
        detection = self.config.turn_detection
        if detection is not None and not state.turns.in_speech:
            lookback = detection.prefix_padding_ms + detection.min_speech_ms + self.config.frame_ms
            keep_from = max(keep_from, state.audio_ms - lookback)
        cap = int(self.config.max_buffer_seconds * rate)
        self._buffer.drop_before(max(keep_from * rate // 1000, self._buffer.end - cap))

    def _flush_input(self) -> None:
        """Before a manual commit: drain the resampler and pad the last partial frame, so all audio counts."""
        tail = np.zeros(0, np.float32)
        if self._resampler is not None:
            tail = np.asarray(self._resampler[1].resample_chunk(tail, last=True), dtype=np.float32)
            self._resampler = None
        data = np.concatenate([self._pending, tail])
        self._pending = np.zeros(0, np.float32)
        if data.size:
            padded = np.zeros(-(-data.size // self._frame) * self._frame, np.float32)
            padded[: data.size] = data
            self._ingest(padded)

    def _resample(self, data: np.ndarray, rate: int) -> np.ndarray:
        if rate == self.config.sample_rate:
            return data
        if self._resampler is None or self._resampler[0] != rate:
            self._resampler = (rate, soxr.ResampleStream(rate, self.config.sample_rate, 1, dtype="float32"))
        return np.asarray(self._resampler[1].resample_chunk(data), dtype=np.float32)

    def _speech_prob(self, frame: np.ndarray) -> float:
        assert self.vad is not None
        result = np.asarray(self.vad(frame), dtype=np.float64)
        return float(result.max()) if result.size else 0.0

    def _listen(self, started: ev.SpeechStarted) -> None:
        """A turn started: open the engine's streams on it and push what the buffer holds of it already."""
        self._listening = None
        if not self.config.listen:
            return
        transcripts = self._controller.state.config.transcribe_audio
        try:
            listening = Listening.open(self.engine, started.item_id, started.audio_start_ms, self.config.sample_rate,
                                       self.config.language, transcripts)
        except Exception as exc:  # the turn is recognised at its end instead
            self._emit(ev.ErrorOutput("server_error", f"listening failed: {type(exc).__name__}: {exc}"))
            return
        if listening is None:
            return
        rate = self.config.sample_rate
        listening.push(self._buffer.slice(started.audio_start_ms * rate // 1000, self._buffer.end))
        self._live.add(listening)
        self._listening = listening
        self._wake_listener()

    def _wake_listener(self) -> None:
        with self._heard:
            self._pushes += 1
            self._heard.notify_all()

    # ------------------------------------------------------------ threads

    def _listen_loop(self) -> None:
        """Run the heard turn's updates as its audio comes (never under the session lock)."""
        while not self._closed.is_set():
            with self._heard:
                self._heard.wait_for(lambda: self._pushes > self._caught_up, 0.5)
                pushes = self._pushes
            listening = self._listening
            try:
                while listening is not None and not self._closed.is_set() and not self._pausing() \
                        and listening.update():
                    with self._lock:
                        self._listen_updates += 1
            except Exception as exc:  # the turn is still recognised at its end, in one pass if need be
                with self._lock:
                    if self._listening is listening:
                        self._listening = None
                    self._emit(ev.ErrorOutput("server_error", f"listening failed: {type(exc).__name__}: {exc}"))
            if listening is not None and not self._closed.is_set() and not self._pausing():
                self._read_ahead(listening)
            with self._heard:
                self._caught_up = pushes
                self._heard.notify_all()

    def _read_ahead(self, listening: Listening) -> None:
        """Let a chat model that cannot hear read the conversation and the turn's words heard so far while the
        turn is still spoken (listener thread), so its reply reads only the rest. The newest hypothesis's words
        are read too: where the final transcript differs, the reply's cached start simply ends there (a quiet
        2-core run with settled words only left ~13 tokens, ~0.4 s, for the reply to read)."""
        chat = self.engine.chat
        if listening.transcript is None or not isinstance(chat, PreparingChat) or self.engine.abilities.hears_audio:
            return
        words = listening.transcript.heard_text
        if not words or words == listening.read_ahead:
            return
        listening.read_ahead = words
        with self._lock:
            prompt = reply_prompt(self.context.messages(), words)
        if prompt is not None:
            try:
                chat.prepare(prompt)
            except Exception as exc:  # the reply reads the whole prompt itself
                with self._lock:
                    self._emit(ev.ErrorOutput("server_error", f"reading ahead failed: {type(exc).__name__}: {exc}"))

    def _pausing(self) -> bool:
        """The speaker has paused: a hypothesis started now would still be decoding when a tentative end asks for
        the final transcript and the reply, and would slow both on a small machine (it runs again on more speech)."""
        turns = self._controller.state.turns
        return turns.in_speech and turns.silence_ms >= self.config.listen_pause_ms

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # jobs report their own failures; this keeps the worker alive regardless
                self._emit(ev.ErrorOutput("server_error", f"{type(exc).__name__}: {exc}"))

    def _tick_loop(self) -> None:
        interval = self.config.tick_interval_s or 0.05
        while not self._closed.wait(interval):
            self.tick()


def asyncio_sink(loop: asyncio.AbstractEventLoop, outputs: asyncio.Queue[ev.Output]) -> OutputSink:
    """An `on_output` for asyncio servers: outputs land in `outputs`, put from the event loop's thread."""

    def sink(output: ev.Output) -> None:
        loop.call_soon_threadsafe(outputs.put_nowait, output)

    return sink
