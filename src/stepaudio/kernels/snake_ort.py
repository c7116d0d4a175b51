"""The Snake activation x + r * sin(a * x)^2 as an onnxruntime custom op (`snake_ort.c`, domain "stepaudio",
op "Snake"), compiled on first use with the system C compiler.

Why: onnxruntime runs Sin as a scalar loop on one thread; in Kokoro's vocoder the 48 Snake activations' Sin
was ~11 % of the kernel time and kept a second thread idle. The op computes the whole chain in one AVX2 + FMA
pass over channel ranges on as many threads as the session's (`set_threads` before creating it). Its sine is
a polynomial (|error| < 1e-7 after range reduction), so outputs differ from Sin's by float rounding, not bit
for bit.

The library is built (`-O3 -mavx2 -mfma -ffp-contract=off -fPIC -shared -pthread`) into `<cache>/kernels/` by
`kernels.cbuild`. It reaches onnxruntime only through the function table onnxruntime hands it (no header needed).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from stepaudio.errors import UnsupportedError
from stepaudio.kernels.cbuild import build_library, cpu_flags

SOURCE = Path(__file__).with_name("snake_ort.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-ffp-contract=off", "-fPIC", "-shared", "-pthread")
DOMAIN = "stepaudio"
OP = "Snake"
_ABI = 2


def cpu_lacks(flags: set[str] | None = None) -> str | None:
    """Why this CPU cannot run the op (a sentence), or None where /proc/cpuinfo lists avx2 and fma."""
    if flags is None:
        flags = cpu_flags()
        if flags is None:
            return "no /proc/cpuinfo to tell whether this CPU has AVX2 and FMA"
    absent = [flag for flag in ("avx2", "fma") if flag not in flags]
    return f"the Snake op needs {' and '.join(absent)}, which this CPU lacks" if absent else None


def build(cache_dir: Path, cc: str | None = None) -> Path:
    """The custom op library for this source and compiler under `cache_dir`/kernels, compiled unless already
    there; UnsupportedError (with the reason) where it cannot be built or loaded on this CPU."""
    reason = cpu_lacks()
    if reason is not None:
        raise UnsupportedError(reason)
    target = build_library("the Snake op", SOURCE, FLAGS, cache_dir / "kernels", cc)
    if ctypes.CDLL(str(target)).stepaudio_snake_abi() != _ABI:
        raise UnsupportedError(f"{target} is not the Snake op this wrapper expects")
    return target


def set_threads(library: Path, threads: int) -> None:
    """The thread count of the Snake kernels of sessions created from now on in this process (0: every CPU of
    its set); call it just before creating a session, which creates its kernels then."""
    ctypes.CDLL(str(library)).stepaudio_snake_set_threads(ctypes.c_int(threads))
