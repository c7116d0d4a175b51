"""`stepaudio asr FILE...`: transcribe audio files with an engine's speech recognizer."""

from __future__ import annotations

import argparse
import json
import sys
import time

from stepaudio.audio.io import load_audio
from stepaudio.cli.engine_args import add_engine_arguments, create_engine_from_args
from stepaudio.errors import StepAudioError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="audio files (wav, flac, mp3, ...)")
    parser.add_argument("--language", help="language code (en, zh, ja, ...); default: detect")
    parser.add_argument("--segments", action="store_true", help="print timed segments too")
    parser.add_argument("--json", metavar="PATH", help="write the transcripts as JSON")
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    engine = create_engine_from_args(args)
    if engine.transcriber is None:
        raise StepAudioError(f"engine {engine.name!r} has no speech recognizer")
    start = time.perf_counter()
    engine.warmup("transcriber")  # so that the times below are recognition, not model loading
    print(f"model ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    results = []
    for path in args.files:
        audio = load_audio(path)
        start = time.perf_counter()
        transcript = engine.transcriber.transcribe(audio, language=args.language)
        elapsed = time.perf_counter() - start
        print(f"{path}\t[{transcript.language or '?'}] {transcript.text}")
        if args.segments:
            for segment in transcript.segments:
                print(f"  {segment.start:6.2f}-{segment.end:6.2f}  {segment.text}")
        print(f"  {audio.duration:.2f} s of audio in {elapsed:.2f} s")
        results.append({"file": path, "text": transcript.text, "language": transcript.language,
                        "duration": audio.duration, "seconds": elapsed,
                        "segments": [[s.start, s.end, s.text] for s in transcript.segments]})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, ensure_ascii=False, indent=2)
    return 0
