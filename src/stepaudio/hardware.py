"""What this machine's CPU can do fast, asked once; kernels that depend on it choose by these answers."""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    """True when this CPU's AMX tiles are usable, so bf16 matrix-matrix products run several times faster
    than fp32 ones (oneDNN picks AMX by itself; this only tells which path to prefer)."""
    try:
        return bool(torch._C._cpu._init_amx())
    except (AttributeError, RuntimeError):
        return False


@lru_cache(maxsize=2)
def onednn_can_pack(dtype: torch.dtype) -> bool:
    """True when oneDNN can pre-block a `dtype` linear weight on this CPU (bf16 needs AVX-512 BW/VL/DQ or
    AVX-NE-CONVERT; AVX2-only CPUs such as AMD Zen 3 refuse it). Asked once by trying a tiny weight."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    try:
        torch.ops.mkldnn._reorder_linear_weight(torch.zeros(16, 16, dtype=dtype), 1)
    except RuntimeError:
        return False
    return True


def require_onednn_packing(dtype: torch.dtype, what: str) -> None:
    """Raise a clear UnsupportedError instead of oneDNN's own when `what` cannot run on this CPU."""
    from stepaudio.errors import UnsupportedError

    if not onednn_can_pack(dtype):
        raise UnsupportedError(
            f"{what} needs oneDNN {str(dtype).removeprefix('torch.')} weight packing, which this CPU does not "
            "support (bf16 needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT); choose an fp32 or int8 weight format"
        )
