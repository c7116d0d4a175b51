"""The app factory: the realtime mount point, and WebSocket handshakes behind the API key (in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stepaudio.engines.base import Engine
from stepaudio.server.settings import ServerSettings
from stepaudio.store.voices import VoiceStore

pytest.importorskip("fastapi")
from fastapi import WebSocket  # at module level: the route annotation must resolve


def echo_realtime(app: Any, context: Any) -> None:
    @app.websocket("/v1/realtime")
    async def realtime(socket: WebSocket) -> None:
        protocols = socket.scope.get("subprotocols") or []
        await socket.accept(subprotocol=protocols[0] if protocols else None)
        await socket.send_json({"engine": context.engine.name, "echo": await socket.receive_text()})
        await socket.close()


def test_realtime_mount_and_websocket_key(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from stepaudio.server.app import create_app

    app = create_app(Engine("none", None, None, None), ServerSettings(api_key="k"), VoiceStore(tmp_path),
                     mount_realtime=echo_realtime)
    client = TestClient(app)
    url = "ws://127.0.0.1:8000/v1/realtime"  # a Host the server answers (TestClient's default is 'testserver')
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect(url) as socket:
        socket.receive_text()
    assert info.value.code == 1008
    for kwargs in ({"headers": {"Authorization": "Bearer k"}},
                   {"subprotocols": ["realtime", "openai-insecure-api-key.k"]}):
        with client.websocket_connect(url, **kwargs) as socket:
            socket.send_text("hi")
            assert socket.receive_json() == {"engine": "none", "echo": "hi"}


def test_engine_without_capabilities_reports_404(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from stepaudio.server.app import create_app

    client = TestClient(create_app(Engine("none", None, None, None), ServerSettings(), VoiceStore(tmp_path)),
                        base_url="http://127.0.0.1:8000")
    assert client.get("/v1/models").json() == {"object": "list", "data": []}
    for path, body in (("/v1/audio/speech", {"input": "hi"}), ("/v1/chat/completions",
                                                             {"messages": [{"role": "user", "content": "x"}]})):
        response = client.post(path, json=body)
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert not any(client.get("/health").json()["capabilities"].values())
