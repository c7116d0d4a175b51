"""Server settings: one frozen value passed to `create_app`, so every limit is visible in one place."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    """Limits and switches of the HTTP server. `api_key` None leaves the API open (bind to loopback then)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()  # browser origins besides the server's own; CORS stays off unless named
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides the bound address (and loopback names)
    # Requests
    max_upload_bytes: int = 25 * MIB  # one audio file in a multipart upload
    max_json_bytes: int = 40 * MIB  # a JSON body (chat messages carry base64 audio)
    max_input_chars: int = 4096  # /v1/audio/speech input
    max_chat_messages: int = 256
    max_chat_text_chars: int = 200_000  # all text content of one chat request
    max_new_tokens: int = 2048
    # Audio
    max_transcription_seconds: float = 600.0
    max_chat_audio_seconds: float = 120.0  # all input audio of one chat request
    max_voice_seconds: float = 30.0
    min_voice_seconds: float = 0.5
    # Connections and load
    idle_timeout_s: float = 30.0  # waiting for the next piece of a request body, and keep-alive
    max_queue: int = 16  # requests waiting for one engine capability before 503
    max_connections: int = 128  # open connections uvicorn accepts before answering 503
    audio_expiry_s: int = 3600  # reported `expires_at` of chat audio (nothing is kept server-side)
    default_voice: str | None = None  # the engine's built-in voice used for OpenAI voice names
