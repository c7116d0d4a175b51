"""Automatic kernel choices made by timing this CPU, once, and cached on disk.

A CPU flag says which instructions exist, not which of torch's kernels is fastest with them: on an
AVX-512-bf16 EPYC without AMX, oneDNN's pre-blocked bf16 product is fast while plain bf16 `F.linear` is
not; fp16 matrix-vector products beat bf16 on some CPUs and lose on others; on AVX2-only CPUs every bf16
product is emulated. So every `auto` (LM weight format, flow dtype, vq02 weight mode) times its candidates
on small real-shape products, at a prefill shape (many rows) and a decode shape (one row) where both
matter, and keeps the answer in `<cache>/kernel-choices.json` (`$STEPAUDIO_CACHE` or
`~/.cache/stepaudio`), keyed by CPU model, CPU flags, torch version and thread count: another machine,
torch or thread count measures again. `STEPAUDIO_REMEASURE=1` (or `stepaudio bench kernels --remeasure`)
measures again and overwrites. Timings are medians of interleaved runs; a candidate must beat the first
(plain) one by `MARGIN` to be chosen, so noise on a busy machine does not flip a default.

This module holds the machinery and the one question whose candidates are kernels of this package (the
product kernel for bf16 weights); the flow dtype and the vq02 weight mode are asked by their own packages
through `choose`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from stepaudio.hardware import cpu_has_amx, onednn_can_pack

__all__ = [
    "CACHE_ENV", "CACHE_FILE", "MARGIN", "REMEASURE_ENV", "ChoiceCache", "MachineKey", "Measured",
    "bf16_product_kernel", "cache_path", "cheapest_request", "cheapest_with_lossy", "choose", "fastest",
    "machine_key", "time_calls",
]  # fmt: skip

CACHE_ENV = "STEPAUDIO_CACHE"
REMEASURE_ENV = "STEPAUDIO_REMEASURE"
CACHE_FILE = "kernel-choices.json"
MARGIN = 0.05  # a candidate replaces the first one only when at least 5 % faster
_FILE_VERSION = 1
_MACHINES_KEPT = 8  # thread counts and torch upgrades add keys; the oldest are dropped beyond this


@dataclass(frozen=True)
class MachineKey:
    """What a measurement depends on; a cached choice is used only under an equal key."""

    cpu: str
    flags: str  # digest of the CPU's flag list and torch's CPU capability
    torch: str
    threads: int

    def text(self) -> str:
        return f"{self.cpu} | flags {self.flags} | torch {self.torch} | {self.threads} threads"


def machine_key() -> MachineKey:
    cpu, flags = _cpu_model_and_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    digest = hashlib.sha256(f"{flags}|{capability}|amx={cpu_has_amx()}".encode()).hexdigest()[:16]
    return MachineKey(cpu=cpu, flags=digest, torch=torch.__version__, threads=torch.get_num_threads())


def _cpu_model_and_flags() -> tuple[str, str]:
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name == "model name" and not model:
                model = value.strip()
            elif name in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
            if model and flags:
                break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


@dataclass(frozen=True)
class Measured:
    """A question's answer and the medians it was made from: `timings[use][candidate]` in seconds."""

    choice: str
    timings: Mapping[str, Mapping[str, float]]
    measured_at: str = ""


def fastest(times: Mapping[str, float], margin: float = MARGIN) -> str:
    """The first candidate (the plain, most exact one) unless another is more than `margin` faster;
    then the fastest. Pure: the choice rule, apart from any timing."""
    if not times:
        raise ValueError("no candidates to choose from")
    first = next(iter(times))
    best = min(times, key=lambda name: times[name])
    return best if times[best] < (1.0 - margin) * times[first] else first


def cheapest_request(
    prefill: Mapping[str, float], decode: Mapping[str, float], decode_calls: int, margin: float = MARGIN
) -> str:
    """For weights stored once and used for both prefill and decode: the candidate whose request (one
    prefill call and `decode_calls` decode calls) costs least, under `fastest`'s margin rule."""
    costs = {name: prefill[name] + decode_calls * decode[name] for name in prefill if name in decode}
    return fastest(costs, margin)


def time_calls(
    calls: Mapping[str, Callable[[], object]], repeats: int = 5, budget_s: float = 1.0
) -> dict[str, float]:
    """Median seconds per call of each candidate; one warm-up each, then rounds that run every candidate
    once in turn, so a busy machine's slow moments fall on all of them alike. Stops after three rounds
    once `budget_s` is spent."""
    for call in calls.values():
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    start_all = time.perf_counter()
    for round_ in range(repeats):
        if round_ >= 3 and time.perf_counter() - start_all > budget_s:
            break
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def cache_path() -> Path:
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
                                                   ).expanduser() / "stepaudio"
    return root / CACHE_FILE


