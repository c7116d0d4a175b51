"""`stepaudio bench tts`: time to first audio of the Step TTS path at the real shapes (random weights).

The whole synthesizer runs as users run it (StepSynthesizer: tags, TTS-3B prompt, streamed tokens, the
streaming flow + HiFT decoder), with a TTS-3B-shape Step1 model and CosyVoice-300M-shape decoder whose
weights are random (speed does not depend on their values). The LM head is restricted to the audio ids
so that the random model speaks, as the real one does. A built-in voice with a 3 s prompt (125 audio
tokens) is prepared once, as the engine caches it. Per sentence it reports the time to the first audio
chunk and its parts: prompt prefill (time to the first generated token), decoding up to the decoder's
first chunk (first hop + look-ahead tokens), and the decoder's first chunk.

`--prefix-reuse` times each sentence as a later sentence of its voice with the prompt-prefix K/V reuse the
engine does (`on`: another sentence of the voice ran just before, nothing else is cached, so the voice
prompt is reused but not the sentence), without it (`off`: the whole prompt is prefilled), or both,
alternating run by run so that both see the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from stepaudio.eval.bench.table import format_rows

DEFAULT_SENTENCES = ("今天天气真好，我们一起去公园散步吧。", "(高兴1)明天就要放假了，大家都很开心！")
PROMPT_TEXT = "那等我们到海洋馆之后，给妈妈买个礼物，好不好呀？"
WARM_UP = "你好。"  # the first sentence of the voice (kernels warm up; with reuse, the voice prompt is cached)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", action="append", help="sentence to speak (repeatable; default: two ~20-char ones)")
    parser.add_argument("--tokenizer", help="Step tokenizer.model (default: a model folder's or the conformance one)")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="LM weights")
    parser.add_argument("--quant", choices=("auto", "none", "int8", "int8-intmm", "int8-weight-only", "fp16-weights",
                                        "bf16-packed"),
                        default="auto", help="LM weight format (auto: as the Step engine picks for this CPU)")
    parser.add_argument("--flow-dtype", choices=("fp32", "bf16", "int8"), default="fp32")
    parser.add_argument("--flow-guidance", choices=("auto", "parallel", "batched", "both"), default="auto",
                        help="flow guidance pair as two concurrent halves or one batch (both: interleaved A/B)")
    parser.add_argument("--layers", type=int, help="override the LM layer count (to fit memory)")
    parser.add_argument("--shape", default="tts-3b", help="LM shape: tts-3b or a config.json path")
    parser.add_argument("--decoder-yaml", help="take the flow / HiFT shapes from this cosyvoice.yaml "
                        "(default: the CosyVoice-300M-25Hz shapes)")
    parser.add_argument("--first-hop", type=int, help="streaming decoder: ids in the first chunk (default: "
                        "StreamingConfig's)")
    parser.add_argument("--lookahead", type=int, help="streaming decoder: look-ahead ids (default: StreamingConfig's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per sentence (best and median reported)")
    parser.add_argument("--prefix-reuse", choices=("both", "on", "off"), default="both",
                        help="time later sentences of the voice with the voice prompt's K/V reused, without, or both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--omp-wait", choices=("default", "passive"), default="default",
                        help="OpenMP wait policy; passive helps only when other processes share the cores")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")


def find_tokenizer(explicit: str | None) -> Path:
    """The text tokenizer: given, else a Step model folder's, else the conformance copy beside or in the checkout."""
    from stepaudio.errors import CheckpointError

    if explicit:
        if not Path(explicit).is_file():
            raise CheckpointError(f"--tokenizer {explicit}: no such file")
        return Path(explicit)
    candidates = []
    for variable, relative in (("STEPAUDIO_MODEL_DIR", "Step-Audio-TTS-3B/tokenizer.model"),
                               ("STEPAUDIO_CONFORMANCE_DIR", "text/tokenizer.model")):
        if os.environ.get(variable):
            candidates.append(Path(os.environ[variable]) / relative)
    checkout = Path(__file__).resolve().parents[4]
    for shared in (checkout.parent / "shared", checkout / "shared"):  # beside the checkout, or copied into it
        candidates.append(shared / "conformance" / "text" / "tokenizer.model")
    for path in candidates:
        if path.is_file():
            return path
    raise CheckpointError("no Step tokenizer.model found: pass --tokenizer PATH (any Step-Audio model folder has one)")


