"""Matrix x vector kernels a Step1 decode step could use, each timed over weights far larger than L3.

Which kernel streams weights fastest depends on the CPU (bf16 without AMX, VNNI for int8, ...);
`stepaudio bench lm --kernels` prints this table so the choice rests on a measurement.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def kernel_table(n_out: int, n_in: int, total_bytes: int = 1_500_000_000, repeats: int = 3,
                 int4_backends: tuple[str, ...] = ("auto",)) -> dict[str, float]:
    """GB/s of weight bytes read by each batch-1 kernel on [n_out, n_in] matrices (an int4 row per CPU
    backend in `int4_backends`)."""
    import torch
    import torch.nn.functional as F

    def fp(dtype: Any) -> tuple[Callable[[Any], Any], Callable[[], Any]]:
        x = torch.randn(1, 1, n_in).to(dtype)
        return (lambda w: F.linear(x, w)), (lambda: torch.empty(n_out, n_in, dtype=dtype).uniform_(-0.02, 0.02))

    def int8_dynamic() -> tuple[Callable[[Any], Any], Callable[[], Any]]:
        x = torch.randint(-127, 128, (1, n_in), dtype=torch.int8)
        return (lambda w: torch._int_mm(x, w.t())), (lambda: torch.empty(n_out, n_in, dtype=torch.int8).random_())

    def int8_weight_only(dtype: Any) -> tuple[Callable[[Any], Any], Callable[[], Any]]:
        x = torch.randn(1, n_in).to(dtype)
        scale = torch.rand(n_out).to(dtype)
        make = lambda: torch.empty(n_out, n_in, dtype=torch.int8).random_()  # noqa: E731
        return (lambda w: torch._weight_int8pack_mm(x, w, scale)), make

    def int8_fbgemm() -> tuple[Callable[[Any], Any], Callable[[], Any]]:
        from stepaudio.kernels.packed import PackedInt8Linear

        x = torch.randn(1, n_in)
        scale = torch.rand(n_out) * 0.01 + 1e-3
        return (lambda layer: layer(x)), (lambda: PackedInt8Linear(torch.empty(n_out, n_in, dtype=torch.int8)
                                                                 .random_(-127, 128), scale))

    def int4_grouped(backend: str) -> tuple[Callable[[Any], Any], Callable[[], Any]]:
        from stepaudio.kernels.int4 import Int4Linear

        x = torch.randn(1, n_in).to(torch.bfloat16)
        scales = torch.full((n_out, n_in // 128), 0.01)
        return (lambda layer: layer(x)), (lambda: Int4Linear.from_groups(
            torch.randint(-8, 8, (n_out, n_in), dtype=torch.int8), scales, None, 128, backend=backend))

    kernels = {
        "linear fp32": fp(torch.float32),
        "linear bf16": fp(torch.bfloat16),
        "linear fp16": fp(torch.float16),
        "int8 x int8 (_int_mm)": int8_dynamic(),
        "int8 weight, bf16 act (_weight_int8pack_mm)": int8_weight_only(torch.bfloat16),
        "int8 weight, fp32 act (_weight_int8pack_mm)": int8_weight_only(torch.float32),
        "int8 FBGEMM packed, dynamic act (PackedInt8Linear)": int8_fbgemm(),
        **{f"int4 groups of 128, bf16 act (Int4Linear{'' if b == 'auto' else ', ' + b})": int4_grouped(b)
           for b in int4_backends},
    }
    results = {}
    for name, (fn, make) in kernels.items():
        first = make()
        size = first.weight_bytes if hasattr(first, "weight_bytes") else first.numel() * first.element_size()
        count = max(2, total_bytes // size)
        weights = [first] + [make() for _ in range(count - 1)]
        for w in weights:
            fn(w)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for w in weights:
                fn(w)
            times.append(time.perf_counter() - start)
        results[name] = count * size / statistics.median(times)
        del weights, first
    return results
