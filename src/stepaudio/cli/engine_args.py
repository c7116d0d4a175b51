"""Engine selection shared by `chat`, `tts` and `asr`: `--engine` through the registry, options passed through.

`--model-path`, `--device` and repeated `--option KEY=VALUE` become keyword options of the engine's
`create_engine`, so each engine defines what they mean (lite: `--option chat_model=smollm2`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from stepaudio.engines.base import Engine
from stepaudio.errors import StepAudioError


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    from stepaudio.engines.registry import engine_names

    group = parser.add_argument_group("engine")
    group.add_argument("--engine", default="lite", choices=engine_names(), help="which models answer (default lite)")
    group.add_argument("--model-path", help="engine model path or hub id (lite: the chat GGUF)")
    group.add_argument("--device", help="engine device (lite: cpu)")
    group.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                       help="engine option, repeatable (lite: asr_model, chat_model, threads, cache_dir, ...)")


def parse_options(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings as engine keyword options; values are JSON where they parse as JSON."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StepAudioError(f"--option takes KEY=VALUE, not {item!r}")
        options[key.strip().replace("-", "_")] = _value(value.strip())
    return options


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_options(args.option)
    if args.model_path:
        options["model_path"] = args.model_path
    if args.device:
        options["device"] = args.device
    return options


def create_engine_from_args(args: argparse.Namespace) -> Engine:
    from stepaudio.engines.registry import create_engine

    return create_engine(args.engine, **engine_options(args))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
