"""`stepaudio bench server-load`: N concurrent /v1/realtime sessions for T seconds, each streaming a spoken
question at real time, then silence until the reply is done, again and again.

Reports error events and failed connections, turns answered, end of speech -> first reply audio (p50/p90),
and the server process's resident memory (start, peak, end) when this benchmark starts the server (the
default: `stepaudio serve --engine ...` as a child process on a free loopback port, so the memory measured is
the server's alone; `--url` drives a server elsewhere and skips memory).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RATE = 24000
CHUNK_S = 0.1


@dataclass
class SessionResult:
    turns: int = 0  # questions asked
    answered: int = 0  # replies with audio (or text) that completed
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadReport:
    sessions: int
    seconds: float
    turns: int
    answered: int
    errors: int
    error_samples: tuple[str, ...]
    first_audio_p50_ms: float | None
    first_audio_p90_ms: float | None
    rss_start_mb: float | None
    rss_peak_mb: float | None
    rss_end_mb: float | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=8, help="concurrent realtime sessions")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long every session streams")
    parser.add_argument("--wav", type=Path, default=Path("examples/question_capital.wav"), help="the question")
    parser.add_argument("--engine", default="lite", help="engine the benchmark serves (ignored with --url)")
    parser.add_argument("--engine-option", "-O", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--url", default=None, help="ws://host:port/v1/realtime of a running server instead")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--turn-timeout", type=float, default=60.0, help="seconds to wait for one reply")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the served engine")
    parser.add_argument("--start-timeout", type=float, default=600.0,
                        help="seconds the served engine may take to load and warm up")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    import soundfile as sf
    import soxr

    samples, rate = sf.read(args.wav, dtype="float32", always_2d=True)
    question = soxr.resample(samples.mean(axis=1), rate, RATE).astype(np.float32)
    if args.url:
        report = asyncio.run(drive(args.url, question, args.sessions, args.seconds, args.turn_timeout, args.api_key))
    else:
        report = _run_served(args, question)
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    return 0 if report.errors == 0 else 1


def _run_served(args: argparse.Namespace, question: np.ndarray) -> LoadReport:
    """`stepaudio serve` in a child process (its own voice store, `--threads` torch threads), driven over loopback."""
    import os
    import socket
    import sys
    import tempfile

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory() as store_dir:
        command = [sys.executable, "-m", "stepaudio", "serve", "--engine", args.engine, "--port", str(port),
                   "--store", store_dir, "--log-level", "warning",
                   "--max-realtime-sessions", str(max(32, args.sessions))]
        for option in args.engine_option:
            command += ["--engine-option", option]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}  # torch's intra-op threads in the server
        server = subprocess.Popen(command, env=env)
        try:
            _wait_until_listening(server, port, args.start_timeout)
            url = f"ws://127.0.0.1:{port}/v1/realtime"
            return asyncio.run(drive(url, question, args.sessions, args.seconds, args.turn_timeout, None,
                                     rss_pid=server.pid))
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_listening(server: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Poll /health until the child answers (it loads and warms the engine first); fail if it exits."""
    import urllib.error
    import urllib.request

    from stepaudio.errors import StepAudioError

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            if server.poll() is not None:
                raise StepAudioError(f"stepaudio serve exited with code {server.returncode} before listening") from None
            if time.monotonic() > deadline:
                raise StepAudioError(f"stepaudio serve was not listening after {timeout:g} s") from None
            time.sleep(0.5)


