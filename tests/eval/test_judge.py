"""The LLM judge: its answer parser on well-formed and malformed answers, and real requests to the project's own
OpenAI-compatible server (lite engine, SmolLM2) on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepaudio.errors import StepAudioError
from stepaudio.eval.judge import Judge, JudgeConfig, JudgeError, build_prompt, parse_verdict, prompt_sha256


@pytest.mark.parametrize(("answer", "expected"), [
    ('{"factuality": 1, "relevance": 0, "score": 4, "reason": "ok"}', (1, 0, 4.0)),
    ('Sure!\n```json\n{"Factuality": true, "Relevance": "yes", "Score": "4/5"}\n```', (1, 1, 4.0)),
    ('<think>{"score": 1}</think>{"factual": 0, "relevant": 1, "chat_score": 2.5}', (0, 1, 2.5)),
    ("factuality: 1\nrelevance: 1\nscore: 5 out of 5\nreason: clear answer", (1, 1, 5.0)),
    ('{"note": "x"} then {"factuality": "0", "relevance": "no", "rating": 3}', (0, 0, 3.0)),
])
def test_parses_well_formed_and_loose_answers(answer: str, expected: tuple[int, int, float]) -> None:
    verdict = parse_verdict(answer)
    assert (verdict.factuality, verdict.relevance, verdict.score) == expected
    assert verdict.raw == answer


@pytest.mark.parametrize(("answer", "fields", "problem"), [
    ('{"factuality": 1, "relevance": 1}', (1, 1, None), "score missing"),
    ('{"factuality": 1, "relevance": 1, "score": 7}', (1, 1, None), "score 7 out of range (1-5)"),
    ('{"factuality": 1, "relevance": 1, "score": 0}', (1, 1, None), "score 0 out of range"),
    ('{"factuality": 2, "relevance": 1, "score": 3}', (None, 1, 3.0), "factuality 2 out of range (0 or 1)"),
    ('{"factuality": "maybe", "relevance": 1, "score": 3}', (None, 1, 3.0), "factuality 'maybe' is not a number"),
    ('{"factuality": null, "relevance": 1, "score": 3}', (None, 1, 3.0), "factuality missing"),
    ("I cannot judge this.", (None, None, None), "no verdict in the judge's answer"),
    ("", (None, None, None), "no verdict"),
    ('{"factuality": 1, "relevance": 1, "score": 4', (1, 1, 4.0), "no JSON object"),  # cut off: read as text
])
def test_malformed_answers_give_reasons_not_exceptions(answer: str, fields: tuple[Any, ...], problem: str) -> None:
    verdict = parse_verdict(answer)
    assert (verdict.factuality, verdict.relevance, verdict.score) == fields
    assert any(problem in p for p in verdict.problems), verdict.problems
    assert not verdict.complete or fields.count(None) == 0


def test_prompt_carries_history_reference_and_hash() -> None:
    text = build_prompt([("user", "Hi {there}"), ("assistant", "Hello!")], "2+2?", "4", reference="Four.")
    assert "user: Hi {there}\nassistant: Hello!" in text and "Final user turn:\n2+2?" in text
    assert "Four." in text and '{"factuality": 0 or 1' in text
    assert "reference" not in build_prompt([], "q", "r").lower().split("score three things")[0]
    assert "(no earlier turns)" in build_prompt([], "q", "r")
    assert len(prompt_sha256()) == 64


def test_config_endpoint_forms() -> None:
    assert JudgeConfig("http://h:1").endpoint == "http://h:1/v1/chat/completions"
    assert JudgeConfig("http://h:1/v1/").endpoint == "http://h:1/v1/chat/completions"
    assert JudgeConfig("http://h:1/x/chat/completions").endpoint == "http://h:1/x/chat/completions"


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The project's server with the lite engine's SmolLM2 chat model: a real OpenAI-compatible endpoint."""
    pytest.importorskip("uvicorn")
    from stepaudio.engines.registry import create_engine
    from stepaudio.server.inprocess import InProcessServer

    try:
        engine = create_engine("lite", chat_model="smollm2", max_new_tokens=48)
        engine.chat.warmup()  # type: ignore[union-attr]
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite engine is not usable here: {exc}")
    with InProcessServer(engine, Path(tmp_path_factory.mktemp("store")), 2) as ws_url:
        yield ws_url.replace("ws://", "http://").removesuffix("/v1/realtime")


def test_real_endpoint_answer_is_parsed_or_explained(judge_server: str) -> None:
    judge = Judge(JudgeConfig(judge_server, model="lite-chat", max_tokens=48, retries=0))
    verdict = judge.judge([("user", "What is the capital of France?")], "What is the capital of France?",
                          "The capital of France is Paris.", reference="Paris.")
    assert verdict.raw.strip()  # the model answered
    # SmolLM2 rarely writes the JSON asked for: every field it did not give usably has a recorded reason
    for name in ("factuality", "relevance", "score"):
        if getattr(verdict, name) is None:
            assert any(name in p or "no verdict" in p for p in verdict.problems), verdict.problems


def test_endpoint_errors_are_judge_errors(judge_server: str) -> None:
    with pytest.raises(JudgeError, match="HTTP 404"):
        Judge(JudgeConfig(judge_server + "/nowhere/chat/completions", retries=0)).complete("hi")
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(JudgeError, match="cannot reach the judge"):
        Judge(JudgeConfig(f"http://127.0.0.1:{port}", retries=0, timeout_s=5)).complete("hi")
