"""The server in a thread of this process, on a free loopback port: for tests and notebooks that drive a
real HTTP/WebSocket server over an engine they built themselves (the command line runs `stepaudio serve`)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from stepaudio.engines.base import Engine


class InProcessServer:
    """uvicorn in a thread with /v1/realtime mounted; entering starts it and yields its WebSocket URL."""

    def __init__(self, engine: Engine, store_dir: Path, sessions: int) -> None:
        import uvicorn

        from stepaudio.server.app import create_app
        from stepaudio.server.realtime_ws import RealtimeLimits, realtime_mount
        from stepaudio.server.settings import ServerSettings
        from stepaudio.store.voices import VoiceStore

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.store = VoiceStore(store_dir)
        app = create_app(engine, ServerSettings(), self.store,
                         mount_realtime=realtime_mount(RealtimeLimits(max_sessions=max(32, sessions))))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.store.close()
