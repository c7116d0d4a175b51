"""`stepaudio chat`: a spoken question in, a spoken answer out; without a file, an interactive conversation.

    stepaudio chat --engine lite examples/question_capital.wav --output reply.wav
    stepaudio chat --engine lite            # type text, or the path of a wav file; /reset, /quit
    stepaudio chat --engine lite --tools my_tools.py --text "What is the weather in Paris?"

Prints the transcript, the answer as it streams, and each stage's time measured from the end of the
user's speech (VAD, ASR, LLM first token, LLM total, TTS first audio, total).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from stepaudio.audio.io import Audio, load_audio
from stepaudio.audio.vad import SileroVad
from stepaudio.cli.engine_args import add_engine_arguments, create_engine_from_args
from stepaudio.cli.tts import parse_speed, write_audio
from stepaudio.engines.base import GenerationOptions, SpeechInstructions
from stepaudio.engines.tools import tools_from_file
from stepaudio.errors import StepAudioError
from stepaudio.realtime.turn import (
    Conversation,
    ReplyAudio,
    ReplyText,
    ToolAnswered,
    ToolCalled,
    TurnDone,
    TurnSettings,
    TurnTimings,
    UserHeard,
)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", help="a spoken question (audio file); none: interactive mode")
    parser.add_argument("--text", help="a typed question instead of audio")
    parser.add_argument("-o", "--output", help="write the spoken reply here (interactive: reply-N.wav beside it)")
    parser.add_argument("--voice", help="reply voice (lite: joe, cmn, yue, ja, ...); default: from the text")
    parser.add_argument("--speed", help="slow, fast or a factor")
    parser.add_argument("--language", help="language of the question for ASR (en, zh, ...); default: detect")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--temperature", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-vad", action="store_true", help="do not trim silence off a spoken question")
    parser.add_argument("--show-transcript", action="store_true",
                        help="print what was heard also where the chat model hears the audio itself (Step: one "
                             "more pass of the chat model, after the reply)")
    parser.add_argument("--max-context-tokens", type=int, default=4096,
                        help="history budget: the oldest turns are dropped beyond it")
    parser.add_argument("--no-warmup", action="store_true", help="skip loading and warming models up front")
    parser.add_argument("--tools", metavar="FILE.py",
                        help="a Python file whose public functions the model may call (type hints and docstrings "
                             "describe them); each call and its result are printed")
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    engine = create_engine_from_args(args)
    settings = TurnSettings(
        voice=args.voice,
        instructions=SpeechInstructions(speed=parse_speed(args.speed)) if args.speed else None,
        language=args.language,
        options=GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed),
        transcripts="always" if args.show_transcript else "needed",
        registry=tools_from_file(args.tools) if args.tools else None,
    )
    vad = None if args.no_vad else _vad_or_none()
    conversation = Conversation(engine, settings, trimmer=vad, max_context_tokens=args.max_context_tokens)
    if not args.no_warmup:
        start = time.perf_counter()
        engine.warmup()
        if vad is not None:
            vad.warmup()
        print(f"models ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if args.input or args.text:
        return _one_turn(conversation, args.input, args.text, args.output)
    return _interactive(conversation, args.output)


def _one_turn(conversation: Conversation, path: str | None, text: str | None, output: str | None) -> int:
    audio = load_audio(path) if path else None
    samples, rate, timings = _speak_turn(conversation, audio, text)
    if output:
        _write(output, samples, rate)
    print(format_timings(timings))
    return 0


def _interactive(conversation: Conversation, output: str | None) -> int:
    print("Type a question, or the path of an audio file. /reset forgets the conversation, /quit ends.")
    turn = 0
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            conversation.reset()
            print("(conversation cleared)")
            continue
        is_file = line.lower().endswith(AUDIO_SUFFIXES) and Path(line).expanduser().is_file()
        try:
            audio = load_audio(Path(line).expanduser()) if is_file else None
            samples, rate, timings = _speak_turn(conversation, audio, None if is_file else line)
        except StepAudioError as exc:
            print(f"error: {exc}")
            continue
        turn += 1
        if output:
            base = Path(output)
            _write(str(base.with_name(f"{base.stem}-{turn}{base.suffix or '.wav'}")), samples, rate)
        print(format_timings(timings))


def _speak_turn(conversation: Conversation, audio: Audio | None,
                text: str | None) -> tuple[np.ndarray, int, TurnTimings]:
    pieces: list[np.ndarray] = []
    rate = conversation.engine.synthesizer.sample_rate if conversation.engine.synthesizer else 16000
    timings = TurnTimings()
    replying = False
    for event in conversation.turn(audio=audio, text=text):
        if isinstance(event, UserHeard):
            if replying:
                print()
                replying = False
            print(f"you:   {event.text or '(no speech heard)'}" + (f" [{event.error}]" if event.error else ""))
        elif isinstance(event, ReplyText):
            if not replying:
                print("reply: ", end="")
                replying = True
            print(event.text, end="", flush=True)
        elif isinstance(event, (ToolCalled, ToolAnswered)):
            if replying:
                print()
                replying = False
            if isinstance(event, ToolCalled):
                print(f"tool:  {event.call.name}({event.call.arguments})")
            else:
                print(f"  ->   {event.message.content}")
        elif isinstance(event, ReplyAudio):
            pieces.append(event.chunk.samples)
            rate = event.chunk.sample_rate
        elif isinstance(event, TurnDone):
            timings = event.timings
            if not event.reply and not event.tool_calls and not replying:
                print("(no speech heard)" if audio is not None else "(no reply)")
    if replying:
        print()
    return (np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)), rate, timings


def format_timings(timings: TurnTimings) -> str:
    cells = [f"{name} {value:.2f} s" for name, value in timings.rows() if value is not None]
    return "times: " + " | ".join(cells)


def _write(path: str, samples: np.ndarray, rate: int) -> None:
    if samples.size == 0:
        print("(no reply audio)")
        return
    written = write_audio(path, samples, rate)
    print(f"wrote {written} ({len(samples) / rate:.2f} s at {rate} Hz)")


def _vad_or_none() -> SileroVad | None:
    try:
        return SileroVad()
    except ImportError:
        return None
