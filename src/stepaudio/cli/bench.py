"""`stepaudio bench TARGET`: each target is a module in stepaudio.eval.bench with add_arguments/run."""

from __future__ import annotations

import argparse

from stepaudio.cli.targets import add_targets, run_target

# target -> (module, help). Target modules must import heavy dependencies inside run().
TARGETS: dict[str, tuple[str, str]] = {
    "realtime": ("stepaudio.eval.bench.realtime",
                 "speculative responses: commit rate, latency saved (simulated, or --engine lite)"),
    "lm": ("stepaudio.eval.bench.lm", "Step1 LM prefill/decode speed and memory vs the bandwidth bound"),
    "decoder": ("stepaudio.eval.bench.decoder", "flow + HiFT RTF and streaming first-chunk latency"),
    "decoder-stream": ("stepaudio.eval.bench.decoder_stream",
                       "streaming token2wav: first-chunk latency and RTF vs offline"),
    "decoder-reference": ("stepaudio.eval.bench.decoder_reference",
                          "decoder vs the public reference (your Step-Audio checkout): same weights, noise, time"),
    "tokenizer": ("stepaudio.eval.bench.tokenizer", "vq02 + vq06 tokenizer RTF and chunk latency"),
    "server-load": ("stepaudio.eval.bench.server_load",
                    "N concurrent realtime sessions: errors, first-audio latency, RSS"),
    "tts": ("stepaudio.eval.bench.tts", "Step TTS time to first audio at the TTS-3B / CosyVoice shapes"),
    "lite": ("stepaudio.eval.bench.lite", "lite engine: ASR WER, TTS round-trip WER/CER, speech-to-reply latency"),
    "all": ("stepaudio.eval.bench.all", "every component benchmark (small sizes by default) into one JSON + Markdown"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_targets(parser, "target", "TARGET", TARGETS)


def run(args: argparse.Namespace) -> int:
    return run_target(args, "benchmark", args.target)
