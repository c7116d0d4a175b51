"""`stepaudio bench realtime`: speculative responses on recorded turns and on simulated conversations.

Recorded: the pocketsphinx-testdata recordings (LibriVox sentences, spoken card names and digit strings; the
Makefile installs them) are the user's turns, one after another, with the pauses their speakers made. The
Silero VAD scores them frame by frame and the pure controller replays those scores on a fake clock, so the
commit rate of speculations is measured from natural pauses (the Step-Audio paper reports ~40% on its own
conversations). Simulated: turns made of segments separated by scripted pauses (a Poisson count of uniform
pauses), whose commit rate is set by those parameters and so is only a check of the controller, never a
figure to compare. In both, the generator produces its first audio a fixed time after it starts; the table
also gives the time each committed speculation saved and the user-perceived latency (end of speech -> first
audio out) with and without speculation.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.audio.io import load_audio
from stepaudio.realtime import events as ev
from stepaudio.realtime.controller import ControllerConfig, ControllerState, Phase, step
from stepaudio.realtime.turns import DEFAULT_SPECULATIVE_MS, TurnDetectionConfig

FRAME_MS = 20
SPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")
VAD_RATE, VAD_FRAME = 16000, 512  # Silero scores 32 ms frames at 16 kHz


@dataclass(frozen=True)
class Scenario:
    conversations: int = 20
    turns: int = 5
    pauses_per_turn: float = 1.5  # mean of a Poisson count of mid-turn pauses
    pause_ms: tuple[int, int] = (100, 480)  # uniform; keep below silence_duration_ms
    segment_ms: tuple[int, int] = (400, 2500)
    first_audio_ms: int = 600  # generator start -> first audio chunk
    reply_ms: int = 2000  # audio the assistant speaks per reply
    speech_prob: float = 0.9
    silence_prob: float = 0.05
    seed: int = 0
    detection: TurnDetectionConfig = field(default_factory=TurnDetectionConfig)


@dataclass
class _Sim:
    state: ControllerState
    latencies: list[float]
    now: float = 0.0
    speech_end: float | None = None  # when the user last stopped talking (ground truth)
    pending: list[tuple[float, ev.Event | ev.StartGeneration]] = field(default_factory=list)
    started: dict[str, float] = field(default_factory=dict)
    discarded_s: float = 0.0  # generator time spent on speculations that were thrown away

    def send(self, event: ev.Event) -> None:
        self.state, actions = step(self.state, event, self.now)
        for action in actions:
            self.execute(action)

    def execute(self, action: ev.Action) -> None:
        if isinstance(action, ev.StartGeneration):
            self.pending.append((self.now, action))  # marker: started at now
            self.started[action.response_id] = self.now
        elif isinstance(action, ev.DiscardSpeculation):
            self.discarded_s += self.now - self.started[action.response_id]
        elif isinstance(action, ev.CancelGeneration):
            self.pending[:] = [(t, e) for t, e in self.pending if _rid(e) != action.response_id]
        elif isinstance(action, ev.OutputAudioDelta) and self.speech_end is not None:
            self.latencies.append(self.now - self.speech_end)
            self.speech_end = None


def _rid(event: ev.Event | ev.Action) -> str | None:
    return getattr(event, "response_id", None)


def simulate(scenario: Scenario) -> dict[str, float]:
    """Run every conversation; return the speculation metrics and latency statistics."""
    rng = np.random.default_rng(scenario.seed)
    metrics = []
    latencies: list[float] = []
    discarded_s = 0.0
    for _ in range(scenario.conversations):
        sim = _Sim(ControllerState(ControllerConfig(scenario.detection)), latencies)
        for _turn in range(scenario.turns):
            pauses = rng.poisson(scenario.pauses_per_turn)
            for index in range(pauses + 1):
                _frames(sim, scenario, int(rng.integers(*scenario.segment_ms)), speech=True)
                sim.speech_end = sim.now
                if index < pauses:
                    _frames(sim, scenario, int(rng.integers(*scenario.pause_ms)), speech=False)
            while sim.state.phase is not Phase.LISTENING or sim.state.turns.in_speech:
                _frames(sim, scenario, FRAME_MS, speech=False)
            _frames(sim, scenario, 300, speech=False)  # the user waits a moment before the next turn
        metrics.append(sim.state.metrics)
        discarded_s += sim.discarded_s
    return _summary(metrics, latencies, discarded_s, scenario.conversations * scenario.turns)


def recorded_turns(data_dir: Path = SPHINX_DATA) -> list[np.ndarray]:
    """Every recording of Debian's pocketsphinx-testdata as one user turn, 16 kHz mono float32, in name order."""
    paths = sorted((data_dir / "librivox").glob("*.wav")) + sorted((data_dir / "cards").glob("*.wav"))
    turns = [load_audio(path, sample_rate=VAD_RATE).samples for path in paths]
    for raw in sorted(data_dir.glob("*.raw")):  # headerless 16 kHz 16-bit mono
        turns.append(np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0)
    return turns


