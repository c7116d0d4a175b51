"""vq06 and whole-tokenizer benchmark: ``speech_tokenizer_v1.onnx`` at the real shape, alone and with vq02.

The vq06 graph is exported from :mod:`stepaudio.tokenizer.s3_model` at the real v1 25 Hz shape
(128 mels, 1280 state, 20 heads, 6 blocks, 4096 codes; ~130M parameters) with random weights, or a
given ONNX file (the real one measures real agreement). Rows (``run_vq06_bench`` returns them):

* ``vq06 offline``: RTF of log-mel + ONNX over the utterance in 30 s windows.
* ``vq06 stream <policy>``: the utterance pushed in 240 ms pieces; per-push latency and the share of
  codes equal to the offline ones (random weights make codes hypersensitive: a floor, not an estimate).
* ``tokenizer offline`` / ``tokenizer stream <policy>``: vq02 (Paraformer at the real shape, random
  weights) plus vq06 through :class:`~stepaudio.tokenizer.streaming.AudioTokenStream`; the streamed
  latency is from a piece's arrival to its codes, the finish latency is the last call.

``add_vq06_results(results, args)`` lets the existing ``stepaudio bench tokenizer`` add these rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stepaudio.eval.bench.table import percentile

PIECE = 3840  # 240 ms
RATE = 16000
POLICIES: dict[str, dict[str, Any]] = {
    "window": {"mode": "window"},
    "ahead1s-ctx2s-hop0.24": {"mode": "lookahead", "lookahead_s": 1.0, "left_context_s": 2.0, "hop_s": 0.24},
    "ahead1s-ctx2s-hop0.96": {"mode": "lookahead", "lookahead_s": 1.0, "left_context_s": 2.0, "hop_s": 0.96},
    "ahead1s-prefix-hop0.96": {"mode": "lookahead", "lookahead_s": 1.0, "left_context_s": None, "hop_s": 0.96},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="utterance length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (best is reported)")
    parser.add_argument("--vq06-onnx", default=None, help="use this ONNX file instead of a random real-shape one")
    parser.add_argument("--vq02-blocks", type=int, default=50, help="Paraformer blocks (real: 50; 0 skips vq02)")
    parser.add_argument("--vq02-mode", default="fp32-packed",
                        help="Paraformer weight mode for the whole-tokenizer rows (default: the Step engine's on CPU)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="vq06 streaming policies to run")
    parser.add_argument("--latency-budget-ms", type=float, default=100.0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")


def speech_like(seconds: float) -> Any:
    import numpy as np

    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voiced = np.sin(2 * np.pi * np.cumsum(pitch) / RATE) * (0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t))
    wav = 0.5 * voiced + 0.03 * np.random.default_rng(0).standard_normal(n)
    return (wav / np.abs(wav).max() * 0.999).astype(np.float32)


def random_linguistic(blocks: int, mode: str, state: dict[str, Any] | None = None) -> Any:
    """The vq02 tokenizer at the real shape (``blocks`` SANM blocks) with seeded random weights, or with
    ``state`` (an fp32 encoder state dict) so that several weight modes share one set of weights."""
    import torch

    from stepaudio.tokenizer.linguistic import LinguisticTokenizer
    from stepaudio.tokenizer.paraformer.encoder import ParaformerEncoder, ParaformerEncoderConfig
    from stepaudio.tokenizer.paraformer.fast import reduce_encoder_weights
    from stepaudio.tokenizer.paraformer.frontend import Cmvn, FrontendConfig, OnlineFrontend

    gen = torch.Generator().manual_seed(1234)
    config = ParaformerEncoderConfig(num_blocks=blocks)
    if state is None:
        with torch.random.fork_rng():
            torch.manual_seed(1234)
            encoder = ParaformerEncoder(config)
    else:
        with torch.device("meta"):
            encoder = ParaformerEncoder(config)
        encoder.load_state_dict(state, assign=True)
    cmvn = Cmvn(shift=-10.0 - 2.0 * torch.rand(560, generator=gen), scale=0.2 + 0.2 * torch.rand(560, generator=gen))
    frontend = OnlineFrontend(FrontendConfig(dither=0.0), cmvn)
    codebook = torch.randn(1024, 512, generator=gen)
    return LinguisticTokenizer(frontend, reduce_encoder_weights(encoder.eval(), mode), codebook)


def _latency_row(name: str, seconds: float, timed: dict[str, Any]) -> dict[str, Any]:
    ms = [x * 1000 for x in timed["pushes"]]
    cpu_ms = [x * 1000 for x in timed["push_cpu"]]
    return {
        "name": name,
        "rtf": timed["total"] / seconds,
        "cpu_s_per_audio_s": timed["cpu"] / seconds,
        "push_ms_p50": statistics.median(ms),
        "push_ms_p90": percentile(ms, 0.9),
        "push_ms_max": max(ms),
        "push_cpu_ms_max": max(cpu_ms),
        "finish_ms": timed["finish"] * 1000,
    }


def _stream_pass(make_stream: Any, wav: Any) -> dict[str, Any]:
    """Push 240 ms pieces; wall and CPU time per push (CPU time is the steadier number on a busy machine)."""
    stream = make_stream()
    pushes, push_cpu = [], []
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(0, wav.shape[0], PIECE):
        t0, c0 = time.perf_counter(), time.process_time()
        stream.push(wav[i : i + PIECE])
        pushes.append(time.perf_counter() - t0)
        push_cpu.append(time.process_time() - c0)
    t0 = time.perf_counter()
    stream.finish()
    finish = time.perf_counter() - t0
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"total": total, "cpu": cpu, "pushes": pushes, "push_cpu": push_cpu, "finish": finish, "stream": stream}


def _timed(fn: Any, repeats: int) -> tuple[float, float, Any]:
    """Best wall time and best CPU time of ``repeats`` calls, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), result


