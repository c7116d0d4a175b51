"""`stepaudio bench lite`: quality, speed and memory of the lite engine on a CPU.

asr      WER of Whisper on the LibriVox (and cards) recordings of Debian's pocketsphinx-testdata, and CER on the
         synthetic spoken Mandarin questions of examples/questions-zh with the language detected (constrained to
         the engine's languages) and, for comparison, detected freely
tts      per voice (Piper and Kokoro English, Kokoro and espeak Mandarin, Kokoro Japanese): intelligibility by
         Whisper round trip (WER, or CER for Mandarin and Japanese; scored with stepaudio.text.metrics), real-time
         factor and time to the first sentence's audio, at each `--tts-threads` count
latency  end of speech -> first reply audio for spoken questions, English and Mandarin (VAD + ASR + LLM first
         sentence + TTS), p50 / p90 per language, models warmed up first
With --compare-kokoro, Kokoro as before its tuning runs beside the current path (`lite_kokoro`); spoken
turns come from `lite_turns`.
Every run also records the process's peak resident memory after each part.

Numbers taken on a machine shared with other work are noisy; the table prints the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from stepaudio.eval.bench.lite_turns import QUESTIONS, QUESTIONS_ZH, greedy, spoken_questions, spoken_turn, zh_questions

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
# language:voice pairs the TTS part compares: the defaults (Piper for English, Kokoro zh-yunjian and ja-alpha),
# Kokoro's English voice, a second Mandarin voice and espeak's formant Mandarin (the previous default).
TTS_VOICES = "en:joe,en:en-heart,zh:zh-yunjian,zh:zh-xiaobei,zh:cmn,ja:ja-alpha"
ENGLISH_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please turn off the lights in the kitchen before you leave.",
    "The weather tomorrow will be sunny with a light breeze.",
    "My favorite book is a story about a boy and his dog.",
    "Could you remind me to call my mother this evening?",
    "The museum opens at nine and closes at five.",
    "Fresh bread is sold at the bakery around the corner.",
    "She plays the piano every morning after breakfast.",
    "Remember to water the plants while I am away.",
    "The train to London leaves from platform three.",
)
MANDARIN_SENTENCES = (
    "今天天气很好，我们一起去公园散步吧。",
    "请把厨房的灯关掉。",
    "明天早上八点我们在学校门口见面。",
    "这本书非常有意思，我已经看了两遍。",
    "你想喝茶还是喝咖啡？",
    "周末我要去超市买水果和蔬菜。",
    "他每天坐地铁去上班。",
    "我们晚上一起吃饭吧。",
)
JAPANESE_SENTENCES = (
    "今日はいい天気ですね。",
    "駅までどのくらいかかりますか？",
    "私は毎朝コーヒーを飲みます。",
    "明日の会議は十時に始まります。",
    "この本はとても面白かったです。",
    "週末は家族と買い物に行きました。",
    "すみません、トイレはどこですか？",
    "日本の夏はとても暑いです。",
    "電車が遅れて、学校に遅刻しました。",
    "冷たい水を一杯ください。",
    "昨日は友達と映画を見ました。",
    "このレストランの料理はおいしいです。",
    "来週、京都へ旅行に行く予定です。",
    "子供たちが公園で遊んでいます。",
    "雨が降りそうなので、傘を持って行きます。",
    "猫が窓のそばで寝ています。",
)
_TITLES = {"Mr": "Mister", "Mrs": "Missus", "Dr": "Doctor"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", default="asr,tts,latency", help="comma-separated parts: asr, tts, latency")
    parser.add_argument("--chat-model", default="qwen", help="chat model for latency (qwen, smollm2, a path)")
    parser.add_argument("--asr-model", default="base")
    parser.add_argument("--voices", default=TTS_VOICES, help="language:voice pairs for the TTS part")
    parser.add_argument("--tts-threads", default="1,2", help="TTS thread counts to time (the first one is also "
                        "read back by Whisper; a spoken turn gives Piper 1, beside the chat model's thread, and "
                        "Kokoro 2, which wait without spinning)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="English spoken questions for latency")
    parser.add_argument("--zh-questions", type=int, default=6, help="Mandarin spoken questions for latency "
                        "(examples/questions-zh)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare-kokoro", action="store_true", help="also run Kokoro as before its tuning "
                        "(published graph, first Mandarin sentence uncut) interleaved with the current path")
    parser.add_argument("--profile-kokoro", action="store_true", help="also profile Kokoro's prepared graph per "
                        "ONNX op type (one thread, onnxruntime's profiler) for each Kokoro voice of --voices")
    parser.add_argument("--repeats", type=int, default=3, help="passes of the --compare-kokoro timings (medians)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON (with the "
                        "headline rows `stepaudio.eval.report summarize` collects)")
    parser.add_argument("--markdown", default=None, metavar="PATH", help="also write a Markdown report")


def expand_titles(text: str) -> str:
    """LibriVox transcripts spell titles out ("mister"); Whisper writes "Mr.". Applied before scoring."""
    return re.sub(r"\b(Mr|Mrs|Dr)\.", lambda m: _TITLES[m.group(1)], text)


def error_rate(pairs: list[tuple[str, str]], unit: str = "word") -> float:
    """Corpus WER (unit 'word') or CER ('char') with the project's documented normalisers."""
    from stepaudio.text.metrics import corpus_rate, score

    return corpus_rate([score(expand_titles(ref), expand_titles(hyp), unit) for ref, hyp in pairs])