async def drive(url: str, question: np.ndarray, sessions: int, seconds: float, turn_timeout: float,
                api_key: str | None, rss_pid: int | None = None) -> LoadReport:
    """Run the sessions against `url`; with `rss_pid`, sample that process's resident memory meanwhile."""
    rss: list[float] = []
    stop = asyncio.Event()

    async def watch(pid: int) -> None:
        while not stop.is_set():
            value = rss_mb(pid)
            if value is not None:
                rss.append(value)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch(rss_pid)) if rss_pid is not None else None
    results = await asyncio.gather(*(one_session(url, question, seconds, turn_timeout, api_key)
                                     for _ in range(sessions)))
    stop.set()
    if watcher is not None:
        await watcher
    latencies = sorted(ms for result in results for ms in result.latencies_ms)
    errors = [error for result in results for error in result.errors]
    return LoadReport(
        sessions=sessions, seconds=seconds, turns=sum(r.turns for r in results),
        answered=sum(r.answered for r in results), errors=len(errors), error_samples=tuple(errors[:5]),
        first_audio_p50_ms=_quantile(latencies, 0.5), first_audio_p90_ms=_quantile(latencies, 0.9),
        rss_start_mb=rss[0] if rss else None, rss_peak_mb=max(rss) if rss else None,
        rss_end_mb=rss[-1] if rss else None)


async def one_session(url: str, question: np.ndarray, seconds: float, turn_timeout: float,
                      api_key: str | None) -> SessionResult:
    from websockets.asyncio.client import connect

    result = SessionResult()
    chunk = int(RATE * CHUNK_S)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        async with connect(url, additional_headers=headers, max_size=None) as ws:
            state: dict[str, Any] = {"speech_end": None, "first": None, "done": asyncio.Event()}
            reader = asyncio.create_task(_read(ws, state, result))
            started = time.monotonic()
            clock = started
            silence = np.zeros(chunk, np.float32)
            while time.monotonic() - started < seconds and not reader.done():
                stream = np.concatenate([np.zeros(RATE // 2, np.float32), question])
                state["done"].clear()
                state["first"] = None
                for start in range(0, len(stream), chunk):
                    clock = await _send_chunk(ws, stream[start : start + chunk], clock)
                state["speech_end"] = time.monotonic()
                result.turns += 1
                waited = time.monotonic()
                while not state["done"].is_set() and not reader.done():  # listen: silence keeps streaming
                    if time.monotonic() - waited > turn_timeout:
                        result.errors.append(f"no reply within {turn_timeout:g} s")
                        break
                    clock = await _send_chunk(ws, silence, clock)
            reader.cancel()
    except Exception as exc:  # a failed or dropped connection is an error of the run, not of the benchmark
        result.errors.append(f"{type(exc).__name__}: {exc}")
    return result


async def _send_chunk(ws: Any, samples: np.ndarray, clock: float) -> float:
    """Send one chunk and sleep until its real-time end."""
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}))
    clock += len(samples) / RATE
    await asyncio.sleep(max(0.0, clock - time.monotonic()))
    return clock


async def _read(ws: Any, state: dict[str, Any], result: SessionResult) -> None:
    async for message in ws:
        event = json.loads(message)
        kind = event["type"]
        if kind == "error":
            result.errors.append(f"{event['error'].get('code')}: {event['error'].get('message')}")
        elif kind in ("response.output_audio.delta", "response.output_text.delta") and state["first"] is None:
            state["first"] = time.monotonic()
            if state["speech_end"] is not None:
                result.latencies_ms.append(1000.0 * (state["first"] - state["speech_end"]))
        elif kind == "response.done":
            if event["response"]["status"] == "completed":
                result.answered += 1
            state["done"].set()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _print(report: LoadReport) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} ms"

    def mb(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} MB"

    rows = [("sessions x seconds", f"{report.sessions} x {report.seconds:g} s"),
            ("turns asked / answered", f"{report.turns} / {report.answered}"),
            ("errors", str(report.errors)),
            ("first audio p50 / p90", f"{ms(report.first_audio_p50_ms)} / {ms(report.first_audio_p90_ms)}"),
            ("RSS start / peak / end", f"{mb(report.rss_start_mb)} / {mb(report.rss_peak_mb)} / "
                                       f"{mb(report.rss_end_mb)}")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for sample in report.error_samples:
        print(f"  error: {sample}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