class TimedLM:
    """An LM backend that records when each generated token left the model (for the latency breakdown) and how
    many prompt tokens its prefix cache supplied; `inner` is set to the NativeLM with or without reuse."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.times: list[float] = []
        self.reused_tokens = 0
        self.on_first_token: Any = None
        self.weight_format = ""  # the LM weight format in use (`auto` resolved)

    def stream(self, prompt: Any, config: Any, cancel: Any = None) -> Iterator[Any]:
        self.prompt_tokens = len(prompt)
        store = getattr(self.inner, "prefix_cache", None)
        before = store.stats().reused_tokens if store is not None else 0
        for index, token in enumerate(self.inner.stream(prompt, config, cancel)):
            self.times.append(time.perf_counter())
            if index == 0 and store is not None:
                self.reused_tokens = store.stats().reused_tokens - before
            if index == 0 and self.on_first_token is not None:
                self.on_first_token()
            yield token


def speaking_head(model: Any) -> None:
    """Zero the head outside the audio ids: a random model then samples audio tokens as the real one does."""
    import torch

    from stepaudio.kernels.packed import PackedBf16Linear, PackedInt8Linear
    from stepaudio.text.vocab import STEP1
    from stepaudio.tokenizer.interleave import FLOW_VOCAB

    first, end = STEP1.audio_offset, STEP1.audio_offset + FLOW_VOCAB
    head = model.lm_head
    if isinstance(head, PackedBf16Linear):  # opaque: build the head again from a restricted random weight
        bound = (3.0 / head.in_features) ** 0.5
        weight = torch.empty(head.out_features, head.in_features, dtype=torch.bfloat16).uniform_(-bound, bound)
        weight[:first] = 0
        weight[end:] = 0
        model.lm_head = PackedBf16Linear(weight)
        return
    if isinstance(head, PackedInt8Linear):
        qweight, scale = head.unpacked()
        qweight[:first] = 0
        qweight[end:] = 0
        head.repack(qweight, scale)
        return
    weight = next(t for name, t in [*head.named_parameters(), *head.named_buffers()]
                  if name in ("weight", "qweight"))
    with torch.no_grad():
        weight[:first] = 0
        weight[end:] = 0


def build_synthesizer(args: argparse.Namespace) -> tuple[Any, TimedLM, dict[str, Any], Any]:
    """The synthesizer over a TimedLM, the NativeLM per `--prefix-reuse` mode (`off` and `on`) sharing one model,
    and the flow estimator (its `parallel_guidance` picks the guidance mode)."""
    import dataclasses

    import torch

    from stepaudio.engines.step.native_lm import DEFAULT_PREFIX_CACHE_MB, NativeLM
    from stepaudio.engines.step.tts import StepSynthesizer, TTSSettings
    from stepaudio.engines.step.voices import PromptVoice, VoiceBank
    from stepaudio.eval.bench.decoder_stream import random_token2wav
    from stepaudio.eval.bench.lm import random_model
    from stepaudio.lm.prefix_cache import prefix_cache_of_size
    from stepaudio.lm.step1.config import Step1Config
    from stepaudio.text.tokenizer import StepTokenizer
    from stepaudio.text.vocab import STEP1

    tokenizer = StepTokenizer(find_tokenizer(args.tokenizer))
    cfg = Step1Config.resolve(args.shape)
    if args.layers:
        cfg = dataclasses.replace(cfg, num_hidden_layers=args.layers)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    quant = args.quant
    if quant == "auto":
        from stepaudio.lm.quant import resolve_weight_format

        quant = resolve_weight_format("auto", args.device, dtype)
    model = random_model(cfg, dtype, quant, torch.device(args.device))
    speaking_head(model)
    backends = {"off": NativeLM(model=model, tokenizer=tokenizer),
                "on": NativeLM(model=model, tokenizer=tokenizer,
                               prefix_cache=prefix_cache_of_size(DEFAULT_PREFIX_CACHE_MB))}
    lm = TimedLM(backends["off"])
    lm.weight_format = quant
    shapes: dict[str, Any] = {}
    if args.decoder_yaml:
        from stepaudio.decoder.cosyvoice1.flow_config import flow_config_from_yaml
        from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig

        shapes = {"flow_config": flow_config_from_yaml(args.decoder_yaml),
                  "hift_config": HiFTConfig.from_cosyvoice_yaml(args.decoder_yaml)}
    t2w, prompt = random_token2wav(args.device, args.flow_dtype, seed=args.seed, **shapes)
    voices = VoiceBank(audio_tokenizer=_no_tokenizer, decoder=lambda: t2w, speakers_dir=None)
    lm_ids = tuple(int(i) + STEP1.audio_offset for i in prompt.flow_tokens.tolist())
    voices.add("Tingting", PromptVoice(name="Tingting", prompt_text=PROMPT_TEXT, lm_ids=lm_ids, features=prompt))
    synthesizer = StepSynthesizer(tokenizer, lambda: lm, voices, lambda music: t2w,
                                  TTSSettings(seed=args.seed, stream_config=stream_config(args)))
    return synthesizer, lm, backends, t2w.flow.estimator


def stream_config(args: argparse.Namespace) -> Any:
    """The streaming decoder's chunking: StreamingConfig's defaults, with `--first-hop` / `--lookahead` if given."""
    from stepaudio.decoder.cosyvoice1.token2wav import StreamingConfig

    given = {"first_hop_tokens": getattr(args, "first_hop", None), "lookahead_tokens": getattr(args, "lookahead", None)}
    return StreamingConfig(**{name: value for name, value in given.items() if value is not None})


def _no_tokenizer() -> Any:
    raise RuntimeError("the benchmark voice is prepared up front")


def prime_voice(synthesizer: Any, lm: TimedLM, text: str) -> None:
    """Forget every cached prefix, then prefill one other sentence of the voice (cancelled at its first token):
    what a voice holds when a later sentence comes, without that sentence itself."""
    from stepaudio.engines.base import CancelToken

    lm.inner.prefix_cache.clear()
    cancel = CancelToken()
    lm.on_first_token = cancel.cancel
    try:
        for _ in synthesizer.synthesize(text, "Tingting", cancel=cancel):
            pass
    finally:
        lm.on_first_token = None


def time_first_audio(synthesizer: Any, lm: TimedLM, text: str) -> dict[str, Any]:
    """One synthesis up to its first audio chunk; the rest of the segment is cancelled."""
    from stepaudio.engines.base import CancelToken

    cancel = CancelToken()
    lm.times = []
    lm.reused_tokens = 0
    start = time.perf_counter()
    chunks = synthesizer.synthesize(text, "Tingting", cancel=cancel)
    first = next(c for c in chunks if c.samples.size)
    at = time.perf_counter()
    cancel.cancel()
    for _ in chunks:
        pass
    first_token = lm.times[0] - start
    hop_tokens = len([t for t in lm.times if t <= at])
    last_needed = lm.times[min(hop_tokens, len(lm.times)) - 1]
    return {"first_audio_s": at - start, "prefill_s": first_token, "prompt_tokens": lm.prompt_tokens,
            "reused_tokens": lm.reused_tokens,
            "decode_s": last_needed - lm.times[0], "decoded_tokens": hop_tokens,
            "decoder_first_chunk_s": at - last_needed, "first_chunk_audio_s": first.samples.size / first.sample_rate}


_COLUMNS = (("text", "{}"), ("chars", "{}"), ("prefix_reuse", "{}"), ("flow_guidance", "{}"), ("prompt_tokens", "{}"),
            ("reused_tokens", "{}"), ("first_audio_s", "{:.2f}"),
            ("first_audio_median_s", "{:.2f}"), ("prefill_s", "{:.2f}"), ("decode_s", "{:.2f}"),
            ("decoded_tokens", "{}"), ("decoder_first_chunk_s", "{:.2f}"))


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    return format_rows(rows, _COLUMNS)


def run(args: argparse.Namespace) -> int:
    if args.omp_wait == "passive" and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    texts = args.text or list(DEFAULT_SENTENCES)
    print(f"building TTS-3B-shape LM ({args.dtype}, {args.quant}) and CosyVoice-300M-shape decoder "
          f"({args.flow_dtype}) with random weights on {args.device} ...", flush=True)
    synthesizer, lm, backends, estimator = build_synthesizer(args)
    modes = ("off", "on") if args.prefix_reuse == "both" else (args.prefix_reuse,)
    guidances = ("batched", "parallel") if args.flow_guidance == "both" else (args.flow_guidance,)
    with torch.inference_mode():
        time_first_audio(synthesizer, lm, WARM_UP)  # warm-up: kernels, allocator, voice
        rows = []
        for text in texts:
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {(m, g): [] for m in modes for g in guidances}
            for _ in range(max(1, args.repeats)):
                for mode in modes:
                    for guidance in guidances:
                        estimator.parallel_guidance = {"auto": None, "parallel": True, "batched": False}[guidance]
                        lm.inner = backends[mode]
                        if mode == "on":
                            prime_voice(synthesizer, lm, WARM_UP if text != WARM_UP else DEFAULT_SENTENCES[0])
                        runs[mode, guidance].append(time_first_audio(synthesizer, lm, text))
            for (mode, guidance), timed in runs.items():
                best = min(timed, key=lambda r: r["first_audio_s"])
                row = {"text": text, "chars": len(text), "prefix_reuse": mode, "flow_guidance": guidance, **best,
                       "first_audio_median_s": statistics.median(r["first_audio_s"] for r in timed),
                       "first_audio_all_s": [round(r["first_audio_s"], 3) for r in timed],
                       "decoder_first_chunk_all_s": [round(r["decoder_first_chunk_s"], 3) for r in timed],
                       "prefill_all_s": [round(r["prefill_s"], 3) for r in timed],
                       "device": args.device, "dtype": args.dtype, "quant": args.quant,
                       "weight_format": lm.weight_format, "flow_dtype": args.flow_dtype, "threads": args.threads,
                       "first_hop": stream_config(args).first_hop_tokens,
                       "lookahead": stream_config(args).lookahead_tokens,
                       "layers": len(backends[mode].model.model.layers)}
                rows.append(row)
                print(json.dumps(row, ensure_ascii=False), flush=True)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2, ensure_ascii=False)
    return 0
