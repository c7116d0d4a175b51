"""Chat evaluation end to end with real parts: the lite engine (Whisper base, SmolLM2) answers a spoken and a
text turn, and the project's own server with SmolLM2 judges over HTTP on loopback; plus the summary maths."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from stepaudio.engines.base import Engine
from stepaudio.errors import StepAudioError
from stepaudio.eval.chat import ChatEvalConfig, TurnResult, engine_models, run_chat_eval, summarize
from stepaudio.eval.judge import Judge, JudgeConfig, JudgeError, Verdict
from stepaudio.eval.stepeval import load_conversations


@pytest.fixture(scope="module")
def lite() -> Engine:
    from stepaudio.engines.registry import create_engine

    try:
        engine = create_engine("lite", chat_model="smollm2", max_new_tokens=32)
        engine.chat.warmup()  # type: ignore[union-attr]
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite engine is not usable here: {exc}")
    return engine


@pytest.mark.slow
def test_spoken_and_text_turns_answered_and_judged(lite: Engine, lite_server_url: str,
                                                   conversations_file: Path) -> None:
    conversations = load_conversations(conversations_file)
    judge = Judge(JudgeConfig(lite_server_url, model="lite-chat", max_tokens=40, retries=0))
    seen: list[TurnResult] = []
    results = run_chat_eval(conversations, lite, judge, ChatEvalConfig(max_new_tokens=24, language="en"),
                            on_turn=seen.append)
    assert seen == results and [(r.conversation_id, r.turn) for r in results] == [("geo", 1), ("geo", 2),
                                                                                    ("math", 1)]
    spoken = results[0]
    assert spoken.spoken and "capital" in spoken.question.lower() and "france" in spoken.question.lower()
    assert spoken.reference == "Paris." and results[1].reference is None
    assert all(r.reply and r.error is None and r.verdict is not None and r.verdict.raw for r in results)
    summary = summarize(results)
    assert summary.conversations == 2 and summary.replies == 3 and summary.failed == 0
    assert summary.judged + summary.incomplete == 3
    assert set(summary.categories) == {"knowledge", "reasoning"}


def test_engine_error_stops_only_that_conversation(lite: Engine, conversations_file: Path) -> None:
    results = run_chat_eval(load_conversations(conversations_file), lite, None, ChatEvalConfig(input_mode="audio",
                                                                                            max_new_tokens=8))
    by_id = {(r.conversation_id, r.turn): r for r in results}
    assert by_id[("geo", 1)].error is None and by_id[("geo", 1)].verdict is None  # no judge: replies only
    assert by_id[("geo", 1)].spoken and "france" in by_id[("geo", 1)].question.lower()  # heard by Whisper
    assert "no audio" in (by_id[("geo", 2)].error or "") and "no audio" in (by_id[("math", 1)].error or "")
    assert summarize(results).failed == 2


def test_unreachable_judge_stops_the_run(lite: Engine, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    file = tmp_path / "c.jsonl"
    file.write_text("\n".join(json.dumps({"id": str(i), "turns": [{"role": "user", "text": "Hi"}]}) for i in range(4)))
    judge = Judge(JudgeConfig(f"http://127.0.0.1:{port}", retries=0, timeout_s=5))
    with pytest.raises(JudgeError, match="3 times in a row"):
        run_chat_eval(load_conversations(file), lite, judge, ChatEvalConfig(max_new_tokens=4))


def test_summary_counts_and_means() -> None:
    def row(cid: str, category: str, verdict: Verdict | None, error: str | None = None) -> TurnResult:
        return TurnResult(cid, category, 1, "q", False, "r", None, 0.1, verdict, error)

    results = [row("a", "x", Verdict(1, 1, 5.0)), row("b", "x", Verdict(0, 1, 3.0)),
               row("c", "y", Verdict(1, None, None, problems=("relevance missing", "score missing"))),
               row("d", "y", None, "judge: HTTP 500"), row("e", "y", None, "engine: boom")]
    s = summarize(results)
    assert (s.replies, s.judged, s.incomplete, s.failed) == (4, 2, 1, 2)
    assert s.factuality == pytest.approx(2 / 3) and s.relevance == 1.0 and s.chat_score == 4.0
    assert s.categories["x"].chat_score == 4.0 and s.categories["y"].factuality == 1.0
    assert len(s.problems) == 3 and any("relevance missing" in p for p in s.problems)


def test_engine_models_for_reports() -> None:
    records = engine_models("lite", {"chat_model": "qwen"})
    assert [r.role for r in records] == ["asr", "chat", "tts"]
    assert records[1].files[0].sha256.startswith("1d961463") and records[1].files[0].bytes == 491_400_064
    assert engine_models("step", {"model_path": "/m"})[0].note == "options {'model_path': '/m'}"


def test_step_chat_hears_each_spoken_turn_once(step_stack: Path, chat_prompts: list[list[int]],
                                               tmp_path: Path) -> None:
    """Step-Audio-Chat hears the spoken turn as audio tokens once; later turns carry the dataset's transcript."""
    from stepaudio.engines.registry import create_engine

    shutil.copy(step_stack / "speakers" / "Tingting_prompt.wav", tmp_path / "q.wav")
    file = tmp_path / "c.jsonl"
    file.write_text(json.dumps({"id": "c", "turns": [{"role": "user", "text": "今天天气怎么样", "audio": "q.wav"},
                                                     {"role": "user", "text": "明天呢"}]}), encoding="utf-8")
    engine = create_engine("step", model_path=str(step_stack), seed=0, chat_max_tokens=4)
    results = run_chat_eval(load_conversations(file), engine, None, ChatEvalConfig(max_new_tokens=4))
    assert [r.error for r in results] == [None, None] and results[0].spoken
    assert results[0].question == "今天天气怎么样"
    assert len(chat_prompts) == 2  # one pass per turn, no ASR pass
    first, second = ([i for i in p if i >= 65536] for p in chat_prompts)
    assert 80 <= len(first) <= 85 and second == []
