"""`stepaudio bench step2`: Step-Audio 2 mini speed at the real shapes, random weights (speed ignores values).

* LM: the Qwen2.5-7B-shaped decoder (q/k/v biases, 158720-token head) in each weight format the native engine
  runs (`lm.quant`: bf16 as `auto` resolves it on this machine, fp32, int8, int4 where offered): prefill and
  one-token decode speed beside the memory-bandwidth bound (a decode step reads every weight but the
  embedding once: read bandwidth / weight bytes; `bench lm`'s copy bandwidth is reported too). On the CPU
  the default builds fewer layers than 28 and scales decode to full depth at the same fraction of the bound
  (like `bench lm`); on CUDA all 28 layers, eager and with a captured CUDA graph.
* token2wav: the CosyVoice2 flow (DiT estimator, 10 Euler steps with CFG) and HiFT at 24 kHz with a 3 s
  voice prompt: offline RTF, and streamed as the reference streams (25 tokens + 3 look-ahead a chunk) with
  tokens arriving as fast as it takes them: time to the first chunk and the streaming RTF.

The defaults are sized to finish in about half a minute on one GPU (`make gpu-check` runs `--device cuda`) and
in a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stepaudio.eval.bench.table import format_rows

PROMPT_SECONDS = 3.0
TOKEN_RATE = 25  # CosyVoice2 speech tokens a second
BASE_FORMATS = ("bf16", "fp32", "fp16-weights", "bf16-packed", "int8", "int8-weight-only")


def weight_formats() -> tuple[str, ...]:
    """What `--formats` takes: the float dtypes and every CPU weight format `lm.quant` offers now."""
    from stepaudio.lm.quant import WEIGHT_FORMATS

    return (*BASE_FORMATS, *(f for f in WEIGHT_FORMATS if f not in BASE_FORMATS and f not in ("none", "auto")))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--parts", nargs="+", default=["lm", "token2wav"], choices=["lm", "token2wav"])
    parser.add_argument("--formats", nargs="+", default=None, choices=weight_formats(), metavar="FORMAT",
                        help="LM weight formats (default: cpu bf16 int8 [int4]; cuda bf16); bf16 is the bf16 "
                        f"checkpoint in the format `auto` picks here. Choices: {', '.join(weight_formats())}")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers built (default: cpu 2, cuda 28)")
    parser.add_argument("--prefill", type=int, default=None, help="prompt tokens (default: cpu 32, cuda 256)")
    parser.add_argument("--decode", type=int, default=None, help="decode steps per repeat (default: cpu 6, cuda 48)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats after one warm-up")
    parser.add_argument("--no-cuda-graph", action="store_true", help="on CUDA, skip the CUDA-graph decode row")
    parser.add_argument("--seconds", type=float, nargs="+", default=None,
                        help="token2wav audio seconds (default: cpu 1.2, the first chunk and a last one; cuda 5)")
    parser.add_argument("--t2w-dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="flow dtype (HiFT stays fp32, as the reference runs it)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bandwidth-mib", type=int, default=None,
                        help="bandwidth buffer size (default: cpu 512, cuda 2048)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the device-dependent defaults."""
    from stepaudio.lm.quant import WEIGHT_FORMATS

    cuda = args.device == "cuda"
    values = {"formats": ["bf16"] if cuda else ["bf16", "int8", *(["int4"] if "int4" in WEIGHT_FORMATS else [])],
              "layers": 28 if cuda else 2, "prefill": 256 if cuda else 32, "decode": 48 if cuda else 6,
              "seconds": [5.0] if cuda else [1.2], "bandwidth_mib": 2048 if cuda else 512}
    for name, value in values.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def run(args: argparse.Namespace) -> int:
    import torch

    from stepaudio.errors import UnsupportedError

    args = defaults(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("--device cuda: this torch sees no CUDA GPU")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result: dict[str, Any] = {"device": str(device), "threads": args.threads,
                              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    if "lm" in args.parts:
        result["lm"] = lm_rows(args, device)
        print(format_rows(result["lm"], LM_COLUMNS), flush=True)
    if "token2wav" in args.parts:
        result["token2wav"] = [row for dtype in args.t2w_dtypes
                               for row in token2wav_rows(args.seconds, device, dtype, args.seed)]
        print(format_rows(result["token2wav"], T2W_COLUMNS), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


# LM ---------------------------------------------------------------------------------------------------------


def lm_rows(args: argparse.Namespace, device: Any, shape: Any = None) -> list[dict[str, Any]]:
    """One row per weight format (and, on CUDA, a CUDA-graph row per format) at `shape` (default the real
    one) cut to `args.layers`; the memory bandwidth, measured last (after the models are freed), bounds them."""
    import dataclasses
    import gc

    import torch

    from stepaudio.eval.bench.lm import copy_bandwidth, decode_weight_bytes, peak_memory
    from stepaudio.lm.qwen2.config import STEP_AUDIO2_MINI

    full = shape or STEP_AUDIO2_MINI
    cfg = dataclasses.replace(full, num_hidden_layers=min(args.layers, full.num_hidden_layers))
    rows = []
    for fmt in args.formats:
        model, applied = random_qwen2(cfg, fmt, device, args.seed)
        weight_bytes = decode_weight_bytes(model)
        layer_bytes = decode_weight_bytes(model.model.layers[0])
        graphs = [False, True] if device.type == "cuda" and not args.no_cuda_graph else [False]
        for graph in graphs:
            row: dict[str, Any] = {"format": fmt, "applied": applied, "layers": cfg.num_hidden_layers,
                                   "full_depth_layers": full.num_hidden_layers, "cuda_graph": graph,
                                   "decode_weight_bytes": weight_bytes,
                                   "full_depth_weight_bytes": weight_bytes + (full.num_hidden_layers
                                                                              - cfg.num_hidden_layers) * layer_bytes}
            row |= time_lm(model, args.prefill, args.decode, args.repeats, device, graph)
            row["peak_memory_bytes"] = peak_memory(device)
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    read = read_bandwidth(device, args.bandwidth_mib)
    copy = copy_bandwidth(device, args.bandwidth_mib)
    for row in rows:
        row["read_bandwidth_bytes_per_s"] = read
        row["copy_bandwidth_bytes_per_s"] = copy
        row["decode_bound_tok_s"] = read / row["decode_weight_bytes"]
        row["decode_fraction_of_bound"] = row["decode_tok_s"] / row["decode_bound_tok_s"]
        row["full_depth_decode_bound_tok_s"] = read / row["full_depth_weight_bytes"]
        # the same fraction of the bound at full depth: per-layer bytes scale, the head does not
        row["full_depth_decode_tok_s"] = (row["decode_tok_s"] * row["decode_weight_bytes"]
                                          / row["full_depth_weight_bytes"])
    return rows


def read_bandwidth(device: Any, mib: int) -> float:
    """Bytes read per second by a sum over a `mib` MiB buffer (median of 5): what a decode step does with its
    weights. The copy bandwidth (`bench lm`'s bound) also writes, and a CPU may read faster than it copies."""
    import torch

    sync = _sync(device)
    buffer = torch.ones(mib * (1 << 20) // 4, dtype=torch.float32, device=device)
    buffer.sum()
    times = []
    for _ in range(5):
        sync()
        start = time.perf_counter()
        buffer.sum()
        sync()
        times.append(time.perf_counter() - start)
    return buffer.numel() * 4 / statistics.median(times)


def random_qwen2(cfg: Any, fmt: str, device: Any, seed: int = 0) -> tuple[Any, str]:
    """A Qwen2 decoder of shape `cfg` with uniform random weights (unit-variance outputs) in weight format
    `fmt`, and the `lm.quant` format applied. The embedding table stays zero but for the rows the bench feeds
    (a decode step reads one row of it: no need to fill 1 GB)."""
    import torch
    from torch import nn

    from stepaudio.lm.quant import apply_weight_format, resolve_weight_format
    from stepaudio.lm.qwen2.model import Qwen2ForCausalLM

    dtype = torch.float32 if fmt == "fp32" else torch.bfloat16
    generator = torch.Generator(device=device).manual_seed(seed)
    model = Qwen2ForCausalLM(cfg, device="meta", dtype=dtype)
    for name, param in list(model.named_parameters()):
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        if "embed_tokens" in name:
            value = torch.zeros(param.shape, dtype=dtype, device=device)
            value[:VOCAB_USED].uniform_(-1.0, 1.0, generator=generator)
        elif "norm" in module_name:
            value = torch.ones(param.shape, dtype=dtype, device=device)
        elif attr == "bias":
            value = torch.empty(param.shape, dtype=dtype, device=device).uniform_(-0.02, 0.02, generator=generator)
        else:
            bound = (3.0 / param.shape[1]) ** 0.5
            value = torch.empty(param.shape, dtype=dtype, device=device).uniform_(-bound, bound, generator=generator)
        module._parameters[attr] = nn.Parameter(value, requires_grad=False)
    model.inv_freq = model.inv_freq.to(device)
    applied = resolve_weight_format("auto", device, dtype) if fmt in ("bf16", "fp32") else fmt
    apply_weight_format(model, applied)
    return model.eval(), applied


VOCAB_USED = 1024  # the bench's prompt and decode ids come from the first rows


def time_lm(model: Any, prefill: int, decode: int, repeats: int, device: Any, graph: bool) -> dict[str, float]:
    """Prefill: median over repeats; decode: median over every single-token step; one warm-up run first."""
    import torch

    from stepaudio.lm.accel import StaticDecoder
    from stepaudio.lm.protocol import new_cache

    sync = _sync(device)
    cache = new_cache(model, 1, prefill + decode + 1)
    ids = torch.randint(0, VOCAB_USED, (1, prefill), device=device)
    positions = torch.arange(prefill, device=device)[None]
    valid = torch.ones(1, prefill, dtype=torch.bool, device=device)
    one = torch.ones(1, 1, dtype=torch.bool, device=device)
    step: Callable[..., Any] = (StaticDecoder(model, cache, use_graph=True) if graph
                                else (lambda i, p, v: model.logits(model.hidden(model.embed(i), p, cache, v)[:, -1])))
    prefill_times: list[float] = []
    token_times: list[float] = []
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            cache.reset()
            sync()
            start = time.perf_counter()
            logits = model.logits(model.hidden(model.embed(ids), positions, cache, valid)[:, -1])
            sync()
            elapsed = time.perf_counter() - start
            token = logits.argmax(-1).remainder(VOCAB_USED)[:, None]
            times = []
            for i in range(decode):
                position = torch.full((1, 1), prefill + i, device=device)
                start = time.perf_counter()
                token = step(token, position, one).argmax(-1).remainder(VOCAB_USED)[:, None]
                sync()
                times.append(time.perf_counter() - start)
            if repeat > 0:
                prefill_times.append(elapsed)
                token_times += times
    decode_s = statistics.median(token_times)
    return {"prefill_tokens": prefill, "prefill_tok_s": prefill / statistics.median(prefill_times),
            "decode_ms_per_token": 1e3 * decode_s, "decode_tok_s": 1.0 / decode_s,
            "decode_best_tok_s": 1.0 / min(token_times)}


def _sync(device: Any) -> Callable[[], None]:
    import torch

    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


# token2wav --------------------------------------------------------------------------------------------------


def random_token2wav(device: Any, dtype: str = "fp32", seed: int = 0, *, flow_config: Any = None,
                     hift_config: Any = None) -> tuple[Any, Any]:
    """A Token2Wav at the release shapes (flow.yaml's DiT and encoder, `HiFTGenerator()` at 24 kHz) with random
    weights, and a random 3 s voice prompt."""
    import torch

    from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator
    from stepaudio.decoder.cosyvoice2.config import FlowConfig, hift24k_config
    from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
    from stepaudio.decoder.cosyvoice2.hift import HiFT24k
    from stepaudio.decoder.cosyvoice2.prompt import Prompt
    from stepaudio.decoder.cosyvoice2.token2wav import Token2Wav

    torch.manual_seed(seed)
    flow = CausalMaskedDiffWithXvec(flow_config or FlowConfig()).to(
        device=device, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    hift = HiFT24k(HiFTGenerator(hift_config or hift24k_config()).to(device).eval())
    t2w = Token2Wav(flow, hift, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    n_prompt = round(PROMPT_SECONDS * TOKEN_RATE)
    prompt = Prompt(torch.randint(0, flow.config.vocab_size, (n_prompt,), generator=generator),
                    torch.randn(n_prompt * flow.config.up_rate, 80, generator=generator) - 5.0,
                    torch.randn(192, generator=generator))
    return t2w, prompt


def token2wav_rows(durations: Sequence[float], device: Any, dtype: str, seed: int = 0, *, flow_config: Any = None,
                   hift_config: Any = None) -> list[dict[str, Any]]:
    """Offline and streamed decoding of each duration (a short warm-up of both first); the configs replace the
    release shapes (tests)."""
    import torch

    t2w, prompt = random_token2wav(device, dtype, seed, flow_config=flow_config, hift_config=hift_config)
    sync = _sync(device)
    generator = torch.Generator().manual_seed(seed + 2)
    vocab = t2w.flow.config.vocab_size
    warm = torch.randint(0, vocab, (8,), generator=generator).tolist()
    t2w(warm, prompt)
    _stream(t2w, prompt, warm, sync)
    rows = []
    for seconds in durations:
        tokens = torch.randint(0, vocab, (round(seconds * TOKEN_RATE),), generator=generator).tolist()
        sync()
        start = time.perf_counter()
        wav = t2w(tokens, prompt)
        sync()
        offline = time.perf_counter() - start
        audio_s = len(wav) / t2w.sample_rate
        row: dict[str, Any] = {"dtype": dtype, "device": str(device), "audio_s": audio_s, "tokens": len(tokens),
                               "offline_s": offline, "offline_rtf": offline / audio_s}
        row |= _stream(t2w, prompt, tokens, sync)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _stream(t2w: Any, prompt: Any, tokens: Sequence[int], sync: Callable[[], None]) -> dict[str, Any]:
    """Push tokens one at a time; when the first chunk is out, and the whole stream's wall time."""
    rate = t2w.sample_rate
    first: float | None = None
    samples = chunks = 0
    sync()
    start = time.perf_counter()
    stream = t2w.stream(prompt)
    for token in tokens:
        pcm = stream.push([token])
        if pcm.size:
            sync()
            first = first if first is not None else time.perf_counter() - start
            samples, chunks = samples + pcm.size, chunks + 1
    pcm = stream.finish()
    sync()
    total = time.perf_counter() - start
    samples, chunks = samples + pcm.size, chunks + (1 if pcm.size else 0)
    return {"first_chunk_s": first if first is not None else total, "chunks": chunks, "stream_s": total,
            "stream_rtf": total / max(samples / rate, 1e-9)}


LM_COLUMNS = (("format", "{}"), ("applied", "{}"), ("layers", "{}"), ("cuda_graph", "{}"),
              ("prefill_tok_s", "{:.1f}"), ("decode_tok_s", "{:.2f}"), ("decode_bound_tok_s", "{:.2f}"),
              ("decode_fraction_of_bound", "{:.0%}"), ("full_depth_decode_tok_s", "{:.2f}"),
              ("full_depth_decode_bound_tok_s", "{:.2f}"))
T2W_COLUMNS = (("dtype", "{}"), ("device", "{}"), ("audio_s", "{:.2f}"), ("offline_rtf", "{:.3f}"),
               ("first_chunk_s", "{:.3f}"), ("chunks", "{}"), ("stream_rtf", "{:.3f}"))


def key_rows(result: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """(metric, value, unit) lines for `bench all` and gpu-check: 28-layer decode and its bound per format,
    token2wav RTF and first chunk."""
    rows: list[tuple[str, Any, str]] = []
    for r in result.get("lm", []):
        label = f"{r['format']}{'/' + r['applied'] if r['applied'] not in ('none', r['format']) else ''}" \
                f"{' CUDA graph' if r.get('cuda_graph') else ''}"
        rows.append((f"7B decode tok/s ({label}, {r['full_depth_layers']} layers)", r.get("full_depth_decode_tok_s"),
                     "tok/s"))
        rows.append((f"7B decode bound ({label})", r.get("full_depth_decode_bound_tok_s"), "tok/s"))
        rows.append((f"7B prefill tok/s ({label})", r.get("prefill_tok_s"), "tok/s"))
    for r in result.get("token2wav", []):
        rows.append((f"token2wav {r['dtype']} offline RTF ({r['audio_s']:.0f} s)", r.get("offline_rtf"), ""))
        rows.append((f"token2wav {r['dtype']} first chunk", r.get("first_chunk_s"), "s"))
        rows.append((f"token2wav {r['dtype']} streaming RTF", r.get("stream_rtf"), ""))
    return rows
