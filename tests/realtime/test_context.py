"""ConversationContext: text history, audio turns as transcripts, budget, barge-in truncation, stats."""

from __future__ import annotations

import numpy as np
import pytest

from stepaudio.audio.io import Audio
from stepaudio.engines.base import ChatMessage, ToolCall
from stepaudio.errors import StepAudioError
from stepaudio.realtime.context import STEP_AUDIO_TOKENS_PER_SECOND, ConversationContext, estimate_tokens


def words(text: str) -> int:
    return len(text.split())


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("你好") == 2
    assert estimate_tokens("你好 abcd") == 2 + 2


def test_messages_are_text_with_system_prompt_first() -> None:
    context = ConversationContext("be brief")
    context.add_user("hi")
    context.add_assistant("hello")
    spoken = Audio(np.zeros(16000, np.float32), 16000)
    context.add_message(ChatMessage("user", "", audio=spoken, transcript="what time is it"))
    messages = context.messages()
    assert [(m.role, m.content) for m in messages] == [
        ("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("user", "what time is it")]
    assert context.turns[-1].audio_tokens == round(STEP_AUDIO_TOKENS_PER_SECOND)
    assert all(m.audio is None for m in messages)  # transcribed: held as text


def test_a_spoken_turn_without_transcript_keeps_its_audio_until_one_comes() -> None:
    context = ConversationContext(count_tokens=words, turn_overhead=0)
    clip = Audio(np.zeros(1600, np.float32), 16000)
    context.add_user_audio("", audio_tokens=50, audio=clip, item_id="u1")
    context.add_assistant("ok")
    assert context.messages()[0].audio is clip  # an engine that hears still listens to it
    assert context.token_count() == 50 + 1 and context.stats().audio_turns == 0
    assert context.set_transcript("u1", "two words")
    assert context.messages()[0].audio is None and context.messages()[0].content == "two words"
    assert context.token_count() == 2 + 1
    assert context.stats().audio_tokens_replaced == 50 and context.stats().text_tokens_kept == 2
    assert not context.set_transcript("u1", "again")


def test_audio_turns_report_compression() -> None:
    context = ConversationContext(count_tokens=words)
    context.add_user_audio("one two three four", audio_tokens=140)
    context.add_assistant("five six", duration=1.2)  # 1.2 s at 41.67 tokens/s = 50
    context.add_user("typed text is not counted")
    stats = context.stats()
    assert stats.audio_turns == 2
    assert stats.audio_tokens_replaced == 190
    assert stats.text_tokens_kept == 6
    assert stats.compression_ratio == pytest.approx(190 / 6)
    assert ConversationContext().stats().compression_ratio == 0.0


def test_budget_drops_oldest_exchanges_first() -> None:
    context = ConversationContext("sys", max_tokens=4 * 3 + 3, count_tokens=words, turn_overhead=0)
    for index in range(5):
        context.add_user(f"question {index} x")
        context.add_assistant(f"answer {index} y")
    assert context.token_count() <= context.max_tokens
    roles = [turn.role for turn in context.turns]
    assert roles[0] == "user"  # never starts with an orphaned reply
    assert context.turns[-1].text == "answer 4 y"
    assert context.messages()[0].content == "sys"
    assert context.stats().dropped_turns == 10 - len(context.turns)


def test_newest_user_turn_and_system_prompt_are_never_dropped() -> None:
    context = ConversationContext("a long system prompt here", max_tokens=3, count_tokens=words, turn_overhead=0)
    context.add_user("an old question")
    context.add_assistant("an old answer")
    context.add_user("a very long newest question that is over budget on its own")
    assert [turn.text for turn in context.turns] == ["a very long newest question that is over budget on its own"]
    assert context.messages()[0].content == "a long system prompt here"


def test_tool_results_are_not_left_orphaned() -> None:
    context = ConversationContext(max_tokens=12, count_tokens=words, turn_overhead=0)
    context.add_user("weather please")
    context.add_assistant("", tool_calls=[ToolCall("c1", "weather", "{}")])
    context.add_tool_result("c1", "sunny and warm today")
    context.add_assistant("it is sunny")
    context.add_user("and tomorrow in the mountains near the lake")
    assert [turn.role for turn in context.turns] == ["user"]


def test_truncate_assistant_to_what_was_played() -> None:
    context = ConversationContext(count_tokens=words)
    context.add_user_audio("tell me a story", audio_tokens=100)
    context.add_assistant("once upon a time there was a cat", audio_tokens=300, item_id="item_2")
    assert context.truncate_assistant("item_2", "once upon a", audio_tokens=90)
    turn = context.turns[-1]
    assert (turn.text, turn.audio_tokens) == ("once upon a", 90)
    stats = context.stats()
    assert stats.audio_tokens_replaced == 190
    assert stats.text_tokens_kept == 4 + 3
    assert not context.truncate_assistant("missing", "x")


def test_truncate_to_nothing_removes_the_turn() -> None:
    context = ConversationContext(count_tokens=words)
    context.add_user("hi")
    context.add_assistant("hello there", audio_tokens=80, item_id="a")
    assert context.truncate_assistant("a", "", audio_tokens=0)
    assert [turn.role for turn in context.turns] == ["user"]
    assert context.stats().audio_turns == 0


def test_system_message_sets_the_prompt_and_clear_keeps_it() -> None:
    context = ConversationContext()
    context.add_message(ChatMessage("system", "new rules"))
    context.add_user("x")
    context.clear()
    assert [(m.role, m.content) for m in context.messages()] == [("system", "new rules")]
    assert context.stats().dropped_turns == 1


def test_invalid_budget() -> None:
    with pytest.raises(StepAudioError):
        ConversationContext(max_tokens=0)


def test_shrinking_the_budget_or_growing_the_prompt_refits() -> None:
    context = ConversationContext(max_tokens=100, count_tokens=words, turn_overhead=0)
    for index in range(5):
        context.add_user(f"q{index} a b c")
        context.add_assistant(f"r{index} d e f")
    assert len(context.turns) == 10
    context.max_tokens = 16
    assert [turn.text for turn in context.turns] == ["q3 a b c", "r3 d e f", "q4 a b c", "r4 d e f"]
    context.system_prompt = "one two three four"
    assert [turn.text for turn in context.turns] == ["q4 a b c", "r4 d e f"]
    with pytest.raises(StepAudioError):
        context.max_tokens = -1
