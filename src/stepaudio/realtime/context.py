"""Conversation history kept as text within a token budget.

Step-Audio keeps past turns as text rather than audio tokens: a spoken turn costs ~42 audio tokens per
second (vq02 + vq06 interleaved 2:3) but only a handful of text tokens once transcribed. This module keeps
the history that way for every engine and the real-time session, remembers how many audio tokens each
replaced turn would have cost so the compression ratio can be reported, drops the oldest turns first when
over budget, and can shorten an assistant turn to what the user actually heard (barge-in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from stepaudio.audio.io import Audio
from stepaudio.engines.base import ChatMessage, Role, ToolCall
from stepaudio.errors import StepAudioError

TokenCounter = Callable[[str], int]

# 2 vq02 (16.7 Hz) + 3 vq06 (25 Hz) tokens per 120 ms.
STEP_AUDIO_TOKENS_PER_SECOND = 5 / 0.12


def estimate_tokens(text: str) -> int:
    """A cheap token estimate: ~4 characters per token for alphabetic scripts, one per CJK character."""
    wide = sum(1 for char in text if _is_wide(char))
    return wide + math.ceil((len(text) - wide) / 4)


def _is_wide(char: str) -> bool:
    code = ord(char)
    return 0x2E80 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF or code >= 0x20000


@dataclass(frozen=True)
class Turn:
    """One kept turn. `audio_tokens` > 0 marks a turn that was speech. A spoken user turn whose transcript is
    not known keeps its `audio` (an engine that hears audio still listens to it) and costs its audio tokens;
    once transcribed it is held as text."""

    role: Role
    text: str
    audio_tokens: int = 0
    item_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    audio: Audio | None = field(default=None, compare=False, repr=False)

    def message(self) -> ChatMessage:
        return ChatMessage(self.role, self.text, audio=self.audio, tool_calls=self.tool_calls,
                           tool_call_id=self.tool_call_id, name=self.name)


@dataclass(frozen=True)
class ContextStats:
    """The current window (`turns`, `context_tokens`) and, since the conversation began, the spoken turns:
    their audio tokens and the text tokens of the transcripts kept in their place."""

    turns: int
    dropped_turns: int
    context_tokens: int
    max_tokens: int
    audio_turns: int
    audio_tokens_replaced: int
    text_tokens_kept: int

    @property
    def compression_ratio(self) -> float:
        """Audio tokens replaced per text token kept in their place (the paper reports ~14:1)."""
        return self.audio_tokens_replaced / self.text_tokens_kept if self.text_tokens_kept else 0.0


class ConversationContext:
    """System prompt plus text turns, trimmed to `max_tokens` by dropping the oldest exchanges first."""

    def __init__(
        self,
        system_prompt: str = "",
        max_tokens: int = 4096,
        count_tokens: TokenCounter = estimate_tokens,
        turn_overhead: int = 4,
        audio_tokens_per_second: float = STEP_AUDIO_TOKENS_PER_SECOND,
    ) -> None:
        if max_tokens <= 0:
            raise StepAudioError(f"the context budget must be positive, got {max_tokens}")
        self.count_tokens = count_tokens
        self.turn_overhead = turn_overhead
        self.audio_tokens_per_second = audio_tokens_per_second
        self._system_prompt = system_prompt
        self._max_tokens = max_tokens
        self._turns: list[Turn] = []
        self._dropped = 0
        self._audio_turns = 0
        self._audio_tokens = 0
        self._transcript_tokens = 0

    @property
    def system_prompt(self) -> str:
        return self._system_prompt

    @system_prompt.setter
    def system_prompt(self, text: str) -> None:
        self._system_prompt = text
        self._fit()

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @max_tokens.setter
    def max_tokens(self, budget: int) -> None:
        if budget <= 0:
            raise StepAudioError(f"the context budget must be positive, got {budget}")
        self._max_tokens = budget
        self._fit()

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    def add_user(self, text: str, item_id: str | None = None) -> Turn:
        return self.add_turn(Turn("user", text, item_id=item_id))

    def add_user_audio(self, transcript: str, audio_tokens: int | None = None, *, duration: float = 0.0,
                       item_id: str | None = None, audio: Audio | None = None) -> Turn:
        """A spoken user turn held as its transcript; `audio_tokens` defaults to the duration times the rate.
        Without a transcript, the turn keeps its `audio` until `set_transcript`."""
        duration = duration or (audio.duration if audio is not None else 0.0)
        tokens = self._audio_tokens_for(audio_tokens, duration)
        return self.add_turn(Turn("user", transcript, tokens, item_id, audio=None if transcript else audio))

    def add_assistant(self, text: str, audio_tokens: int | None = None, *, duration: float = 0.0,
                      item_id: str | None = None, tool_calls: Sequence[ToolCall] = ()) -> Turn:
        tokens = self._audio_tokens_for(audio_tokens, duration)
        return self.add_turn(Turn("assistant", text, tokens, item_id, tuple(tool_calls)))

    def add_tool_result(self, tool_call_id: str, content: str, name: str | None = None) -> Turn:
        return self.add_turn(Turn("tool", content, tool_call_id=tool_call_id, name=name))

    def add_message(self, message: ChatMessage, audio_tokens: int | None = None) -> Turn:
        """Add a `ChatMessage`: its written content plus its transcript when it was spoken. A spoken user
        message without a transcript keeps its audio; other roles' audio is only counted."""
        duration = message.audio.duration if message.audio is not None else 0.0
        tokens = self._audio_tokens_for(audio_tokens, duration)
        if message.role == "system":
            self.system_prompt = message.content
            return Turn("system", message.content)
        audio = message.audio if message.role == "user" and message.transcript is None else None
        return self.add_turn(Turn(message.role, message.text_for_reading(), tokens, None, message.tool_calls,
                                  message.tool_call_id, message.name, audio))

    def add_turn(self, turn: Turn) -> Turn:
        if turn.audio_tokens > 0 and turn.audio is None:
            self._count_replaced(turn.audio_tokens, turn.text)
        self._turns.append(turn)
        self._fit()
        return turn

    def set_transcript(self, item_id: str, transcript: str) -> bool:
        """A spoken turn held as audio becomes text (its transcript after what was written); False if gone."""
        for index, turn in enumerate(self._turns):
            if turn.item_id == item_id and turn.audio is not None:
                text = "\n".join(part for part in (turn.text, transcript.strip()) if part)
                self._turns[index] = replace(turn, text=text, audio=None)
                if turn.audio_tokens > 0:
                    self._count_replaced(turn.audio_tokens, text)
                self._fit()
                return True
        return False

    def _count_replaced(self, audio_tokens: int, text: str) -> None:
        self._audio_turns += 1
        self._audio_tokens += audio_tokens
        self._transcript_tokens += self.count_tokens(text)

    def truncate_assistant(self, item_id: str, text: str, audio_tokens: int | None = None) -> bool:
        """Replace the text of assistant turn `item_id` by what was actually played; False if it is gone."""
        for index in range(len(self._turns) - 1, -1, -1):
            turn = self._turns[index]
            if turn.item_id == item_id and turn.role == "assistant":
                tokens = turn.audio_tokens if audio_tokens is None else min(audio_tokens, turn.audio_tokens)
                if turn.audio_tokens > 0:
                    self._audio_tokens += tokens - turn.audio_tokens
                    self._transcript_tokens += self.count_tokens(text) - self.count_tokens(turn.text)
                    if tokens == 0:
                        self._audio_turns -= 1
                if text or turn.tool_calls:
                    self._turns[index] = replace(turn, text=text, audio_tokens=tokens)
                else:
                    del self._turns[index]
                return True
        return False

    def messages(self) -> list[ChatMessage]:
        """System prompt (when set) then the kept turns: text, and audio for spoken turns not yet transcribed."""
        head = [ChatMessage("system", self.system_prompt)] if self.system_prompt else []
        return head + [turn.message() for turn in self._turns]

    def token_count(self) -> int:
        """Tokens of the window: text, except a turn still carrying audio, which costs its audio tokens."""
        total = self._cost(self.system_prompt) if self.system_prompt else 0
        for turn in self._turns:
            total += self._cost(turn.text) + (turn.audio_tokens if turn.audio is not None else 0)
        return total

    def stats(self) -> ContextStats:
        return ContextStats(len(self._turns), self._dropped, self.token_count(), self.max_tokens,
                            self._audio_turns, self._audio_tokens, self._transcript_tokens)

    def clear(self) -> None:
        self._dropped += len(self._turns)
        self._turns.clear()

    def _cost(self, text: str) -> int:
        return self.count_tokens(text) + self.turn_overhead

    def _audio_tokens_for(self, audio_tokens: int | None, duration: float) -> int:
        if audio_tokens is not None:
            return max(0, int(audio_tokens))
        return round(duration * self.audio_tokens_per_second)

    def _fit(self) -> None:
        """Drop the oldest turns until within budget, never the newest user turn, and never leave a reply or a
        tool result whose question was dropped at the head."""
        while self.token_count() > self.max_tokens and self._droppable():
            del self._turns[0]
            self._dropped += 1
            while self._turns and self._turns[0].role != "user" and self._droppable():
                del self._turns[0]
                self._dropped += 1

    def _droppable(self) -> bool:
        """The head turn may go unless it is the newest user turn."""
        if not self._turns:
            return False
        last_user = max((i for i, turn in enumerate(self._turns) if turn.role == "user"), default=-1)
        return last_user != 0
