"""Schemathesis over the server's own OpenAPI schema: valid and invalid requests, never a 5xx.

The schemathesis pytest plugin does not run under this pytest, so each operation's strategy drives a plain
hypothesis test here; every example is sent to a live server with the tiny engine.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from stepaudio.server.settings import ServerSettings

schemathesis = pytest.importorskip("schemathesis")
MODES = ["positive", "negative"]


@pytest.fixture(scope="module")
def fuzz_target(server_factory: Any) -> tuple[Any, dict[str, Any]]:
    server = server_factory(ServerSettings(max_upload_bytes=200_000, max_input_chars=200, max_chat_messages=8,
                                           max_new_tokens=16, idle_timeout_s=5.0))
    schema = schemathesis.openapi.from_dict(server.app.openapi())
    operations = {op.ok().label: op.ok() for op in schema.get_all_operations()}
    return server, operations


def test_schema_lists_every_route(fuzz_target: tuple[Any, dict[str, Any]]) -> None:
    _, operations = fuzz_target
    assert set(operations) == {
        "GET /v1/models", "GET /v1/models/{model_id}", "GET /health", "POST /v1/audio/speech",
        "POST /v1/audio/transcriptions", "POST /v1/chat/completions", "POST /v1/voices", "GET /v1/voices",
        "GET /v1/voices/{voice_id}", "DELETE /v1/voices/{voice_id}"}


FUZZED = ["GET /v1/models/{model_id}", "POST /v1/audio/speech", "POST /v1/audio/transcriptions",
          "POST /v1/chat/completions", "POST /v1/voices", "GET /v1/voices/{voice_id}", "DELETE /v1/voices/{voice_id}"]


def fuzz(target: tuple[Any, dict[str, Any]], label: str, mode: str, examples: int) -> None:
    server, operations = target
    strategy = operations[label].as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        response = case.call(base_url=server.url, timeout=30)
        assert response.status_code < 500, (case.method, case.path, case.body, response.status_code, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}

    check()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label", FUZZED)
def test_no_server_errors(fuzz_target: tuple[Any, dict[str, Any]], label: str, mode: str) -> None:
    fuzz(fuzz_target, label, mode, examples=10)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label", FUZZED)
def test_no_server_errors_deep(fuzz_target: tuple[Any, dict[str, Any]], label: str, mode: str) -> None:
    fuzz(fuzz_target, label, mode, examples=300)
