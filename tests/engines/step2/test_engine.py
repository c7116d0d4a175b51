"""The step2 engine from a release folder: declared abilities, options and folder errors, TTS in a prompt
voice, and a multi-turn spoken conversation through the turn service."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import Audio, save_audio
from stepaudio.engines.base import Engine, GenerationOptions, SpeechInstructions, Voice
from stepaudio.engines.registry import create_engine
from stepaudio.engines.step2.chat import Step2Chat
from stepaudio.engines.step2.runtime import Step2Runtime
from stepaudio.errors import CheckpointError, OptionError, StepAudioError, UnsupportedError
from stepaudio.realtime.turn import Conversation, ReplyAudio, ReplyText, TurnDone, TurnSettings, UserHeard
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.testing.tiny_step2 import VOICES, PromptSpy

from .conftest import ScriptedRuntime

FAST = {"seed": 0, "max_segment_tokens": 40, "chat_max_tokens": 8}


@pytest.fixture(scope="module")
def engine(step2_stack: Path) -> Engine:
    return create_engine("step2", model_path=str(step2_stack), **FAST)


def test_the_engine_declares_what_it_can_do(engine: Engine) -> None:
    assert engine.name == "step2"
    assert engine.abilities.hears_audio and engine.abilities.clones_voices and engine.abilities.tool_calls
    assert engine.synthesizer is not None and engine.synthesizer.sample_rate == 24000
    assert engine.synthesizer.voices() == sorted(VOICES)
    engine.warmup()


def test_tts_speaks_in_a_named_or_cloned_voice(engine: Engine, tmp_path: Path) -> None:
    assert engine.synthesizer is not None
    chunks = list(engine.synthesizer.synthesize("Hello there.", "default_male"))
    assert chunks[-1].is_last and chunks[-1].samples.size == 0
    speech = np.concatenate([c.samples for c in chunks])
    assert speech.size > 0 and speech.size % 480 == 0 and float(np.abs(speech).max()) <= 1.0
    prompt = save_audio(tmp_path / "me.wav", speech_like(1.2, 22050, 5), 22050)
    cloned = list(engine.synthesizer.synthesize("Hello there.", Voice("me", prompt_audio=prompt)))
    assert sum(c.samples.size for c in cloned) > 0
    quiet = list(engine.synthesizer.synthesize("Hello there.", "default_male", SpeechInstructions(volume=0.1)))
    assert float(np.abs(np.concatenate([c.samples for c in quiet])).max()) <= 0.1 + 1e-6


def test_tts_refuses_what_it_cannot_do(engine: Engine) -> None:
    assert engine.synthesizer is not None
    with pytest.raises(StepAudioError, match="unknown voice 'nobody'"):
        list(engine.synthesizer.synthesize("hi", "nobody"))
    with pytest.raises(UnsupportedError, match="no emotion control"):
        list(engine.synthesizer.synthesize("hi", None, SpeechInstructions(emotion="happy", strict=True)))


def test_a_spoken_conversation_through_the_turn_service(step2_stack: Path, engine: Engine,
                                                        step2_runtime: Step2Runtime, prompt_spy: PromptSpy) -> None:
    """Two spoken turns: the model hears each question as audio rows; the reply is spoken in the engine's
    voice; with transcripts on, the first question is text in the second prompt."""
    scripted = ScriptedRuntime(step2_runtime, ["Hello there.", "Fine, thanks."])
    chat = Step2Chat(lambda: scripted)
    assert engine.synthesizer is not None and engine.transcriber is not None
    # this chat has no decoder: its replies are read by the synthesizer (the model's own speech: test_chat.py)
    speaking = Engine("step2", engine.transcriber, chat, engine.synthesizer,
                      dataclasses.replace(engine.abilities, speaks=False))
    conversation = Conversation(speaking, TurnSettings(transcripts="always",
                                                       options=GenerationOptions(max_new_tokens=50)))
    first = list(conversation.turn(audio=Audio(speech_like(1.0, 16000, 1), 16000)))
    assert "".join(e.text for e in first if isinstance(e, ReplyText)) == "Hello there."
    assert sum(e.chunk.samples.size for e in first if isinstance(e, ReplyAudio)) > 0
    assert [type(e) for e in first][-2:] == [UserHeard, TurnDone]  # the transcript comes after the reply
    second = list(conversation.turn(audio=Audio(speech_like(1.0, 16000, 2), 16000)))
    done = second[-1]
    assert isinstance(done, TurnDone) and done.reply == "Fine, thanks."
    heard = next(e.text for e in first if isinstance(e, UserHeard))
    prompt = scripted.prompt_text(1)
    assert prompt.count("<audio_start>") == 1 and f"<|BOT|>human\n{heard}<|EOT|>" in prompt
    assert "<|BOT|>assistant\nHello there.<|EOT|>" in prompt
    # the two transcripts ran the real model on the audio rows (its TTS prompts carry no audio)
    assert [len(mels) for _, mels in prompt_spy.calls if mels] == [1, 1]


def test_options_are_checked_by_name_and_type(step2_stack: Path) -> None:
    with pytest.raises(OptionError, match="did you mean voice"):
        create_engine("step2", model_path=str(step2_stack), voise="x")
    with pytest.raises(OptionError, match="think takes true or false"):
        create_engine("step2", model_path=str(step2_stack), think="maybe")
    with pytest.raises(OptionError, match="history='both' is not one of text, audio"):
        create_engine("step2", model_path=str(step2_stack), history="both")
    with pytest.raises(OptionError, match="chat_max_tokens takes an integer"):
        create_engine("step2", model_path=str(step2_stack), chat_max_tokens="many")
    with pytest.raises(StepAudioError, match="no voice 'x'"):
        create_engine("step2", model_path=str(step2_stack), voice="x")
    assert create_engine("step2", model_path=str(step2_stack), think="on", voice="default_male").chat is not None


def test_wrong_folders_say_what_to_pass(step2_stack: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="needs --model-path"):
        create_engine("step2")
    shutil.copytree(step2_stack, tmp_path / "Step-Audio-2-mini", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(CheckpointError, match=re.escape(f"pass --model-path {tmp_path / 'Step-Audio-2-mini'}")):
        create_engine("step2", model_path=str(tmp_path))
    with pytest.raises(CheckpointError, match=r"voices folder .* does not exist"):
        create_engine("step2", model_path=str(step2_stack), voices_dir=str(tmp_path / "none"))
    without_decoder = tmp_path / "Step-Audio-2-mini"
    shutil.rmtree(without_decoder / "token2wav")
    engine = create_engine("step2", model_path=str(without_decoder))
    assert engine.synthesizer is None and not engine.abilities.clones_voices
    with pytest.raises(CheckpointError, match="huggingface-cli download stepfun-ai/Step-Audio-2-mini"):
        engine.warmup("chat")  # the weights were left out of the copy


def test_parts_serve_as_many_requests_at_once_as_the_lm_decodes_together(step2_stack: Path) -> None:
    """The server's gate is as wide as the LM's rows (`lm_batch`; one at a time by default on CPU) or, for a
    served model, `remote_parallel` (the server batches them): chat, ASR and TTS share the one LM."""
    assert create_engine("step2", model_path=str(step2_stack)).concurrency == ()
    wide = create_engine("step2", model_path=str(step2_stack), lm_batch=2)
    assert dict(wide.concurrency) == {"chat": 2, "transcriber": 2, "synthesizer": 2}
    served = create_engine("step2", server_url="http://127.0.0.1:9/v1")
    assert dict(served.concurrency) == {"chat": 4, "transcriber": 4}
    assert create_engine("step2", server_url="http://127.0.0.1:9/v1", remote_parallel=1).concurrency == ()
    with pytest.raises(OptionError, match="lm_batch must be at least 1"):
        create_engine("step2", model_path=str(step2_stack), lm_batch=0)
