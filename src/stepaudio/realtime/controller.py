"""The real-time conversation as a pure state machine: (state, event, now) -> (state, actions).

No I/O, threads or wall clock here: the session feeds events (client input, clock ticks, worker results)
and executes the actions; tests drive it with a fake clock. Phases: listening, user speaking, responding
(speculative or committed), speaking, interrupted.

- Turns come from `turns.detect` (OpenAI server_vad semantics) or from manual commits (`turn_detection`
  None).
- At the tentative end of a turn a speculative generation starts; its output is held. Confirmed silence
  commits it (response.created, then the held output); speech before that discards it, and the next
  tentative end restarts it over the whole turn.
- User speech while a committed response runs (barge-in) cancels the generation and truncates the
  assistant turn to what was played.
- The context is edited through ordered commands: a user turn enters once committed and transcribed,
  before the reply that answers it.
"""

from __future__ import annotations

from dataclasses import replace

from stepaudio.realtime import events as ev
from stepaudio.realtime.speculative import Speculation, SpeculationMetrics, saved_ms
from stepaudio.realtime.state import ControllerConfig, ControllerState, Phase, Response, UserItem
from stepaudio.realtime.turns import (
    SpeechResume,
    SpeechStart,
    SpeechStop,
    TentativeEnd,
    TurnDetectionConfig,
    TurnEvent,
    detect,
    reset,
)

__all__ = ["Controller", "ControllerConfig", "ControllerState", "Phase", "step"]


def step(state: ControllerState, event: ev.Event, now: float) -> tuple[ControllerState, tuple[ev.Action, ...]]:
    """The whole controller: the next state and the actions to execute, in order."""
    run = _Step(state, now)
    run.advance()
    run.handle(event)
    run.advance()
    return run.s, tuple(run.out)


class Controller:
    """Holds the current state for callers that prefer an object; `step` is the logic."""

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.state = ControllerState(config or ControllerConfig())

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def metrics(self) -> SpeculationMetrics:
        return self.state.metrics

    def handle(self, event: ev.Event, now: float) -> tuple[ev.Action, ...]:
        self.state, actions = step(self.state, event, now)
        return actions


