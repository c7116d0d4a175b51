"""`stepaudio tts "text" -o out.wav`: speak text with an engine's synthesizer, sentence by sentence."""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from stepaudio.cli.engine_args import add_engine_arguments, create_engine_from_args
from stepaudio.engines.base import SpeechInstructions, Voice
from stepaudio.errors import StepAudioError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to speak; may start with tags such as (粤语)")
    parser.add_argument("-o", "--output", default="tts.wav", help="output audio file (wav, flac, ogg, mp3)")
    parser.add_argument("--voice", help="voice name (lite: joe, cmn, yue, ja, ...; see --list-voices)")
    parser.add_argument("--voice-wav", help="clone this voice from a prompt wav (step, editx)")
    parser.add_argument("--voice-text", help="what --voice-wav says (editx can transcribe it: -O transcriber=lite)")
    parser.add_argument("--speed", help="slow, fast, slower, faster, or a factor such as 1.2")
    parser.add_argument("--pitch", type=float, help="pitch shift in semitones (lite: espeak voices)")
    parser.add_argument("--volume", type=float, help="gain factor")
    parser.add_argument("--emotion", help="happy, sad, angry, ... (not supported by lite)")
    parser.add_argument("--dialect", help="cantonese, sichuanese, japanese, english, ...")
    parser.add_argument("--style", help="rap or humming (not supported by lite)")
    parser.add_argument("--strict", action="store_true", help="fail on instructions the engine cannot apply")
    parser.add_argument("--sample-rate", type=int, help="resample the output to this rate")
    parser.add_argument("--list-voices", action="store_true", help="print the engine's voices and exit")
    add_engine_arguments(parser)


def parse_speed(value: str | None) -> str | float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def run(args: argparse.Namespace) -> int:
    engine = create_engine_from_args(args)
    synthesizer = engine.synthesizer
    if synthesizer is None:
        raise StepAudioError(f"engine {engine.name!r} has no synthesizer")
    if args.list_voices:
        print("\n".join(synthesizer.voices()))
        return 0
    if not args.text:
        raise StepAudioError("give the text to speak (or --list-voices)")
    instructions = SpeechInstructions(emotion=args.emotion, dialect=args.dialect, speed=parse_speed(args.speed),
                                      style=args.style, pitch=args.pitch, volume=args.volume, strict=args.strict)
    start = time.perf_counter()
    pieces, first = [], None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for chunk in synthesizer.synthesize(args.text, _voice(args), instructions):
            first = first or time.perf_counter() - start
            pieces.append(chunk.samples)
            print(f"  {chunk.duration:5.2f} s  {chunk.text}")
    for warning in {str(w.message) for w in caught}:
        print(f"warning: {warning}")
    total = time.perf_counter() - start
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    path = write_audio(args.output, samples, synthesizer.sample_rate, args.sample_rate)
    duration = len(samples) / synthesizer.sample_rate
    print(f"wrote {path} ({duration:.2f} s); first audio {first or 0:.2f} s, total {total:.2f} s, "
          f"RTF {total / max(duration, 1e-9):.3f}")
    return 0


def _voice(args: argparse.Namespace) -> Voice | str | None:
    """A clone when --voice-wav is given (named by --voice), else the named voice."""
    if not args.voice_wav:
        return args.voice
    if not Path(args.voice_wav).is_file():
        raise StepAudioError(f"--voice-wav {args.voice_wav} not found")
    return Voice(args.voice or "clone", Path(args.voice_wav), args.voice_text)


def write_audio(path: str, samples: np.ndarray, rate: int, target_rate: int | None = None) -> str:
    from stepaudio.audio.io import resample, save_audio

    if target_rate and target_rate != rate:
        samples, rate = resample(samples, rate, target_rate), target_rate
    return str(save_audio(path, samples, rate))
