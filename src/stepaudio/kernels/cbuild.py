"""Our C kernels, built on first use with the system C compiler (`int4_avx2.c`, `snake_ort.c`).

A library is compiled into a cache folder, named by the sha256 of its source, the flags and the compiler's
version (a changed source or compiler builds a new one, an unchanged one is reused), and written to a temporary
file then renamed, so concurrent processes never load a half-written library. Every failure is an
`UnsupportedError` that says why, so the caller can fall back to a path that needs no compiler.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from stepaudio.errors import UnsupportedError


def compiler() -> str | None:
    """The C compiler to use: `$CC`, else `cc` or `gcc` from PATH; None where there is none."""
    env = os.environ.get("CC")
    if env:
        return shutil.which(env)
    return shutil.which("cc") or shutil.which("gcc")


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (None where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        return None
    return set()


def build_library(what: str, source: Path, flags: Sequence[str], directory: Path, cc: str | None = None) -> Path:
    """`directory`/<source stem>-<key>.so for this source, these flags and this compiler, compiled unless already
    there; `what` names the kernel in errors."""
    cc = cc or compiler()
    if cc is None:
        raise UnsupportedError(f"{what} needs a C compiler (cc or gcc on PATH, or $CC)")
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise UnsupportedError(f"cannot run the C compiler {cc} ({exc})") from exc
    key = hashlib.sha256(source.read_bytes() + "\0".join((*flags, version)).encode()).hexdigest()[:20]
    target = directory / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=directory)
        os.close(handle)
    except OSError as exc:
        raise UnsupportedError(f"cannot write {what} to {directory} ({exc})") from exc
    try:
        done = subprocess.run([cc, *flags, "-o", temporary, str(source)], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise UnsupportedError(f"{what} did not compile with {cc}: {done.stderr.strip()[-2000:]}")
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UnsupportedError(f"cannot compile {what} with {cc} ({exc})") from exc
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target
