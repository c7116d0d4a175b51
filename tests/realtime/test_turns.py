"""server_vad turn detection on synthetic probability sequences (20 ms frames)."""

from __future__ import annotations

import pytest

from stepaudio.errors import StepAudioError
from stepaudio.realtime.turns import (
    SpeechResume,
    SpeechStart,
    SpeechStop,
    TentativeEnd,
    TurnDetectionConfig,
    TurnEvent,
    TurnState,
    detect,
    reset,
)

FRAME = 20


def run(config: TurnDetectionConfig, probs: list[float], state: TurnState | None = None) -> list[tuple[int, TurnEvent]]:
    """Feed the frames; return (frame index, event) pairs."""
    state = state or TurnState()
    found = []
    for index, prob in enumerate(probs):
        state, events = detect(config, state, FRAME, prob)
        found += [(index, event) for event in events]
    return found


def frames(*spans: tuple[float, int]) -> list[float]:
    """(probability, milliseconds) spans -> per-frame probabilities."""
    return [p for prob, ms in spans for p in [prob] * (ms // FRAME)]


def test_openai_defaults() -> None:
    config = TurnDetectionConfig()
    assert (config.threshold, config.prefix_padding_ms, config.silence_duration_ms) == (0.5, 300, 500)
    assert config.create_response and config.interrupt_response


def test_start_includes_prefix_padding_and_stop_includes_silence() -> None:
    config = TurnDetectionConfig(speculative_silence_ms=None)
    events = run(config, frames((0.1, 1000), (0.9, 800), (0.2, 600)))
    assert events == [
        (50, SpeechStart(audio_start_ms=700, detected_ms=1000)),
        (114, SpeechStop(audio_start_ms=700, audio_end_ms=2300)),  # 1800 of speech end + 500 silence
    ]


def test_padding_clamped_at_the_start_of_the_stream() -> None:
    events = run(TurnDetectionConfig(speculative_silence_ms=None), frames((0.9, 100), (0.0, 500)))
    assert events[0][1] == SpeechStart(0, 0)
    assert events[1][1] == SpeechStop(0, 600)


def test_padding_never_reaches_into_the_previous_turn() -> None:
    config = TurnDetectionConfig(speculative_silence_ms=None)
    events = run(config, frames((0.9, 200), (0.0, 500), (0.0, 100), (0.9, 200), (0.0, 500)))
    starts = [event for _, event in events if isinstance(event, SpeechStart)]
    assert starts == [SpeechStart(0, 0), SpeechStart(700, 800)]  # floor 700, not 800 - 300


def test_threshold_is_inclusive_and_configurable() -> None:
    assert run(TurnDetectionConfig(), [0.49] * 10) == []
    assert run(TurnDetectionConfig(), [0.5])[0][1] == SpeechStart(0, 0)
    assert run(TurnDetectionConfig(threshold=0.8), [0.7] * 10) == []


def test_short_pause_under_silence_duration_does_not_end_the_turn() -> None:
    config = TurnDetectionConfig(speculative_silence_ms=None)
    events = run(config, frames((0.9, 300), (0.0, 480), (0.9, 300), (0.0, 500)))
    assert [type(event) for _, event in events] == [SpeechStart, SpeechStop]
    assert events[1][1] == SpeechStop(0, 1580)


def test_tentative_end_before_confirmed_end_and_resume() -> None:
    config = TurnDetectionConfig(speculative_silence_ms=200)
    events = run(config, frames((0.9, 300), (0.0, 300), (0.9, 200), (0.0, 500)))
    assert [event for _, event in events] == [
        SpeechStart(0, 0),
        TentativeEnd(500),
        SpeechResume(600),
        TentativeEnd(1000),
        SpeechStop(0, 1300),
    ]


def test_no_speculation_when_tentative_silence_is_not_shorter() -> None:
    config = TurnDetectionConfig(speculative_silence_ms=500)
    assert not config.speculates
    events = run(config, frames((0.9, 300), (0.0, 500)))
    assert [type(event) for _, event in events] == [SpeechStart, SpeechStop]


def test_the_engine_default_resolves_to_the_engine_own_tentative_end() -> None:
    config = TurnDetectionConfig()
    assert config.speculative_silence_ms == "engine" and config.speculation_ms == 200 and config.speculates
    assert config.for_engine(100).speculation_ms == 100
    assert TurnDetectionConfig(speculative_silence_ms=300).for_engine(100).speculation_ms == 300
    assert TurnDetectionConfig(speculative_silence_ms=None).for_engine(100).speculation_ms is None
    assert not config.for_engine(600).speculates  # not shorter than the confirmed end
    for bad in (-1, "soon", 1.5):
        with pytest.raises(StepAudioError, match="speculative_silence_ms"):
            TurnDetectionConfig(speculative_silence_ms=bad)  # type: ignore[arg-type]


def test_min_speech_ms_ignores_clicks() -> None:
    config = TurnDetectionConfig(min_speech_ms=100)
    assert run(config, frames((0.9, 60), (0.0, 200), (0.9, 60))) == []
    events = run(config, frames((0.0, 400), (0.9, 200)))
    assert events[0] == (24, SpeechStart(audio_start_ms=100, detected_ms=400))


def test_reset_forgets_speech_in_progress() -> None:
    config = TurnDetectionConfig()
    state = TurnState()
    for _ in range(10):
        state, _events = detect(config, state, FRAME, 0.9)
    state = reset(state)
    assert not state.in_speech and state.floor_ms == 200
    state, events = detect(config, state, FRAME, 0.9)
    assert events == (SpeechStart(200, 200),)


@pytest.mark.parametrize("field,value", [("threshold", 1.5), ("silence_duration_ms", -1), ("idle_timeout_ms", 0)])
def test_invalid_config(field: str, value: float) -> None:
    with pytest.raises(StepAudioError, match=field):
        TurnDetectionConfig(**{field: value})  # type: ignore[arg-type]
