"""The one `stepaudio` command: each subcommand lives in its own module and is imported lazily."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from stepaudio import __version__
from stepaudio.errors import StepAudioError

# name -> (module, one-line help). Modules expose add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "audio-info": ("stepaudio.cli.audio_info", "load an audio file and print what was decoded"),
    "text-tokenize": ("stepaudio.cli.text_tokenize", "encode text with the Step tokenizer"),
    "tokenize": ("stepaudio.cli.tokenize", "turn a wav into Step-Audio vq02/vq06 audio tokens"),
    "tags": ("stepaudio.cli.tags", "parse instruction tags or list the known ones"),
    "prompt": ("stepaudio.cli.prompt", "build a Step-Audio chat or TTS prompt and print its ids"),
    "offline-inference": ("stepaudio.cli.offline_inference", "the reference's chat example: text and spoken question"),
    "tts-inference": ("stepaudio.cli.tts_inference", "the reference's TTS example: built-in speaker or clone"),
    "serve-lm": ("stepaudio.cli.serve_lm", "serve a Step1 model over the OpenAI completions API (no vLLM needed)"),
    "vllm-command": ("stepaudio.cli.vllm_command", "print the vLLM serve command for the Step chat / TTS models"),
    "bench": ("stepaudio.cli.bench", "run component benchmarks (lm, decoder, tokenizer, ...)"),
    "eval": ("stepaudio.cli.eval", "evaluate engines on local data: asr, tts, chat, latency"),
    "chat": ("stepaudio.cli.chat", "talk to a voice assistant: a wav question or an interactive conversation"),
    "tts": ("stepaudio.cli.tts", "speak text with an engine's voices (speed, pitch, dialect)"),
    "edit": ("stepaudio.cli.edit", "edit speech with EditX: emotion, style, speed, non-verbal sounds, noise, silence"),
    "asr": ("stepaudio.cli.asr", "transcribe audio files with an engine's speech recognizer"),
    "train": ("stepaudio.cli.train", "train or fine-tune the Step1 TTS model on a generated dataset (full or LoRA)"),
    "serve": ("stepaudio.cli.serve", "run the OpenAI-compatible HTTP server (speech, transcription, chat, voices)"),
    "data": ("stepaudio.cli.data", "generate a labelled TTS dataset with any engine, or summarise one"),
    "quantize": ("stepaudio.cli.quantize", "write an int4 / int8 / fp8 compressed-tensors Step1 folder (vLLM, native)"),
}


def build_parser(only: str | None = None, words: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole command line, or with `only`, just that subcommand's options: importing every subcommand
    imports torch (seconds), and a bench must set OpenMP's wait policy before torch loads. `words` (the
    command line) reaches subcommand groups as the `_argv` default, so `bench` loads only the target named."""
    parser = argparse.ArgumentParser(
        prog="stepaudio", description="Step-Audio speech understanding and generation."
    )
    parser.add_argument("--version", action="version", version=f"stepaudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name, _argv=tuple(words))
        if only is None or name == only:
            _load(module_name).add_arguments(sub_parser)
    return parser


def chosen_subcommand(argv: Sequence[str]) -> str:
    """The subcommand named on a command line ('' when none is): the first word not an option."""
    first = next((word for word in argv if not word.startswith("-")), "")
    return first if first in SUBCOMMANDS else ""


def _load(module_name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(module_name)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=chosen_subcommand(words), words=words)
    args = parser.parse_args(words)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(_load(args._module).run(args) or 0)
    except StepAudioError as exc:  # raised on purpose with a message that names the fix: no traceback
        print(f"stepaudio {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def one_line(exc: BaseException) -> str:
    """The message on one line (a wrapped library message may carry newlines), or the error's type."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
