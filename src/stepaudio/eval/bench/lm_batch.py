"""`stepaudio bench lm-batch`: N concurrent Step1 requests decoded together (`lm.batcher`) or each alone.

Both ways run in one process on one random model (default: the TTS-3B shape cut to a few layers), alternating,
so a shared machine's load falls on both alike. Each request has its own prompt length; all are submitted at
once from their own threads, as concurrent sessions would. Reported per way: the wall time of the whole set,
tokens/s over it, and each request's first-token time (submit to first token: queueing + prefill). The tokens
of both ways are compared (greedy: they must be the same). On CUDA both ways replay CUDA graphs, as NativeLM
does (requests alone then run one at a time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import threading
import time
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", default="tts-3b", help="named shape (tts-3b, chat-130b) or a config.json path")
    parser.add_argument("--layers", type=int, default=4, help="layer count (the full model's is slow to build)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--quant", default="auto",
                        help="weight format (auto: what the engine picks for this CPU; none, fp16-weights, ...)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", default="1,4", help="comma-separated concurrent request counts")
    parser.add_argument("--rows", type=int, default=4, help="batch rows (lm_batch)")
    parser.add_argument("--prompt", type=int, default=96, help="mean prompt tokens (each request differs)")
    parser.add_argument("--new", type=int, default=32, help="new tokens per request")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # threads sleep instead of spinning on shared cores
    import torch

    from stepaudio.eval.bench.lm import random_model
    from stepaudio.lm.quant import resolve_weight_format
    from stepaudio.lm.step1.config import Step1Config

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    cfg = dataclasses.replace(Step1Config.resolve(args.shape), num_hidden_layers=args.layers)
    quant = resolve_weight_format(args.quant, device, dtype)
    model = random_model(cfg, dtype, quant, device)
    results: dict[str, Any] = {"shape": args.shape, "layers": args.layers, "dtype": args.dtype, "quant": quant,
                               "device": str(device), "threads": args.threads, "rows": args.rows,
                               "prompt": args.prompt, "new": args.new, "runs": []}
    for n in (int(x) for x in args.requests.split(",")):
        prompts = _prompts(n, args.prompt, cfg.vocab_size)
        best: dict[str, dict[str, Any]] = {}
        tokens: dict[str, list[list[int]]] = {}
        for _ in range(args.repeats):
            for way in ("alone", "batched"):
                timing, out = measure(model, prompts, args.new, way, args.rows)
                tokens[way] = out
                if way not in best or timing["wall_s"] < best[way]["wall_s"]:
                    best[way] = timing
        row = {"requests": n, **{f"{way}_{k}": v for way, t in best.items() for k, v in t.items()},
               "same_tokens": tokens["alone"] == tokens["batched"]}
        results["runs"].append(row)
        print(f"{n} requests x {args.new} tokens | alone: {best['alone']['tok_s']:6.1f} tok/s, first token mean "
              f"{best['alone']['first_token_mean_s']:.3f} s max {best['alone']['first_token_max_s']:.3f} s | "
              f"batched ({args.rows} rows): {best['batched']['tok_s']:6.1f} tok/s, first token mean "
              f"{best['batched']['first_token_mean_s']:.3f} s max {best['batched']['first_token_max_s']:.3f} s, "
              f"mean batch {best['batched']['mean_batch']:.2f} | same tokens: {row['same_tokens']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


def _prompts(n: int, mean: int, vocab: int) -> list[list[int]]:
    """n prompts of different lengths around `mean` (deterministic ids)."""
    import torch

    gen = torch.Generator().manual_seed(n)
    lengths = [max(1, mean + (i - n // 2) * max(1, mean // 4)) for i in range(n)]
    return [torch.randint(3, vocab, (length,), generator=gen).tolist() for length in lengths]


def measure(
    model: Any, prompts: list[list[int]], new: int, way: str, rows: int
) -> tuple[dict[str, Any], list[list[int]]]:
    """All prompts submitted at once, each from its own thread; timings and each request's tokens."""
    import torch

    from stepaudio.lm.accel import StaticDecoder
    from stepaudio.lm.batcher import BatchConfig, Batcher
    from stepaudio.lm.generate import GenerationConfig, TokenStream

    config = GenerationConfig(max_new_tokens=new, stop_ids=())
    graphs = StaticDecoder.factory(model, use_graph=True) if model.device.type == "cuda" else None  # as NativeLM
    batcher = Batcher(model, BatchConfig(rows=rows), decode_fn=graphs) if way == "batched" else None
    first: list[float] = [0.0] * len(prompts)
    out: list[list[int]] = [[] for _ in prompts]
    start = time.perf_counter()

    errors: list[str] = []
    # As NativeLM: requests alone replaying CUDA graphs run one at a time (a capture fails beside other work).
    serial = threading.Lock() if graphs is not None and batcher is None else contextlib.nullcontext()

    def one(i: int) -> None:
        try:
            with serial, torch.inference_mode():
                stream = (batcher.stream(prompts[i], config) if batcher
                          else TokenStream(model, [prompts[i]], config, decode_fn=graphs))
                for step in stream:
                    if not out[i]:
                        first[i] = time.perf_counter() - start
                    out[i].append(step.tokens[0])
        except Exception as error:  # reported, not hidden: concurrent requests must not break each other
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        print(f"{way}: {len(errors)} of {len(prompts)} requests failed: {errors[0][:300]}")
    timing: dict[str, Any] = {"errors": len(errors), "wall_s": wall, "tok_s": sum(len(o) for o in out) / wall,
                              "first_token_mean_s": statistics.fmean(first), "first_token_max_s": max(first)}
    if batcher is not None:
        core = batcher.core
        timing["mean_batch"] = core.row_steps / max(1, core.steps)
        batcher.close()
    return timing, out
