"""Random event streams through the controller: it never fails and its bookkeeping stays consistent."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stepaudio.engines.base import ToolCall
from stepaudio.realtime import events as ev
from stepaudio.realtime.controller import ControllerConfig, ControllerState, step
from stepaudio.realtime.turns import TurnDetectionConfig

OPS = st.one_of(
    st.tuples(st.just("audio"), st.sampled_from([0.0, 0.0, 0.3, 1.0]), st.integers(1, 50)),
    st.tuples(st.just("worker"), st.sampled_from(["text", "audio", "done", "transcribed", "error", "tool"]),
              st.just(0)),
    st.tuples(st.just("client"), st.sampled_from(["create", "cancel", "text", "commit", "clear", "progress",
                                                  "truncate", "tool_output"]), st.just(0)),
    st.tuples(st.just("wait"), st.floats(0, 3), st.just(0)),
)


def worker_event(state: ControllerState, kind: str) -> ev.Event | None:
    response = state.response
    if kind == "transcribed":
        pending = [item for item in state.items if item.requested_end_ms is not None]
        return ev.InputTranscribed(pending[0].item_id, pending[0].requested_end_ms or 0, "words") if pending else None
    if response is None:
        return None
    rid = response.response_id
    if kind == "text":
        return ev.GenerationText(rid, "some text. ")
    if kind == "audio":
        return ev.GenerationAudio(rid, np.zeros(240, np.float32), 1000, "some text.")
    if kind == "tool":
        return ev.GenerationToolCall(rid, ToolCall("call", "f", "{}"))
    return ev.GenerationDone(rid, "stop", "boom" if kind == "error" else None)


def client_event(state: ControllerState, kind: str) -> ev.Event:
    item = state.last_response.item_id if state.last_response else "item_x"
    events: dict[str, ev.Event] = {
        "create": ev.ResponseCreate(), "cancel": ev.ResponseCancel(), "text": ev.TextInput("typed"),
        "commit": ev.InputAudioCommit(), "clear": ev.InputAudioClear(), "progress": ev.PlaybackProgress(100.0),
        "truncate": ev.ItemTruncate(item, 50.0), "tool_output": ev.FunctionCallOutput("call", "42"),
    }
    return events[kind]


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(OPS, max_size=80), speculative=st.sampled_from([None, 100, 200]),
       manual=st.booleans(), interrupt=st.booleans())
def test_random_streams_keep_invariants(ops: list[tuple[str, object, int]], speculative: int | None, manual: bool,
                                        interrupt: bool) -> None:
    detection = None if manual else TurnDetectionConfig(speculative_silence_ms=speculative,
                                                        interrupt_response=interrupt)
    state = ControllerState(ControllerConfig(turn_detection=detection))
    now = 0.0
    log: list[ev.Action] = []
    for op, arg, count in ops:
        events: list[ev.Event] = []
        if op == "audio":
            prob = None if manual else float(arg)  # type: ignore[arg-type]
            events = [ev.AudioFrame(20, prob)] * count
        elif op == "worker":
            event = worker_event(state, str(arg))
            events = [event] if event is not None else []
        elif op == "client":
            events = [client_event(state, str(arg))]
        else:
            now += float(arg)  # type: ignore[arg-type]
            events = [ev.Tick()]
        for event in events:
            if isinstance(event, ev.AudioFrame):
                now += 0.02
            state, actions = step(state, event, now)
            log += actions
            check_state(state)
    check_log(log)


def check_state(state: ControllerState) -> None:
    metrics = state.metrics
    open_speculations = metrics.started - metrics.committed - metrics.discarded
    speculative = state.response is not None and state.response.speculative
    assert open_speculations == (1 if speculative else 0)
    assert state.buffer_start_ms <= state.audio_ms
    assert sum(1 for item in state.items if not item.committed) <= 1


def check_log(log: list[ev.Action]) -> None:
    created: set[str] = set()
    started: dict[str, bool] = {}
    in_context: set[str] = set()
    users: list[str] = []
    for action in log:
        if isinstance(action, ev.StartGeneration):
            started[action.response_id] = action.speculative
        elif isinstance(action, ev.ResponseCreated):
            assert action.response_id in started
            created.add(action.response_id)
        elif isinstance(action, ev.Output) and hasattr(action, "response_id"):
            assert action.response_id in created, f"{action} before response.created"
        if isinstance(action, ev.AddUserTurn):
            assert action.item_id not in users
            users.append(action.item_id)
        elif isinstance(action, ev.AddAssistantTurn):
            assert action.item_id not in in_context
            in_context.add(action.item_id)
        elif isinstance(action, ev.TruncateAssistantTurn):
            assert action.item_id in in_context
    done = [action.response_id for action in log if isinstance(action, ev.ResponseDone)]
    assert len(done) == len(set(done)), "response.done twice"
    finished: set[str] = set()
    for action in log:
        if isinstance(action, ev.ResponseDone):
            finished.add(action.response_id)
        elif isinstance(action, ev.OutputAudioDelta | ev.OutputTextDelta | ev.OutputTranscriptDelta):
            assert action.response_id not in finished, f"{action} after response.done"
