"""`stepaudio bench lite`: quality and latency of the lite engine on a CPU.

asr      WER of Whisper on the LibriVox (and cards) recordings of Debian's pocketsphinx-testdata
tts      intelligibility by Whisper round trip: Piper English WER, espeak-ng Mandarin CER at several rates
         (scored with stepaudio.text.metrics: the `eval` extra's jiwer, OpenCC, num2words, cn2an)
latency  end of speech -> first reply audio for spoken questions (VAD + ASR + LLM first sentence + TTS),
         p50 / p90 over the questions, models warmed up first

Numbers taken on a machine shared with other work are noisy; the table prints the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
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
QUESTIONS = (
    "What is the capital of France?",
    "How many days are there in a week?",
    "What color is the sky on a clear day?",
    "Can you recommend a good book to read?",
    "What is the tallest mountain in the world?",
    "How do I make a cup of tea?",
    "Why do cats purr?",
    "What should I cook for dinner tonight?",
)
_TITLES = {"Mr": "Mister", "Mrs": "Missus", "Dr": "Doctor"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", default="asr,tts,latency", help="comma-separated parts: asr, tts, latency")
    parser.add_argument("--chat-model", default="qwen", help="chat model for latency (qwen, smollm2, a path)")
    parser.add_argument("--asr-model", default="base")
    parser.add_argument("--zh-voices", default="cmn+m1,cmn+f3", help="espeak Mandarin voices to try "
                        "(cmn+m1 is espeak's default; plain cmn is the engine's tuned choice)")
    parser.add_argument("--zh-rates", default="130,150", help="espeak Mandarin rates (wpm) to try")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="spoken questions for latency")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")


def expand_titles(text: str) -> str:
    """LibriVox transcripts spell titles out ("mister"); Whisper writes "Mr.". Applied before scoring."""
    return re.sub(r"\b(Mr|Mrs|Dr)\.", lambda m: _TITLES[m.group(1)], text)


def error_rate(pairs: list[tuple[str, str]], unit: str = "word") -> float:
    """Corpus WER (unit 'word') or CER ('char') with the project's documented normalisers."""
    from stepaudio.text.metrics import corpus_rate, score

    return corpus_rate([score(expand_titles(ref), expand_titles(hyp), unit) for ref, hyp in pairs])


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine

    engine = create_engine("lite", asr_model=args.asr_model, chat_model=args.chat_model, threads=args.threads)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    results: dict[str, Any] = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
    if "asr" in parts:
        _progress("ASR on the pocketsphinx-testdata recordings")
        results["asr"] = _bench_asr(engine)
    if "tts" in parts:
        _progress("TTS round trips through Whisper")
        results["tts"] = _bench_tts(engine, [v for v in args.zh_voices.split(",") if v],
                                    [int(r) for r in args.zh_rates.split(",") if r])
    if "latency" in parts:
        _progress("end-of-speech to first-audio latency")
        results["latency"] = _bench_latency(engine, args.questions)
    results["load_average_end"] = os.getloadavg()
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False))
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


def _bench_asr(engine: Any) -> dict[str, Any]:
    from stepaudio.audio.io import load_audio

    out: dict[str, Any] = {}
    for name, folder, listing in (("librivox", TESTDATA / "librivox", "transcription"),
                                  ("cards", TESTDATA / "cards", "cards.transcription")):
        if not (folder / listing).is_file():
            out[name] = {"skipped": "apt-get install pocketsphinx-testdata"}
            continue
        pairs, seconds, audio_seconds, rows = [], 0.0, 0.0, []
        engine.transcriber.warmup()
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
    return out


def _round_trip(engine: Any, text: str, voice: str, language: str, rate: int | None = None) -> tuple[str, float]:
    import numpy as np

    from stepaudio.audio.io import Audio
    from stepaudio.engines.base import SpeechInstructions
    from stepaudio.engines.lite.tts import ESPEAK_RATES

    speed = None if rate is None else rate / ESPEAK_RATES["cmn"]
    start = time.perf_counter()
    chunks = list(engine.synthesizer.synthesize(text, voice, SpeechInstructions(speed=speed)))
    seconds = time.perf_counter() - start
    samples = np.concatenate([c.samples for c in chunks])
    audio = Audio(samples, chunks[0].sample_rate)
    return engine.transcriber.transcribe(audio, language=language).text, seconds / max(audio.duration, 1e-9)


