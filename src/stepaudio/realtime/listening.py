"""Recognition while the user speaks: the engine hears a turn as it comes, so the end of speech leaves only its
tail to recognise.

At speech start the session opens a `Listening` on the turn: the engine's transcript stream where a transcript
is needed (lite: Whisper re-decoding the growing turn), its chat model's stream where the model hears audio
(Step: the streaming audio tokenizer). Every sample of the turn is pushed into it before the controller sees
the frame, and the session's listener thread runs the streams' updates. Clips of the turn (the spans the
controller asks for: a speculation's, the committed item's; they start where the turn starts) are tied to it:
`LiveTranscriber` answers the transcript of such a clip from the stream, `Listening.hear` readies the chat
model's input for it; any other clip goes to the engine as before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from stepaudio.audio.io import Audio
from stepaudio.engines.base import (
    Engine,
    HeardStream,
    ListeningChat,
    StreamingTranscriber,
    Transcriber,
    Transcript,
    TranscriptStream,
)


@dataclass
class Listening:
    """One turn being heard: `start_ms` is where its audio starts (the controller's span start)."""

    item_id: str
    start_ms: int
    transcript: TranscriptStream | None = None
    heard: HeardStream | None = None
    updates: int = 0  # updates that did work while the turn was spoken
    read_ahead: str = ""  # the settled words the chat model last read ahead of the reply
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, engine: Engine, item_id: str, start_ms: int, sample_rate: int, language: str | None,
             transcripts: bool) -> Listening | None:
        """The streams this engine offers for the turn (a transcript one only when `transcripts` are wanted);
        None if it offers none."""
        transcript = heard = None
        if transcripts and isinstance(engine.transcriber, StreamingTranscriber):
            transcript = engine.transcriber.listen(sample_rate, language)
        if engine.abilities.hears_audio and isinstance(engine.chat, ListeningChat):
            heard = engine.chat.listen(sample_rate)
        if transcript is None and heard is None:
            return None
        return cls(item_id, start_ms, transcript, heard)

    def push(self, samples: np.ndarray) -> None:
        for stream in (self.transcript, self.heard):
            if stream is not None:
                stream.push(samples)

    def update(self) -> bool:
        """The work due on every stream (the listener thread); True if any was done."""
        with self._lock:  # one updater per turn
            did = False
            for stream in (self.transcript, self.heard):
                if stream is not None and stream.update():
                    did = True
            if did:
                self.updates += 1
            return did

    def hear(self, clip: Audio) -> None:
        if self.heard is not None:
            self.heard.hear(clip)


class LiveClips:
    """Which clips belong to a heard turn (by object: the session hands one object per span); bounded."""

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self._turns: dict[str, Listening] = {}
        self._clips: dict[int, tuple[Audio, Listening]] = {}
        self._lock = threading.Lock()

    def add(self, listening: Listening) -> None:
        with self._lock:
            self._turns[listening.item_id] = listening
            while len(self._turns) > self.limit:
                del self._turns[next(iter(self._turns))]

    def tie(self, item_id: str, start_ms: int, clip: Audio) -> None:
        """A clip of span (item_id, start_ms, ...) was cut: tie it to its turn if that turn was heard."""
        with self._lock:
            listening = self._turns.get(item_id)
            if listening is None or listening.start_ms != start_ms:
                return
            self._clips[id(clip)] = (clip, listening)
            while len(self._clips) > 4 * self.limit:
                del self._clips[next(iter(self._clips))]

    def find(self, clip: Audio) -> Listening | None:
        with self._lock:
            entry = self._clips.get(id(clip))
        return entry[1] if entry is not None and entry[0] is clip else None


class LiveTranscriber:
    """The session's transcriber: a clip of a heard turn is answered by its stream (only the tail is left to
    decode), any other by the engine's transcriber."""

    def __init__(self, inner: Transcriber, clips: LiveClips) -> None:
        self.inner = inner
        self.clips = clips

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        listening = self.clips.find(audio)
        if listening is not None and listening.transcript is not None:
            try:
                return listening.transcript.transcript(audio.samples.size)
            except Exception:  # the stream failed: the engine's one pass still answers
                pass
        return self.inner.transcribe(audio, language)
