"""`stepaudio serve` as a user runs it: a subprocess on a loopback port, stopped with SIGINT."""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stepaudio.cli.serve import parse_options
from stepaudio.errors import StepAudioError

pytest.importorskip("uvicorn")


def test_parse_options() -> None:
    assert parse_options(["chat_model=smollm2", "threads=2"]) == {"chat_model": "smollm2", "threads": 2}
    with pytest.raises(StepAudioError):
        parse_options(["novalue"])


def test_serve_starts_authenticates_and_stops(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "stepaudio.cli.main", "serve", "--engine", "lite", "--no-warmup",
               "--port", str(port), "--store", str(tmp_path / "store"), "--api-key", "k3y", "--log-level", "warning",
               "--allowed-hosts", "box.test", "--cors-origins", "http://app.example", "http://other.example:81"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"stepaudio serve did not start: {proc.communicate()[1][-2000:]}")
                time.sleep(0.2)
        assert health.json()["engine"] == "lite"
        assert httpx.get(url + "/v1/models").status_code == 401
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k3y"}).json()
        assert [m["id"] for m in models["data"]] == ["lite-chat", "lite-tts", "lite-asr"]
        assert (tmp_path / "store" / "voices.sqlite3").is_file()
        assert httpx.get(url + "/health", headers={"Host": "box.test"}).status_code == 200
        assert httpx.get(url + "/health", headers={"Host": "elsewhere.test"}).status_code == 400
        for origin, status in (("http://other.example:81", 200), ("http://evil.example", 403)):
            response = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k3y", "Origin": origin})
            assert response.status_code == status, origin
        assert httpx.get(url + "/").status_code == 200  # the web page, and its realtime WebSocket
        if importlib.util.find_spec("websockets") is not None:
            from websockets.sync.client import connect

            auth = {"Authorization": "Bearer k3y"}
            with connect(f"ws://127.0.0.1:{port}/v1/realtime", additional_headers=auth) as ws:
                assert json.loads(ws.recv(timeout=60))["type"] == "session.created"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
