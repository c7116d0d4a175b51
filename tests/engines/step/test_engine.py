"""The Step engine end to end on a tiny random model folder in the release layout."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import load_audio
from stepaudio.engines.base import ChatMessage, SpeechInstructions, ToolCall, ToolSpec, Voice
from stepaudio.engines.registry import create_engine
from stepaudio.engines.step.chat import StepChat
from stepaudio.engines.tools import ToolRegistry, respond_with_tools
from stepaudio.errors import CheckpointError, OptionError, StepAudioError, TagError, UnsupportedError
from stepaudio.testing.tiny_stack import write_tiny_step_stack

CAP = 40  # audio tokens per segment: about one second of speech


@pytest.fixture(scope="module")
def stack(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step_stack(tmp_path_factory.mktemp("step"), conformance_dir / "text" / "tokenizer.model")


@pytest.fixture(scope="module")
def engine(stack: Path):  # type: ignore[no-untyped-def]
    return create_engine("step", model_path=str(stack), seed=0, max_segment_tokens=CAP, chat_max_tokens=12)


def _speak(engine, text: str, voice=None, instructions=None):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return list(engine.synthesizer.synthesize(text, voice, instructions))


def test_tts_streams_audio_and_marks_the_end(engine) -> None:  # type: ignore[no-untyped-def]
    chunks = _speak(engine, "(高兴1)(四川话)今天天气真好。")
    assert chunks[-1].is_last and not any(c.is_last for c in chunks[:-1])
    audio = np.concatenate([c.samples for c in chunks])
    assert audio.size > 0.2 * 22050 and np.all(np.isfinite(audio))
    assert {c.sample_rate for c in chunks} == {22050}


def test_long_text_is_spoken_segment_by_segment(engine) -> None:  # type: ignore[no-untyped-def]
    text = "第一句话在这里。" * 12 + "最后一句。"
    chunks = _speak(engine, text)
    spoken = [c.text for c in chunks if c.samples.size]
    assert len(set(spoken)) >= 2  # more than one segment
    assert all(len(t) <= 80 for t in spoken)


def test_music_styles_use_the_music_vocoder(engine, stack: Path) -> None:  # type: ignore[no-untyped-def]
    assert sum(c.samples.size for c in _speak(engine, "(RAP)节奏起来")) > 0
    assert sum(c.samples.size for c in _speak(engine, "今天", instructions=SpeechInstructions(style="humming"))) > 0


def test_clone_voice_and_its_errors(engine, stack: Path) -> None:  # type: ignore[no-untyped-def]
    prompt = stack / "speakers" / "Tingting_prompt.wav"
    audio = _speak(engine, "你好", Voice("mine", prompt_audio=prompt, prompt_text="这是一段克隆用的参考音频。"))
    assert sum(c.samples.size for c in audio) > 0
    with pytest.raises(StepAudioError, match="transcript"):
        _speak(engine, "你好", Voice("mine", prompt_audio=prompt, prompt_text=None))
    with pytest.raises(StepAudioError, match="not found"):
        _speak(engine, "你好", Voice("x", prompt_audio=stack / "missing.wav", prompt_text="t"))


def test_unknown_voice_and_invalid_tags(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StepAudioError, match=r"unknown voice 'Nobody'.*Tingting"):
        _speak(engine, "你好", "Nobody")
    with pytest.raises(TagError):
        _speak(engine, "(开心)你好", instructions=SpeechInstructions(strict=True))
    with pytest.raises(TagError):
        _speak(engine, "你好", instructions=SpeechInstructions(emotion="bored"))
    with pytest.raises(TagError, match="no text"):
        _speak(engine, "(高兴1)")


def test_post_hoc_speed_and_volume(engine) -> None:  # type: ignore[no-untyped-def]
    base = np.concatenate([c.samples for c in _speak(engine, "你好")])
    faster = np.concatenate([c.samples for c in _speak(engine, "你好", instructions=SpeechInstructions(speed=1.5))])
    quiet = np.concatenate([c.samples for c in _speak(engine, "你好", instructions=SpeechInstructions(volume=0.5))])
    assert abs(faster.size - base.size / 1.5) < 0.1 * base.size
    assert np.max(np.abs(quiet)) == pytest.approx(0.5 * np.max(np.abs(base)), rel=1e-4)


def test_chat_hears_audio_and_keeps_past_turns_as_text(engine, stack: Path) -> None:  # type: ignore[no-untyped-def]
    audio = load_audio(stack / "speakers" / "Tingting_prompt.wav")
    chat: StepChat = engine.chat
    history = [
        ChatMessage("user", "", audio=audio, transcript="上一句的转写"),
        ChatMessage("assistant", "好的"),
        ChatMessage("user", "", audio=audio),
    ]
    prompt = chat.prompt(history)
    assert "上一句的转写" in prompt  # an old spoken turn travels as its transcript
    assert prompt.count("<audio_") > 40  # the newest one as audio tokens
    deltas = list(chat.respond(history, options=None))
    assert deltas[-1].finish_reason in ("stop", "length")
    assert engine.abilities.hears_audio and engine.abilities.clones_voices
    heard_and_read = chat.prompt([ChatMessage("user", "这是什么声音？", audio=audio)])
    assert "这是什么声音？<audio_" in heard_and_read  # a message with text and audio sends both


def test_tools_in_the_prompt_and_the_tool_loop(engine) -> None:  # type: ignore[no-untyped-def]
    spec = ToolSpec("add", "add two numbers", {"type": "object", "properties": {"a": {}, "b": {}}})
    prompt = engine.chat.prompt([ChatMessage("user", "1+2?")], tools=[spec])
    assert '"name": "add"' in prompt and "<|CALL_START|>" in prompt
    history = [ChatMessage("user", "1+2?"),
               ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "add", json.dumps({"a": 1, "b": 2})),)),
               ChatMessage("tool", "3", tool_call_id="c1")]
    rendered = engine.chat.prompt(history)
    assert "<|CALL_START|>" in rendered and "<|BOT|>tool\n3<|EOT|>" in rendered
    registry = ToolRegistry({"add": lambda a, b: a + b}, (spec,))
    out = list(respond_with_tools(engine.chat, [ChatMessage("user", "hi")], registry, max_rounds=2))
    assert out[-1].finish_reason is not None  # type: ignore[union-attr]


def test_asr_through_the_chat_model(engine, stack: Path) -> None:  # type: ignore[no-untyped-def]
    transcript = engine.transcriber.transcribe(load_audio(stack / "speakers" / "Tingting_prompt.wav"))
    assert isinstance(transcript.text, str) and transcript.duration == pytest.approx(2.0)


def test_missing_folders_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        create_engine("step", model_path=str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="holds none of Step-Audio-Tokenizer/, Step-Audio-TTS-3B/"):
        create_engine("step", model_path=str(tmp_path))  # an empty folder is a mistake, not an engine of nothing
    with pytest.raises(OptionError, match=r"unknown step engine option colour; the options are api_key, "):
        create_engine("step", model_path=str(tmp_path), colour="blue")
    with pytest.raises(OptionError, match=r"unknown step engine option flow_dtpye \(did you mean flow_dtype\?\)"):
        create_engine("step", model_path=str(tmp_path), flow_dtpye="fp32")


def test_flow_dtype_auto_tokenizer_weights_and_their_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from stepaudio.decoder.cosyvoice1.token2wav import FLOW_DTYPE_QUESTION
    from stepaudio.engines.step.engine import StepOptions, flow_dtype, tokenizer_weights
    from stepaudio.kernels.choices import ChoiceCache, Measured
    from stepaudio.tokenizer.paraformer.fast import WEIGHT_MODE_QUESTION

    monkeypatch.setenv("STEPAUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("STEPAUDIO_REMEASURE", raising=False)
    for flow, vq02 in (("bf16", "fp32"), ("fp32", "fp32-packed")):  # auto follows what was measured here
        ChoiceCache().put(FLOW_DTYPE_QUESTION, Measured(flow, {"step": {flow: 1.0}}))
        ChoiceCache().put(WEIGHT_MODE_QUESTION, Measured(vq02, {"decode": {vq02: 1.0}}))
        assert flow_dtype(StepOptions()) == {"bf16": torch.bfloat16, "fp32": torch.float32}[flow]
        assert tokenizer_weights(StepOptions()) == vq02
    assert tokenizer_weights(StepOptions(tokenizer_weights="int8")) == "int8"
    assert tokenizer_weights(StepOptions(device="cuda")) == "fp32"
    assert flow_dtype(StepOptions(device="cuda")) == torch.bfloat16
    assert flow_dtype(StepOptions(flow_dtype="fp32")) == torch.float32
    with pytest.raises(OptionError, match="flow_dtype='fp64' is not one of auto, fp32, bf16, fp16"):
        create_engine("step", model_path=str(tmp_path), flow_dtype="fp64")
    with pytest.raises(OptionError, match="tokenizer_weights='int4' is not one of fp32, fp32-packed"):
        create_engine("step", model_path=str(tmp_path), tokenizer_weights="int4")


@pytest.mark.parametrize(("options", "message"), [
    ({"seed": "abc"}, "seed takes an integer, not 'abc'"),
    ({"seed": 1.5}, "seed takes an integer, not 1.5"),
    ({"chat_max_tokens": True}, "chat_max_tokens takes an integer"),
    ({"max_segment_tokens": -5}, "max_segment_tokens must be at least 1, not -5"),
    ({"streaming": "maybe"}, "streaming takes true or false"),
    ({"dtype": "fp13"}, "dtype='fp13' is not one of fp32, bf16, fp16"),
    ({"quant": "int3"}, "quant='int3' is not one of none, int8, "),
    ({"device": "tpu"}, "device 'tpu' is not a torch device: use cpu, cuda, cuda:N or mps"),
    ({"voice": ["a"]}, "voice takes text"),
])
def test_bad_option_values_name_the_allowed_ones(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        create_engine("step", model_path=str(tmp_path), **options)


def test_option_values_from_the_command_line_become_their_types() -> None:
    from stepaudio.engines.step.engine import StepOptions

    opts = StepOptions.from_options({"seed": "7", "streaming": "off", "voice": 2, "max_segment_tokens": 30,
                                     "chat_url": None})
    assert (opts.seed, opts.streaming, opts.voice, opts.max_segment_tokens) == (7, False, "2", 30)
    assert StepOptions.from_options({"streaming": True}).streaming is True


def test_a_gpu_device_without_a_gpu_is_refused_before_loading(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(UnsupportedError, match=r"device 'cuda:1': this torch sees no CUDA GPU.*use --device cpu"):
        create_engine("step", model_path=str(tmp_path), device="cuda:1")


def test_parts_serve_as_many_requests_at_once_as_the_lm_decodes_together(stack: Path) -> None:
    """The server's gate is as wide as `lm_batch` (the batcher then gets concurrent requests); one at a time by
    default on CPU; a part whose LM is served is as wide as `remote_parallel` (the server batches them)."""
    assert create_engine("step", model_path=str(stack)).concurrency == ()
    wide = create_engine("step", model_path=str(stack), lm_batch=3)
    assert dict(wide.concurrency) == {"chat": 3, "transcriber": 3, "synthesizer": 3}
    remote_tts = create_engine("step", model_path=str(stack), lm_batch=2, tts_url="http://127.0.0.1:9/v1")
    assert dict(remote_tts.concurrency) == {"chat": 2, "transcriber": 2, "synthesizer": 4}
    one_at_a_time = create_engine("step", model_path=str(stack), tts_url="http://127.0.0.1:9/v1", remote_parallel=1)
    assert one_at_a_time.concurrency == ()
    with pytest.raises(OptionError, match="remote_parallel must be at least 1"):
        create_engine("step", model_path=str(stack), remote_parallel=0)


def test_sentences_spoken_at_once_share_decode_steps_and_sound_as_alone(stack: Path) -> None:
    import threading

    # an exact weight format: `quant=auto` may measure int8 faster here, whose rows share activation scales
    engine = create_engine("step", model_path=str(stack), seed=0, max_segment_tokens=CAP, lm_batch=2, dtype="fp32",
                           quant="none")
    texts = ["你好，今天天气很好。", "我们一起去公园散步吧。"]

    def say(text: str) -> np.ndarray:
        return np.concatenate([chunk.samples for chunk in _speak(engine, text)])

    alone = [say(text) for text in texts]
    together: list[np.ndarray | None] = [None, None]
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, say(texts[i]))) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for mine, theirs in zip(alone, together, strict=True):
        # the same tokens (same length, same speech); products running on both threads at once may sum in another
        # order (BLAS picks its threads per call), so the samples agree to float rounding, not bit for bit
        assert theirs is not None and mine.shape == theirs.shape and np.abs(mine - theirs).max() < 1e-3
    core = engine.synthesizer._lm.get().batcher.core
    assert core.row_steps > core.steps  # some steps decoded both sentences
