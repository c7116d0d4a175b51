"""Latency of a running server: time to first audio, RTF and throughput versus concurrency.

Three request kinds, each timed from the moment the request is sent:
* speech: POST /v1/audio/speech streaming raw PCM; first audio = first body byte.
* chat: POST /v1/chat/completions streamed with `modalities: [text, audio]`; first audio = first `delta.audio`
  chunk (the reply's first sentence spoken), so it includes the LLM's first sentence.
* realtime: a /v1/realtime WebSocket turn (a text item + response.create); first audio = first
  `response.output_audio.delta` (the connection is opened before the clock starts).
For each concurrency level, `concurrency` clients send `requests` requests in all. RTF = request time /
seconds of audio returned (below 1 is faster than real time); throughput = audio seconds returned per
wall-clock second over the level. A warm-up request per kind runs first and is not counted (lazy loading).
Requests run in threads with blocking clients: the clients spend their time waiting, not computing.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from stepaudio.errors import MissingExtraError, StepAudioError
from stepaudio.eval.bench.table import percentile

MODES = ("speech", "chat", "realtime")
REALTIME_RATE = 24000  # the realtime API's PCM16 rate
DEFAULT_TEXT = "The weather is lovely today. Let us take a walk in the park."
DEFAULT_PROMPT = "Tell me one short fact about the moon."


class LatencyError(StepAudioError):
    """The server cannot be measured (unreachable, or it refused the warm-up request)."""


@dataclass(frozen=True)
class LatencyConfig:
    url: str  # http(s)://host:port of a `stepaudio serve` (or any OpenAI-compatible audio server)
    modes: tuple[str, ...] = MODES
    concurrency: tuple[int, ...] = (1, 2, 4)
    requests: int = 4  # per mode and level (at least the level's concurrency)
    text: str = DEFAULT_TEXT  # what speech requests synthesise
    prompt: str = DEFAULT_PROMPT  # what chat and realtime turns ask
    voice: str = "alloy"
    max_tokens: int = 48
    api_key: str | None = None
    timeout_s: float = 120.0
    warmup: bool = True


@dataclass(frozen=True)
class Sample:
    mode: str
    concurrency: int
    total_s: float
    first_audio_s: float | None = None
    audio_s: float = 0.0
    error: str | None = None

    @property
    def rtf(self) -> float | None:
        return self.total_s / self.audio_s if self.error is None and self.audio_s > 0 else None


@dataclass(frozen=True)
class LevelSummary:
    mode: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    first_audio_p50_s: float | None
    first_audio_p90_s: float | None
    total_p50_s: float | None
    rtf_p50: float | None
    rtf_p90: float | None
    throughput: float  # audio seconds per wall second
    requests_per_s: float


def summarize_level(mode: str, concurrency: int, samples: Sequence[Sample], wall_s: float) -> LevelSummary:
    ok = [s for s in samples if s.error is None]
    firsts = [s.first_audio_s for s in ok if s.first_audio_s is not None]
    rtfs = [r for r in (s.rtf for s in ok) if r is not None]
    totals = [s.total_s for s in ok]

    def q(values: Sequence[float], p: float) -> float | None:
        return percentile(values, p) if values else None

    return LevelSummary(mode, concurrency, len(samples), len(samples) - len(ok), wall_s, q(firsts, 0.5),
                        q(firsts, 0.9), q(totals, 0.5), q(rtfs, 0.5), q(rtfs, 0.9),
                        sum(s.audio_s for s in ok) / wall_s if wall_s > 0 else 0.0,
                        len(ok) / wall_s if wall_s > 0 else 0.0)


class Client:
    """Blocking clients for the three request kinds; one instance is shared by the worker threads."""

    def __init__(self, config: LatencyConfig) -> None:
        parts = urllib.parse.urlsplit(config.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LatencyError(f"--url must be http(s)://host:port, not {config.url!r}")
        self.config = config
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/").removesuffix("/v1")
        self.sample_rate: int | None = None  # learnt from the speech response (chat audio uses the same voice)

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.config.timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def models(self) -> list[str]:
        """The server's /v1/models ids; raises LatencyError when the server cannot be reached."""
        conn = self._connection()
        try:
            conn.request("GET", self.prefix + "/v1/models", headers=self._headers())
            response = conn.getresponse()
            body = response.read()
        except OSError as exc:
            raise LatencyError(f"cannot reach the server at {self.config.url}: {exc}") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise LatencyError(f"GET /v1/models answered HTTP {response.status}: {body[:200]!r}")
        try:
            return [str(m.get("id")) for m in json.loads(body).get("data", [])]
        except (ValueError, AttributeError) as exc:
            raise LatencyError(f"GET /v1/models did not answer a model list: {exc}") from exc

    def request(self, mode: str, concurrency: int) -> Sample:
        """One timed request; failures become a Sample with `error`, never an exception."""
        run = {"speech": self.speech, "chat": self.chat, "realtime": self.realtime}[mode]
        start = time.perf_counter()
        try:
            first, audio_s = run(start)
        except (OSError, ValueError, StepAudioError, http.client.HTTPException) as exc:
            return Sample(mode, concurrency, time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # websockets' own errors: still one failed request, not a failed run
            return Sample(mode, concurrency, time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
        return Sample(mode, concurrency, time.perf_counter() - start, first, audio_s)

    def _post(self, path: str, body: dict[str, Any]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connection()
        conn.request("POST", self.prefix + path, json.dumps(body), self._headers())
        response = conn.getresponse()
        if response.status != 200:
            detail = response.read()[:300].decode(errors="replace")
            conn.close()
            raise StepAudioError(f"POST {path} answered HTTP {response.status}: {detail}")
        return conn, response

    def speech(self, start: float) -> tuple[float | None, float]:
        body = {"model": "tts-1", "input": self.config.text, "voice": self.config.voice, "response_format": "pcm"}
        conn, response = self._post("/v1/audio/speech", body)
        try:
            rate = int(response.getheader("X-Sample-Rate") or 24000)  # OpenAI's raw PCM is 24 kHz
            self.sample_rate = rate
            first, size = None, 0
            while chunk := response.read1(65536):
                if first is None:
                    first = time.perf_counter() - start
                size += len(chunk)
        finally:
            conn.close()
        if size == 0:
            raise StepAudioError("the speech response had no audio")
        return first, size / 2 / rate

    def chat(self, start: float) -> tuple[float | None, float]:
        body = {"model": "stepaudio", "stream": True, "modalities": ["text", "audio"], "temperature": 0.0,
                "audio": {"voice": self.config.voice, "format": "pcm16"}, "max_tokens": self.config.max_tokens,
                "messages": [{"role": "user", "content": self.config.prompt}]}
        conn, response = self._post("/v1/chat/completions", body)
        first, size = None, 0
        try:
            for line in response:
                text = line.decode().strip()
                if not text.startswith("data:"):
                    continue
                data = text[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    raise StepAudioError(f"the chat stream failed: {event['error']}")
                for choice in event.get("choices", []):
                    audio = (choice.get("delta") or {}).get("audio") or {}
                    if audio.get("data"):
                        if first is None:
                            first = time.perf_counter() - start
                        size += len(base64.b64decode(audio["data"]))
        finally:
            conn.close()
        if size == 0:
            raise StepAudioError("the chat reply had no audio")
        return first, size / 2 / (self.sample_rate or REALTIME_RATE)

    def realtime(self, start: float) -> tuple[float | None, float]:
        try:
            from websockets.sync.client import connect
        except ImportError as exc:
            raise MissingExtraError("server", "websockets") from exc
        scheme = "wss" if self.https else "ws"
        url = f"{scheme}://{self.host}:{self.port}{self.prefix}/v1/realtime"
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else None
        first, size = None, 0
        with connect(url, additional_headers=headers, max_size=None, open_timeout=self.config.timeout_s) as ws:
            _expect(ws, "session.created", self.config.timeout_s)
            content = [{"type": "input_text", "text": self.config.prompt}]
            ws.send(json.dumps({"type": "conversation.item.create",
                                "item": {"type": "message", "role": "user", "content": content}}))
            ws.send(json.dumps({"type": "response.create"}))
            begin = time.perf_counter()  # the turn starts now: the handshake is not part of it
            deadline = begin + self.config.timeout_s
            while True:
                event = json.loads(ws.recv(timeout=max(0.01, deadline - time.perf_counter())))
                kind = event.get("type")
                if kind == "error":
                    raise StepAudioError(f"realtime error: {event.get('error')}")
                if kind == "response.output_audio.delta":
                    if first is None:
                        first = time.perf_counter() - begin
                    size += len(base64.b64decode(event["delta"]))
                elif kind == "response.done":
                    status = event.get("response", {}).get("status")
                    if status not in ("completed", "incomplete"):  # incomplete: cut at the token cap, still spoken
                        raise StepAudioError(f"realtime response ended {status!r}")
                    break
        if size == 0:
            raise StepAudioError("the realtime response had no audio")
        return first, size / 2 / REALTIME_RATE


def _expect(ws: Any, kind: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while True:
        event = json.loads(ws.recv(timeout=max(0.01, deadline - time.perf_counter())))
        if event.get("type") == kind:
            return
        if event.get("type") == "error":
            raise StepAudioError(f"realtime error: {event.get('error')}")


def run_sweep(config: LatencyConfig, on_sample: Callable[[Sample], None] | None = None,
              client: Client | None = None) -> tuple[list[Sample], list[LevelSummary]]:
    """Every mode at every concurrency level; returns all samples and one summary per (mode, level)."""
    for mode in config.modes:
        if mode not in MODES:
            raise LatencyError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    if not config.concurrency or min(config.concurrency) < 1:
        raise LatencyError("concurrency levels must be positive integers")
    client = client or Client(config)
    client.models()  # fails fast, with the URL named, when nothing listens there
    if config.warmup:
        for mode in ("speech", *[m for m in config.modes if m != "speech"]):  # speech first: learns the rate
            sample = client.request(mode, 1)
            if sample.error is not None and mode in config.modes:
                raise LatencyError(f"the warm-up {mode} request failed: {sample.error}")
    samples: list[Sample] = []
    levels: list[LevelSummary] = []
    for mode in config.modes:
        for level in config.concurrency:
            count = max(config.requests, level)
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=level) as pool:
                futures = [pool.submit(client.request, mode, level) for _ in range(count)]
                batch = []
                for future in futures:
                    sample = future.result()
                    batch.append(sample)
                    if on_sample is not None:
                        on_sample(sample)
            wall = time.perf_counter() - start
            samples += batch
            levels.append(summarize_level(mode, level, batch, wall))
    return samples, levels
