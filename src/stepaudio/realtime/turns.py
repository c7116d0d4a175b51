"""Turn detection with OpenAI `server_vad` semantics, plus an earlier tentative end for speculation.

Frames carry a speech probability. Speech starts at the first frame at or above `threshold` (after
`min_speech_ms`, 0 as in OpenAI); the turn's audio begins `prefix_padding_ms` before it, never before the
end of the previous turn. Speech stops once `silence_duration_ms` of frames below the threshold follow the
last speech frame; the turn's audio ends there, silence included (OpenAI's `audio_end_ms`). Defaults are
OpenAI's: 0.5, 300 ms, 500 ms. The tentative end after `speculative_silence_ms` lets a response start
early; a speech frame before the confirmed end resumes the same turn. Its default, "engine", is the engine's
own (`Engine.speculative_silence_ms`): a pause in speech starts a speculation that is thrown away, which costs
a small model little and a large one a prefill.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from stepaudio.errors import StepAudioError

DEFAULT_SPECULATIVE_MS = 200  # a tentative end where the engine names none (Engine.speculative_silence_ms)


@dataclass(frozen=True)
class TurnDetectionConfig:
    type: Literal["server_vad"] = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    speculative_silence_ms: int | Literal["engine"] | None = "engine"  # None (or >= silence_duration_ms): none
    min_speech_ms: int = 0
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise StepAudioError(f"turn_detection.threshold must be in [0, 1], got {self.threshold}")
        for name in ("prefix_padding_ms", "silence_duration_ms", "min_speech_ms"):
            if getattr(self, name) < 0:
                raise StepAudioError(f"turn_detection.{name} must be >= 0, got {getattr(self, name)}")
        speculative = self.speculative_silence_ms
        if speculative not in (None, "engine") and (not isinstance(speculative, int) or speculative < 0):
            raise StepAudioError(f"speculative_silence_ms must be >= 0, 'engine' or None, got {speculative!r}")
        if self.idle_timeout_ms is not None and self.idle_timeout_ms <= 0:
            raise StepAudioError(f"idle_timeout_ms must be positive, got {self.idle_timeout_ms}")

    @property
    def speculation_ms(self) -> int | None:
        """The tentative end's silence ("engine" before a session resolves it: the common default)."""
        speculative = self.speculative_silence_ms
        return DEFAULT_SPECULATIVE_MS if speculative == "engine" else speculative

    @property
    def speculates(self) -> bool:
        speculative = self.speculation_ms
        return speculative is not None and speculative < self.silence_duration_ms

    def for_engine(self, speculative_silence_ms: int) -> TurnDetectionConfig:
        """This detection with "engine" replaced by the engine's own tentative end."""
        if self.speculative_silence_ms != "engine":
            return self
        return replace(self, speculative_silence_ms=speculative_silence_ms)


@dataclass(frozen=True)
class SpeechStart:
    audio_start_ms: int  # padded start
    detected_ms: int  # first speech frame


@dataclass(frozen=True)
class TentativeEnd:
    audio_end_ms: int


@dataclass(frozen=True)
class SpeechResume:
    at_ms: int


@dataclass(frozen=True)
class SpeechStop:
    audio_start_ms: int
    audio_end_ms: int


TurnEvent = SpeechStart | TentativeEnd | SpeechResume | SpeechStop


@dataclass(frozen=True)
class TurnState:
    cursor_ms: int = 0
    floor_ms: int = 0  # end of the previous turn: padding never reaches before it
    candidate_ms: int | None = None  # first frame of speech not yet long enough to count
    in_speech: bool = False
    start_ms: int = 0
    last_speech_end_ms: int = 0
    tentative: bool = False

    @property
    def silence_ms(self) -> int:
        return self.cursor_ms - self.last_speech_end_ms if self.in_speech else 0


def detect(
    config: TurnDetectionConfig, state: TurnState, duration_ms: int, prob: float
) -> tuple[TurnState, tuple[TurnEvent, ...]]:
    """Advance by one frame of `duration_ms` with speech probability `prob`."""
    begin, end = state.cursor_ms, state.cursor_ms + duration_ms
    state = replace(state, cursor_ms=end)
    if prob >= config.threshold:
        if state.in_speech:
            events: tuple[TurnEvent, ...] = (SpeechResume(begin),) if state.tentative else ()
            return replace(state, last_speech_end_ms=end, tentative=False), events
        candidate = begin if state.candidate_ms is None else state.candidate_ms
        if end - candidate < config.min_speech_ms:
            return replace(state, candidate_ms=candidate), ()
        start = max(state.floor_ms, candidate - config.prefix_padding_ms)
        started = replace(state, candidate_ms=None, in_speech=True, start_ms=start, last_speech_end_ms=end)
        return started, (SpeechStart(start, candidate),)
    if not state.in_speech:
        return replace(state, candidate_ms=None), ()
    silence = end - state.last_speech_end_ms
    if silence >= config.silence_duration_ms:
        stopped = replace(state, in_speech=False, tentative=False, floor_ms=end)
        return stopped, (SpeechStop(state.start_ms, end),)
    if config.speculates and not state.tentative and silence >= (config.speculation_ms or 0):
        return replace(state, tentative=True), (TentativeEnd(end),)
    return state, ()


def reset(state: TurnState, floor_ms: int | None = None) -> TurnState:
    """Forget any speech in progress (manual commit, buffer clear); audio before `floor_ms` is spent."""
    floor = state.cursor_ms if floor_ms is None else floor_ms
    return TurnState(cursor_ms=state.cursor_ms, floor_ms=floor)
