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