class ChoiceCache:
    """The choices file: `{"version", "machines": {key text: {"key": {...}, "choices": {question: ...}}}}`.

    An unreadable or malformed file is ignored with a warning (and replaced on the next write); an entry
    under another machine key is never used."""

    def __init__(self, path: Path | None = None, key: MachineKey | None = None) -> None:
        self.path = path or cache_path()
        self.key = key or machine_key()

    def get(self, question: str) -> Measured | None:
        entry = self._read().get(self.key.text(), {}).get("choices", {}).get(question)
        if entry is None:
            return None
        try:
            timings = {use: {str(k): float(v) for k, v in times.items()} for use, times in entry["timings"].items()}
            return Measured(str(entry["choice"]), timings, str(entry.get("measured_at", "")))
        except (KeyError, TypeError, AttributeError, ValueError):
            warnings.warn(f"ignoring a malformed entry {question!r} in {self.path}", stacklevel=2)
            return None

    def put(self, question: str, measured: Measured) -> None:
        machines = self._read()
        slot = machines.pop(self.key.text(), None) or {"key": asdict(self.key), "choices": {}}
        slot["choices"][question] = {"choice": measured.choice, "timings": measured.timings,
                                     "measured_at": measured.measured_at}
        machines[self.key.text()] = slot  # most recent last
        while len(machines) > _MACHINES_KEPT:
            machines.pop(next(iter(machines)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, suffix=".tmp", delete=False) as handle:
                json.dump({"version": _FILE_VERSION, "machines": machines}, handle, indent=1)
            os.replace(handle.name, self.path)
        except OSError as exc:
            warnings.warn(f"could not save kernel choices to {self.path} ({exc}); they will be measured again",
                          stacklevel=2)

    def entries(self) -> dict[str, Measured]:
        """Every cached answer for this machine key, by question."""
        questions = self._read().get(self.key.text(), {}).get("choices", {})
        return {q: m for q in questions if (m := self.get(q)) is not None}

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring the unreadable kernel choices file {self.path} ({exc})", stacklevel=3)
            return {}
        machines = data.get("machines") if isinstance(data, dict) else None
        if not isinstance(machines, dict) or data.get("version") != _FILE_VERSION or not all(
            isinstance(slot, dict) and isinstance(slot.get("choices"), dict) for slot in machines.values()
        ):
            warnings.warn(f"ignoring the kernel choices file {self.path}: not a version {_FILE_VERSION} "
                          "choices file", stacklevel=3)
            return {}
        return machines


def choose(
    question: str,
    measure: Callable[[], Measured],
    *,
    remeasure: bool | None = None,
    cache: ChoiceCache | None = None,
) -> Measured:
    """The cached answer to `question` on this machine, or `measure()`'s, saved. `remeasure=None` follows
    `$STEPAUDIO_REMEASURE`. Name a question with a version suffix and change it when its workload changes."""
    cache = cache or ChoiceCache()
    if remeasure is None:
        remeasure = os.environ.get(REMEASURE_ENV, "") not in ("", "0")
    if not remeasure:
        hit = cache.get(question)
        if hit is not None:
            return hit
    measured = measure()
    stamped = Measured(measured.choice, measured.timings, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    cache.put(question, stamped)
    return stamped


# bf16 weights of an LM: which product kernel. Widths of the Step LMs (2048-4096); decode cycles through
# three 16 MB weights, more than a 32 MB L3, so that they stream from memory as a whole model's do.
# /2 added int8 (FBGEMM): not exact, so it must beat the best exact kernel by LOSSY_MARGIN. /3: a decode call
# runs _DECODE_PASSES passes over the weights back to back, as a step's products do. /4: timed on one thread:
# on a shared 2-core machine every product's parallel region at 2 threads waits for the other core's time slice
# (a constant 8 ms a 16 MB product, int8 or bf16, against 0.3 ms int8 and 5 ms bf16 on one thread), which hid
# the kernels' difference (the full TTS-3B model at 2 threads, minutes later: int8 0.14 s a token, fp16 2.0 s).
BF16_QUESTION = "bf16-weight-kernel/4"
_DECODE_PASSES = 8
BF16_KERNELS = ("bf16", "fp16", "bf16-packed", "int8")
EXACT_KERNELS = ("bf16", "fp16", "bf16-packed")
_PREFILL_ROWS = 128
# Weights are stored once, so one format serves both phases: a request is costed as one 128-row prefill
# plus 128 decode steps (a sentence's new prompt tokens after prefix reuse, and about as many tokens out).
_DECODE_CALLS = 128
# int8 weights (per-channel) and per-token activations change the logits (~2 % rms on a trained tiny Step1),
# so int8 replaces the exact kernels only where a request costs at least a third less with it: on AVX2-only
# CPUs, where bf16 products are emulated (measured on a 2-core EPYC, 1 thread: decode 1.0 vs 5.0 ms a 16 MB
# bf16 weight, prefill 50 vs 610 ms), not on CPUs that multiply bf16 natively.
LOSSY_MARGIN = 1.0 / 3.0


def bf16_product_kernel(*, remeasure: bool | None = None, cache: ChoiceCache | None = None) -> Measured:
    """`bf16` (plain `F.linear`), `fp16` (`HalfLinear`: fp16 weights, exact for bf16 values) or
    `bf16-packed` (oneDNN pre-blocked, where this CPU can pack bf16), by `cheapest_request`; `int8`
    (FBGEMM, where available) instead only when it is cheaper by `LOSSY_MARGIN` (`cheapest_with_lossy`)."""
    return choose(BF16_QUESTION, _measure_bf16_kernels, remeasure=remeasure, cache=cache)


def cheapest_with_lossy(
    prefill: Mapping[str, float], decode: Mapping[str, float], decode_calls: int, exact: tuple[str, ...],
    lossy_margin: float = LOSSY_MARGIN,
) -> str:
    """`cheapest_request` among the `exact` candidates; a lossy candidate replaces that choice only when its
    request costs `lossy_margin` less (a speed gain inside timing noise does not buy a change of output)."""
    exact_pre = {name: t for name, t in prefill.items() if name in exact}
    best = cheapest_request(exact_pre, decode, decode_calls)
    cost = {name: prefill[name] + decode_calls * decode[name] for name in prefill if name in decode}
    lossy = [name for name in cost if name not in exact]
    if not lossy:
        return best
    cheapest = min(lossy, key=lambda name: cost[name])
    return cheapest if cost[cheapest] < (1.0 - lossy_margin) * cost[best] else best


def _measure_bf16_kernels() -> Measured:
    from stepaudio.kernels.linear import HalfLinear
    from stepaudio.kernels.packed import PackedBf16Linear, PackedInt8Linear, fbgemm_available

    # constant weights: a dense product's speed does not depend on the values, and filling is cheap
    weights = [torch.full((4096, 2048), 0.01, dtype=torch.bfloat16) for _ in range(3)]
    square = torch.full((2048, 2048), 0.01, dtype=torch.bfloat16)
    builders: dict[str, Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
        "bf16": lambda w: lambda x: torch.nn.functional.linear(x, w),
        "fp16": HalfLinear,
    }
    if onednn_can_pack(torch.bfloat16):
        builders["bf16-packed"] = PackedBf16Linear
    if fbgemm_available():  # the `int8` weight format's layer; its speed does not depend on the values
        builders["int8"] = lambda w: PackedInt8Linear(torch.ones(w.shape, dtype=torch.int8),
                                                      torch.full((w.shape[0],), 0.01))
    one = torch.full((1, 2048), 0.5, dtype=torch.bfloat16)
    many = torch.full((_PREFILL_ROWS, 2048), 0.5, dtype=torch.bfloat16)

    def decode(fns: list[Callable[[torch.Tensor], torch.Tensor]]) -> Callable[[], object]:
        return lambda: [fn(one) for _ in range(_DECODE_PASSES) for fn in fns]

    def prefill(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], object]:
        return lambda: fn(many)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the kernels' ranking, apart from the thread pool's waits (see BF16_QUESTION)
    try:
        with torch.inference_mode():
            dec = time_calls({name: decode([build(w) for w in weights]) for name, build in builders.items()},
                             repeats=9, budget_s=0.5)
            pre = time_calls({name: prefill(build(square)) for name, build in builders.items()}, repeats=5,
                             budget_s=0.5)
    finally:
        torch.set_num_threads(threads)
    dec = {name: t / (_DECODE_PASSES * len(weights)) for name, t in dec.items()}
    return Measured(cheapest_with_lossy(pre, dec, _DECODE_CALLS, EXACT_KERNELS), {"prefill": pre, "decode": dec})
