"""`stepaudio bench server-load`: N concurrent /v1/realtime sessions speaking real recorded speech, for each N
of `--sessions` (default 1, 2, 4, 8), each session a user who says a recording, waits for the reply and listens
to it to the end, then says the next.

The speech is the LibriVox recordings of Debian's pocketsphinx-testdata (five sentences of 3-7 s, one reader;
`--wav` to use others), streamed at real time in 100 ms chunks, each sent when its last sample has been
"spoken" (as a microphone would). Every session starts at a different recording.

Reported per run: the CPU (model, cores this process may use, load averages before and after), turns asked and
answered, error events and failed connections, end of speech -> first reply audio (p50/p90; the end of speech
is the end of the recording's last voiced 20 ms, so its trailing silence is not counted as speaking time), the
reply RTF (end of speech -> last reply audio, over the reply audio's duration: under 1 the reply is made faster
than it plays; p50/p90), and, when the benchmark starts the server, its resident memory (start, peak, end) and
the CPU time it used per answered turn and per second of the run (cores kept busy): a run whose cores are all
busy is at capacity, and its latencies are queueing.

By default `stepaudio serve --engine ...` runs as a child process on a free loopback port (its memory is the
server's alone); `--variant` runs the whole sweep once per set of engine options, each in a fresh server, so
two settings are compared in one run on one machine (e.g. `--variant asr_stream=off --variant asr_stream=on`).
`--url` drives a server elsewhere and skips memory.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RATE = 24000
CHUNK_S = 0.1
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
FALLBACK_WAV = Path("examples/question_capital.wav")


@dataclass(frozen=True)
class Recording:
    """A spoken turn at 24 kHz; `speech_end_s`: where its last voiced 20 ms ends."""

    name: str
    samples: np.ndarray
    speech_end_s: float


@dataclass
class SessionResult:
    turns: int = 0  # questions asked
    answered: int = 0  # replies that ended (completed, or cut at the token limit), not failed or cancelled
    latencies_ms: list[float] = field(default_factory=list)
    rtfs: list[float] = field(default_factory=list)
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
    rtf_p50: float | None = None
    rtf_p90: float | None = None
    variant: str = ""
    load_before: tuple[float, float, float] | None = None
    load_after: tuple[float, float, float] | None = None
    cpu_s: float | None = None  # the served process's CPU time during the run (user + system)

    @property
    def cpu_s_per_turn(self) -> float | None:
        return None if self.cpu_s is None or not self.answered else self.cpu_s / self.answered

    @property
    def cores_busy(self) -> float | None:
        return None if self.cpu_s is None or self.seconds <= 0 else self.cpu_s / self.seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", default="1,2,4,8", help="concurrent realtime sessions: one run per number")
    parser.add_argument("--turns", type=int, default=5, help="turns every session speaks in a run")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop starting turns after this many seconds of a run (default: --turns only)")
    parser.add_argument("--wav", type=Path, action="append", default=None,
                        help="recordings to speak (repeatable; default: the pocketsphinx-testdata LibriVox ones)")
    parser.add_argument("--engine", default="lite", help="engine the benchmark serves (ignored with --url)")
    parser.add_argument("--engine-option", "-O", action="append", default=[], metavar="KEY=VALUE",
                        help="an engine option of every run")
    parser.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                        help="engine options of one sweep, each in a fresh server (repeatable: compared in one run)")
    parser.add_argument("--url", default=None, help="ws://host:port/v1/realtime of a running server instead")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--turn-timeout", type=float, default=60.0, help="seconds to wait for one reply")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the served engine")
    parser.add_argument("--start-timeout", type=float, default=600.0,
                        help="seconds the served engine may take to load and warm up")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    from stepaudio.errors import StepAudioError

    counts = [int(n) for n in str(args.sessions).split(",") if n.strip()]
    if not counts or min(counts) < 1:
        raise StepAudioError(f"--sessions takes positive numbers, e.g. 1,2,4,8, not {args.sessions!r}")
    recordings = load_recordings(args.wav)
    machine = machine_info()
    print(f"CPU: {machine['cpu']} ({machine['cores']} cores usable); recordings: "
          f"{', '.join(r.name for r in recordings)}", flush=True)
    reports: list[LoadReport] = []
    variants = args.variant or [""]
    for variant in variants:
        options = [*args.engine_option, *(o for o in variant.split(",") if o)]
        if args.url:
            reports += [_one_run(args.url, recordings, count, args, variant, None) for count in counts]
        else:
            reports += _run_served(args, options, recordings, counts, variant)
    _print(reports, machine)
    if args.json:
        args.json.write_text(json.dumps({**machine, "engine": args.engine, "engine_options": args.engine_option,
                                         "recordings": [r.name for r in recordings], "turns": args.turns,
                                         "runs": [{**asdict(r), "cpu_s_per_turn": r.cpu_s_per_turn,
                                                   "cores_busy": r.cores_busy} for r in reports]}, indent=2))
    return 0 if all(r.errors == 0 for r in reports) else 1


def _one_run(url: str, recordings: Sequence[Recording], count: int, args: argparse.Namespace, variant: str,
             rss_pid: int | None) -> LoadReport:
    from dataclasses import replace

    load = os.getloadavg()
    cpu_before = cpu_seconds(rss_pid) if rss_pid is not None else None
    report = asyncio.run(drive(url, recordings, count, args.seconds, args.turn_timeout, args.api_key,
                               rss_pid=rss_pid, turns=args.turns))
    cpu_after = cpu_seconds(rss_pid) if rss_pid is not None else None
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    print(f"  {variant or 'default'}: {count} sessions: first audio p50 {_ms(report.first_audio_p50_ms)}, "
          f"p90 {_ms(report.first_audio_p90_ms)}", flush=True)
    return replace(report, variant=variant, load_before=load, load_after=os.getloadavg(), cpu_s=cpu)


def _run_served(args: argparse.Namespace, options: list[str], recordings: Sequence[Recording],
                counts: Sequence[int], variant: str) -> list[LoadReport]:
    """`stepaudio serve` in a child process (its own voice store, `--threads` torch threads), driven over
    loopback for every session count in turn."""
    import socket
    import sys
    import tempfile

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory() as store_dir:
        command = [sys.executable, "-m", "stepaudio", "serve", "--engine", args.engine, "--port", str(port),
                   "--store", store_dir, "--log-level", "warning",
                   "--max-realtime-sessions", str(max(32, *counts))]
        for option in options:
            command += ["--engine-option", option]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}  # torch's intra-op threads in the server
        server = subprocess.Popen(command, env=env)
        try:
            _wait_until_listening(server, port, args.start_timeout)
            url = f"ws://127.0.0.1:{port}/v1/realtime"
            return [_one_run(url, recordings, count, args, variant, server.pid) for count in counts]
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


def load_recordings(paths: Sequence[Path] | None = None) -> list[Recording]:
    """The recordings to speak at 24 kHz mono, with where their speech ends."""
    from stepaudio.audio.io import load_audio
    from stepaudio.errors import StepAudioError

    if not paths:
        paths = sorted(LIBRIVOX.glob("*.wav")) or [FALLBACK_WAV]
    recordings = []
    for path in paths:
        if not Path(path).is_file():
            raise StepAudioError(f"no recording at {path}")
        samples = load_audio(path, sample_rate=RATE).samples
        recordings.append(Recording(Path(path).stem, samples, speech_end(samples, RATE)))
    return recordings


def speech_end(samples: np.ndarray, rate: int) -> float:
    """Seconds to the end of the last 20 ms whose RMS is within 30 dB of the loudest 20 ms (the recording's
    trailing silence is not speech)."""
    frame = rate // 50
    blocks = samples[: samples.size // frame * frame].reshape(-1, frame)
    if not blocks.size:
        return samples.size / rate
    rms = np.sqrt(np.mean(np.square(blocks, dtype=np.float64), axis=1))
    voiced = np.flatnonzero(rms >= rms.max() / 10 ** (30 / 20))
    return float((voiced[-1] + 1) * frame / rate)


def machine_info() -> dict[str, Any]:
    import contextlib
    import platform

    model = ""
    with contextlib.suppress(OSError):
        model = next((line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model or platform.processor() or platform.machine(), "cores": cores,
            "cpu_count": os.cpu_count()}


async def drive(url: str, question: np.ndarray | Sequence[Recording], sessions: int, seconds: float | None,
                turn_timeout: float, api_key: str | None, rss_pid: int | None = None,
                turns: int | None = None) -> LoadReport:
    """Run the sessions against `url` (`question`: the recordings, or one 24 kHz clip); with `rss_pid`, sample
    that process's resident memory meanwhile. A session stops after `turns` turns, or once `seconds` have
    passed (no new turn starts then)."""
    recordings = ([Recording("question", question, speech_end(question, RATE))]
                  if isinstance(question, np.ndarray) else list(question))
    rss: list[float] = []
    stop = asyncio.Event()

    async def watch(pid: int) -> None:
        while not stop.is_set():
            value = rss_mb(pid)
            if value is not None:
                rss.append(value)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch(rss_pid)) if rss_pid is not None else None
    started = time.monotonic()
    order = [recordings[i:] + recordings[:i] for i in range(len(recordings))]
    results = await asyncio.gather(*(one_session(url, order[n % len(order)], seconds, turn_timeout, api_key, turns)
                                     for n in range(sessions)))
    stop.set()
    if watcher is not None:
        await watcher
    latencies = sorted(ms for result in results for ms in result.latencies_ms)
    rtfs = sorted(rtf for result in results for rtf in result.rtfs)
    errors = [error for result in results for error in result.errors]
    return LoadReport(
        sessions=sessions, seconds=time.monotonic() - started, turns=sum(r.turns for r in results),
        answered=sum(r.answered for r in results), errors=len(errors), error_samples=tuple(errors[:5]),
        first_audio_p50_ms=_quantile(latencies, 0.5), first_audio_p90_ms=_quantile(latencies, 0.9),
        rss_start_mb=rss[0] if rss else None, rss_peak_mb=max(rss) if rss else None,
        rss_end_mb=rss[-1] if rss else None, rtf_p50=_quantile(rtfs, 0.5), rtf_p90=_quantile(rtfs, 0.9))


async def one_session(url: str, recordings: Sequence[Recording], seconds: float | None, turn_timeout: float,
                      api_key: str | None, turns: int | None = None) -> SessionResult:
    """A user: says a recording (after 0.5 s of silence), keeps streaming silence until the reply is done and
    played to its end, then says the next."""
    from websockets.asyncio.client import connect

    result = SessionResult()
    chunk = int(RATE * CHUNK_S)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        async with connect(url, additional_headers=headers, max_size=None) as ws:
            state: dict[str, Any] = {"speech_end": None, "first": None, "audio_s": 0.0, "done": asyncio.Event()}
            reader = asyncio.create_task(_read(ws, state, result))
            started = time.monotonic()
            clock = started
            silence = np.zeros(chunk, np.float32)
            index = 0
            while not reader.done() and (turns is None or index < turns) and (
                    seconds is None or time.monotonic() - started < seconds):
                recording = recordings[index % len(recordings)]
                index += 1
                lead = RATE // 2
                stream = np.concatenate([np.zeros(lead, np.float32), recording.samples])
                state["done"].clear()
                state.update(first=None, audio_s=0.0, speech_end=None)
                origin = clock
                for start in range(0, len(stream), chunk):
                    clock = await _send_chunk(ws, stream[start : start + chunk], clock)
                state["speech_end"] = origin + lead / RATE + recording.speech_end_s
                result.turns += 1
                waited = time.monotonic()
                while not reader.done():  # listen: silence keeps streaming while the reply is made and played
                    if state["done"].is_set():
                        played = (state["first"] or 0.0) + state["audio_s"]
                        if time.monotonic() >= played:
                            break
                    elif time.monotonic() - waited > turn_timeout:
                        result.errors.append(f"no reply within {turn_timeout:g} s")
                        break
                    clock = await _send_chunk(ws, silence, clock)
            reader.cancel()
    except Exception as exc:  # a failed or dropped connection is an error of the run, not of the benchmark
        result.errors.append(f"{type(exc).__name__}: {exc}")
    return result


async def _send_chunk(ws: Any, samples: np.ndarray, clock: float) -> float:
    """Wait until the chunk's last sample has been spoken (real time), then send it."""
    clock += len(samples) / RATE
    await asyncio.sleep(max(0.0, clock - time.monotonic()))
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}))
    return clock


