"""The in-process server that tests and notebooks use: it serves the engine it is given, mounts /v1/realtime,
and stops (and closes its store) on exit."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from stepaudio.engines.base import Engine
from stepaudio.server.inprocess import InProcessServer


def test_serves_the_engine_and_realtime_then_stops(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    pytest.importorskip("websockets", reason="uvicorn needs the websockets package for WebSockets")
    from websockets.sync.client import connect

    server = InProcessServer(make_engine(), tmp_path, sessions=2)
    with server as ws_url:
        assert ws_url == f"ws://127.0.0.1:{server.port}/v1/realtime"
        assert httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5).json()["engine"] == "tiny"
        with connect(ws_url) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
    assert not server.thread.is_alive()
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", server.port))
