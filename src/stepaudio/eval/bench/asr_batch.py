"""`stepaudio bench asr-batch`: turns that end at once, their final Whisper passes batched or not.

Several realtime sessions whose users stop speaking together each need a final recognition pass. The lite
engine decodes them in one Whisper batch (`asr_batch`, default 4); the alternatives are one thread per turn
(contending for the cores) and one after another. The three are timed in one run, round-robin, on real
LibriVox recordings (Debian's pocketsphinx-testdata) with the engine's Whisper base, and must hear the same
words. `--heard` first hears each turn while it is spoken, so the final pass decodes only its tail with the
words before as Whisper's previous text (what a realtime session does); `--equal` cuts four recordings to
5.9 s so that their whole passes share one encoder window and are decoded together.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stepaudio.eval.bench.server_load import LIBRIVOX

STEMS = ("0870", "0880", "0890", "0920")
EQUAL_STEMS = ("0880", "0930", "0890", "0920")  # the first 5.9 s of each: one encoder window size (8 s)
EQUAL_SECONDS = 5.9
MODES = ("batched", "threads", "serial")


@dataclass(frozen=True)
class ModeResult:
    """One way of running the finals: each round's total time and each turn's latency per round (seconds)."""

    mode: str
    totals: tuple[float, ...]
    latencies: tuple[tuple[float, ...], ...]

    def summary(self) -> dict[str, Any]:
        per_turn = [statistics.median(run[i] for run in self.latencies) for i in range(len(self.latencies[0]))]
        return {"mode": self.mode, "total_median_s": statistics.median(self.totals), "totals_s": list(self.totals),
                "turn_latency_median_s": per_turn, "turn_latency_mean_s": statistics.mean(per_turn)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three modes, round-robin")
    parser.add_argument("--heard", action="store_true", help="hear each turn while it is spoken first")
    parser.add_argument("--equal", action="store_true",
                        help=f"four turns cut to {EQUAL_SECONDS} s, not heard while spoken: whole passes of one "
                             "window, decoded together")
    parser.add_argument("--turns", type=int, default=4, help="turns ending at once (at most 4)")
    parser.add_argument("--wait-ms", type=float, default=3.0, help="how long a final waits for others to join")
    parser.add_argument("--recordings", type=Path, default=LIBRIVOX, help="folder of the LibriVox recordings")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")


def timed_finals(finals: Sequence[Callable[[], str]], together: bool) -> tuple[float, list[float], list[str]]:
    """Run the finals (in threads, all at once, or one after another): total seconds, each one's latency from
    the common start, and their texts."""
    began = time.perf_counter()

    def one(final: Callable[[], str]) -> tuple[float, str]:
        text = final()
        return time.perf_counter() - began, text

    if together:
        with ThreadPoolExecutor(len(finals)) as pool:
            done = list(pool.map(one, finals))
    else:
        done = [one(final) for final in finals]
    return time.perf_counter() - began, [d[0] for d in done], [d[1] for d in done]


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.audio.io import load_audio
    from stepaudio.engines.lite import models, resolver
    from stepaudio.engines.lite.asr import WhisperOptions, WhisperTranscriber
    from stepaudio.errors import StepAudioError

    if not 1 <= args.turns <= len(STEMS) or args.rounds < 1:
        raise StepAudioError(f"--turns is 1-{len(STEMS)} and --rounds at least 1")
    stems = (EQUAL_STEMS if args.equal else STEMS)[: args.turns]
    paths = [Path(args.recordings) / f"sense_and_sensibility_01_austen_64kb-{stem}.wav" for stem in stems]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise StepAudioError(f"no recording at {', '.join(missing)} (apt-get install pocketsphinx-testdata)")
    load_before = os.getloadavg()
    batched = WhisperOptions(batch=len(STEMS), batch_wait_s=args.wait_ms / 1000)
    transcriber = WhisperTranscriber(resolver.resolve(models.WHISPER_BASE), batched)
    transcriber.warmup()
    streams = []
    for path in paths:
        samples = load_audio(path, sample_rate=16000).samples
        samples = samples[: int(EQUAL_SECONDS * 16000)] if args.equal else samples
        stream = transcriber.listen(16000, "en")
        if args.heard and not args.equal:
            for start in range(0, samples.size, 512):
                stream.push(samples[start : start + 512])
                stream.update()
        else:
            stream.push(samples)
        streams.append(stream)
    finals = [lambda s=stream: s.transcript().text for stream in streams]
    options = {"batched": batched, "threads": replace(batched, batch=1), "serial": replace(batched, batch=1)}
    totals: dict[str, list[float]] = {mode: [] for mode in MODES}
    latencies: dict[str, list[tuple[float, ...]]] = {mode: [] for mode in MODES}
    texts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for mode in MODES:
            transcriber.options = options[mode]
            total, each, said = timed_finals(finals, together=mode != "serial")
            totals[mode].append(total)
            latencies[mode].append(tuple(each))
            texts.setdefault(mode, said)
            if texts[mode] != said:
                raise StepAudioError(f"{mode}: a round heard other words than the first ({said} vs {texts[mode]})")
    results = [ModeResult(mode, tuple(totals[mode]), tuple(latencies[mode])).summary() for mode in MODES]
    load_after = os.getloadavg()
    report: dict[str, Any] = {"turns": len(streams), "heard_while_spoken": bool(args.heard and not args.equal),
              "equal_windows": bool(args.equal), "tails_s": [round(s.final_seconds, 2) for s in streams],
              "batches": {str(size): count for size, count in sorted(transcriber.batch_sizes().items())},
              "same_words": len({tuple(t) for t in texts.values()}) == 1, "modes": results,
              "load_before": load_before, "load_after": load_after}
    print(f"load average before: {' '.join(f'{x:.1f}' for x in load_before)}")
    print(f"tails (s): {report['tails_s']}; batches run (size: count): {report['batches']}")
    for row in results:
        runs = ", ".join(f"{t:.2f}" for t in row["totals_s"])
        per_turn = ", ".join(f"{x:.2f}" for x in row["turn_latency_median_s"])
        print(f"{row['mode']:8s} total median {row['total_median_s']:.2f} s (runs {runs}); each final's latency, "
              f"median: {per_turn} s; mean {row['turn_latency_mean_s']:.2f} s")
    print(f"same words in all modes: {report['same_words']}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in load_after)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if report["same_words"] else 1