def _best(passes: list[dict[str, Any]]) -> dict[str, Any]:
    return min(passes, key=lambda p: p["total"])


def run_vq06_bench(
    onnx_path: str | Path,
    *,
    seconds: float = 10.0,
    threads: int = 2,
    repeats: int = 3,
    policies: list[str] | None = None,
    linguistic: Any = None,
) -> list[dict[str, Any]]:
    """Rows for vq06 alone and, when ``linguistic`` is given, the whole tokenizer."""
    from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
    from stepaudio.tokenizer.semantic import SemanticTokenizer
    from stepaudio.tokenizer.streaming import AudioTokenStream, SemanticStream, Vq06Policy, code_agreement

    semantic = SemanticTokenizer.from_onnx(onnx_path, intra_op_threads=threads)
    wav = speech_like(seconds)
    semantic.encode(wav[: 2 * RATE])  # warm-up: session allocations
    rows: list[dict[str, Any]] = []
    wall, cpu, offline = _timed(lambda: semantic.encode(wav), repeats)
    rows.append({"name": "vq06 offline", "rtf": wall / seconds, "cpu_s_per_audio_s": cpu / seconds})
    for name in policies or list(POLICIES):
        policy = Vq06Policy(**POLICIES[name])
        best = _best([_stream_pass(lambda p=policy: SemanticStream(semantic, p), wav) for _ in range(repeats)])
        stream = SemanticStream(semantic, policy)
        streamed = [c for i in range(0, wav.shape[0], PIECE) for c in stream.push(wav[i : i + PIECE])]
        streamed += stream.finish()
        row = _latency_row(f"vq06 stream {name}", seconds, best)
        row["codes_equal_offline"] = code_agreement(streamed, offline)
        rows.append(row)
    if linguistic is None:
        return rows
    tokenizer = StepAudioTokenizer(linguistic=linguistic, semantic=semantic)
    linguistic.warm_up()
    wall, cpu, whole = _timed(lambda: tokenizer.encode_prepared(wav), repeats)
    rows.append({"name": "tokenizer offline", "rtf": wall / seconds, "cpu_s_per_audio_s": cpu / seconds})
    for name in policies or list(POLICIES):
        policy = Vq06Policy(**POLICIES[name])
        best = _best([_stream_pass(lambda p=policy: AudioTokenStream(tokenizer, p), wav) for _ in range(repeats)])
        codes = best["stream"].codes()
        row = _latency_row(f"tokenizer stream {name}", seconds, best)
        row["vq02_equal_offline"] = codes.vq02 == whole.vq02
        row["vq06_codes_equal_offline"] = code_agreement(codes.vq06, whole.vq06)
        rows.append(row)
    return rows


def _rows_with_model(args: argparse.Namespace) -> list[dict[str, Any]]:
    from stepaudio.tokenizer.s3_model import export_s3_onnx

    linguistic = random_linguistic(args.vq02_blocks, args.vq02_mode) if args.vq02_blocks > 0 else None
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    options = dict(seconds=args.seconds, threads=args.threads, repeats=args.repeats, policies=policies)
    if args.vq06_onnx:
        return run_vq06_bench(args.vq06_onnx, linguistic=linguistic, **options)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_s3_onnx(Path(tmp) / "speech_tokenizer_v1.onnx")
        return run_vq06_bench(path, linguistic=linguistic, **options)


def add_vq06_results(results: dict[str, Any], args: argparse.Namespace) -> None:
    """For ``stepaudio bench tokenizer``: adds ``results['vq06']`` rows (defaults fill missing options)."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    merged = vars(defaults.parse_args([]))
    merged.update({k: v for k, v in vars(args).items() if k in merged and v is not None})
    if getattr(args, "blocks", None) is not None and getattr(args, "vq02_blocks", None) is None:
        merged["vq02_blocks"] = args.blocks  # the vq02 bench's --blocks
    results["vq06"] = _rows_with_model(argparse.Namespace(**merged))


def print_rows(rows: list[dict[str, Any]], budget_ms: float = 100.0) -> None:
    print(f"{'row':40s} {'RTF':>6s} {'CPU s/s':>7s} {'p50 ms':>7s} {'p90 ms':>7s} {'max ms':>7s} "
          f"{'max CPU':>7s} {'finish':>7s} {'<=budget':>8s} {'vq06=offline':>12s}")
    for row in rows:
        lat = "push_ms_p50" in row
        keys = ("push_ms_p50", "push_ms_p90", "push_ms_max", "push_cpu_ms_max", "finish_ms")
        cells = [f"{row[k]:7.1f}" if lat else f"{'-':>7s}" for k in keys]
        ok = ("yes" if row["push_ms_max"] <= budget_ms else "no") if lat else "-"
        agree = row.get("codes_equal_offline", row.get("vq06_codes_equal_offline"))
        same = f"{agree * 100:.1f}%" if agree is not None else "-"
        print(f"{row['name']:40s} {row['rtf']:6.3f} {row['cpu_s_per_audio_s']:7.3f} {' '.join(cells)} "
              f"{ok:>8s} {same:>12s}")


def run(args: argparse.Namespace) -> int:
    if "torch" not in sys.modules:  # threads sleep instead of spinning: far faster on shared cores
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    rows = _rows_with_model(args)
    print(f"vq06 speech_tokenizer_v1 ({'given file' if args.vq06_onnx else 'random weights, real shape'}), "
          f"{args.seconds:.1f} s audio, 240 ms pieces, {args.threads} threads, best of {args.repeats}")
    print_rows(rows, args.latency_budget_ms)
    if args.json:
        payload = {"seconds": args.seconds, "threads": args.threads, "rows": rows}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0