def parse_voices(spec: str) -> list[tuple[str, str]]:
    """'en:joe,zh:cmn' -> [('en', 'joe'), ('zh', 'cmn')]."""
    pairs = []
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        language, sep, voice = item.partition(":")
        if not sep or language not in SENTENCES or not voice:
            raise SystemExit(f"--voices takes language:voice pairs with language in {', '.join(SENTENCES)}, "
                             f"not {item!r}")
        pairs.append((language, voice))
    return pairs


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine

    threads = [int(t) for t in args.tts_threads.split(",") if t.strip()]
    voices = parse_voices(args.voices)
    engine = create_engine("lite", asr_model=args.asr_model, chat_model=args.chat_model, threads=args.threads,
                           tts_threads=threads[0])
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    results: dict[str, Any] = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "peak_rss_mb": {}}
    # latency first: the peak memory after it is the engine's own (every model of a spoken turn loaded and used);
    # the other parts load more (a second Whisper, synthesizers at other thread counts)
    if "latency" in parts:
        _progress("end-of-speech to first-audio latency")
        results["latency"] = _bench_latency(engine, args.questions, args.zh_questions)
        results["peak_rss_mb"]["spoken turns (the engine)"] = peak_rss_mb()
    if "asr" in parts:
        _progress("ASR on the pocketsphinx-testdata recordings and the spoken Mandarin questions")
        results["asr"] = _bench_asr(engine, args.asr_model, args.threads)
        results["peak_rss_mb"]["after asr"] = peak_rss_mb()
    if "tts" in parts:
        _progress("TTS round trips through Whisper, real-time factor and first audio")
        results["tts"] = _bench_tts(engine, voices, threads)
        results["peak_rss_mb"]["after tts"] = peak_rss_mb()
    if args.compare_kokoro:
        from stepaudio.eval.bench import lite_kokoro

        results.update(lite_kokoro.measure(engine, args, parts, voices, threads[0]))
    if args.profile_kokoro:
        from stepaudio.eval.bench import lite_kokoro

        _progress("Kokoro's prepared graph per op type")
        results["kokoro_profile"] = lite_kokoro.profile(voices)
    results["load_average_end"] = os.getloadavg()
    results["headline"] = headline(results)
    _print(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.markdown:
        from stepaudio.eval.report import write_text

        write_text(args.markdown, markdown(results))
    return 0


def _progress(message: str) -> None:
    print(f"[bench lite] {message} ...", file=sys.stderr, flush=True)


def _read_transcripts(folder: Path, listing: str) -> dict[Path, str]:
    found = {}
    for line in (folder / listing).read_text().splitlines():
        match = re.match(r"<s>(.*)</s>\s*\((.*)\)", line.strip())
        if match:
            found[folder / f"{match.group(2)}.wav"] = match.group(1).strip()
    return found


def _bench_asr(engine: Any, asr_model: str, threads: int) -> dict[str, Any]:
    from stepaudio.audio.io import load_audio

    out: dict[str, Any] = {}
    engine.transcriber.warmup()
    for name, folder, listing in (("librivox", TESTDATA / "librivox", "transcription"),
                                  ("cards", TESTDATA / "cards", "cards.transcription")):
        if not (folder / listing).is_file():
            out[name] = {"skipped": "apt-get install pocketsphinx-testdata"}
            continue
        pairs, seconds, audio_seconds, rows = [], 0.0, 0.0, []
        for path, reference in _read_transcripts(folder, listing).items():
            audio = load_audio(path)
            start = time.perf_counter()
            text = engine.transcriber.transcribe(audio, language="en").text
            seconds += time.perf_counter() - start
            audio_seconds += audio.duration
            pairs.append((reference, text))
            rows.append({"file": path.name, "reference": reference, "hypothesis": text})
        wer = error_rate(pairs)
        words = sum(len(ref.split()) for ref, _ in pairs)
        out[name] = {"wer": wer, "words": words, "errors": round(wer * words), "rtf": seconds / audio_seconds,
                     "rows": rows}
    out["questions_zh"] = _bench_questions_zh(engine, asr_model, threads)
    return out


def _bench_questions_zh(engine: Any, asr_model: str, threads: int) -> dict[str, Any]:
    """CER with the language detected among the engine's languages, and freely (what the engine did before)."""
    from stepaudio.audio.io import load_audio
    from stepaudio.engines.lite.asr import WhisperOptions, WhisperTranscriber
    from stepaudio.engines.lite.engine import LiteConfig, _resolve

    questions = zh_questions()
    if not questions:
        return {"skipped": f"no spoken questions in {QUESTIONS_ZH}"}
    free = WhisperTranscriber(_resolve(asr_model, LiteConfig().cache_dir), WhisperOptions(threads=threads,
                                                                                           languages=()))
    free.warmup()
    out: dict[str, Any] = {}
    for mode, transcriber in (("constrained", engine.transcriber), ("free", free)):
        pairs, seconds = [], []
        rows: list[dict[str, Any]] = []
        for item in questions:
            audio = load_audio(QUESTIONS_ZH / item["audio"])
            start = time.perf_counter()
            heard = transcriber.transcribe(audio)
            seconds.append(time.perf_counter() - start)
            pairs.append((item["text"], heard.text))
            rows.append({"text": item["text"], "voice": item.get("voice"), "heard": heard.text,
                         "language": heard.language, "cer": error_rate([(item["text"], heard.text)], "char")})
        out[mode] = {"cer": error_rate(pairs, "char"), "zh_detected": sum(r["language"] == "zh" for r in rows),
                     "understood": sum(r["language"] == "zh" and r["cer"] <= 0.2 for r in rows),
                     "questions": len(rows), "seconds_p50": statistics.median(seconds), "rows": rows}
    return out


SENTENCES = {"en": ENGLISH_SENTENCES, "zh": MANDARIN_SENTENCES, "ja": JAPANESE_SENTENCES[:8]}


def _synthesize(synthesizer: Any, text: str, voice: str) -> tuple[Any, float, float, float]:
    """The audio of `text`, the seconds to its first chunk and to its end, and the CPU seconds this process spent
    (all its threads: unlike wall time, hardly affected by other jobs on the machine)."""
    import numpy as np

    from stepaudio.audio.io import Audio

    start, cpu = time.perf_counter(), time.process_time()
    first, chunks = None, []
    for chunk in synthesizer.synthesize(text, voice):
        first = first if first is not None else time.perf_counter() - start
        chunks.append(chunk)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Audio(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate), first or total, total, cpu


def _bench_tts(engine: Any, voices: list[tuple[str, str]], threads: list[int]) -> dict[str, Any]:
    """Each voice at each thread count (Piper's and Kokoro's), read back by Whisper at the first count."""
    from stepaudio.engines.registry import create_engine

    out: dict[str, Any] = {}
    for count in threads:
        synthesizer = create_engine("lite", tts_threads=count, kokoro_threads=count).synthesizer
        for language, voice in voices:
            key = f"{language}_{voice}"
            pairs, rows, firsts, seconds, cpu_seconds, audio_seconds = [], [], [], 0.0, 0.0, 0.0
            _synthesize(synthesizer, SENTENCES[language][0], voice)  # loads the voice's model and G2P
            for sentence in SENTENCES[language]:
                audio, first, total, cpu = _synthesize(synthesizer, sentence, voice)
                firsts.append(first)
                seconds += total
                cpu_seconds += cpu
                audio_seconds += audio.duration
                if count == threads[0]:
                    heard = engine.transcriber.transcribe(audio.resampled(16000), language=language).text
                    pairs.append((sentence, heard))
                    rows.append({"text": sentence, "heard": heard})
            part = out.setdefault(key, {"language": language, "voice": voice})
            part[f"threads_{count}"] = {"rtf": seconds / audio_seconds, "cpu_rtf": cpu_seconds / audio_seconds,
                                        "first_audio_p50": statistics.median(firsts)}
            if pairs:
                metric = "wer" if language == "en" else "cer"
                part[metric] = error_rate(pairs, "word" if language == "en" else "char")
                part["rtf"] = seconds / audio_seconds  # at the engine's default thread count
                part["rows"] = rows
    return out


def _bench_latency(engine: Any, count: int, zh_count: int) -> dict[str, Any]:
    import numpy as np

    from stepaudio.audio.vad import SileroVad
    from stepaudio.realtime.turn import TurnSettings

    vad = SileroVad()
    vad.warmup()
    engine.warmup()
    spoken = spoken_questions(engine, count, zh_count)
    rows = [spoken_turn(engine, vad, language, question, audio, TurnSettings(options=greedy()))
            for language, question, audio in spoken]
    summary: dict[str, float | None] = {}
    for language in ("en", "zh"):
        mine = [r for r in rows if r["language"] == language]
        firsts = [float(r["TTS first audio"]) for r in mine if r["TTS first audio"] is not None]
        audible = [float(r["first audible"]) for r in mine if r["first audible"] is not None]
        suffix = "" if language == "en" else "_zh"
        summary[f"first_audio_p50{suffix}"] = statistics.median(firsts) if firsts else None
        summary[f"first_audio_p90{suffix}"] = float(np.percentile(firsts, 90)) if firsts else None
        summary[f"first_audible_p50{suffix}"] = statistics.median(audible) if audible else None
        for stage in ("VAD", "ASR", "LLM first token", "LLM total", "total"):
            values = [float(r[stage]) for r in mine if r[stage] is not None]
            summary[f"{stage} p50{suffix}"] = statistics.median(values) if values else None
    return {"summary": summary, "rows": rows}


def headline(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for docs/eval's index (`stepaudio.eval.report summarize`)."""
    from stepaudio.eval.report import headline_row

    load = f"2-core machine shared with other jobs: load average {results['load_average'][0]:.1f} at start, " \
           f"{results['load_average_end'][0]:.1f} at end"
    rows = []
    questions = results.get("asr", {}).get("questions_zh", {})
    for mode in ("constrained", "free"):
        if mode in questions:
            q = questions[mode]
            rows.append(headline_row("bench", "questions-zh (synthetic)", f"ASR CER, language detected ({mode})",
                                     q["cer"], note=f"{q['understood']}/{q['questions']} understood (zh detected, "
                                     f"CER <= 20 %); ASR p50 {q['seconds_p50']:.2f} s"))
    for part in results.get("tts", {}).values():
        name = f"TTS {part['language']} {part['voice']}"
        if "wer" in part or "cer" in part:
            metric = "WER" if "wer" in part else "CER"
            rows.append(headline_row("bench", name, f"round-trip {metric} (bench sentences)",
                                     part.get("wer", part.get("cer"))))
        for key, timing in part.items():
            if key.startswith("threads_"):
                count = key.removeprefix("threads_")
                rows.append(headline_row("bench", name, f"RTF, {count} thread(s)", timing["rtf"], unit="",
                                         note=f"CPU seconds per audio second {timing['cpu_rtf']:.3f} (all threads; "
                                              f"little affected by other jobs); {load}"))
                rows.append(headline_row("bench", name, f"first sentence audio p50 (s), {count} thread(s)",
                                         timing["first_audio_p50"], unit="s", note=load))
    summary = results.get("latency", {}).get("summary", {})
    for suffix, language in (("", "English"), ("_zh", "Mandarin")):
        value = summary.get(f"first_audio_p50{suffix}")
        if value is not None:
            rows.append(headline_row("bench", f"spoken turn, {language}", "speech end -> first reply audio p50 (s)",
                                     value, unit="s", note=load))
    from stepaudio.eval.bench import lite_kokoro

    rows += lite_kokoro.headline_rows(results, load)
    engine_peak = results.get("peak_rss_mb", {}).get("spoken turns (the engine)")
    if engine_peak is not None:
        rows.append(headline_row("bench", "lite engine process", "peak RSS after the spoken turns (MB)", engine_peak,
                                 unit="MB", note="Whisper base, Qwen2.5-Coder-0.5B, Piper, Kokoro, espeak-ng and "
                                                 "Silero VAD loaded and used in one process"))
    return rows


def _lines(results: dict[str, Any]) -> list[str]:
    load = results["load_average"]
    lines = [f"lite engine benchmark on {results['cpus']} CPUs, load average {load[0]:.1f} at start, "
             f"{results['load_average_end'][0]:.1f} at end (noisy when other work runs)"]
    for name, part in results.get("asr", {}).items():
        if "wer" in part:
            lines.append(f"ASR  {name:10s} WER {100 * part['wer']:5.2f}%  ({part['errors']}/{part['words']} words), "
                         f"RTF {part['rtf']:.3f}")
        elif name == "questions_zh" and "skipped" not in part:
            for mode, q in part.items():
                lines.append(f"ASR  questions-zh ({mode:11s}) CER {100 * q['cer']:5.2f}%, {q['understood']}/"
                             f"{q['questions']} understood, zh detected {q['zh_detected']}, "
                             f"p50 {q['seconds_p50']:.2f} s")
        else:
            lines.append(f"ASR  {name:10s} skipped: {part['skipped']}")
    for name, part in results.get("tts", {}).items():
        metric = f"WER {100 * part['wer']:5.2f}%" if "wer" in part else f"CER {100 * part['cer']:5.2f}%" \
            if "cer" in part else "-"
        timings = ", ".join(f"{k.removeprefix('threads_')} thread(s): RTF {v['rtf']:.3f} (CPU {v['cpu_rtf']:.3f}), "
                            f"first audio {v['first_audio_p50']:.2f} s" for k, v in part.items()
                            if k.startswith("threads_"))
        lines.append(f"TTS  {name:16s} {metric}; {timings}")
    latency = results.get("latency")
    if latency:
        for key, value in latency["summary"].items():
            lines.append(f"LAT  {key:26s} {value:.2f} s" if value is not None else f"LAT  {key:26s} -")
        for row in latency["rows"]:
            lines.append(f"     {row['TTS first audio'] or 0:5.2f} s  {row['heard']!r} -> {row['reply'][:70]!r}")
    from stepaudio.eval.bench import lite_kokoro

    lines += lite_kokoro.lines(results)
    for stage, mb in results.get("peak_rss_mb", {}).items():
        lines.append(f"MEM  peak RSS {stage}: {mb:.0f} MB")
    return lines


def _print(results: dict[str, Any]) -> None:
    print("\n".join(_lines(results)))


def markdown(results: dict[str, Any]) -> str:
    """The printed table as a Markdown page, with the per-question latency rows."""
    from stepaudio.eval.report import Column, markdown_table

    lines = ["# Benchmark: lite engine on CPU (`stepaudio bench lite`)", "",
             "Timings come from a 2-core machine that other jobs shared while this ran: read them as upper bounds "
             "(see the load averages). Spoken questions are synthetic (Piper for English, Kokoro for Mandarin).",
             "", "```", *_lines(results), "```", ""]
    rows = results.get("latency", {}).get("rows", [])
    if rows:
        columns = (Column("language", "lang"), Column("heard", "heard"), Column("reply", "reply"),
                   Column("ASR", "ASR (s)", "{:.2f}"), Column("LLM first token", "LLM first token (s)", "{:.2f}"),
                   Column("TTS first audio", "first audio (s)", "{:.2f}"))
        lines += ["## Spoken turns", "", markdown_table(rows, columns), ""]
    return "\n".join(lines)
