"""`stepaudio bench editx`: time to first audio of an EditX clone at the real shapes (random weights), with and
without the voice prompt's K/V reused.

The clone runs the engine's own request path (`EditXModel.speak_stream`: the release's clone prompt with the
voice in the system turn, the LM streaming audio ids, the streaming decoder) on a Step1 model of the 3B shape
and a CosyVoice-300M-25Hz-shape decoder, both with random weights (speed does not depend on their values; the
LM head is restricted to the audio ids so that the random model speaks, as the real one does). The voice is a
`--prompt-seconds` prompt (its ids, mel and x-vector made up, as the engine would have prepared them once).

Per sentence: the time to the first audio chunk and its parts: prefill (to the first generated id), decoding
up to the decoder's first chunk (30 ids: 15 frame pairs and the 5 look-ahead ids), and the decoder's first
chunk (priming its caches with the prompt, then the chunk). `--prefix-reuse on` times the sentence as a later
sentence of its voice (another sentence of the voice ran just before, so the system turn is cached and only
the sentence is prefilled), `off` prefills the whole prompt; `both` alternates them run by run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from stepaudio.eval.bench.table import format_rows

DEFAULT_SENTENCE = "今天天气真好，我们一起去公园散步吧。"
PRIMING_SENTENCE = "你好。"  # the voice's earlier sentence (with reuse: what leaves its prompt cached)
PROMPT_TEXT = "那等我们到海洋馆之后，给妈妈买个礼物，好不好呀？"
QUANTS = ("auto", "none", "int8", "int8-weight-only", "fp16-weights", "bf16-packed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", action="append", help=f"sentence to clone (repeatable; default {DEFAULT_SENTENCE})")
    parser.add_argument("--tokenizer", help="Step tokenizer.model (default: a model folder's or the conformance one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="LM weights")
    parser.add_argument("--quant", choices=QUANTS, default="auto",
                        help="LM weight format (auto: as the editx engine picks for this device)")
    parser.add_argument("--shape", default="tts-3b",
                        help="LM shape: tts-3b (EditX's LM has TTS-3B's shape) or a config.json path")
    parser.add_argument("--layers", type=int, help="override the LM layer count (to fit memory; default all 32)")
    parser.add_argument("--decoder-shape", choices=("300m", "tiny"), default="300m", help="flow / HiFT sizes")
    parser.add_argument("--prompt-seconds", type=float, default=3.0, help="length of the voice prompt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs per sentence and mode (best and median)")
    parser.add_argument("--prefix-reuse", choices=("both", "on", "off"), default="both",
                        help="time the sentence with the voice prompt's K/V reused, without, or both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")


def build(args: argparse.Namespace, work: Path) -> tuple[Any, Any, dict[str, Any], Any, Any, str]:
    """The EditXModel over a TimedLM, its backends per reuse mode, the voice (prepared audio), the tokenizer and
    the LM's weight format."""
    import dataclasses

    import torch

    from stepaudio.decoder.cosyvoice2.editx import load_editx_flow
    from stepaudio.decoder.cosyvoice2.editx_token2wav import EditXPrompt, EditXToken2Wav
    from stepaudio.decoder.cosyvoice2.hift_loading import load_hift24k
    from stepaudio.engines.editx.audio import PreparedAudio
    from stepaudio.engines.editx.synthesizer import EditXModel
    from stepaudio.engines.step.native_lm import DEFAULT_PREFIX_CACHE_MB, NativeLM
    from stepaudio.eval.bench.decoder_reference_editx import SHAPES, editx_yaml, random_ids
    from stepaudio.eval.bench.lm import random_model
    from stepaudio.eval.bench.tts import TimedLM, find_tokenizer, speaking_head
    from stepaudio.lm.prefix_cache import prefix_cache_of_size
    from stepaudio.lm.quant import resolve_weight_format
    from stepaudio.lm.step1.config import Step1Config
    from stepaudio.testing.tiny_editx import write_random_editx_decoder
    from stepaudio.text.tokenizer import StepTokenizer
    from stepaudio.text.vocab import STEP1

    device = torch.device(args.device)
    tokenizer = StepTokenizer(find_tokenizer(args.tokenizer))
    cfg = Step1Config.resolve(args.shape)  # tts-3b: EditX's LM shape (REFERENCE-EDITX.md §2)
    if args.layers:
        cfg = dataclasses.replace(cfg, num_hidden_layers=args.layers)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    quant = resolve_weight_format(args.quant, device, dtype) if args.quant == "auto" else args.quant
    model = random_model(cfg, dtype, quant, device)
    speaking_head(model)
    backends = {"off": NativeLM(model=model, tokenizer=tokenizer),
                "on": NativeLM(model=model, tokenizer=tokenizer,
                               prefix_cache=prefix_cache_of_size(DEFAULT_PREFIX_CACHE_MB))}
    lm = TimedLM(backends["off"])
    yaml_text = editx_yaml(SHAPES[args.decoder_shape])
    config = write_random_editx_decoder(work, yaml_text, args.seed, hift_seed=args.seed + 1)
    flow = load_editx_flow(work / "flow.pt", config.flow, device=device)
    t2w = EditXToken2Wav(flow, load_hift24k(work / "hift.pt", config.hift, device=device), config, seed=args.seed)
    g = torch.Generator().manual_seed(args.seed)
    groups = max(1, round(args.prompt_seconds * 25 / 3))
    flow_ids = random_ids(groups, g).tolist()
    features = EditXPrompt(tuple(flow_ids), torch.randn(round(args.prompt_seconds * 50), 80, generator=g) - 5.0,
                           torch.randn(192, generator=g))
    voice = PreparedAudio(tuple(i + STEP1.audio_offset for i in flow_ids), features, args.prompt_seconds)
    editx = EditXModel(tokenizer, _no_tokenizer, lambda: lm, lambda: t2w, seed=args.seed)
    return editx, lm, backends, voice, tokenizer, quant


