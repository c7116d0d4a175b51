"""Four turns end at once: their final passes batched (asr_batch=4) against today's ways (each on its own thread,
contending; one after another), in one run. Prints total time and each final's latency, and the load average.

    .venv/bin/python scripts/bench_asr_batch.py [--rounds 3] [--heard]

With --heard each turn is first heard while spoken (its final pass decodes the tail, with previous text);
without, the whole of each recording is its final pass (no previous text). Real LibriVox recordings of Debian's
pocketsphinx-testdata, Whisper base int8 (the lite engine's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from stepaudio.audio.io import load_audio
from stepaudio.engines.lite import models, resolver
from stepaudio.engines.lite.asr import WhisperOptions, WhisperStream, WhisperTranscriber

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
STEMS = ("0870", "0880", "0890", "0920")
EQUAL = ("0880", "0930", "0890", "0920")  # the first 5.9 s of each: one encoder window size (8 s)


def _finals(streams: list[WhisperStream], mode: str) -> tuple[float, list[float], list[str]]:
    began = time.perf_counter()

    def final(stream: WhisperStream) -> tuple[float, str]:
        text = stream.transcript().text
        return time.perf_counter() - began, text

    if mode == "serial":
        done = [final(s) for s in streams]
    else:
        with ThreadPoolExecutor(len(streams)) as pool:
            done = list(pool.map(final, streams))
    return time.perf_counter() - began, [d[0] for d in done], [d[1] for d in done]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--heard", action="store_true", help="hear each turn while spoken first")
    parser.add_argument("--equal", action="store_true", help="four turns of at most 5.9 s, not heard while spoken:"
                        " equal windows and prompts, so the whole final passes are decoded together")
    parser.add_argument("--wait-ms", type=float, default=3.0, help="how long a final waits for others to join")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print("load average before:", os.getloadavg())
    transcriber = WhisperTranscriber(resolver.resolve(models.WHISPER_BASE),
                                     WhisperOptions(batch=4, batch_wait_s=args.wait_ms / 1000))
    transcriber.warmup()
    streams = []
    for stem in EQUAL if args.equal else STEMS:
        samples = load_audio(LIBRIVOX / f"sense_and_sensibility_01_austen_64kb-{stem}.wav", sample_rate=16000).samples
        samples = samples[: int(5.9 * 16000)] if args.equal else samples
        stream = transcriber.listen(16000, "en")
        if args.heard and not args.equal:
            for start in range(0, samples.size, 512):
                stream.push(samples[start : start + 512])
                stream.update()
        else:
            stream.push(samples)
        streams.append(stream)
    batched = transcriber.options
    modes = {"batched": batched, "threads": replace(batched, batch=1),
             "serial": replace(batched, batch=1)}
    results: dict[str, list[tuple[float, list[float]]]] = {mode: [] for mode in modes}
    texts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for mode, options in modes.items():
            transcriber.options = options
            total, latencies, said = _finals(streams, mode)
            results[mode].append((total, latencies))
            assert texts.setdefault(mode, said) == said
    print("tails (s):", [round(s.final_seconds, 2) for s in streams])
    print("batches run (size: count):", transcriber._batcher.sizes)
    for mode, runs in results.items():
        totals = [t for t, _ in runs]
        per = [statistics.median(r[1][i] for r in runs) for i in range(len(streams))]
        runs_s = ", ".join(f"{t:.2f}" for t in totals)
        print(f"{mode:8s} total median {statistics.median(totals):.2f} s (runs {runs_s});"
              f" each final's latency, median: {', '.join(f'{x:.2f}' for x in per)} s;"
              f" mean {statistics.mean(per):.2f} s")
    print("same texts in all modes:", texts["batched"] == texts["threads"] == texts["serial"])
    print("load average after:", os.getloadavg())


if __name__ == "__main__":
    main()
