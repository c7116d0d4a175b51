"""`stepaudio serve`: the OpenAI-compatible HTTP server over an engine and a voice store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def default_store_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stepaudio" / "voices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", default="lite", help="engine name (lite, step)")
    parser.add_argument("--engine-option", "-O", action="append", default=[], metavar="KEY=VALUE",
                        help="engine option, repeatable (e.g. -O chat_model=smollm2)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None,
                        help="require 'Authorization: Bearer KEY' (default: $STEPAUDIO_API_KEY; none = open)")
    parser.add_argument("--store", type=Path, default=None, help=f"voice store directory ({default_store_dir()})")
    parser.add_argument("--cors-origins", nargs="+", action="extend", default=[], metavar="ORIGIN",
                        help="web pages (e.g. http://app.example:3000) allowed to call the server from a browser "
                             "besides its own page; CORS is off otherwise")
    parser.add_argument("--allowed-hosts", nargs="+", action="extend", default=[], metavar="NAME",
                        help="Host names served besides the bound address (and localhost for a loopback bind), "
                             "e.g. the name of a reverse proxy; '*' allows any")
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="largest audio upload")
    parser.add_argument("--max-audio-seconds", type=float, default=600.0, help="longest audio to transcribe")
    parser.add_argument("--idle-timeout", type=float, default=30.0, help="seconds a connection may stay idle")
    parser.add_argument("--max-realtime-sessions", type=int, default=32,
                        help="open /v1/realtime connections at once; more are refused (default 32)")
    parser.add_argument("--default-voice", default=None, help="built-in voice used for OpenAI voice names")
    parser.add_argument("--no-warmup", action="store_true", help="load models on first use instead of at start")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def parse_options(pairs: list[str]) -> dict[str, Any]:
    from stepaudio.errors import StepAudioError

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StepAudioError(f"engine options are KEY=VALUE, not {pair!r}")
        options[key.strip()] = int(value) if value.isdigit() else value
    return options


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from stepaudio.server.app import create_app
        from stepaudio.server.realtime_ws import RealtimeLimits, realtime_mount
    except ImportError as exc:
        from stepaudio.errors import MissingExtraError

        raise MissingExtraError("server", exc.name or "fastapi") from exc
    from stepaudio.engines.registry import create_engine
    from stepaudio.server.origin import is_loopback
    from stepaudio.server.settings import ServerSettings
    from stepaudio.store.voices import VoiceStore

    api_key = args.api_key or os.environ.get("STEPAUDIO_API_KEY") or None
    if api_key is None and not is_loopback(args.host):
        print(f"stepaudio serve: warning: listening on {args.host} without an API key", file=sys.stderr)
    settings = ServerSettings(
        host=args.host, port=args.port, api_key=api_key, cors_origins=tuple(args.cors_origins),
        allowed_hosts=tuple(args.allowed_hosts),
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_transcription_seconds=args.max_audio_seconds,
        idle_timeout_s=args.idle_timeout, default_voice=args.default_voice,
    )
    engine = create_engine(args.engine, **parse_options(args.engine_option))
    if not args.no_warmup:
        engine.warmup()
    store = VoiceStore(args.store or default_store_dir(), max_seconds=settings.max_voice_seconds,
                       max_bytes=settings.max_upload_bytes)
    limits = RealtimeLimits(idle_timeout_s=max(args.idle_timeout, RealtimeLimits.idle_timeout_s),
                            max_sessions=args.max_realtime_sessions)
    app = create_app(engine, settings, store, mount_realtime=realtime_mount(limits))
    print(f"stepaudio serve: {engine.name} engine on http://{args.host}:{args.port} (voices in {store.root})",
          file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                    timeout_keep_alive=max(1, int(args.idle_timeout)), limit_concurrency=settings.max_connections)
    finally:
        store.close()
    return 0

