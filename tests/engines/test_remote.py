"""The remote LM backend against a fake vLLM `/v1/completions` on loopback: what it sends, what it parses.

The fake follows vLLM's wire format: `prompt` as text or token ids, `stop_token_ids` (the stop token's id
comes back in the logprobs, its text in the chunk), `logprobs` with `token_id:N` tokens when
`return_tokens_as_token_ids`, absolute `text_offset`s, several tokens per streamed chunk, a usage-only last
chunk, `skip_special_tokens` / `spaces_between_special_tokens` defaulting to true (so a client that does not
turn them off gets `<audio_N>` pieces dropped or spaced), and vLLM's error bodies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from stepaudio.engines.base import CancelToken
from stepaudio.engines.remote import RemoteLM, RemoteLMError
from stepaudio.lm import GREEDY, GenerationConfig, SamplingConfig
from stepaudio.testing.loopback import serve_on_loopback
from stepaudio.text.vocab import STEP1

AUDIO = STEP1.audio_offset
WORDS = {10: "Hello", 11: " world", 12: "!"}
# What the fake model answers: two audio ids, a word, two more audio ids, <|EOT|>, then more (never reached).
SCRIPT = [AUDIO + 5, AUDIO + 1024 + 7, 10, AUDIO + 9, AUDIO + 1024 + 4000, STEP1.eot_id, 11, 12]
VOCAB = STEP1.vocab_size


def token_text(token_id: int) -> str:
    if token_id >= AUDIO:
        return f"<audio_{token_id - AUDIO}>"
    return "<|EOT|>" if token_id == STEP1.eot_id else WORDS.get(token_id, f"<w{token_id}>")


def is_special(token_id: int) -> bool:
    return token_id >= AUDIO or token_id == STEP1.eot_id


@dataclass
class FakeVllm:
    """Behaviour switches for one test; `requests` records every JSON body received."""

    served: str = "step-audio-tts-3b"
    mode: str = "normal"  # normal | no-ids | no-stream | error-event | old-error-event | cut | garbage | slow
    chunk_size: int = 2
    requests: list[dict[str, Any]] = field(default_factory=list)

    def completion(self, body: dict[str, Any]) -> tuple[int, Any]:
        """(status, JSON body or a list of SSE events) as vLLM would answer `body`."""
        self.requests.append(body)
        if body.get("model") != self.served:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                   "type": "NotFoundError", "param": "model", "code": 404}}
        prompt = body["prompt"]
        if isinstance(prompt, list) and any(not 0 <= t < VOCAB for t in prompt):
            return 400, {"error": {"message": f"Token id {max(prompt)} is out of vocabulary", "type":
                                   "BadRequestError", "param": None, "code": 400}}
        stops = set(body.get("stop_token_ids") or []) | {STEP1.eot_id}
        out: list[int] = []
        for token_id in SCRIPT[: body.get("max_tokens", 16)]:
            out.append(token_id)  # vLLM keeps the stop token in the output ids
            if token_id in stops:
                break
        finish = "stop" if out and out[-1] in stops else "length"
        skip = body.get("skip_special_tokens", True)
        spaced = body.get("spaces_between_special_tokens", True)
        texts = [("" if skip else (" " if spaced and i and is_special(t) else "") + token_text(t))
                 if is_special(t) else token_text(t) for i, t in enumerate(out)]
        with_ids = body.get("return_tokens_as_token_ids") and self.mode != "no-ids"
        chunks = []
        offset = 0
        for start in range(0, len(out), self.chunk_size):
            ids, parts = out[start:start + self.chunk_size], texts[start:start + self.chunk_size]
            offsets = [offset + sum(len(p) for p in parts[:k]) for k in range(len(parts))]
            offset += sum(len(p) for p in parts)
            logprobs = None
            if body.get("logprobs") is not None:
                tokens = [f"token_id:{t}" if with_ids else token_text(t) for t in ids]
                logprobs = {"text_offset": offsets, "token_logprobs": [-0.1] * len(ids), "tokens": tokens,
                            "top_logprobs": [{tok: -0.1} for tok in tokens]}
            last = start + self.chunk_size >= len(out)
            chunks.append({"index": 0, "text": "".join(parts), "logprobs": logprobs,
                           "finish_reason": finish if last else None,
                           "stop_reason": (out[-1] if finish == "stop" else None) if last else None})
        usage = {"prompt_tokens": len(prompt) if isinstance(prompt, list) else len(prompt.split()),
                 "completion_tokens": len(out), "total_tokens": 0}
        base = {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": self.served}
        if not body.get("stream") or self.mode == "no-stream":
            merged = {"index": 0, "text": "".join(texts), "finish_reason": finish, "logprobs": None}
            if body.get("logprobs") is not None:
                merged["logprobs"] = {k: [v for c in chunks for v in c["logprobs"][k]] for k in chunks[0]["logprobs"]}
            return 200, {**base, "choices": [merged], "usage": usage}
        events: list[Any] = [{**base, "choices": [c], "usage": None} for c in chunks]
        events.append({**base, "choices": [], "usage": usage})
        if self.mode == "error-event":
            events[1:] = [{"error": {"message": "CUDA out of memory", "type": "InternalServerError", "code": 500}}]
        if self.mode == "old-error-event":
            events[1:] = [{"object": "error", "message": "engine dead", "type": "InternalServerError", "code": 500}]
        events.append("[DONE]")
        if self.mode == "cut":
            events = events[:1]
        return 200, events


@pytest.fixture
def fake() -> Iterator[tuple[FakeVllm, str]]:
    state = FakeVllm()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path == "/v1/completions" and self.headers["Content-Type"] == "application/json"
            status, answer = state.completion(body)
            if state.mode == "garbage":
                status, answer = 200, None
            self.send_response(status)
            streaming = isinstance(answer, list)
            self.send_header("Content-Type", "text/event-stream" if streaming else "application/json")
            self.end_headers()
            if answer is None:
                self.wfile.write(b"<html>proxy error</html>")
                return
            if not streaming:
                self.wfile.write(json.dumps(answer).encode())
                return
            for event in answer:
                if state.mode == "slow":
                    time.sleep(1.0)
                payload = event if isinstance(event, str) else json.dumps(event)
                self.wfile.write(f"data: {payload}\n\n".encode())
                self.wfile.flush()

    with serve_on_loopback(Handler) as url:
        yield state, url


CONFIG = GenerationConfig(max_new_tokens=16, sampling=GREEDY, stop_ids=STEP1.stop_ids, seed=7)
EXPECTED_IDS = SCRIPT[:5]
EXPECTED_TEXT = "<audio_5><audio_1031>Hello<audio_9><audio_5024>"


def test_request_is_what_vllm_expects(fake: tuple[FakeVllm, str]) -> None:
    state, url = fake
    list(RemoteLM(url + "/v1", "step-audio-tts-3b").stream([1, 4, 5], CONFIG))
    body = state.requests[-1]
    assert body["prompt"] == [1, 4, 5] and body["model"] == "step-audio-tts-3b"
    assert body["stop_token_ids"] == [STEP1.eot_id] and body["stream"] is True
    assert body["skip_special_tokens"] is False and body["spaces_between_special_tokens"] is False
    assert body["return_tokens_as_token_ids"] is True and body["logprobs"] == 1
    assert body["top_k"] == -1 and body["temperature"] == 0.0 and body["seed"] == 7 and body["max_tokens"] == 16
    sampled = GenerationConfig(max_new_tokens=4, stop_ids=(3,),
                               sampling=SamplingConfig(temperature=0.7, top_k=50, top_p=0.9, repetition_penalty=1.1))
    list(RemoteLM(url, "step-audio-tts-3b").stream("<|BOT|>human\nhi", sampled))
    body = state.requests[-1]
    assert body["prompt"] == "<|BOT|>human\nhi" and body["top_k"] == 50 and body["top_p"] == 0.9
    assert body["repetition_penalty"] == 1.1 and "seed" not in body


@pytest.mark.parametrize("chunk_size", [1, 2, 3])
def test_stream_gives_exact_ids_and_text_without_the_stop_token(fake: tuple[FakeVllm, str], chunk_size: int) -> None:
    state, url = fake
    state.chunk_size = chunk_size
    tokens = list(RemoteLM(url, "step-audio-tts-3b").stream([1, 4], CONFIG))
    assert [t.id for t in tokens] == EXPECTED_IDS
    assert [t.text for t in tokens] == [token_text(i) for i in EXPECTED_IDS]
    assert "".join(t.text for t in tokens) == EXPECTED_TEXT


def test_max_tokens_ends_the_stream(fake: tuple[FakeVllm, str]) -> None:
    _, url = fake
    short = GenerationConfig(max_new_tokens=3, sampling=GREEDY, stop_ids=STEP1.stop_ids)
    assert [t.id for t in RemoteLM(url, "step-audio-tts-3b").stream([1], short)] == SCRIPT[:3]


def test_server_without_token_ids_gives_audio_ids_from_text(fake: tuple[FakeVllm, str]) -> None:
    state, url = fake
    state.mode = "no-ids"
    tokens = list(RemoteLM(url, "step-audio-tts-3b").stream([1], CONFIG))
    assert [t.id for t in tokens if t.id is not None] == [i for i in EXPECTED_IDS if i >= AUDIO]
    assert "".join(t.text for t in tokens).startswith(EXPECTED_TEXT)
    plain = list(RemoteLM(url, "step-audio-tts-3b", audio_offset=None).stream([1], CONFIG))
    assert all(t.id is None for t in plain)


def test_server_that_ignores_stream_answers_json(fake: tuple[FakeVllm, str]) -> None:
    state, url = fake
    state.mode = "no-stream"
    tokens = list(RemoteLM(url, "step-audio-tts-3b").stream([1], CONFIG))
    assert [t.id for t in tokens] == EXPECTED_IDS and "".join(t.text for t in tokens) == EXPECTED_TEXT


def test_cancel_stops_the_stream(fake: tuple[FakeVllm, str]) -> None:
    state, url = fake
    state.chunk_size = 1
    cancel = CancelToken()
    out = []
    for token in RemoteLM(url, "step-audio-tts-3b").stream([1], CONFIG, cancel):
        out.append(token)
        cancel.cancel()
    assert len(out) == 1


@pytest.mark.parametrize(("mode", "model", "prompt", "message"), [
    ("normal", "other", [1], r"answered 404: The model `other` does not exist\.$"),
    ("normal", "step-audio-tts-3b", [VOCAB + 5], r"answered 400: Token id \d+ is out of vocabulary$"),
    ("error-event", "step-audio-tts-3b", [1], r"reported an error: CUDA out of memory$"),
    ("old-error-event", "step-audio-tts-3b", [1], r"reported an error: engine dead$"),
    ("cut", "step-audio-tts-3b", [1], r"closed the stream before \[DONE\]"),
    ("garbage", "step-audio-tts-3b", [1], r"neither an event stream nor JSON: '<html>proxy error</html>'"),
])
def test_errors_are_clear(fake: tuple[FakeVllm, str], mode: str, model: str, prompt: list[int], message: str) -> None:
    state, url = fake
    state.mode = mode
    with pytest.raises(RemoteLMError, match=message):
        list(RemoteLM(url, model).stream(prompt, CONFIG))


def test_unreachable_and_stalled_servers(fake: tuple[FakeVllm, str]) -> None:
    state, url = fake
    with pytest.raises(RemoteLMError, match="cannot reach"):
        list(RemoteLM("http://127.0.0.1:9", "m", timeout=2).stream([1], CONFIG))
    state.mode = "slow"
    with pytest.raises(RemoteLMError, match="stopped answering"):
        list(RemoteLM(url, "step-audio-tts-3b", timeout=0.3).stream([1], CONFIG))
