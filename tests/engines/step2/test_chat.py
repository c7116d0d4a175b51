"""Step2Chat and Step2Transcriber: audio reaches the model as encoder rows over the prompt's placeholders, the
history policy, tool calls in the model's format, the voice switch, think mode and the one-pass spoken reply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stepaudio.audio.io import Audio
from stepaudio.audio_encoder.frontend import mel_frames, placeholder_count
from stepaudio.decoder.cosyvoice2.token2wav import Token2Wav
from stepaudio.engines.base import AudioChunk, ChatDelta, ChatMessage, GenerationOptions, ToolCall, ToolSpec
from stepaudio.engines.step2.chat import ChatSettings, Step2Chat, Step2Transcriber
from stepaudio.engines.step2.runtime import Step2Runtime
from stepaudio.engines.step2.voices import Step2Voices
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.testing.tiny_step2 import PromptSpy
from stepaudio.text.step2_prompts import ASR_SYSTEM
from stepaudio.tokenizer.semantic import SemanticTokenizer

from .conftest import ScriptedRuntime

FAST = GenerationOptions(max_new_tokens=6, seed=0)
SCRIPTED = GenerationOptions(max_new_tokens=400)  # replies are replayed: the limit only sets the finish reason
SEARCH = ToolSpec("search", "搜索工具", {"type": "object", "properties": {"query": {"type": "string"}},
                                       "required": ["query"]})


def spoken(seconds: float, seed: int = 1) -> Audio:
    return Audio(speech_like(seconds, 16000, seed), 16000)


@pytest.fixture(scope="module")
def voices(step2_stack: Path) -> Step2Voices:
    decoder = Token2Wav.from_dir(step2_stack / "token2wav")
    tokenizer = SemanticTokenizer.from_onnx(step2_stack / "token2wav" / "speech_tokenizer_v2_25hz.onnx")
    return Step2Voices(step2_stack / "voices", lambda: decoder, lambda: tokenizer)


def _deltas(items: list[ChatDelta | AudioChunk]) -> tuple[str, list[ToolCall], ChatDelta]:
    deltas = [i for i in items if isinstance(i, ChatDelta)]
    return "".join(d.text for d in deltas), [c for d in deltas for c in d.tool_calls], deltas[-1]


def test_a_spoken_question_reaches_the_model_as_audio_rows(step2_runtime: Step2Runtime, prompt_spy: PromptSpy) -> None:
    chat = Step2Chat(lambda: step2_runtime)
    items = list(chat.respond([ChatMessage("user", "", audio=spoken(2.0))], options=FAST))
    ids, mels = prompt_spy.calls[-1]
    assert len(mels) == 1 and mels[0].shape == (128, mel_frames(32000))
    assert prompt_spy.placeholders() == placeholder_count(mel_frames(32000)) == 25
    assert ids.count(step2_runtime.vocab.audio_start_id) == 1
    assert items[-1].finish_reason in ("stop", "length") and items[-1].usage is not None
    assert items[-1].usage.prompt_tokens == len(ids) and 0 < items[-1].usage.completion_tokens <= 6


def test_a_long_question_is_one_block_per_25_s_piece(step2_runtime: Step2Runtime, prompt_spy: PromptSpy) -> None:
    chat = Step2Chat(lambda: step2_runtime)
    list(chat.respond([ChatMessage("user", "Transcribe: ", audio=Audio(np.zeros(16000 * 26, np.float32), 16000))],
                      options=GenerationOptions(max_new_tokens=1)))
    ids, mels = prompt_spy.calls[-1]
    assert [m.shape[1] for m in mels] == [mel_frames(16000 * 25), mel_frames(16000)]
    assert prompt_spy.placeholders() == 313 + placeholder_count(mel_frames(16000))
    assert step2_runtime.tokenizer.decode(ids).count("Transcribe: <audio_start>") == 1


@pytest.mark.parametrize(("history", "transcript", "pieces"),
                         [("text", "what is it", 1), ("text", None, 2), ("audio", "what is it", 2)])
def test_earlier_spoken_turns_are_text_once_their_transcript_is_known(
        step2_runtime: Step2Runtime, prompt_spy: PromptSpy, history: str, transcript: str | None,
        pieces: int) -> None:
    chat = Step2Chat(lambda: step2_runtime, ChatSettings(history="text" if history == "text" else "audio"))
    messages = [ChatMessage("user", "", audio=spoken(1.0, 2), transcript=transcript),
                ChatMessage("assistant", "a cat"), ChatMessage("user", "", audio=spoken(1.0, 3))]
    list(chat.respond(messages, options=GenerationOptions(max_new_tokens=1)))
    ids, mels = prompt_spy.calls[-1]
    assert len(mels) == pieces
    text = step2_runtime.tokenizer.decode(ids)
    assert ("<|BOT|>human\nwhat is it<|EOT|>" in text) == (pieces == 1)
    assert "<|BOT|>system\nYou are a helpful assistant.<|EOT|>" in text and "<|BOT|>assistant\na cat<|EOT|>" in text


def test_tool_calls_are_declared_and_parsed_in_the_model_format(step2_runtime: Step2Runtime) -> None:
    call = '<tool_call>function\nsearch\n{"query": "上证指数"}</tool_call>'
    scripted = ScriptedRuntime(step2_runtime, ["Let me look." + call])
    chat = Step2Chat(lambda: scripted)
    text, calls, last = _deltas(list(chat.respond([ChatMessage("user", "查一下")], [SEARCH], SCRIPTED)))
    assert text == "Let me look." and last.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in calls] == [("search", '{"query": "上证指数"}')]
    prompt = scripted.prompt_text()
    assert '<|BOT|>tool_json_schemas\n[{"type": "function", "function": {"name": "search", "description": "搜索工具"' \
        in prompt
    assert prompt.index("<|BOT|>system") < prompt.index("<|BOT|>tool_json_schemas") < prompt.index("<|BOT|>human")
    # the round after the call: the call replayed in the assistant turn, the result as an `input` turn
    follow = ScriptedRuntime(step2_runtime, ["It is 3000."])
    history = [ChatMessage("user", "查一下"), ChatMessage("assistant", "Let me look.", tool_calls=tuple(calls)),
               ChatMessage("tool", "3000 points", tool_call_id=calls[0].id)]
    assert _deltas(list(Step2Chat(lambda: follow).respond(history, [SEARCH], SCRIPTED)))[0] == "It is 3000."
    assert ('<|BOT|>assistant\nLet me look.<tool_call>function\nsearch\n{"query": "上证指数"}</tool_call><|EOT|>'
            '<|BOT|>input\n3000 points<|EOT|><|BOT|>assistant\n') in follow.prompt_text()


def test_the_voice_switch_runs_inside_the_engine(step2_runtime: Step2Runtime, voices: Step2Voices) -> None:
    voices.current = "default_female"
    scripted = ScriptedRuntime(step2_runtime, ['<tool_call>function\ntimbre_rag\n{"query": "default_male的声音"}'
                                               '</tool_call>', "好的。"])
    chat = Step2Chat(lambda: scripted, voices=voices)
    text, calls, last = _deltas(list(chat.respond([ChatMessage("user", "换个声音")], options=SCRIPTED)))
    assert (text, calls, last.finish_reason) == ("好的。", [], "stop")
    assert voices.current == "default_male"
    assert "timbre_rag" in scripted.prompt_text(0)
    assert '<|BOT|>input\n{"voice": "default_male"' in scripted.prompt_text(1)
    assert last.usage is not None and last.usage.prompt_tokens == sum(len(p.ids) for p in scripted.prompts)
    unknown = ScriptedRuntime(step2_runtime, ['<tool_call>function\ntimbre_rag\n{"query": "xyz"}</tool_call>', "no"])
    list(Step2Chat(lambda: unknown, voices=voices).respond([ChatMessage("user", "换")], options=SCRIPTED))
    assert '"error": "no voice matches' in unknown.prompt_text(1) and voices.current == "default_male"


def test_think_mode_thinks_first_and_answers_after_the_thinking(step2_runtime: Step2Runtime) -> None:
    scripted = ScriptedRuntime(step2_runtime, ["They greet me.</think>", "Hello!"])
    chat = Step2Chat(lambda: scripted, ChatSettings(think=True))
    text, _, _ = _deltas(list(chat.respond([ChatMessage("user", "hi")], options=SCRIPTED)))
    assert text == "Hello!"
    assert scripted.prompt_text(0).endswith("<|BOT|>assistant\n\n<think>\n")
    assert scripted.prompt_text(1).endswith("<|BOT|>assistant\n\n<think>\nThey greet me.</think>\n\n")


def test_a_spoken_reply_separates_text_from_speech(step2_runtime: Step2Runtime, voices: Step2Voices) -> None:
    vocab = step2_runtime.vocab
    encode = step2_runtime.tokenizer.encode
    codes = [vocab.audio_offset + (37 * i) % 6561 for i in range(60)]
    reply = [*encode("Hi "), *codes[:30], vocab.audio_offset + vocab.audio_pad_code, *encode("there"), *codes[30:],
             vocab.tts_end_id]
    scripted = ScriptedRuntime(step2_runtime, [reply])
    chat = Step2Chat(lambda: scripted, decoder=voices._decoder, voices=voices)
    items = list(chat.speak([ChatMessage("user", "hi")], options=SCRIPTED, voice="default_female"))
    text, _, last = _deltas(items)
    audio = [i for i in items if isinstance(i, AudioChunk)]
    assert text == "Hi there" and last.finish_reason == "stop"
    assert scripted.prompt_text().endswith("<|BOT|>assistant\n<tts_start>")
    assert all(a.sample_rate == 24000 for a in audio) and audio[-1].is_last
    # 60 codes (the padding code dropped) -> 2 mel frames each -> 480 samples a frame at 24 kHz
    assert sum(a.samples.size for a in audio) == 60 * 2 * 480
    assert float(np.abs(np.concatenate([a.samples for a in audio])).max()) > 0


def test_asr_uses_the_reference_prompt(step2_runtime: Step2Runtime, prompt_spy: PromptSpy) -> None:
    transcript = Step2Transcriber(lambda: step2_runtime, max_new_tokens=4).transcribe(spoken(1.0))
    assert transcript.duration == 1.0 and isinstance(transcript.text, str)
    ids, mels = prompt_spy.calls[-1]
    assert len(mels) == 1 and torch.is_tensor(mels[0])
    assert step2_runtime.tokenizer.decode(ids).startswith(f"<|BOT|>system\n{ASR_SYSTEM}<|EOT|><|BOT|>human\n")
