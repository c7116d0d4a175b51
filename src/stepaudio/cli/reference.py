"""The reference release's entry points with the same flags: `offline-inference` and `tts-inference`.

They run on our Step engine (CPU or GPU, no CUDA-only kernels) and add a few flags the originals hard-code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_QUESTION = "你好，我是你的朋友，我叫小明，你叫什么名字？"
DEFAULT_TTS_TEXT = "（四川话）你好，欢迎使用阶跃星辰的语音合成。今天天气真好。"


def _engine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from stepaudio.cli.engine_args import parse_options
    from stepaudio.engines.registry import create_engine

    options = {**parse_options(args.option), "model_path": args.model_path, "device": args.device}
    if getattr(args, "load_in_8bit", False):
        options["quant"] = "int8"
    return create_engine("step", **options)


def _add_option_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                        help="Step engine option, repeatable (e.g. seed=0, chat_max_tokens=256, flow_dtype=bf16)")


def _speak(engine, text: str, voice, path: Path) -> Path:  # type: ignore[no-untyped-def]
    from stepaudio.audio.io import save_audio

    synthesizer = engine.synthesizer
    samples = [chunk.samples for chunk in synthesizer.synthesize(text, voice)]
    audio = np.concatenate(samples) if samples else np.zeros(0, dtype=np.float32)
    return save_audio(path, audio, synthesizer.sample_rate)


def add_offline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-path", required=True, help="folder holding the three Step-Audio model folders")
    parser.add_argument("--load-in-8bit", action="store_true", help="int8 weight-only language models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", default="output", help="where the two reply wavs go")
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--speaker", default="Tingting")
    _add_option_argument(parser)


def run_offline(args: argparse.Namespace) -> int:
    """Text question -> text + speech reply; then that speech as the question -> text + speech reply."""
    from stepaudio.audio.io import load_audio, save_audio
    from stepaudio.engines.base import ChatMessage
    from stepaudio.realtime.turn import ReplyAudio, TurnDone, TurnSettings, run_turn

    engine = _engine(args)
    out = Path(args.output_dir)
    settings = TurnSettings(voice=args.speaker)
    turns = [("tqta", ChatMessage("user", args.question))]
    for name, message in turns:  # each a spoken turn of its own, as the reference runs them
        pieces, reply = [], ""
        for event in run_turn(engine, [message], settings):
            if isinstance(event, ReplyAudio):
                pieces.append(event.chunk.samples)
            elif isinstance(event, TurnDone):
                reply = event.reply
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        path = save_audio(out / f"output_e2e_{name}.wav", audio, engine.synthesizer.sample_rate)
        print(f"[{name}] {reply}\n  -> {path}")
        if name == "tqta":
            turns.append(("aqta", ChatMessage("user", "", audio=load_audio(path))))
    return 0


def add_tts_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-path", required=True, help="folder holding the Step-Audio model folders")
    parser.add_argument("--output-path", required=True, help="folder for the output wav")
    parser.add_argument("--synthesis-type", choices=["tts", "clone"], default="tts")
    parser.add_argument("--text", default=DEFAULT_TTS_TEXT)
    parser.add_argument("--speaker", default="Tingting", help="built-in speaker for --synthesis-type tts")
    parser.add_argument("--prompt-wav", help="voice prompt for --synthesis-type clone")
    parser.add_argument("--prompt-text", help="exact transcript of --prompt-wav")
    parser.add_argument("--device", default="cpu")
    _add_option_argument(parser)


def run_tts(args: argparse.Namespace) -> int:
    from stepaudio.engines.base import Voice
    from stepaudio.errors import StepAudioError

    voice: Voice | str = args.speaker
    if args.synthesis_type == "clone":
        if not args.prompt_wav or not args.prompt_text:
            raise StepAudioError("--synthesis-type clone needs --prompt-wav and its exact --prompt-text")
        voice = Voice("clone", prompt_audio=Path(args.prompt_wav), prompt_text=args.prompt_text)
    engine = _engine(args)
    path = _speak(engine, args.text, voice, Path(args.output_path) / f"output_{args.synthesis_type}.wav")
    print(f"wrote {path}")
    return 0