def silero_scores(turns: list[np.ndarray]) -> list[np.ndarray]:
    """Speech probability of each 32 ms frame of each turn (faster-whisper's packaged Silero model)."""
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()
    scores = []
    for samples in turns:
        padded = np.pad(samples, (0, -len(samples) % VAD_FRAME))
        scores.append(np.asarray(model(padded), dtype=np.float64).reshape(-1))
    return scores


def replay(scores: list[np.ndarray], scenario: Scenario, frame_ms: int = 1000 * VAD_FRAME // VAD_RATE
           ) -> dict[str, float]:
    """The controller on recorded VAD scores: the turns one after another, each followed by silence until the
    reply has been spoken and a moment more (the user listening)."""
    latencies: list[float] = []
    sim = _Sim(ControllerState(ControllerConfig(scenario.detection)), latencies)
    threshold = scenario.detection.threshold
    for turn in scores:
        speech = np.flatnonzero(turn >= threshold)
        last_speech = int(speech[-1]) if speech.size else -1
        for index, prob in enumerate(turn):
            _step(sim, scenario, frame_ms, float(prob))
            if index == last_speech:
                sim.speech_end = sim.now  # the end of the turn's last word
        while sim.state.phase is not Phase.LISTENING or sim.state.turns.in_speech:
            _step(sim, scenario, frame_ms, 0.0)
        for _ in range(300 // frame_ms):
            _step(sim, scenario, frame_ms, 0.0)
    return _summary([sim.state.metrics], latencies, sim.discarded_s, len(scores))


def _summary(metrics: list[Any], latencies: list[float], discarded_s: float, turns: int) -> dict[str, float]:
    committed = sum(m.committed for m in metrics)
    decided = committed + sum(m.discarded for m in metrics)
    saved = sum(m.saved_ms_total for m in metrics)
    samples = sum(m.saved_samples for m in metrics)
    return {
        "turns": turns,
        "speculative_started": sum(m.started for m in metrics),
        "speculative_committed": committed,
        "commit_rate": committed / decided if decided else 0.0,
        "mean_window_ms": sum(m.window_ms_total for m in metrics) / committed if committed else 0.0,
        "mean_saved_ms": saved / samples if samples else 0.0,
        "latency_mean_ms": 1000 * statistics.fmean(latencies) if latencies else 0.0,
        "latency_p90_ms": 1000 * float(np.percentile(latencies, 90)) if latencies else 0.0,
        "responses": len(latencies),
        "discarded_generation_s_per_turn": discarded_s / turns if turns else 0.0,
    }


def _step(sim: _Sim, scenario: Scenario, frame_ms: int, prob: float) -> None:
    sim.now += frame_ms / 1000
    _deliver(sim, scenario)
    sim.send(ev.AudioFrame(frame_ms, prob))


def _frames(sim: _Sim, scenario: Scenario, ms: int, speech: bool) -> None:
    prob = scenario.speech_prob if speech else scenario.silence_prob
    for _ in range(max(1, ms // FRAME_MS)):
        _step(sim, scenario, FRAME_MS, prob)


def _deliver(sim: _Sim, scenario: Scenario) -> None:
    """Play the generator: transcript at once, first audio after `first_audio_ms`, done after the reply."""
    due = [(t, e) for t, e in sim.pending if t <= sim.now + 1e-9]
    sim.pending[:] = [(t, e) for t, e in sim.pending if t > sim.now + 1e-9]
    for started, event in due:
        if isinstance(event, ev.StartGeneration):
            for span in event.user_items:
                if span.text is None:
                    sim.send(ev.InputTranscribed(span.item_id, span.end_ms, "words"))
            first = started + scenario.first_audio_ms / 1000
            audio = ev.GenerationAudio(event.response_id, np.zeros(scenario.reply_ms, np.float32), 1000, "reply")
            sim.pending.append((first, audio))
            sim.pending.append((first, ev.GenerationDone(event.response_id)))
        else:
            sim.send(event)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--turns", type=int, default=5, help="user turns per conversation")
    parser.add_argument("--pauses-per-turn", type=float, default=1.5, help="mean mid-turn pauses (Poisson)")
    parser.add_argument("--pause-ms", default="100:480", help="uniform range of mid-turn pauses, MIN:MAX")
    parser.add_argument("--first-audio-ms", type=int, default=600, help="generator start -> first audio")
    parser.add_argument("--silence-ms", type=int, default=500, help="silence_duration_ms (confirmed end)")
    parser.add_argument("--speculative-ms", type=int, default=DEFAULT_SPECULATIVE_MS,
                        help="tentative end of turn (default: the sessions' default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recordings", type=Path, default=SPHINX_DATA,
                        help="pocketsphinx-testdata folder whose recordings are the recorded turns")
    parser.add_argument("--engine", default=None,
                        help="also measure a real engine (e.g. lite): spoken questions streamed in real time")
    parser.add_argument("--questions", type=int, default=4, help="questions per mode with --engine")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    low, high = (int(part) for part in str(args.pause_ms).split(":"))
    base = Scenario(conversations=args.conversations, turns=args.turns, pauses_per_turn=args.pauses_per_turn,
                    pause_ms=(low, high), first_audio_ms=args.first_audio_ms, seed=args.seed)
    detections = {name: TurnDetectionConfig(silence_duration_ms=args.silence_ms, speculative_silence_ms=speculative)
                  for name, speculative in (("speculative", args.speculative_ms), ("baseline", None))}
    recorded, why = _recorded(args.recordings, base, detections)
    rows = {name: simulate(replace(base, detection=detection)) for name, detection in detections.items()}
    columns = ["turns", "speculative_started", "speculative_committed", "commit_rate", "mean_window_ms",
               "mean_saved_ms", "latency_mean_ms", "latency_p90_ms", "discarded_generation_s_per_turn"]
    heads = ["turns", "spec started", "committed", "commit rate", "window ms", "saved ms", "latency ms",
             "p90 ms", "wasted s/turn"]
    print(f"{'mode':<24}" + "".join(f"{head:>14}" for head in heads))
    for source, table in (("recorded", recorded), ("simulated", rows)):
        for name, row in table.items():
            print(f"{name + ' (' + source + ')':<24}" + "".join(f"{_fmt(row[column]):>14}" for column in columns))
    if why:
        print(f"recorded turns: none ({why})")
    print("simulated rows: the commit rate follows from --pauses-per-turn and --pause-ms; it checks the controller "
          "and is not a measurement")
    measured = recorded or rows
    saved = measured["baseline"]["latency_mean_ms"] - measured["speculative"]["latency_mean_ms"]
    print(f"mean end-of-speech -> first audio saved by speculation ({'recorded' if recorded else 'simulated'}): "
          f"{saved:.0f} ms")
    report: dict[str, object] = {"scenario": vars(args), "results": rows, "recorded": recorded or None,
                                 "recorded_missing": why, "latency_saved_ms": saved,
                                 "latency_saved_source": "recorded" if recorded else "simulated"}
    if args.engine:
        from stepaudio.eval.bench.realtime_engine import measure_engine

        report["engine"] = measure_engine(args.engine, args.questions, args.speculative_ms, args.silence_ms)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def _recorded(folder: Path, base: Scenario, detections: dict[str, TurnDetectionConfig]
              ) -> tuple[dict[str, dict[str, float]], str | None]:
    """The recorded rows, or none and why (no recordings here, or no Silero model without the lite extra)."""
    turns = recorded_turns(folder) if folder.is_dir() else []
    if not turns:
        return {}, f"no recordings under {folder}: apt-get install pocketsphinx-testdata"
    try:
        scores = silero_scores(turns)
    except ImportError:
        return {}, "the Silero VAD needs faster-whisper: pip install 'stepaudio[lite]'"
    return {name: replay(scores, replace(base, detection=detection)) for name, detection in detections.items()}, None


def _fmt(value: float) -> str:
    return f"{value:.3f}" if isinstance(value, float) and value < 10 else f"{value:.0f}"
