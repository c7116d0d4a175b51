"""The Snake activation x + r * sin(a * x)^2 as an onnxruntime custom op (`snake_ort.c`, domain "stepaudio",
op "Snake"), compiled on first use with the system C compiler.

Why: onnxruntime runs Sin as a scalar loop on one thread; in Kokoro's vocoder the 48 Snake activations' Sin
was ~11 % of the kernel time and kept a second thread idle. The op computes the whole chain in one AVX2 + FMA
pass over channel ranges on as many threads as the session's (`set_threads` before creating it). Its sine is
a polynomial (|error| < 1e-7 after range reduction), so outputs differ from Sin's by float rounding, not bit
for bit.

The library is built (`-O3 -mavx2 -mfma -ffp-contract=off -fPIC -shared -pthread`) into `<cache>/kernels/`,
named by the sha256 of the source, the flags and the compiler's version, written to a temporary file and
renamed. It reaches onnxruntime only through the function table onnxruntime hands it (no header needed).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from stepaudio.errors import UnsupportedError

SOURCE = Path(__file__).with_name("snake_ort.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-ffp-contract=off", "-fPIC", "-shared", "-pthread")
DOMAIN = "stepaudio"
OP = "Snake"
_ABI = 2


def cpu_lacks(flags: set[str] | None = None) -> str | None:
    """Why this CPU cannot run the op (a sentence), or None where /proc/cpuinfo lists avx2 and fma."""
    if flags is None:
        flags = set()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("flags"):
                    flags = set(line.partition(":")[2].split())
                    break
        except OSError:
            return "no /proc/cpuinfo to tell whether this CPU has AVX2 and FMA"
    absent = [flag for flag in ("avx2", "fma") if flag not in flags]
    return f"the Snake op needs {' and '.join(absent)}, which this CPU lacks" if absent else None


def build(cache_dir: Path, cc: str | None = None) -> Path:
    """The custom op library for this source and compiler under `cache_dir`/kernels, compiled unless already
    there; UnsupportedError (with the reason) where it cannot be built or loaded on this CPU."""
    reason = cpu_lacks()
    if reason is not None:
        raise UnsupportedError(reason)
    cc = cc or (shutil.which(os.environ["CC"]) if os.environ.get("CC") else shutil.which("cc") or shutil.which("gcc"))
    if cc is None:
        raise UnsupportedError("the Snake op needs a C compiler (cc or gcc on PATH, or $CC)")
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise UnsupportedError(f"cannot run the C compiler {cc} ({exc})") from exc
    key = hashlib.sha256(SOURCE.read_bytes() + "\0".join((*FLAGS, version)).encode()).hexdigest()[:20]
    directory = cache_dir / "kernels"
    target = directory / f"snake_ort-{key}.so"
    if not target.exists():
        _compile(cc, directory, target)
    if ctypes.CDLL(str(target)).stepaudio_snake_abi() != _ABI:
        raise UnsupportedError(f"{target} is not the Snake op this wrapper expects")
    return target


def _compile(cc: str, directory: Path, target: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=directory)
        os.close(handle)
    except OSError as exc:
        raise UnsupportedError(f"cannot write the Snake op to {directory} ({exc})") from exc
    try:
        done = subprocess.run([cc, *FLAGS, "-o", temporary, str(SOURCE)], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise UnsupportedError(f"the Snake op did not compile with {cc}: {done.stderr.strip()[-2000:]}")
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UnsupportedError(f"cannot compile the Snake op with {cc} ({exc})") from exc
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def set_threads(library: Path, threads: int) -> None:
    """The thread count of the Snake kernels of sessions created from now on in this process (0: every CPU of
    its set); call it just before creating a session, which creates its kernels then."""
    ctypes.CDLL(str(library)).stepaudio_snake_set_threads(ctypes.c_int(threads))
