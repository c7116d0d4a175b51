"""Speculative responses with a real engine: spoken questions streamed in real time through a session.

Each question is synthesised by the engine itself, streamed in 32 ms chunks at real-time pace into a fresh
`RealtimeSession` (Silero VAD), and timed from the end of its speech to the first audio of the reply, with
and without speculation. Wall-clock numbers: noisy when the machine is shared.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from stepaudio.engines.base import Engine, GenerationOptions
    from stepaudio.realtime.speculative import SpeculationMetrics
    from stepaudio.realtime.turns import TurnDetectionConfig

QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you name a primary colour?",
    "What do bees make?",
    "Which planet is closest to the sun?",
    "What is two plus three?",
)
RATE = 16000
CHUNK = 512


def measure_engine(name: str, questions: int, speculative_ms: int, silence_ms: int) -> dict[str, object]:
    import torch

    from stepaudio.audio.io import Audio
    from stepaudio.engines.base import GenerationOptions
    from stepaudio.engines.registry import create_engine
    from stepaudio.realtime.turns import TurnDetectionConfig

    torch.set_num_threads(2)
    engine = create_engine(name)
    if engine.synthesizer is None or engine.chat is None or engine.transcriber is None:
        raise SystemExit(f"engine {name!r} lacks a transcriber, chat model or synthesizer")
    prompts = [QUESTIONS[i % len(QUESTIONS)] for i in range(questions)]
    speech = []
    for prompt in prompts:
        chunks = list(engine.synthesizer.synthesize(prompt))
        audio = Audio(np.concatenate([c.samples for c in chunks]).astype(np.float32), chunks[0].sample_rate)
        speech.append(audio.resampled(RATE).samples)
    options = GenerationOptions(max_new_tokens=48, temperature=0.0, seed=0)
    _run_turn(engine, speech[0], TurnDetectionConfig(silence_duration_ms=silence_ms), options)  # models load
    results: dict[str, object] = {}
    for mode, speculative in (("speculative", speculative_ms), ("baseline", None)):
        detection = TurnDetectionConfig(silence_duration_ms=silence_ms, speculative_silence_ms=speculative)
        latencies: list[float] = []
        ratios: list[float] = []
        commits = starts = 0
        for samples in speech:
            latency, metrics, ratio = _run_turn(engine, samples, detection, options)
            if latency is not None:
                latencies.append(latency)
            ratios.append(ratio)
            commits, starts = commits + metrics.committed, starts + metrics.started
        mean = 1000 * statistics.fmean(latencies) if latencies else float("nan")
        results[mode] = {
            "latency_ms": [round(1000 * value) for value in latencies],
            "latency_mean_ms": mean,
            "speculative_started": starts,
            "speculative_committed": commits,
            "context_compression": statistics.fmean(ratios),
        }
        print(f"{name} {mode:<12} end of speech -> first audio: mean {mean:.0f} ms "
              f"over {len(latencies)} questions; speculations {commits}/{starts} committed; "
              f"context compression {statistics.fmean(ratios):.1f}:1")
    return results


def _run_turn(engine: Engine, samples: np.ndarray, detection: TurnDetectionConfig,
              options: GenerationOptions) -> tuple[float | None, SpeculationMetrics, float]:
    """Stream silence, the question, then silence; seconds from its last speech chunk to the first audio, the
    speculation metrics, and the context's compression (Step-Audio audio tokens replaced per text token)."""
    from stepaudio.audio.vad import silero_frame_vad
    from stepaudio.realtime import events as ev
    from stepaudio.realtime.session import RealtimeSession, SessionConfig

    first_audio: list[float] = []
    done = threading.Event()

    def sink(output: ev.Output) -> None:
        if isinstance(output, ev.OutputAudioDelta) and not first_audio:
            first_audio.append(time.perf_counter())
        if isinstance(output, ev.ResponseDone):
            done.set()

    config = SessionConfig(turn_detection=detection, generation=options)
    lead = np.zeros(RATE // 2, np.float32)
    tail = np.zeros(RATE * (detection.silence_duration_ms + 1500) // 1000, np.float32)
    stream = np.concatenate([lead, samples, tail])
    speech_end = len(lead) + len(samples)
    end_time = 0.0
    with RealtimeSession(engine, silero_frame_vad(), config, on_output=sink) as session:
        start = time.perf_counter()
        for index in range(0, len(stream), CHUNK):
            delay = start + index / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            session.append_audio(stream[index : index + CHUNK])
            if index < speech_end <= index + CHUNK:
                end_time = time.perf_counter()
        done.wait(60)
        metrics = session.metrics
        ratio = session.context_stats().compression_ratio
    latency = first_audio[0] - end_time if first_audio and end_time else None
    return latency, metrics, ratio