async def _read(ws: Any, state: dict[str, Any], result: SessionResult) -> None:
    async for message in ws:
        event = json.loads(message)
        kind = event["type"]
        now = time.monotonic()
        if kind == "error":
            result.errors.append(f"{event['error'].get('code')}: {event['error'].get('message')}")
        elif kind in ("response.output_audio.delta", "response.output_text.delta"):
            if kind == "response.output_audio.delta":
                state["audio_s"] += len(base64.b64decode(event["delta"])) / 2 / RATE
                state["last"] = now
            if state["first"] is None:
                state["first"] = now
                if state["speech_end"] is not None:
                    result.latencies_ms.append(1000.0 * (now - state["speech_end"]))
        elif kind == "response.done":
            if event["response"]["status"] in ("completed", "incomplete"):
                result.answered += 1
                if state["speech_end"] is not None and state["audio_s"] > 0:
                    result.rtfs.append((state["last"] - state["speech_end"]) / state["audio_s"])
            state["done"].set()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _print(reports: Sequence[LoadReport], machine: dict[str, Any]) -> None:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    def mb(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    def load(value: tuple[float, float, float] | None) -> str:
        return "-" if value is None else "/".join(f"{v:.1f}" for v in value)

    print(f"\nCPU: {machine['cpu']}, {machine['cores']} cores usable ({machine['cpu_count']} in the machine)")
    header = ("variant", "sessions", "turns/answered", "errors", "first audio p50", "p90", "RTF p50", "p90",
              "CPU s/turn", "cores busy", "RSS peak MB", "load 1/5/15 before", "after")
    rows = [(r.variant or "default", str(r.sessions), f"{r.turns}/{r.answered}", str(r.errors),
             _ms(r.first_audio_p50_ms), _ms(r.first_audio_p90_ms), num(r.rtf_p50), num(r.rtf_p90),
             num(r.cpu_s_per_turn), num(r.cores_busy), mb(r.rss_peak_mb), load(r.load_before), load(r.load_after))
            for r in reports]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for report in reports:
        for sample in report.error_samples:
            print(f"  error ({report.variant or 'default'}, {report.sessions} sessions): {sample}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