def _no_tokenizer() -> Any:
    raise RuntimeError("the benchmark voice is prepared up front")


def clone_prompt(tokenizer: Any, voice: Any, text: str) -> list[int]:
    from stepaudio.text.editx_prompts import build_clone_prompt

    return build_clone_prompt(tokenizer, target_text=text, prompt_text=PROMPT_TEXT, speaker="clone_bench",
                              prompt_audio_ids=voice.lm_ids)


def prime_voice(editx: Any, lm: Any, voice: Any, tokenizer: Any) -> None:
    """Forget every cached prefix, then prefill another sentence of the voice (cancelled at its first id)."""
    from stepaudio.engines.base import CancelToken

    lm.inner.prefix_cache.clear()
    cancel = CancelToken()
    lm.on_first_token = cancel.cancel
    try:
        for _ in editx.speak_stream(clone_prompt(tokenizer, voice, PRIMING_SENTENCE), voice, cancel):
            pass
    finally:
        lm.on_first_token = None


def time_first_audio(editx: Any, lm: Any, voice: Any, tokenizer: Any, text: str) -> dict[str, Any]:
    """One clone up to its first audio chunk (the rest is cancelled)."""
    from stepaudio.engines.base import CancelToken

    cancel = CancelToken()
    lm.times, lm.reused_tokens = [], 0
    start = time.perf_counter()
    pieces = editx.speak_stream(clone_prompt(tokenizer, voice, text), voice, cancel)
    first = next(p for p in pieces if p.size)
    at = time.perf_counter()
    cancel.cancel()
    for _ in pieces:
        pass
    needed = len([t for t in lm.times if t <= at])
    last_needed = lm.times[needed - 1]
    return {"first_audio_s": at - start, "prefill_s": lm.times[0] - start, "prompt_tokens": lm.prompt_tokens,
            "reused_tokens": lm.reused_tokens, "decode_s": last_needed - lm.times[0], "decoded_tokens": needed,
            "decoder_first_chunk_s": at - last_needed, "first_chunk_audio_s": first.size / 24000}


_COLUMNS = (("text", "{}"), ("prefix_reuse", "{}"), ("prompt_tokens", "{}"), ("reused_tokens", "{}"),
            ("first_audio_s", "{:.2f}"), ("first_audio_median_s", "{:.2f}"), ("prefill_s", "{:.2f}"),
            ("decode_s", "{:.2f}"), ("decoded_tokens", "{}"), ("decoder_first_chunk_s", "{:.2f}"))


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    texts = args.text or [DEFAULT_SENTENCE]
    print(f"building a {args.shape}-shape LM ({args.dtype}, {args.quant}) and an EditX decoder "
          f"({args.decoder_shape}) with random weights on {args.device} ...", flush=True)
    modes = ("off", "on") if args.prefix_reuse == "both" else (args.prefix_reuse,)
    rows = []
    with tempfile.TemporaryDirectory(prefix="stepaudio-bench-editx-") as tmp, torch.inference_mode():
        editx, lm, backends, voice, tokenizer, weight_format = build(args, Path(tmp))
        time_first_audio(editx, lm, voice, tokenizer, PRIMING_SENTENCE)  # warm-up: kernels, allocator
        for text in texts:
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
            for _ in range(max(1, args.repeats)):
                for mode in modes:
                    lm.inner = backends[mode]
                    if mode == "on":
                        prime_voice(editx, lm, voice, tokenizer)
                    runs[mode].append(time_first_audio(editx, lm, voice, tokenizer, text))
            for mode in modes:
                best = min(runs[mode], key=lambda r: r["first_audio_s"])
                row = {"text": text, "prefix_reuse": mode, **best,
                       "first_audio_median_s": statistics.median(r["first_audio_s"] for r in runs[mode]),
                       "first_audio_all_s": [round(r["first_audio_s"], 3) for r in runs[mode]],
                       "prefill_all_s": [round(r["prefill_s"], 3) for r in runs[mode]],
                       "device": args.device, "dtype": args.dtype, "quant": args.quant, "weight_format": weight_format,
                       "decoder_shape": args.decoder_shape, "prompt_seconds": args.prompt_seconds,
                       "threads": args.threads, "layers": len(backends[mode].model.model.layers)}
                rows.append(row)
                print(json.dumps(row, ensure_ascii=False), flush=True)
    print(format_rows(rows, _COLUMNS))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


def key_rows(result: Any) -> list[tuple[str, Any, str]]:
    """(metric, value, unit) lines for `bench all` and gpu-check: first audio and prefill with and without reuse."""
    rows: list[tuple[str, Any, str]] = []
    for r in result if isinstance(result, list) else []:
        if isinstance(r, dict):
            where = f"{r.get('layers')} layers, prefix reuse {r.get('prefix_reuse')}"
            rows.append((f"clone first audio ({where})", r.get("first_audio_s"), "s"))
            rows.append((f"clone prefill ({r.get('prompt_tokens')} tokens, {r.get('reused_tokens')} reused)",
                         r.get("prefill_s"), "s"))
    return rows