class _Step:
    """One transition, written imperatively over a private copy: `s` is replaced, never mutated."""

    def __init__(self, state: ControllerState, now: float) -> None:
        self.s = state
        self.now = now
        self.out: list[ev.Action] = []

    # ------------------------------------------------------------ dispatch

    def handle(self, event: ev.Event) -> None:
        match event:
            case ev.AudioFrame():
                self.on_frame(event)
            case ev.InputAudioCommit():
                self.on_manual_commit()
            case ev.InputAudioClear():
                self.on_clear()
            case ev.TextInput():
                self.on_text(event.text)
            case ev.ResponseCreate():
                self.on_response_create(event)
            case ev.ResponseCancel():
                self.on_response_cancel()
            case ev.PlaybackProgress():
                self.on_progress(event)
            case ev.ItemTruncate():
                self.on_truncate(event)
            case ev.InputTranscribed():
                self.on_transcribed(event)
            case ev.GenerationText() | ev.GenerationAudio() | ev.GenerationToolCall() | ev.GenerationDone():
                self.on_generation(event)
            case ev.FunctionCallOutput():
                self.on_tool_output(event)
            case ev.ConfigUpdate():
                self.on_config(event.config)
            case ev.Tick():
                pass

    def advance(self) -> None:
        """Time-driven changes: a finished response leaves once played out; the idle timeout fires."""
        response = self.s.response
        if response is not None and response.generation_done and response.playback.finished(self.now):
            self.s = replace(self.s, response=None, last_response=response, idle_since=self.now)
        detection = self.s.config.turn_detection
        if (
            detection is not None and detection.idle_timeout_ms is not None and self.s.response is None
            and not self.s.turns.in_speech and self.s.idle_since is not None
            and (self.now - self.s.idle_since) * 1000.0 >= detection.idle_timeout_ms
        ):
            self.out.append(ev.TimeoutTriggered(self.s.buffer_start_ms, self.s.audio_ms))
            self.s = replace(self.s, idle_since=None, buffer_start_ms=self.s.audio_ms,
                             turns=reset(self.s.turns, self.s.audio_ms))
            self.start_response(speculative=False)

    # ------------------------------------------------------------ input audio and turns

    def on_frame(self, frame: ev.AudioFrame) -> None:
        audio_ms = self.s.audio_ms + frame.duration_ms
        detection = self.s.config.turn_detection
        if detection is None or frame.speech_prob is None:
            self.s = replace(self.s, audio_ms=audio_ms, turns=replace(self.s.turns, cursor_ms=audio_ms))
            return
        turns, turn_events = detect(detection, self.s.turns, frame.duration_ms, frame.speech_prob)
        self.s = replace(self.s, audio_ms=audio_ms, turns=turns)
        for turn_event in turn_events:
            self.on_turn(turn_event, detection)

    def on_turn(self, event: TurnEvent, detection: TurnDetectionConfig) -> None:
        match event:
            case SpeechStart():
                item_id = self.new_id("item")
                self.s = replace(self.s, speech_item_id=item_id, idle_since=None)
                self.out.append(ev.SpeechStarted(item_id, event.audio_start_ms))
                response = self.s.response
                if response is not None and not response.speculative and detection.interrupt_response:
                    self.cancel_response(reason="turn_detected")
                    self.s = replace(self.s, interrupted=True, interruptions=self.s.interruptions + 1)
            case TentativeEnd():
                if detection.create_response and self.s.response is None and self.s.speech_item_id:
                    item = UserItem(self.s.speech_item_id, "audio", self.s.turns.start_ms, event.audio_end_ms,
                                    committed=False)
                    self.s = replace(self.s, items=(*self.s.items, item))
                    self.start_response(speculative=True)
            case SpeechResume():
                if self.s.response is not None and self.s.response.speculative:
                    self.discard_speculation()
            case SpeechStop():
                self.on_speech_stop(event, detection)

    def on_speech_stop(self, event: SpeechStop, detection: TurnDetectionConfig) -> None:
        item_id = self.s.speech_item_id or self.new_id("item")
        self.out.append(ev.SpeechStopped(item_id, event.audio_end_ms))
        speculative = next((item for item in self.s.items if item.item_id == item_id and not item.committed), None)
        items = tuple(item for item in self.s.items if item is not speculative)
        item = UserItem(item_id, "audio", event.audio_start_ms, event.audio_end_ms, committed=True,
                        requested_end_ms=speculative.requested_end_ms if speculative else None,
                        text=speculative.text if speculative else None)
        self.s = replace(self.s, items=items, speech_item_id=None, interrupted=False,
                         buffer_start_ms=event.audio_end_ms)
        response = self.s.response
        will_answer = (response is not None and response.speculative) or (
            detection.create_response and response is None)
        self.commit_audio_item(item, transcribe=not will_answer)
        if response is not None and response.speculative:
            self.commit_speculation(response)
        elif will_answer:
            self.start_response(speculative=False)

    def on_config(self, config: ControllerConfig) -> None:
        if not isinstance(config, ControllerConfig):
            raise TypeError(f"ConfigUpdate needs a ControllerConfig, got {type(config).__name__}")
        if config.turn_detection != self.s.config.turn_detection:
            if self.s.response is not None and self.s.response.speculative:
                self.discard_speculation()
            items = tuple(item for item in self.s.items if item.committed)
            self.s = replace(self.s, items=items, speech_item_id=None, interrupted=False,
                             turns=reset(self.s.turns, self.s.buffer_start_ms))
        self.s = replace(self.s, config=config)

    def on_manual_commit(self) -> None:
        if self.s.audio_ms <= self.s.buffer_start_ms:
            self.out.append(ev.ErrorOutput("input_audio_buffer_commit_empty", "the input audio buffer is empty"))
            return
        if self.s.response is not None and self.s.response.speculative:
            self.discard_speculation()
        item_id = self.s.speech_item_id or self.new_id("item")
        item = UserItem(item_id, "audio", self.s.buffer_start_ms, self.s.audio_ms)
        items = tuple(pending for pending in self.s.items if pending.committed)
        self.s = replace(self.s, items=items, speech_item_id=None, interrupted=False,
                         buffer_start_ms=self.s.audio_ms, turns=reset(self.s.turns, self.s.audio_ms))
        self.commit_audio_item(item, transcribe=True)

    def on_clear(self) -> None:
        if self.s.response is not None and self.s.response.speculative:
            self.discard_speculation()
        items = tuple(item for item in self.s.items if item.committed)
        self.s = replace(self.s, items=items, speech_item_id=None, interrupted=False,
                         buffer_start_ms=self.s.audio_ms, turns=reset(self.s.turns, self.s.audio_ms))
        self.out.append(ev.BufferCleared())

    def commit_audio_item(self, item: UserItem, transcribe: bool) -> None:
        self.out.append(ev.AudioCommitted(item.item_id, self.s.last_item_id))
        self.out.append(ev.ItemAdded(item.item_id, "user", self.s.last_item_id, "input_audio"))
        if transcribe and item.text is None and self.s.config.transcribe_audio:
            item = replace(item, requested_end_ms=item.end_ms)
            self.out.append(ev.TranscribeItem(ev.ItemSpan(item.item_id, item.start_ms, item.end_ms)))
        self.s = replace(self.s, items=(*self.s.items, item), last_item_id=item.item_id)
        self.flush_items()

    def on_text(self, text: str) -> None:
        item = UserItem(self.new_id("item"), "text", text=text)
        self.out.append(ev.ItemAdded(item.item_id, "user", self.s.last_item_id, "input_text", text))
        self.s = replace(self.s, items=(*self.s.items, item), last_item_id=item.item_id)
        self.flush_items()

    def on_tool_output(self, event: ev.FunctionCallOutput) -> None:
        item = UserItem(self.new_id("item"), "tool", text=event.output, call_id=event.call_id)
        self.out.append(ev.ItemAdded(item.item_id, "tool", self.s.last_item_id, "function_call_output", event.output))
        self.s = replace(self.s, items=(*self.s.items, item), last_item_id=item.item_id)
        self.flush_items()

    def on_transcribed(self, event: ev.InputTranscribed) -> None:
        items = tuple(
            replace(item, text=event.text, error=event.error)
            if item.item_id == event.item_id and item.requested_end_ms == event.end_ms else item
            for item in self.s.items
        )
        self.s = replace(self.s, items=items)
        self.flush_items()

    def flush_items(self, force: tuple[str, ...] = ()) -> None:
        """Move committed items into the context in order once transcribed (or at once as audio, where
        transcripts are not needed); `force` ones go in even untranscribed."""
        items = list(self.s.items)
        as_audio = not self.s.config.transcribe_audio
        while items and items[0].committed and (items[0].text is not None or items[0].item_id in force
                                                or (as_audio and items[0].kind == "audio")):
            item = items.pop(0)
            text = item.text or ""
            if item.kind == "tool":
                self.edit(ev.AddToolResult(item.item_id, item.call_id or "", text))
                continue
            duration = float(item.end_ms - item.start_ms)
            if item.kind == "audio" and item.error is not None:
                self.out.append(ev.InputTranscriptionFailed(item.item_id, item.error))
            elif item.kind == "audio" and (item.text is not None or not as_audio):
                self.out.append(ev.InputTranscriptionCompleted(item.item_id, text))
            if text:
                self.edit(ev.AddUserTurn(item.item_id, text, duration))
            elif as_audio and item.kind == "audio":
                span = ev.ItemSpan(item.item_id, item.start_ms, item.end_ms)
                self.edit(ev.AddUserTurn(item.item_id, "", duration, span))
        self.s = replace(self.s, items=tuple(items))

    # ------------------------------------------------------------ responses

    def on_response_create(self, event: ev.ResponseCreate) -> None:
        response = self.s.response
        if response is not None and not response.speculative:
            self.out.append(ev.ErrorOutput("conversation_already_has_active_response",
                                           f"response {response.response_id} is still in progress"))
            return
        if response is not None:
            self.discard_speculation()
        self.start_response(speculative=False, instructions=event.instructions, modalities=event.modalities)

    def on_response_cancel(self) -> None:
        response = self.s.response
        if response is None or response.speculative:
            self.out.append(ev.ErrorOutput("response_cancel_not_active", "there is no response to cancel"))
            return
        self.cancel_response(reason="client_cancelled")

    def start_response(self, speculative: bool, instructions: str | None = None,
                       modalities: tuple[str, ...] | None = None) -> None:
        response_id, item_id = self.new_id("resp"), self.new_id("item")
        spans = []
        items = []
        for item in self.s.items:
            if item.text is not None:
                spans.append(ev.ItemSpan(item.item_id, item.start_ms, item.end_ms, item.text))
            else:
                spans.append(ev.ItemSpan(item.item_id, item.start_ms, item.end_ms))
                item = replace(item, requested_end_ms=item.end_ms)
            items.append(item)
        speculation = Speculation(response_id, self.now) if speculative else None
        modalities = modalities or self.s.config.modalities
        response = Response(response_id, item_id, tuple(span.item_id for span in spans), speculation, speculative,
                            audio_out="audio" in modalities)
        self.s = replace(self.s, items=tuple(items), response=response, idle_since=None)
        self.out.append(ev.StartGeneration(response_id, item_id, tuple(spans), speculative, modalities, instructions))
        if speculative:
            self.s = replace(self.s, metrics=self.s.metrics.on_start())
        else:
            self.announce(response)

    def announce(self, response: Response) -> None:
        self.out.append(ev.ResponseCreated(response.response_id, response.item_id))
        self.out.append(ev.ItemAdded(response.item_id, "assistant", self.s.last_item_id,
                                     "output_audio" if response.audio_out else "output_text"))
        self.s = replace(self.s, last_item_id=response.item_id)

    def commit_speculation(self, response: Response) -> None:
        assert response.speculation is not None
        speculation = replace(response.speculation, committed_at=self.now)
        window_ms = 1000.0 * (self.now - speculation.started_at)
        metrics = self.s.metrics.on_commit(window_ms)
        saved = saved_ms(speculation)
        if saved is not None:
            metrics = metrics.on_saved(saved)
        committed = replace(response, speculative=False, speculation=speculation, held=())
        self.s = replace(self.s, response=committed, metrics=metrics)
        self.out.append(ev.CommitSpeculation(response.response_id, window_ms))
        self.announce(committed)
        for held in response.held:
            self.on_generation(held)

    def discard_speculation(self) -> None:
        response = self.s.response
        assert response is not None and response.speculative
        self.out.append(ev.DiscardSpeculation(response.response_id))
        self.out.append(ev.CancelGeneration(response.response_id))
        items = tuple(item for item in self.s.items if item.committed)
        self.s = replace(self.s, response=None, items=items, metrics=self.s.metrics.on_discard())

    def on_generation(
        self, event: ev.GenerationText | ev.GenerationAudio | ev.GenerationToolCall | ev.GenerationDone
    ) -> None:
        response = self.s.response
        if response is None or response.response_id != event.response_id or response.generation_done:
            return  # a cancelled or discarded generation still finishing, or a duplicate after the end
        if isinstance(event, ev.GenerationAudio) and response.speculation is not None \
                and response.speculation.first_audio_at is None:
            response = self.on_first_audio(response)
        if response.speculative:
            self.s = replace(self.s, response=replace(response, held=(*response.held, event)))
            return
        rid, iid = response.response_id, response.item_id
        if isinstance(event, ev.GenerationText):
            response = replace(response, text=response.text + event.text)
            if not response.audio_out:
                self.out.append(ev.OutputTextDelta(rid, iid, event.text))
        elif isinstance(event, ev.GenerationAudio):
            if event.text:
                self.out.append(ev.OutputTranscriptDelta(rid, iid, event.text))
            self.out.append(ev.OutputAudioDelta(rid, iid, event.samples, event.sample_rate))
            response = replace(response, playback=response.playback.sent(event.duration_ms, event.text, self.now))
        elif isinstance(event, ev.GenerationToolCall):
            call = event.call
            call_item = self.new_id("item")
            self.out.append(ev.ItemAdded(call_item, "assistant", self.s.last_item_id, "function_call", call.name))
            self.out.append(ev.FunctionCallArgumentsDone(rid, call_item, call.id, call.name, call.arguments))
            self.s = replace(self.s, last_item_id=call_item)
            response = replace(response, tool_calls=(*response.tool_calls, call))
        else:
            response = self.finish_generation(response, event)
        self.s = replace(self.s, response=response)

    def on_first_audio(self, response: Response) -> Response:
        assert response.speculation is not None
        speculation = replace(response.speculation, first_audio_at=self.now)
        saved = saved_ms(speculation)
        if saved is not None:
            self.s = replace(self.s, metrics=self.s.metrics.on_saved(saved))
        response = replace(response, speculation=speculation)
        self.s = replace(self.s, response=response)
        return response

    def finish_generation(self, response: Response, event: ev.GenerationDone) -> Response:
        rid, iid = response.response_id, response.item_id
        if response.audio_out:
            self.out.append(ev.OutputTranscriptDone(rid, iid, response.playback.transcript))
            self.out.append(ev.OutputAudioDone(rid, iid))
        else:
            self.out.append(ev.OutputTextDone(rid, iid, response.text))
        if event.error is not None:
            self.out.append(ev.ErrorOutput("generation_failed", event.error))
            status: ev.ResponseStatus = "failed"
        else:
            status = "incomplete" if event.finish_reason == "length" else "completed"
        self.out.append(ev.ResponseDone(rid, iid, status, event.error or event.finish_reason))
        self.flush_items(force=response.user_item_ids)
        kept = bool(response.text or response.tool_calls)
        if kept:
            self.edit(ev.AddAssistantTurn(iid, response.text, response.playback.sent_ms, response.tool_calls))
        return replace(response, generation_done=True, in_context=kept)

    def cancel_response(self, reason: str, played_ms: float | None = None) -> None:
        """Stop the committed response and keep only what was played of it."""
        response = self.s.response
        assert response is not None
        rid, iid = response.response_id, response.item_id
        if not response.generation_done:
            self.out.append(ev.CancelGeneration(rid))
            self.out.append(ev.ResponseDone(rid, iid, "cancelled", reason))
        kept = self.truncate(response, played_ms, settled=False)
        last = replace(response, generation_done=True, in_context=kept, context_mark=self.s.context_edits)
        self.s = replace(self.s, response=None, last_response=last)

    def truncate(self, response: Response, played_ms: float | None, settled: bool) -> bool:
        """Cut the assistant item to what was played. A response still open (`settled` False) adds its turn now
        if it had none; a settled one only shortens the turn it has. True if a turn remains in the context."""
        if not response.in_context and not settled and not response.generation_done:
            self.settle_items(response)
        if not response.audio_out:
            if response.in_context or settled or not (response.text or response.tool_calls):
                return response.in_context
            self.flush_items(force=response.user_item_ids)
            self.edit(ev.AddAssistantTurn(response.item_id, response.text, 0.0, response.tool_calls))
            return True
        playback = response.playback
        played = playback.played_ms(self.now) if played_ms is None else min(played_ms, playback.sent_ms)
        text = playback.text_until(played)
        cut = played < playback.sent_ms - 1e-6
        if cut:
            self.out.append(ev.ItemTruncated(response.item_id, round(played)))
        if response.in_context:
            if cut:
                self.edit(ev.TruncateAssistantTurn(response.item_id, text, played))
            return bool(text or response.tool_calls) or not cut
        if (text or response.tool_calls) and not settled:
            self.flush_items(force=response.user_item_ids)
            self.edit(ev.AddAssistantTurn(response.item_id, text, played, response.tool_calls))
            return True
        return False

    def edit(self, command: ev.AddUserTurn | ev.AddAssistantTurn | ev.AddToolResult | ev.TruncateAssistantTurn
             ) -> None:
        """A context edit: counted, so a late truncate knows whether the context moved on."""
        self.out.append(command)
        self.s = replace(self.s, context_edits=self.s.context_edits + 1)

    def settle_items(self, response: Response) -> None:
        """A cancelled generation may never transcribe its user items: ask for them on their own (the worker's
        cache answers at once when it did), so the user's words still reach the context."""
        for item in self.s.items:
            if item.item_id in response.user_item_ids and item.committed and item.text is None \
                    and self.s.config.transcribe_audio:
                end = item.requested_end_ms if item.requested_end_ms is not None else item.end_ms
                self.out.append(ev.TranscribeItem(ev.ItemSpan(item.item_id, item.start_ms, end)))

    def on_progress(self, event: ev.PlaybackProgress) -> None:
        response = self.s.response
        if response is None or response.speculative or event.item_id not in (None, response.item_id):
            return
        playback = response.playback.reported(event.played_ms, self.now)
        self.s = replace(self.s, response=replace(response, playback=playback))

    def on_truncate(self, event: ev.ItemTruncate) -> None:
        response = self.s.response
        if response is not None and not response.speculative and response.item_id == event.item_id:
            self.cancel_response(reason="client_truncated", played_ms=event.audio_end_ms)
            return
        last = self.s.last_response
        if last is None or last.item_id != event.item_id:
            self.out.append(ev.ErrorOutput("item_truncate_invalid_item_id", f"no assistant item {event.item_id}"))
            return
        # the client's own truncate usually follows our barge-in estimate: if nothing entered the context
        # since, the turn may still be added at the end
        settled = last.context_mark != self.s.context_edits
        kept = self.truncate(last, event.audio_end_ms, settled=settled)
        mark = None if settled else self.s.context_edits
        self.s = replace(self.s, last_response=replace(last, in_context=kept, context_mark=mark))

    def new_id(self, prefix: str) -> str:
        number = self.s.next_id
        self.s = replace(self.s, next_id=number + 1)
        return f"{prefix}_{number}"
