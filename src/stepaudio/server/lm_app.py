"""`/v1/completions` for one Step1 model in this process: vLLM's wire format without vLLM.

Lets the Step engine's remote backend (and anything that speaks the OpenAI completions API) use a
Step1 model on a CPU machine or a GPU without vLLM. The subset served is what the Step engine sends:
prompt as text or token ids, sampling, `stop_token_ids`, `seed`, streaming, and logprob tokens written
`token_id:N` so clients get exact ids back; plus `repetition_aware_window` for the TTS model.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from stepaudio.engines.step.native_lm import NativeLM
from stepaudio.lm import GenerationConfig, SamplingConfig


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str | list[int]
    max_tokens: int = Field(16, ge=1, le=32768)
    temperature: float = Field(1.0, ge=0.0, le=10.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = -1
    repetition_penalty: float = Field(1.0, gt=0.0)
    repetition_aware_window: int = Field(0, ge=0, le=1024)
    stop_token_ids: list[int] | None = None
    seed: int | None = None
    stream: bool = False
    logprobs: int | None = None
    return_tokens_as_token_ids: bool = False

    model_config = {"extra": "ignore"}


def create_lm_app(lm: NativeLM, served_name: str) -> FastAPI:
    app = FastAPI(title=f"stepaudio LM server ({served_name})")
    lock = threading.Lock()  # one model, one generation at a time

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served_name, "object": "model", "owned_by": "stepaudio"}]}

    @app.post("/v1/completions", response_model=None)
    def completions(request: CompletionRequest) -> JSONResponse | StreamingResponse:
        if request.model not in (None, served_name):
            raise HTTPException(404, f"model {request.model!r} is not served here; this server has {served_name!r}")
        if isinstance(request.prompt, list) and any(
            not 0 <= i < lm.tokenizer.vocab_size for i in request.prompt
        ):
            raise HTTPException(400, "prompt token ids must lie inside the vocabulary")
        config = _generation_config(request, lm)
        completion_id = f"cmpl-{uuid.uuid4().hex[:16]}"
        chunks = _generate(lm, request, config, lock)
        if request.stream:
            return StreamingResponse(_sse(chunks, completion_id, served_name), media_type="text/event-stream")
        return JSONResponse(_collect(chunks, completion_id, served_name))

    return app


def _generation_config(request: CompletionRequest, lm: NativeLM) -> GenerationConfig:
    sampling = SamplingConfig(
        temperature=request.temperature,
        top_k=max(0, request.top_k),
        top_p=request.top_p,
        repetition_penalty=request.repetition_penalty,
        ban_repeats=request.repetition_aware_window > 0,
        ban_window=request.repetition_aware_window or 10,
    )
    stops = tuple(request.stop_token_ids) if request.stop_token_ids else (lm.model.config.eos_token_id,)
    return GenerationConfig(max_new_tokens=request.max_tokens, stop_ids=stops, sampling=sampling, seed=request.seed)


def _generate(
    lm: NativeLM, request: CompletionRequest, config: GenerationConfig, lock: threading.Lock
) -> Iterator[tuple[str, int | None, str | None]]:
    """(text, token id, finish reason) per token; the last item carries the reason and no token."""
    with lock:
        count = 0
        for token in lm.stream(request.prompt, config):
            count += 1
            yield token.text, token.id, None
        yield "", None, "length" if count >= config.max_new_tokens else "stop"


def _choice(text: str, token_id: int | None, offset: int, finish: str | None, with_ids: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    if token_id is not None:
        token = f"token_id:{token_id}" if with_ids else text
        choice["logprobs"] = {"tokens": [token], "text_offset": [offset], "token_logprobs": [None]}
    return choice


def _sse(chunks: Iterator[tuple[str, int | None, str | None]], completion_id: str, model: str) -> Iterator[str]:
    offset = 0
    created = int(time.time())
    for text, token_id, finish in chunks:
        event = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [_choice(text, token_id, offset, finish, with_ids=True)],
        }
        offset += len(text)
        yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def _collect(chunks: Iterator[tuple[str, int | None, str | None]], completion_id: str, model: str) -> dict[str, Any]:
    texts: list[str] = []
    ids: list[int] = []
    finish = "stop"
    for text, token_id, reason in chunks:
        texts.append(text)
        if token_id is not None:
            ids.append(token_id)
        finish = reason or finish
    offsets = list(itertools.accumulate((len(t) for t in texts[: len(ids) - 1]), initial=0)) if ids else []
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": "".join(texts),
                "finish_reason": finish,
                "logprobs": {"tokens": [f"token_id:{i}" for i in ids], "text_offset": offsets},
            }
        ],
        "usage": {"completion_tokens": len(ids)},
    }
