"""The `stepaudio bench` targets: name -> (module, help), read by the CLI group and by `bench all`.

Kept here, below cli/, so that `bench all` can list and run the targets without importing the command line.
A target module exposes add_arguments(parser) and run(args) -> int and imports heavy dependencies inside run().
"""

from __future__ import annotations

TARGETS: dict[str, tuple[str, str]] = {
    "realtime": ("stepaudio.eval.bench.realtime",
                 "speculative responses: commit rate, latency saved (simulated, or --engine lite)"),
    "lm": ("stepaudio.eval.bench.lm", "Step1 LM prefill/decode speed and memory vs the bandwidth bound"),
    "lm-batch": ("stepaudio.eval.bench.lm_batch",
                 "N concurrent Step1 requests: decoded together (lm_batch rows) vs each alone, tok/s, first token"),
    "decoder": ("stepaudio.eval.bench.decoder", "flow + HiFT RTF and streaming first-chunk latency"),
    "decoder-stream": ("stepaudio.eval.bench.decoder_stream",
                       "streaming token2wav: first-chunk latency and RTF vs offline"),
    "decoder-reference": ("stepaudio.eval.bench.decoder_reference",
                          "decoder vs the public reference (your Step-Audio checkout): same weights, noise, time"),
    "kernels": ("stepaudio.eval.bench.kernels",
                "what every auto (LM weight format, flow dtype, vq02 weights) picks on this CPU; --remeasure"),
    "tokenizer": ("stepaudio.eval.bench.tokenizer", "vq02 + vq06 tokenizer RTF and chunk latency"),
    "asr-batch": ("stepaudio.eval.bench.asr_batch",
                  "turns ending at once: their final Whisper passes batched vs in threads vs one after another"),
    "server-load": ("stepaudio.eval.bench.server_load",
                    "N concurrent realtime sessions: errors, first-audio latency, RSS"),
    "tts": ("stepaudio.eval.bench.tts", "Step TTS time to first audio at the TTS-3B / CosyVoice shapes"),
    "editx": ("stepaudio.eval.bench.editx",
              "EditX clone time to first audio at the 3B shape, voice prompt reused or not"),
    "step2": ("stepaudio.eval.bench.step2",
              "Step-Audio 2 mini: 7B-shape decode tok/s per weight format vs the bandwidth bound, token2wav RTF"),
    "lite": ("stepaudio.eval.bench.lite", "lite engine: ASR WER, TTS round-trip WER/CER, speech-to-reply latency"),
    "all": ("stepaudio.eval.bench.all", "every component benchmark (small sizes by default) into one JSON + Markdown"),
}
