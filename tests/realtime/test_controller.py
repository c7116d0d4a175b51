"""The pure controller with a fake clock: every transition and the actions it decides, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from stepaudio.engines.base import ToolCall
from stepaudio.realtime import events as ev
from stepaudio.realtime.controller import Controller, ControllerConfig, ControllerState, Phase, step
from stepaudio.realtime.turns import TurnDetectionConfig

FRAME_MS = 20
NO_SPECULATION = TurnDetectionConfig(speculative_silence_ms=None)


@dataclass
class Driver:
    """Feeds events at a fake time; audio frames advance the clock in real time."""

    state: ControllerState
    now: float = 100.0
    log: list[ev.Action] = field(default_factory=list)

    @property
    def phase(self) -> Phase:
        return self.state.phase

    def send(self, event: ev.Event) -> list[ev.Action]:
        self.state, actions = step(self.state, event, self.now)
        self.log += actions
        return list(actions)

    def wait(self, seconds: float) -> list[ev.Action]:
        self.now += seconds
        return self.send(ev.Tick())

    def audio(self, prob: float | None, ms: int) -> list[ev.Action]:
        actions = []
        for _ in range(ms // FRAME_MS):
            self.now += FRAME_MS / 1000
            actions += self.send(ev.AudioFrame(FRAME_MS, prob))
        return actions

    def speak(self, response_id: str, text: str, seconds: float) -> list[ev.Action]:
        return self.send(ev.GenerationAudio(response_id, np.zeros(int(seconds * 1000), np.float32), 1000, text))


# the scripts below time their pauses against a tentative end 200 ms into the silence
SPECULATING = TurnDetectionConfig(speculative_silence_ms=200)


def driver(**config: Any) -> Driver:
    config.setdefault("turn_detection", SPECULATING)
    return Driver(ControllerState(ControllerConfig(**config)))


def kinds(actions: list[ev.Action]) -> list[str]:
    return [type(action).__name__ for action in actions]


def only(actions: list[ev.Action], kind: type) -> list[Any]:
    return [action for action in actions if isinstance(action, kind)]


def start_of(actions: list[ev.Action]) -> ev.StartGeneration:
    (command,) = only(actions, ev.StartGeneration)
    return command


def test_idle_listening_does_nothing() -> None:
    d = driver()
    assert d.phase is Phase.LISTENING
    assert d.wait(5.0) == []
    assert d.audio(0.1, 2000) == []
    assert d.phase is Phase.LISTENING
    assert d.state.audio_ms == 2000


def test_turn_without_speculation_starts_a_committed_response() -> None:
    d = driver(turn_detection=NO_SPECULATION)
    d.audio(0.0, 1000)
    actions = d.audio(0.9, 20)
    assert actions == [ev.SpeechStarted("item_1", 700)]
    d.audio(0.9, 580)
    assert d.phase is Phase.USER_SPEAKING
    actions = d.audio(0.0, 500)
    assert kinds(actions) == ["SpeechStopped", "AudioCommitted", "ItemAdded", "StartGeneration", "ResponseCreated",
                              "ItemAdded"]
    assert actions[0] == ev.SpeechStopped("item_1", 2100)
    assert start_of(actions) == ev.StartGeneration("resp_2", "item_3", (ev.ItemSpan("item_1", 700, 2100),), False)
    assert actions[-1] == ev.ItemAdded("item_3", "assistant", "item_1", "output_audio")
    assert d.phase is Phase.RESPONDING


def test_committed_response_streams_then_speaks_until_played() -> None:
    d = driver(turn_detection=NO_SPECULATION)
    d.audio(0.9, 400)
    d.audio(0.0, 500)
    actions = d.send(ev.InputTranscribed("item_1", 900, "what is the weather"))
    assert actions == [ev.InputTranscriptionCompleted("item_1", "what is the weather"),
                       ev.AddUserTurn("item_1", "what is the weather", 900.0)]
    assert d.send(ev.GenerationText("resp_2", "It is sunny.")) == []
    actions = d.speak("resp_2", "It is sunny.", 1.0)
    assert kinds(actions) == ["OutputTranscriptDelta", "OutputAudioDelta"]
    assert d.phase is Phase.SPEAKING
    actions = d.send(ev.GenerationDone("resp_2"))
    assert kinds(actions) == ["OutputTranscriptDone", "OutputAudioDone", "ResponseDone", "AddAssistantTurn"]
    assert actions[0] == ev.OutputTranscriptDone("resp_2", "item_3", "It is sunny.")
    assert actions[2] == ev.ResponseDone("resp_2", "item_3", "completed", "stop")
    assert actions[3] == ev.AddAssistantTurn("item_3", "It is sunny.", 1000.0)
    d.wait(0.5)
    assert d.phase is Phase.SPEAKING  # still playing
    d.wait(0.6)
    assert d.phase is Phase.LISTENING
    assert d.state.last_response is not None and d.state.last_response.response_id == "resp_2"


def test_speculation_committed_on_confirmed_silence() -> None:
    d = driver()
    d.audio(0.9, 600)
    actions = d.audio(0.0, 200)
    command = start_of(actions)
    assert command == ev.StartGeneration("resp_2", "item_3", (ev.ItemSpan("item_1", 0, 800),), True)
    assert kinds(actions) == ["StartGeneration"]  # nothing for the client yet
    assert d.phase is Phase.RESPONDING
    assert d.state.response is not None and d.state.response.speculative
    assert d.send(ev.InputTranscribed("item_1", 800, "hello")) == []  # held until committed
    d.now += 0.05
    assert d.send(ev.GenerationText("resp_2", "Hi there.")) == []
    assert d.speak("resp_2", "Hi there.", 0.8) == []
    assert d.send(ev.GenerationDone("resp_2")) == []
    actions = d.audio(0.0, 300)
    assert kinds(actions) == [
        "SpeechStopped", "AudioCommitted", "ItemAdded", "InputTranscriptionCompleted", "AddUserTurn",
        "CommitSpeculation", "ResponseCreated", "ItemAdded", "OutputTranscriptDelta", "OutputAudioDelta",
        "OutputTranscriptDone", "OutputAudioDone", "ResponseDone", "AddAssistantTurn"]
    assert actions[0] == ev.SpeechStopped("item_1", 1100)
    assert only(actions, ev.AddUserTurn) == [ev.AddUserTurn("item_1", "hello", 1100.0)]
    commit = only(actions, ev.CommitSpeculation)[0]
    assert commit.window_ms == pytest.approx(350.0)
    metrics = d.state.metrics
    assert (metrics.started, metrics.committed, metrics.discarded, metrics.commit_rate) == (1, 1, 0, 1.0)
    assert metrics.mean_window_ms == pytest.approx(350.0)
    assert metrics.mean_saved_ms == pytest.approx(50.0)  # audio was ready 50 ms after the start
    assert d.phase is Phase.SPEAKING
    d.wait(0.81)
    assert d.phase is Phase.LISTENING


def test_speculation_saves_the_whole_window_when_generation_is_slow() -> None:
    d = driver()
    d.audio(0.9, 400)
    d.audio(0.0, 500)  # tentative at 600, confirmed at 900
    assert d.state.response is not None and not d.state.response.speculative
    d.now += 1.0
    actions = d.speak("resp_2", "Late.", 0.5)
    assert kinds(actions) == ["OutputTranscriptDelta", "OutputAudioDelta"]
    assert d.state.metrics.mean_saved_ms == pytest.approx(300.0)


def test_speculation_discarded_when_the_user_goes_on_and_restarted() -> None:
    d = driver()
    d.audio(0.9, 400)
    first = start_of(d.audio(0.0, 300))
    assert first.speculative and first.user_items == (ev.ItemSpan("item_1", 0, 600),)
    d.speak(first.response_id, "Premature.", 0.5)
    actions = d.audio(0.9, 20)
    assert actions == [ev.DiscardSpeculation(first.response_id), ev.CancelGeneration(first.response_id)]
    assert d.phase is Phase.USER_SPEAKING
    d.audio(0.9, 380)
    assert d.speak(first.response_id, "Stale.", 0.5) == []  # a cancelled worker still finishing
    assert d.send(ev.GenerationDone(first.response_id)) == []
    second = start_of(d.audio(0.0, 200))
    assert second.speculative and second.response_id != first.response_id
    assert second.user_items == (ev.ItemSpan("item_1", 0, 1300),)  # the whole turn, padding included
    actions = d.audio(0.0, 300)
    assert "CommitSpeculation" in kinds(actions)
    assert only(actions, ev.ResponseCreated)[0].response_id == second.response_id
    metrics = d.state.metrics
    assert (metrics.started, metrics.committed, metrics.discarded) == (2, 1, 1)
    assert metrics.commit_rate == 0.5
    assert not any(isinstance(a, ev.Output) and getattr(a, "response_id", None) == first.response_id for a in d.log)


def test_barge_in_cancels_and_truncates_to_played_audio() -> None:
    d = driver(turn_detection=NO_SPECULATION)
    d.audio(0.9, 400)
    d.audio(0.0, 500)
    d.send(ev.InputTranscribed("item_1", 900, "tell me a story"))
    d.send(ev.GenerationText("resp_2", "Once upon a time. There was a small red fox."))
    d.speak("resp_2", "Once upon a time.", 1.0)
    d.speak("resp_2", "There was a small red fox.", 1.2)  # queued behind the first second
    d.audio(0.0, 1300)  # 1.3 s later: 0.3 s into the second sentence (6 words, 1.2 s)
    actions = d.audio(0.9, 20)  # user speaks again (detected 20 ms later: played 1.32 s)
    assert kinds(actions) == ["SpeechStarted", "CancelGeneration", "ResponseDone", "ItemTruncated",
                              "AddAssistantTurn"]
    assert actions[2] == ev.ResponseDone("resp_2", "item_3", "cancelled", "turn_detected")
    assert actions[3] == ev.ItemTruncated("item_3", 1320)
    assert actions[4] == ev.AddAssistantTurn("item_3", "Once upon a time. There", pytest.approx(1320.0))  # type: ignore[arg-type]
    assert d.phase is Phase.INTERRUPTED
    assert d.state.interruptions == 1
    assert d.send(ev.GenerationDone("resp_2")) == []
    d.audio(0.9, 300)
    actions = d.audio(0.0, 500)
    assert "StartGeneration" in kinds(actions)
    assert d.phase is Phase.RESPONDING


def test_barge_in_after_generation_done_truncates_the_context_turn() -> None:
    d = driver(turn_detection=NO_SPECULATION)
    d.audio(0.9, 400)
    d.audio(0.0, 500)
    d.send(ev.InputTranscribed("item_1", 900, "hi"))
    d.send(ev.GenerationText("resp_2", "one two three four"))
    d.speak("resp_2", "one two three four", 2.0)
    d.send(ev.GenerationDone("resp_2"))
    d.now += 0.98
    actions = d.audio(0.9, 20)
    assert kinds(actions) == ["SpeechStarted", "ItemTruncated", "TruncateAssistantTurn"]
    assert actions[2] == ev.TruncateAssistantTurn("item_3", "one two", pytest.approx(1000.0))  # type: ignore[arg-type]


def test_reported_playback_progress_overrides_the_estimate() -> None:
    d = driver(turn_detection=NO_SPECULATION)
    d.audio(0.9, 400)
    d.audio(0.0, 500)
    d.send(ev.InputTranscribed("item_1", 900, "hi"))
    d.speak("resp_2", "a b c d e f g h i j", 2.0)
    d.wait(1.5)
    d.send(ev.PlaybackProgress(200.0, "item_3"))  # the client started late
    d.now += 0.1
    actions = d.send(ev.ResponseCancel())
    assert only(actions, ev.ItemTruncated) == [ev.ItemTruncated("item_3", 300)]
    assert only(actions, ev.AddAssistantTurn)[0].text == "a"


def test_client_cancel_and_errors() -> None:
    d = driver(turn_detection=None)
    assert kinds(d.send(ev.ResponseCancel())) == ["ErrorOutput"]
    d.send(ev.TextInput("hello"))
    d.send(ev.ResponseCreate())
    actions = d.send(ev.ResponseCreate())
    assert actions == [ev.ErrorOutput("conversation_already_has_active_response",
                                      "response resp_2 is still in progress")]


def test_cancel_before_any_audio_keeps_nothing() -> None:
    d = driver(turn_detection=None)
    d.send(ev.TextInput("hello"))
    d.send(ev.ResponseCreate())
    d.send(ev.GenerationText("resp_2", "Hello! How"))
    actions = d.send(ev.ResponseCancel())
    assert kinds(actions) == ["CancelGeneration", "ResponseDone"]
    assert d.phase is Phase.LISTENING


def test_manual_commit_then_response_create() -> None:
    d = driver(turn_detection=None)
    assert d.audio(None, 1200) == []
    assert d.phase is Phase.LISTENING
    actions = d.send(ev.InputAudioCommit())
    assert actions == [ev.AudioCommitted("item_1", None), ev.ItemAdded("item_1", "user", None, "input_audio"),
                       ev.TranscribeItem(ev.ItemSpan("item_1", 0, 1200))]
    actions = d.send(ev.ResponseCreate())
    assert start_of(actions) == ev.StartGeneration("resp_2", "item_3", (ev.ItemSpan("item_1", 0, 1200),), False)
    actions = d.send(ev.InputTranscribed("item_1", 1200, "manual turn"))
    assert kinds(actions) == ["InputTranscriptionCompleted", "AddUserTurn"]
    assert kinds(d.send(ev.InputAudioCommit())) == ["ErrorOutput"]  # nothing new buffered


def test_text_input_goes_to_the_context_at_once_and_text_modality_streams_text() -> None:
    d = driver(turn_detection=None, modalities=("text",))
    actions = d.send(ev.TextInput("2+2?"))
    assert actions == [ev.ItemAdded("item_1", "user", None, "input_text", "2+2?"), ev.AddUserTurn("item_1", "2+2?")]
    command = start_of(d.send(ev.ResponseCreate()))
    assert command.user_items == () and command.modalities == ("text",)
    assert d.send(ev.GenerationText("resp_2", "4")) == [ev.OutputTextDelta("resp_2", "item_3", "4")]
    actions = d.send(ev.GenerationDone("resp_2"))
    assert kinds(actions) == ["OutputTextDone", "ResponseDone", "AddAssistantTurn"]
    assert d.phase is Phase.LISTENING


def test_user_turn_enters_the_context_before_the_reply() -> None:
    d = driver(turn_detection=None)
    d.audio(None, 600)
    d.send(ev.InputAudioCommit())
    d.send(ev.TextInput("and this"))  # waits behind the untranscribed audio item
    d.send(ev.ResponseCreate())
    d.send(ev.InputTranscribed("item_1", 600, "first"))
    d.send(ev.GenerationText("resp_3", "ok"))
    d.send(ev.GenerationDone("resp_3"))
    edits = [(type(a).__name__, a.text) for a in d.log if isinstance(a, ev.AddUserTurn | ev.AddAssistantTurn)]
    assert edits == [("AddUserTurn", "first"), ("AddUserTurn", "and this"), ("AddAssistantTurn", "ok")]


def test_generation_failure_reports_and_returns_to_listening() -> None:
    d = driver(turn_detection=None)
    d.send(ev.TextInput("hi"))
    d.send(ev.ResponseCreate())
    actions = d.send(ev.GenerationDone("resp_2", "stop", "RuntimeError: boom"))
    assert ev.ErrorOutput("generation_failed", "RuntimeError: boom") in actions
    assert only(actions, ev.ResponseDone)[0].status == "failed"
    assert d.phase is Phase.LISTENING


def test_length_finish_is_incomplete() -> None:
    d = driver(turn_detection=None, modalities=("text",))
    d.send(ev.TextInput("hi"))
    d.send(ev.ResponseCreate())
    d.send(ev.GenerationText("resp_2", "abc"))
    actions = d.send(ev.GenerationDone("resp_2", "length"))
    assert only(actions, ev.ResponseDone)[0].status == "incomplete"


def test_no_interrupt_response_keeps_speaking() -> None:
    d = driver(turn_detection=TurnDetectionConfig(interrupt_response=False, speculative_silence_ms=None))
    d.audio(0.9, 400)
    d.audio(0.0, 500)
    d.speak("resp_2", "a long answer", 5.0)
    actions = d.audio(0.9, 400)
    assert kinds(actions) == ["SpeechStarted"]
    actions = d.audio(0.0, 500)
    assert "TranscribeItem" in kinds(actions) and "StartGeneration" not in kinds(actions)
    assert d.phase is Phase.SPEAKING


def test_no_create_response_only_commits_and_transcribes() -> None:
    d = driver(turn_detection=TurnDetectionConfig(create_response=False))
    d.audio(0.9, 400)
    actions = d.audio(0.0, 500)
    assert kinds(actions) == ["SpeechStopped", "AudioCommitted", "ItemAdded", "TranscribeItem"]
    assert d.phase is Phase.LISTENING


def test_clear_discards_speculation() -> None:
    d = driver()
    d.audio(0.9, 400)
    d.audio(0.0, 200)
    actions = d.send(ev.InputAudioClear())
    assert kinds(actions) == ["DiscardSpeculation", "CancelGeneration", "BufferCleared"]
    assert d.audio(0.0, 600) == []
    assert d.phase is Phase.LISTENING


def test_idle_timeout_prompts_a_response_once() -> None:
    d = driver(turn_detection=TurnDetectionConfig(idle_timeout_ms=2000, speculative_silence_ms=None))
    d.send(ev.TextInput("hi"))
    d.send(ev.ResponseCreate())
    d.speak("resp_2", "Hello.", 0.5)
    d.send(ev.GenerationDone("resp_2"))
    d.wait(1.0)
    assert d.phase is Phase.LISTENING
    assert d.wait(1.0) == []
    actions = d.wait(1.1)
    assert kinds(actions) == ["TimeoutTriggered", "StartGeneration", "ResponseCreated", "ItemAdded"]
    d.send(ev.GenerationDone(start_of(actions).response_id))
    assert d.phase is Phase.LISTENING


def test_client_truncate_of_a_finished_item() -> None:
    d = driver(turn_detection=None)
    d.send(ev.TextInput("hi"))
    d.send(ev.ResponseCreate())
    d.send(ev.GenerationText("resp_2", "one two three four"))
    d.speak("resp_2", "one two three four", 1.0)
    d.send(ev.GenerationDone("resp_2"))
    d.wait(2.0)
    actions = d.send(ev.ItemTruncate("item_3", 500))
    assert actions == [ev.ItemTruncated("item_3", 500), ev.TruncateAssistantTurn("item_3", "one two", 500.0)]
    assert kinds(d.send(ev.ItemTruncate("nope", 1))) == ["ErrorOutput"]


def test_controller_object_and_step_agree() -> None:
    controller = Controller(ControllerConfig(turn_detection=None))
    state = ControllerState(ControllerConfig(turn_detection=None))
    for event in (ev.TextInput("a"), ev.ResponseCreate(), ev.GenerationText("resp_2", "b")):
        state, expected = step(state, event, 1.0)
        assert controller.handle(event, 1.0) == expected
    assert controller.state == state and controller.phase is Phase.RESPONDING


def test_outputs_name_their_openai_events() -> None:
    names = {cls.openai_type for cls in ev.Output.__subclasses__()}
    assert {"input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed", "response.created", "response.done", "response.output_audio.delta",
            "response.output_audio.done", "response.output_audio_transcript.delta",
            "response.output_audio_transcript.done", "conversation.item.added",
            "conversation.item.truncated"} <= names


def test_config_update_to_manual_drops_speculation_and_speech() -> None:
    d = driver()
    d.audio(0.9, 400)
    d.audio(0.0, 200)
    assert d.state.response is not None and d.state.response.speculative
    actions = d.send(ev.ConfigUpdate(ControllerConfig(turn_detection=None)))
    assert kinds(actions) == ["DiscardSpeculation", "CancelGeneration"]
    assert d.phase is Phase.LISTENING
    assert d.audio(0.9, 400) == []  # no VAD any more: the audio just buffers
    actions = d.send(ev.InputAudioCommit())
    assert only(actions, ev.TranscribeItem) == [ev.TranscribeItem(ev.ItemSpan("item_4", 0, 1000))]


def test_config_update_of_modalities_keeps_the_turn() -> None:
    d = driver()
    d.audio(0.9, 400)
    detection = d.state.config.turn_detection
    assert d.send(ev.ConfigUpdate(ControllerConfig(detection, ("text",)))) == []
    assert d.phase is Phase.USER_SPEAKING
    with pytest.raises(TypeError):
        d.send(ev.ConfigUpdate("server_vad"))  # type: ignore[arg-type]


def test_barge_in_before_the_transcript_keeps_the_user_turn() -> None:
    d = driver(turn_detection=NO_SPECULATION)
    d.audio(0.9, 400)
    d.audio(0.0, 500)  # resp_2 starts; its worker has not transcribed item_1 yet
    actions = d.audio(0.9, 20)
    assert kinds(actions) == ["SpeechStarted", "CancelGeneration", "ResponseDone", "TranscribeItem"]
    assert actions[-1] == ev.TranscribeItem(ev.ItemSpan("item_1", 0, 900))
    assert only(d.log, ev.AddUserTurn) == []
    actions = d.send(ev.InputTranscribed("item_1", 900, "wait"))
    assert actions == [ev.InputTranscriptionCompleted("item_1", "wait"), ev.AddUserTurn("item_1", "wait", 900.0)]
    d.audio(0.9, 200)
    d.audio(0.0, 500)
    d.send(ev.InputTranscribed("item_4", 1620, "and then"))
    assert [a.text for a in only(d.log, ev.AddUserTurn)] == ["wait", "and then"]


def test_tool_call_round_trip() -> None:
    d = driver(turn_detection=None, modalities=("text",))
    d.send(ev.TextInput("weather in Paris?"))
    d.send(ev.ResponseCreate())
    call = ToolCall("call_1", "weather", '{"city": "Paris"}')
    actions = d.send(ev.GenerationToolCall("resp_2", call))
    assert actions == [ev.ItemAdded("item_4", "assistant", "item_3", "function_call", "weather"),
                       ev.FunctionCallArgumentsDone("resp_2", "item_4", "call_1", "weather", '{"city": "Paris"}')]
    actions = d.send(ev.GenerationDone("resp_2", "tool_calls"))
    assert only(actions, ev.ResponseDone)[0].status == "completed"
    assert only(actions, ev.AddAssistantTurn) == [ev.AddAssistantTurn("item_3", "", 0.0, (call,))]
    actions = d.send(ev.FunctionCallOutput("call_1", '{"sky": "clear"}'))
    assert actions == [ev.ItemAdded("item_5", "tool", "item_4", "function_call_output", '{"sky": "clear"}'),
                       ev.AddToolResult("item_5", "call_1", '{"sky": "clear"}')]
    assert start_of(d.send(ev.ResponseCreate())).user_items == ()


def test_tool_calls_of_a_speculation_are_held_until_commit() -> None:
    d = driver()
    d.audio(0.9, 400)
    d.audio(0.0, 200)
    call = ToolCall("c", "lookup", "{}")
    assert d.send(ev.GenerationToolCall("resp_2", call)) == []
    actions = d.audio(0.0, 300)
    assert kinds(actions)[-2:] == ["ItemAdded", "FunctionCallArgumentsDone"]


def test_response_create_overrides_instructions_and_modalities() -> None:
    d = driver(turn_detection=None)  # an audio session
    actions = d.send(ev.ResponseCreate(instructions="Greet the user.", modalities=("text",)))
    command = start_of(actions)
    assert (command.instructions, command.modalities) == ("Greet the user.", ("text",))
    assert actions[-1] == ev.ItemAdded("item_2", "assistant", None, "output_text")
    assert d.send(ev.GenerationText("resp_1", "Hi!")) == [ev.OutputTextDelta("resp_1", "item_2", "Hi!")]
    assert kinds(d.send(ev.GenerationDone("resp_1")))[0] == "OutputTextDone"


def test_client_truncate_after_barge_in_corrects_the_estimate() -> None:
    d = driver(turn_detection=NO_SPECULATION)
    d.audio(0.9, 400)
    d.audio(0.0, 500)
    d.send(ev.InputTranscribed("item_1", 900, "hi"))
    d.send(ev.GenerationText("resp_2", "one two three four"))
    d.speak("resp_2", "one two three four", 2.0)
    actions = d.audio(0.9, 20)  # barge-in 20 ms after the audio went out: nothing heard by our estimate
    assert kinds(actions) == ["SpeechStarted", "CancelGeneration", "ResponseDone", "ItemTruncated"]
    actions = d.send(ev.ItemTruncate("item_3", 1000))  # the client had played more (it buffered ahead)
    assert actions == [ev.ItemTruncated("item_3", 1000), ev.AddAssistantTurn("item_3", "one two", 1000, ())]
    actions = d.send(ev.ItemTruncate("item_3", 500))
    assert actions == [ev.ItemTruncated("item_3", 500), ev.TruncateAssistantTurn("item_3", "one", 500)]


def test_late_truncate_does_not_reorder_the_context() -> None:
    d = driver(turn_detection=None)
    d.send(ev.TextInput("hi"))
    d.send(ev.ResponseCreate())
    d.speak("resp_2", "one two three four", 2.0)
    d.send(ev.ResponseCancel())  # nothing heard yet: no assistant turn
    d.send(ev.TextInput("next"))  # the context moved on
    actions = d.send(ev.ItemTruncate("item_3", 1000))
    assert actions == [ev.ItemTruncated("item_3", 1000)]
