"""`stepaudio bench lm`: Step1 prefill/decode speed and peak memory beside the memory-bandwidth bound.

Weights are random (speed does not depend on their values). Decoding one token reads every weight
except the embedding once, so `copy bandwidth / weight bytes` bounds decode tokens/s; the copy
bandwidth is measured in the same run with buffers far larger than the CPU caches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", default="tts-3b", help="named shape (tts-3b, chat-130b) or a config.json path")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--quant", default="none",
                        choices=["none", "int8", "int8-intmm", "int8-weight-only", "int4", "fp16-weights",
                                 "bf16-packed"],
                        help="int8: what the engine uses (FBGEMM-packed on x86 CPUs); int8-intmm: torch._int_mm; "
                        "int4: groups of 128 (head int8 on CPU, as the engine)")
    parser.add_argument("--int4-backend", default="auto", choices=["auto", "torch", "ort", "ort-exact", "avx2"],
                        help="CPU int4 kernel of the model's layers (kernels.int4.BACKENDS); --kernels times each "
                        "one that runs here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--fuse", action="store_true", help="fuse q|k|v and gate|up projections")
    parser.add_argument("--layers", type=int, default=None, help="override the layer count (to fit memory)")
    parser.add_argument("--prefill", type=int, default=128, help="prompt tokens")
    parser.add_argument("--decode", type=int, default=16, help="decode steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bandwidth-mib", type=int, default=1024, help="size of each copy buffer")
    parser.add_argument("--cuda-graph", action="store_true", help="decode with a captured CUDA graph")
    parser.add_argument("--compile", default=None, metavar="MODE", help="torch.compile the decode step")
    parser.add_argument("--kernels", action="store_true", help="also time batch-1 matmul kernels (GB/s)")
    parser.add_argument(
        "--omp-wait", default="passive", choices=["passive", "default"],
        help="OpenMP wait policy; passive (threads sleep instead of spinning) is several times faster "
        "when other processes share the cores",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    import sys

    if args.omp_wait == "passive" and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when OpenMP loads with torch
    import torch

    from stepaudio.kernels.int4 import Int4Linear
    from stepaudio.lm.step1.config import Step1Config

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = Step1Config.resolve(args.shape)
    full_layers = cfg.num_hidden_layers
    if args.layers is not None:
        cfg = dataclasses.replace(cfg, num_hidden_layers=args.layers)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]

    model = random_model(cfg, dtype, args.quant, device, fuse=args.fuse, int4_backend=args.int4_backend)
    weight_bytes = decode_weight_bytes(model)
    model_layer_bytes = decode_weight_bytes(model.model.layers[0])
    results: dict[str, Any] = {
        "shape": args.shape, "layers": cfg.num_hidden_layers, "dtype": args.dtype, "quant": args.quant,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "device": str(device), "threads": args.threads, "fused": args.fuse, "decode_weight_bytes": weight_bytes,
        "int4_backends": sorted({m.backend for m in model.modules() if isinstance(m, Int4Linear)}),
    }
    timings = measure(model, args, device)
    results |= timings
    results["peak_memory_bytes"] = peak_memory(device)
    del model
    bandwidth = copy_bandwidth(device, args.bandwidth_mib)
    results["copy_bandwidth_bytes_per_s"] = bandwidth
    results["decode_bound_tok_s"] = bandwidth / weight_bytes
    results["decode_fraction_of_bound"] = results["decode_tok_s"] / results["decode_bound_tok_s"]
    results["decode_best_fraction_of_bound"] = results["decode_best_tok_s"] / results["decode_bound_tok_s"]
    if cfg.num_hidden_layers != full_layers:
        # Same fraction of the bound at full depth: per-layer bytes scale, head and norms do not.
        per_layer = model_layer_bytes
        full_bytes = weight_bytes + (full_layers - cfg.num_hidden_layers) * per_layer
        results["full_depth_layers"] = full_layers
        results["full_depth_decode_weight_bytes"] = full_bytes
        results["full_depth_estimated_decode_tok_s"] = results["decode_tok_s"] * weight_bytes / full_bytes
    print_table(results)
    if args.kernels:
        from stepaudio.eval.bench.lm_kernels import kernel_table
        from stepaudio.kernels.int4 import available_backends

        int4_backends = tuple(b for b in available_backends() if b != "torch") or ("auto",)
        table = kernel_table(cfg.intermediate_size, cfg.hidden_size, int4_backends=int4_backends)
        results["kernels_bytes_per_s"] = table
        for name, rate in table.items():
            print(f"kernel {name:<44} {rate / 1e9:6.1f} GB/s  ({100 * rate / bandwidth:.0f} % of copy)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


def random_model(cfg: Any, dtype: Any, quant: str, device: Any, *, fuse: bool = False,
                 int4_backend: str = "auto") -> Any:
    """A Step1 model with uniform random weights (unit-variance outputs), built without a float copy
    (`int4_backend`: the CPU kernel of int4 layers)."""
    import torch
    from torch import nn

    from stepaudio.kernels.int4 import Int4Linear
    from stepaudio.kernels.linear import HalfLinear, Int8Linear
    from stepaudio.kernels.packed import PackedBf16Linear, PackedInt8Linear, fbgemm_available
    from stepaudio.lm.step1.fuse import fuse_projections
    from stepaudio.lm.step1.model import Step1ForCausalLM

    model = Step1ForCausalLM(cfg, device="meta", dtype=dtype)
    if fuse:
        fuse_projections(model)  # on the meta device: no memory yet
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name, linear in linears:
        n_out, n_in = linear.weight.shape
        bound = (3.0 / n_in) ** 0.5
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        on_cpu = torch.device(device).type == "cpu"
        head = name.endswith("lm_head")
        if quant == "int4" and not head:  # as lm.quant.quantize_int4: 4-bit groups of 128, no bias in Step1
            q = torch.randint(-8, 8, (n_out, n_in), dtype=torch.int8, device=device)
            scales = torch.full((n_out, n_in // 128), bound / 7.5, device=device)
            setattr(parent, child, Int4Linear.from_groups(q, scales, None, 128, backend=int4_backend))
        elif quant == "none" or (quant == "int4" and not on_cpu):  # int4 leaves the head as loaded off the CPU
            weight = torch.empty(n_out, n_in, dtype=dtype, device=device).uniform_(-bound, bound)
            linear.weight = nn.Parameter(weight, requires_grad=False)
        elif quant == "fp16-weights":
            weight = torch.empty(n_out, n_in, dtype=torch.float16, device=device).uniform_(-bound, bound)
            setattr(parent, child, HalfLinear(weight))
        elif quant == "bf16-packed":
            weight = torch.empty(n_out, n_in, dtype=torch.bfloat16, device=device).uniform_(-bound, bound)
            setattr(parent, child, PackedBf16Linear(weight))
        else:
            q = torch.empty(n_out, n_in, dtype=torch.int8, device=device).random_(-127, 128)
            scale = torch.full((n_out,), bound / 127.0, device=device)
            if quant in ("int8", "int4") and on_cpu and fbgemm_available():
                setattr(parent, child, PackedInt8Linear(q, scale))
                continue
            mode = "weight-only" if quant == "int8-weight-only" else "dynamic"
            setattr(parent, child, Int8Linear(q, scale, mode))
    for name, param in list(model.named_parameters()):
        if param.device.type == "meta":
            value = torch.ones(param.shape, dtype=dtype, device=device)
            if "embed_tokens" in name:
                value.uniform_(-1.0, 1.0)
            module_name, _, attr = name.rpartition(".")
            model.get_submodule(module_name)._parameters[attr] = nn.Parameter(value, requires_grad=False)
    model.alibi_slopes = model.alibi_slopes.to(device)
    return model.eval()


def decode_weight_bytes(model: Any) -> int:
    """Bytes one decode step must read: every weight (and int8 scale) except the embedding table."""
    from stepaudio.kernels.int4 import Int4Linear
    from stepaudio.kernels.packed import PackedBf16Linear, PackedInt8Linear

    total = sum(m.weight_bytes for m in model.modules()
                if isinstance(m, PackedInt8Linear | PackedBf16Linear | Int4Linear))
    counted = {id(t) for m in model.modules() if isinstance(m, Int4Linear) for t in m.buffers()}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if "embed_tokens" not in name and name != "alibi_slopes" and id(tensor) not in counted:
            total += tensor.numel() * tensor.element_size()
    return int(total)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model: Any, args: argparse.Namespace, device: Any) -> dict[str, float]:
    """Prefill: median over `repeats` runs; decode: median over every single-token step (robust to
    other processes taking the CPU now and then). Best times are kept too. One warm-up run first."""
    import torch

    from stepaudio.lm.accel import StaticDecoder
    from stepaudio.lm.protocol import new_cache

    cfg = model.config
    cache = new_cache(model, 1, args.prefill + args.decode + 1)
    ids = torch.randint(0, cfg.vocab_size, (1, args.prefill), device=device)
    last = torch.tensor([args.prefill - 1], device=device)
    use_static = args.cuda_graph or args.compile is not None
    decoder = StaticDecoder(model, cache, use_graph=args.cuda_graph, compile_mode=args.compile)
    step = decoder if use_static else _eager_step(model, cache)
    prefill_times: list[float] = []
    token_times: list[float] = []
    with torch.inference_mode():
        for repeat in range(args.repeats + 1):
            cache.reset()
            _sync(device)
            start = time.perf_counter()
            logits = model(ids, cache=cache, logits_at=last)
            _sync(device)
            elapsed = time.perf_counter() - start
            token = logits.argmax(-1)[:, None]
            valid = torch.ones(1, 1, dtype=torch.bool, device=device)
            times = []
            for i in range(args.decode):
                position = torch.full((1, 1), args.prefill + i, device=device)
                start = time.perf_counter()
                token = step(token, position, valid).argmax(-1)[:, None]
                _sync(device)
                times.append(time.perf_counter() - start)
            if repeat > 0:  # the first run is a warm-up
                prefill_times.append(elapsed)
                token_times += times
    prefill_s = statistics.median(prefill_times)
    decode_s = statistics.median(token_times)
    return {
        "prefill_tokens": args.prefill,
        "prefill_s": prefill_s,
        "prefill_tok_s": args.prefill / prefill_s,
        "prefill_best_tok_s": args.prefill / min(prefill_times),
        "decode_ms_per_token": decode_s * 1e3,
        "decode_tok_s": 1.0 / decode_s,
        "decode_best_tok_s": 1.0 / min(token_times),
    }


def _eager_step(model: Any, cache: Any) -> Any:
    return lambda ids, pos, valid: model(ids, pos, cache, valid)[:, -1]


def peak_memory(device: Any) -> int:
    import resource

    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def copy_bandwidth(device: Any, mib: int) -> float:
    """Copy bandwidth (bytes read + written per second), median of 5 copies of a `mib` MiB buffer."""
    import torch

    n = mib * (1 << 20) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n * 4 / statistics.median(times)


def print_table(r: dict[str, Any]) -> None:
    gb = 1e9
    rows = [
        ("shape", f"{r['shape']} ({r['layers']} layers), {r['dtype']}, quant={r['quant']}, "
                  f"fused={r['fused']}, {r['device']}, {r['threads']} threads, OMP wait {r['omp_wait_policy']}"),
        ("decode weight bytes", f"{r['decode_weight_bytes'] / gb:.2f} GB"),
        *([("int4 backend", ", ".join(r["int4_backends"]))] if r.get("int4_backends") else []),
        ("copy bandwidth", f"{r['copy_bandwidth_bytes_per_s'] / gb:.1f} GB/s (read + write)"),
        (f"prefill {r['prefill_tokens']}", f"{r['prefill_tok_s']:.1f} tok/s ({r['prefill_s']:.2f} s, median)"),
        ("prefill best", f"{r['prefill_best_tok_s']:.1f} tok/s"),
        ("decode", f"{r['decode_tok_s']:.2f} tok/s ({r['decode_ms_per_token']:.0f} ms/token, median)"),
        ("decode best step", f"{r['decode_best_tok_s']:.2f} tok/s"),
        ("decode bound", f"{r['decode_bound_tok_s']:.2f} tok/s"),
        ("decode / bound", f"{100 * r['decode_fraction_of_bound']:.0f} % (best step "
         f"{100 * r['decode_best_fraction_of_bound']:.0f} %)"),
        ("peak memory", f"{r['peak_memory_bytes'] / gb:.2f} GB"),
    ]
    if "full_depth_layers" in r:
        rows.append((
            f"at {r['full_depth_layers']} layers",
            f"~{r['full_depth_estimated_decode_tok_s']:.2f} tok/s decode (same fraction of the bound, "
            f"{r['full_depth_decode_weight_bytes'] / gb:.2f} GB)",
        ))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
