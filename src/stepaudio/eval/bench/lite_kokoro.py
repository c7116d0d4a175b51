"""`stepaudio bench lite --compare-kokoro`: Kokoro as it ran before its tuning against the current path, in
the same process and interleaved (the shared machine's load changes by the minute).

graphs  the prepared graph (convolutions as int8 matrix products) against the published one, one onnxruntime
        thread each: CPU and wall seconds per rendered audio second (silence kept: the work the model does),
        medians of --repeats passes alternating sentence by sentence, whether every sample came out the same, and
        the lowest signal-to-difference ratio (the fused Snake op moves the int8 quantisation noise: ~20-26 dB)
turns   spoken turns: English and Mandarin on the current path, and Mandarin as before (published graph,
        silences kept, one thread, first sentence not cut at a clause), the Mandarin pair back to back
With --profile-kokoro (no comparison needed): where the prepared graph's time goes, per ONNX op type, from
onnxruntime's profiler on one thread (the int8 matrix products of the audio-rate generator's convolutions, its
Snake activations' Sin/Mul/Add, the im2col copies...), to say what is left to cut.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from stepaudio.eval.bench.lite_turns import greedy, spoken_questions, spoken_turn


def measure(engine: Any, args: argparse.Namespace, parts: set[str], voices: list[tuple[str, str]],
            threads: int) -> dict[str, Any]:
    """The comparisons for the parts run (`kokoro_graphs` with tts, `latency_compare` with latency)."""
    out: dict[str, Any] = {}
    before = kokoro_before(engine, threads)
    if "tts" in parts:
        _progress("Kokoro's prepared graph against its published one")
        out["kokoro_graphs"] = compare_graphs(voices, args.repeats)
    if "latency" in parts:
        _progress("spoken turns: current Mandarin path against the one before Kokoro's tuning")
        out["latency_compare"] = compare_turns(engine, before, args.questions, args.zh_questions, args.repeats)
    return out


def profile(voices: list[tuple[str, str]], sentences: int = 4) -> dict[str, Any]:
    """Per voice: seconds per op type over the first `sentences` bench sentences on the prepared graph, one
    thread (after a warm-up run), with the rendered audio seconds (silence kept)."""
    import numpy as np
    import onnxruntime

    from stepaudio.engines.lite import kokoro_graph, kokoro_voices, models, resolver
    from stepaudio.engines.lite.espeak_lib import open_espeak
    from stepaudio.engines.lite.kokoro import MAX_PHONEMES, SAMPLE_RATE, KokoroSpeaker
    from stepaudio.engines.lite.kokoro_g2p import KokoroG2P
    from stepaudio.eval.bench.lite import SENTENCES

    model_dir = resolver.resolve(models.KOKORO_V1)
    speaker = KokoroSpeaker(lambda: model_dir, KokoroG2P(open_espeak()))
    vocab = json.loads((model_dir / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    path = kokoro_graph.prepare(model_dir / "kokoro-v1.0.int8.onnx", resolver.default_cache_dir())
    out: dict[str, Any] = {}
    for language, voice in voices:
        kokoro = kokoro_voices.BY_NAME.get(voice)
        if kokoro is None:
            continue
        table = speaker.table(kokoro)
        feeds = []
        for sentence in SENTENCES[language][:sentences]:
            phonemes = speaker.phonemes(sentence, language, kokoro.british)  # type: ignore[arg-type]
            ids = [vocab[ch] for ch in phonemes][: MAX_PHONEMES]
            feeds.append({"tokens": np.array([[0, *ids, 0]], dtype=np.int64), "style": table[len(ids) - 1: len(ids)],
                          "speed": np.ones(1, dtype=np.float32)})
        with tempfile.TemporaryDirectory() as folder:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(folder, "kokoro")
            session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
            session.run(None, feeds[0])  # packs the weights: not counted
            start = time.process_time()
            audio = sum(session.run(None, feed)[0].size for feed in feeds) / SAMPLE_RATE
            cpu = time.process_time() - start
            with open(session.end_profiling(), encoding="utf-8") as handle:
                events = json.load(handle)
        ops = op_seconds(events, skip_runs=1)
        out[f"{language}_{voice}"] = {"language": language, "voice": voice, "audio_seconds": audio,
                                      "cpu_seconds": cpu, "ops": ops}
    return out


def op_seconds(events: list[dict[str, Any]], skip_runs: int = 0) -> dict[str, float]:
    """Seconds per op type from an onnxruntime profile (node kernel times), largest first; the first
    `skip_runs` model runs (warm-ups) left out."""
    ends = sorted(e["ts"] + e["dur"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    cutoff = ends[skip_runs - 1] if 0 < skip_runs <= len(ends) else None
    totals: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if cutoff is not None and event["ts"] < cutoff:
            continue
        totals[event["args"]["op_name"]] += event["dur"] / 1e6
    return dict(totals.most_common())


def _progress(message: str) -> None:
    print(f"[bench lite] {message} ...", file=sys.stderr, flush=True)


def kokoro_before(engine: Any, threads: int) -> Any:
    """The engine with Kokoro as it ran before its tuning: published graph, silences kept, one thread (the rest
    shared)."""
    from dataclasses import replace

    from stepaudio.engines.registry import create_engine

    before = create_engine("lite", kokoro_tuning="off", tts_threads=threads, kokoro_threads=1)
    before.warmup("synthesizer")
    return replace(engine, synthesizer=before.synthesizer)


def compare_graphs(voices: list[tuple[str, str]], repeats: int) -> dict[str, Any]:
    """CPU and wall seconds per rendered audio second of each Kokoro voice (silence kept: the work the model
    does), prepared graph against published, the two alternating sentence by sentence; medians over `repeats`
    passes; whether every sample came out the same, else the lowest signal-to-difference ratio of a sentence (dB;
    lengths must agree)."""
    import numpy as np

    from stepaudio.engines.lite import kokoro_voices, models, resolver
    from stepaudio.engines.lite.espeak_lib import open_espeak
    from stepaudio.engines.lite.kokoro import SAMPLE_RATE, KokoroSpeaker
    from stepaudio.engines.lite.kokoro_g2p import KokoroG2P
    from stepaudio.eval.bench.lite import SENTENCES

    g2p = KokoroG2P(open_espeak())
    speakers = {name: KokoroSpeaker(lambda: resolver.resolve(models.KOKORO_V1), g2p, prepared=name == "prepared",
                                    trim=False) for name in ("prepared", "published")}
    out: dict[str, Any] = {}
    for language, voice in voices:
        kokoro = kokoro_voices.BY_NAME.get(voice)
        if kokoro is None:
            continue
        for speaker in speakers.values():  # loads the session, the voice table and the G2P
            speaker.speak(SENTENCES[language][0], language, kokoro, kokoro.british)  # type: ignore[arg-type]
        passes: dict[str, list[tuple[float, float]]] = {name: [] for name in speakers}
        same, snr = True, float("inf")
        for repeat in range(repeats):
            totals = {name: [0.0, 0.0, 0.0] for name in speakers}  # cpu, wall, audio seconds
            for index, sentence in enumerate(SENTENCES[language]):
                order = ("prepared", "published") if (index + repeat) % 2 == 0 else ("published", "prepared")
                audio = {}
                for name in order:
                    start, cpu = time.perf_counter(), time.process_time()
                    audio[name] = speakers[name].speak(sentence, language, kokoro,  # type: ignore[arg-type]
                                                       kokoro.british)
                    totals[name][0] += time.process_time() - cpu
                    totals[name][1] += time.perf_counter() - start
                    totals[name][2] += len(audio[name]) / SAMPLE_RATE
                same = same and np.array_equal(audio["prepared"], audio["published"])
                snr = min(snr, _snr_db(audio["published"], audio["prepared"]))
            for name, (cpu, wall, seconds) in totals.items():
                passes[name].append((cpu / seconds, wall / seconds))
        out[f"{language}_{voice}"] = {
            "voice": voice, "language": language, "identical_samples": same, "snr_db": snr, "repeats": repeats,
            **{name: {"cpu_rtf": statistics.median(c for c, _ in runs), "rtf": statistics.median(w for _, w in runs),
                      "cpu_rtf_runs": [c for c, _ in runs]} for name, runs in passes.items()}}
    return out


def _snr_db(reference: Any, other: Any) -> float:
    """Signal over difference in dB; -inf where the lengths differ, inf where the samples are the same."""
    import numpy as np

    if reference.shape != other.shape:
        return float("-inf")
    signal = reference.astype(np.float64)
    noise = float(np.sum((signal - other) ** 2))
    return float("inf") if noise == 0 else 10 * float(np.log10(float(np.sum(signal**2)) / noise))


def _snr_note(part: dict[str, Any]) -> str:
    snr = part.get("snr_db")
    return "" if snr is None or part["identical_samples"] else f" (lowest SNR {snr:.1f} dB)"


def compare_turns(engine: Any, before: Any, count: int, zh_count: int, repeats: int) -> dict[str, Any]:
    """Spoken turns, `repeats` passes: English and Mandarin on the current path, and Mandarin as before Kokoro's
    tuning (published graph, silences kept, one thread, first sentence not cut at a clause), the Mandarin pair
    run back to back."""
    from stepaudio.audio.vad import SileroVad
    from stepaudio.realtime.turn import TurnSettings

    vad = SileroVad()
    vad.warmup()
    spoken = spoken_questions(engine, count, zh_count)
    variants = {"en": [(engine, TurnSettings(options=greedy()), "en")],
                "zh": [(engine, TurnSettings(options=greedy()), "zh"),
                       (before, TurnSettings(options=greedy(), first_clause_chars=None), "zh before")]}
    rows = []
    for repeat in range(repeats):
        for index, (language, question, audio) in enumerate(spoken):
            pair = variants[language] if (index + repeat) % 2 == 0 else variants[language][::-1]
            for variant_engine, settings, name in pair:
                row = spoken_turn(variant_engine, vad, language, question, audio, settings)
                rows.append({**row, "variant": name, "repeat": repeat})
    summary: dict[str, float | None] = {}
    turns: dict[str, int] = {}
    for name in ("en", "zh", "zh before"):
        mine = [r for r in rows if r["variant"] == name and r["TTS first audio"] is not None]
        turns[name] = len(mine)
        for key, column in (("first_audio_p50", "TTS first audio"), ("first_audible_p50", "first audible"),
                            ("after_first_token_p50", "LLM first token")):
            values = [float(r["TTS first audio"]) - float(r[column]) if column == "LLM first token" else
                      float(r[column]) for r in mine if r[column] is not None]
            summary[f"{key} {name}"] = statistics.median(values) if values else None
    return {"summary": summary, "turns": turns, "rows": rows}


def headline_rows(results: dict[str, Any], load: str) -> list[dict[str, Any]]:
    """docs/eval index rows of the comparisons; `load` says how busy the machine was."""
    from stepaudio.eval.report import headline_row

    rows = []
    for part in results.get("kokoro_graphs", {}).values():
        for graph in ("prepared", "published"):
            timing = part[graph]
            rows.append(headline_row("bench", f"TTS {part['language']} {part['voice']}",
                                     f"CPU seconds per audio second, {graph} graph", timing["cpu_rtf"], unit="",
                                     note=f"median of {part['repeats']} passes, the graphs alternating; wall RTF "
                                          f"{timing['rtf']:.3f}; samples identical: {part['identical_samples']}"
                                          f"{_snr_note(part)}; "
                                          f"{load}"))
    compare = results.get("latency_compare", {})
    for name, value in compare.get("summary", {}).items():
        key, _, variant = name.partition(" ")
        if value is not None and key == "first_audio_p50":
            what = {"en": "English", "zh": "Mandarin", "zh before": "Mandarin before Kokoro's tuning"}[variant]
            rows.append(headline_row("bench", f"spoken turn, {what}", "speech end -> first reply audio p50 (s), "
                                     "repeated", value, unit="s", note=f"{compare['turns'][variant]} turns, the "
                                     f"paths interleaved; {load}"))
    return rows


def lines(results: dict[str, Any]) -> list[str]:
    """The printed lines of the comparisons (KOK: graphs, CMP: spoken turns, PRF: the profile)."""
    lines = []
    for name, part in results.get("kokoro_profile", {}).items():
        total = sum(part["ops"].values())
        top = ", ".join(f"{op} {100 * seconds / total:.1f}%" for op, seconds in list(part["ops"].items())[:8])
        lines.append(f"PRF  {name:16s} {total / part['audio_seconds']:.3f} s of kernel wall time per audio s "
                     f"(1 thread, profiled; process CPU {part['cpu_seconds'] / part['audio_seconds']:.3f}): {top}")
    for name, part in results.get("kokoro_graphs", {}).items():
        new, old = part["prepared"], part["published"]
        lines.append(f"KOK  {name:16s} CPU s per audio s {new['cpu_rtf']:.3f} prepared graph, {old['cpu_rtf']:.3f} "
                     f"published ({1 - new['cpu_rtf'] / old['cpu_rtf']:.0%} less); wall RTF {new['rtf']:.3f} vs "
                     f"{old['rtf']:.3f}; samples identical: {'yes' if part['identical_samples'] else 'no'}"
                     f"{_snr_note(part)}; "
                     f"median of {part['repeats']}")
    compare = results.get("latency_compare")
    if compare:
        for key, value in compare["summary"].items():
            turns = compare["turns"][key.partition(" ")[2]]
            lines.append(f"CMP  {key:26s} {value:.2f} s ({turns} turns)" if value is not None else f"CMP  {key:26s} -")
    return lines
