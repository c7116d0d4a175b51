"""`stepaudio eval TASK`: each task is a module with add_arguments/run, imported when it exists."""

from __future__ import annotations

import argparse

from stepaudio.cli.targets import add_targets, run_target

# task -> (module, help). Task modules import heavy dependencies inside run().
TASKS: dict[str, tuple[str, str]] = {
    "asr": ("stepaudio.cli.eval_asr", "WER/CER of an engine's recognizer on a local dataset"),
    "tts": ("stepaudio.cli.eval_tts", "SEED-TTS-eval style: synthesise, transcribe, CER/WER and speaker similarity"),
    "chat": ("stepaudio.cli.eval_chat", "StepEval-Audio-360 style chat replies scored by an LLM judge"),
    "latency": ("stepaudio.cli.eval_latency", "time to first audio, RTF and throughput of a running server"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_targets(parser, "task", "TASK", TASKS)


def run(args: argparse.Namespace) -> int:
    return run_target(args, "evaluation", args.task)