def _bench_tts(engine: Any, zh_voices: list[str], zh_rates: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs, rtfs, rows = [], [], []
    for sentence in ENGLISH_SENTENCES:
        heard, rtf = _round_trip(engine, sentence, "joe", "en")
        pairs.append((sentence, heard))
        rtfs.append(rtf)
        rows.append({"text": sentence, "heard": heard})
    out["english_piper_joe"] = {"wer": error_rate(pairs), "rtf": statistics.mean(rtfs), "rows": rows}
    for voice in zh_voices:
        for rate in zh_rates:
            pairs, rows = [], []
            for sentence in MANDARIN_SENTENCES:
                heard, _ = _round_trip(engine, sentence, voice, "zh", rate)
                pairs.append((sentence, heard))
                rows.append({"text": sentence, "heard": heard})
            out[f"mandarin_espeak_{voice}_{rate}wpm"] = {"cer": error_rate(pairs, "char"), "rows": rows}
    return out


def _bench_latency(engine: Any, count: int) -> dict[str, Any]:
    import numpy as np

    from stepaudio.audio.io import Audio, resample
    from stepaudio.audio.vad import SileroVad
    from stepaudio.engines.base import GenerationOptions
    from stepaudio.realtime.turn import Conversation, ReplyText, TurnDone, TurnSettings, UserHeard

    vad = SileroVad()
    vad.warmup()
    engine.warmup()
    rows: list[dict[str, Any]] = []
    for question in QUESTIONS[:count]:
        chunks = list(engine.synthesizer.synthesize(question, "joe"))
        speech = resample(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate, 16000)
        silence = np.zeros(4800, dtype=np.float32)  # 0.3 s either side, as a recording would have
        audio = Audio(np.concatenate([silence, speech, silence]), 16000)
        settings = TurnSettings(options=GenerationOptions(temperature=0.0, seed=0))
        conversation = Conversation(engine, settings, trimmer=vad)
        transcript, reply, timings = "", "", None
        for event in conversation.turn(audio=audio):
            if isinstance(event, UserHeard):
                transcript = event.text
            elif isinstance(event, ReplyText):
                reply += event.text
            elif isinstance(event, TurnDone):
                timings = event.timings
        assert timings is not None
        rows.append({"question": question, "heard": transcript, "reply": reply.strip(),
                     **{name: value for name, value in timings.rows()}})
    firsts = [float(r["TTS first audio"]) for r in rows if r["TTS first audio"] is not None]
    summary: dict[str, float | None] = {
        "first_audio_p50": statistics.median(firsts) if firsts else None,
        "first_audio_p90": float(np.percentile(firsts, 90)) if firsts else None,
    }
    for stage in ("VAD", "ASR", "LLM first token", "LLM total", "total"):
        values = [float(r[stage]) for r in rows if r[stage] is not None]
        summary[f"{stage} p50"] = statistics.median(values) if values else None
    return {"summary": summary, "rows": rows}


def _print(results: dict[str, Any]) -> None:
    load = results["load_average"]
    print(f"lite engine benchmark on {results['cpus']} CPUs, load average {load[0]:.1f} at start, "
          f"{results['load_average_end'][0]:.1f} at end (noisy when other work runs)")
    for name, part in results.get("asr", {}).items():
        if "wer" in part:
            print(f"ASR  {name:10s} WER {100 * part['wer']:5.2f}%  ({part['errors']}/{part['words']} words), "
                  f"RTF {part['rtf']:.3f}")
        else:
            print(f"ASR  {name:10s} skipped: {part['skipped']}")
    for name, part in results.get("tts", {}).items():
        metric = f"WER {100 * part['wer']:5.2f}%" if "wer" in part else f"CER {100 * part['cer']:5.2f}%"
        extra = f", RTF {part['rtf']:.3f}" if "rtf" in part else ""
        print(f"TTS  {name:30s} {metric}{extra}")
    latency = results.get("latency")
    if latency:
        for key, value in latency["summary"].items():
            print(f"LAT  {key:22s} {value:.2f} s" if value is not None else f"LAT  {key:22s} -")
        for row in latency["rows"]:
            print(f"     {row['TTS first audio'] or 0:5.2f} s  {row['heard']!r} -> {row['reply'][:70]!r}")
