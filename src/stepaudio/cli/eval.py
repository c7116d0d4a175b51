"""`stepaudio eval TASK`: each task is a module with add_arguments/run, imported when it exists."""

from __future__ import annotations

import argparse
import importlib

# task -> (module, help). Task modules import heavy dependencies inside run().
TASKS: dict[str, tuple[str, str]] = {
    "asr": ("stepaudio.eval.asr_cli", "WER/CER of an engine's recognizer on a local dataset"),
    "tts": ("stepaudio.eval.tts_cli", "SEED-TTS-eval style: synthesise, transcribe, CER/WER and speaker similarity"),
    "chat": ("stepaudio.eval.chat_cli", "StepEval-Audio-360 style chat replies scored by an LLM judge"),
    "latency": ("stepaudio.eval.latency_cli", "time to first audio, RTF and throughput of a running server"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (module_name, help_text) in TASKS.items():
        task_parser = sub.add_parser(name, help=help_text, description=help_text)
        task_parser.set_defaults(_eval_module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            task_parser.set_defaults(_eval_missing=True)
            continue
        module.add_arguments(task_parser)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_eval_missing", False):
        print(f"evaluation {args.task!r} is not available in this build")
        return 2
    module = importlib.import_module(args._eval_module)
    return int(module.run(args) or 0)
