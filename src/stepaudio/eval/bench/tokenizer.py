"""`stepaudio bench tokenizer`: vq02 (and later vq06) tokenizer speed at the real shapes.

vq02: the Paraformer-online encoder at the real shape (560 -> 512, 4 heads, 2048 units, 50 blocks,
158M parameters) with random weights (speed does not depend on their values), fed a synthetic
10 s utterance in 240 ms pieces as audio would arrive. Reported per weight mode: RTF of the whole
vq02 path (frontend + encoder + k-means), the latency of each 240 ms piece from its arrival to its
codes (p50 / p90 / max), and how far the reduced-precision modes drift from fp32 (feature error,
share of identical codes; with random weights this only hints at the effect on real ones).
Modes run interleaved, best of ``--repeats`` passes, so that load from other processes hits
every mode alike; numbers on a shared machine are still noisy. ``offline RTF`` is the whole
utterance at once with every step batched per layer (what chat turns and datasets use), and
``off-stream`` its largest feature difference from the streamed pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from stepaudio.eval.bench.table import percentile
from stepaudio.eval.bench.tokenizer_vq06 import add_vq06_results, print_rows, random_linguistic, speech_like

STEP_SAMPLES = 3840


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="utterance length")
    parser.add_argument(
        "--modes",
        default="fp32,fp32-packed,bf16,bf16-packed,int8,int8-packed",
        help="comma-separated weight modes (see stepaudio.tokenizer.paraformer.fast.WEIGHT_MODES)",
    )
    parser.add_argument("--blocks", type=int, default=50, help="encoder blocks (real: 50)")
    parser.add_argument("--vq02-mode", default=None,
                        help="vq02 weight mode of the whole-tokenizer rows (default: fp32-packed, the engine's on CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per mode (best is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-budget-ms", type=float, default=100.0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")


def _timed_pass(tokenizer: Any, wav: Any) -> dict[str, Any]:
    """Feed the utterance in 240 ms pieces; each piece's latency is arrival -> codes returned."""
    import torch

    stream = tokenizer.stream()
    latencies = []
    features = []
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(0, wav.shape[0], STEP_SAMPLES):
        t0 = time.perf_counter()
        feats = stream.push_features(wav[i : i + STEP_SAMPLES])
        tokenizer.quantize(feats)
        latencies.append(time.perf_counter() - t0)
        features.append(feats)
    t0 = time.perf_counter()
    tail = stream.finish_features()
    tokenizer.quantize(tail)
    latencies.append(time.perf_counter() - t0)
    features.append(tail)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    full = [lat for lat, f in zip(latencies, features, strict=True) if f.shape[0] > 0]
    return {"total_s": total, "cpu_s": cpu, "latencies_s": full, "features": torch.cat(features)}


def _frontend_seconds(tokenizer: Any, wav: Any) -> float:
    frontend = tokenizer.frontend
    state = frontend.new_state()
    start = time.perf_counter()
    pieces = list(range(0, wav.shape[0], STEP_SAMPLES))
    for n, i in enumerate(pieces):
        frontend(state, wav[i : i + STEP_SAMPLES], n == len(pieces) - 1)
    return time.perf_counter() - start


def _bench_vq02(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from stepaudio.hardware import onednn_can_pack
    from stepaudio.tokenizer.linguistic import nearest_centroid

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not onednn_can_pack(torch.bfloat16) and "bf16-packed" in modes:
        print("skipping weight mode bf16-packed: this CPU cannot pack bf16 weights for oneDNN")
        modes.remove("bf16-packed")
    wav = torch.from_numpy(speech_like(args.seconds))
    master = random_linguistic(args.blocks, "fp32")
    state = master.encoder.state_dict()
    tokenizers = {m: master if m == "fp32" else random_linguistic(args.blocks, m, state) for m in modes}
    params = sum(p.numel() for p in master.encoder.parameters())
    for tok in tokenizers.values():  # warm-up: kernels, allocator, caches
        tok.warm_up()  # compiles the steady step in fp32-compiled mode
        _timed_pass(tok, wav[: 4 * STEP_SAMPLES])
    best: dict[str, dict[str, Any]] = {}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for mode, tok in tokenizers.items():
                result = _timed_pass(tok, wav)
                if mode not in best or result["total_s"] < best[mode]["total_s"]:
                    best[mode] = result
    offline: dict[str, tuple[float, Any]] = {}
    with torch.inference_mode():
        for mode, tok in tokenizers.items():  # offline: every step batched per layer (paraformer.batch)
            tok.encode_features(wav[: 8 * STEP_SAMPLES])
            runs = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                feats = tok.encode_features(wav)
                runs.append((time.perf_counter() - t0, feats))
            offline[mode] = min(runs, key=lambda r: r[0])
    reference = best["fp32"]["features"] if "fp32" in best else None
    ref_codes = nearest_centroid(reference, master.codebook) if reference is not None else None
    rows = {}
    for mode, result in best.items():
        lat = [x * 1000 for x in result["latencies_s"]]
        row: dict[str, Any] = {
            "rtf": result["total_s"] / args.seconds,
            "cpu_s_per_audio_s": result["cpu_s"] / args.seconds,
            "chunk_ms_p50": statistics.median(lat),
            "chunk_ms_p90": percentile(lat, 0.9),
            "chunk_ms_max": max(lat),
            "chunks": len(lat),
            "within_budget": max(lat) <= args.latency_budget_ms,
            "offline_rtf": offline[mode][0] / args.seconds,
            "offline_max_abs_vs_stream": float((offline[mode][1] - result["features"]).abs().max()),
        }
        if reference is not None and ref_codes is not None:
            feats = result["features"]
            row["feature_rel_err"] = float((feats - reference).norm() / reference.norm())
            codes = nearest_centroid(feats, master.codebook)
            row["codes_equal_fp32"] = float((codes == ref_codes).double().mean())
        rows[mode] = row
    frontend_s = min(_frontend_seconds(master, wav) for _ in range(3))
    return {"params": params, "blocks": args.blocks, "frontend_rtf": frontend_s / args.seconds, "modes": rows}


def _print(results: dict[str, Any]) -> None:
    vq02 = results["vq02"]
    print(
        f"vq02 Paraformer encoder: {vq02['params'] / 1e6:.1f}M params, {vq02['blocks']} blocks, "
        f"{results['seconds']:.1f} s audio in 240 ms pieces, {results['threads']} threads"
    )
    print(f"frontend alone (fbank + LFR + CMVN): RTF {vq02['frontend_rtf']:.4f}")
    header = f"{'mode':12s} {'RTF':>7s} {'CPU s/s':>8s} {'p50 ms':>8s} {'p90 ms':>8s} {'max ms':>8s} {'<=budget':>8s} "
    print(header + f"{'feat rel err':>12s} {'codes = fp32':>12s} {'offline RTF':>11s} {'off-stream':>10s}")
    for mode, row in vq02["modes"].items():
        err = f"{row['feature_rel_err']:.2e}" if "feature_rel_err" in row else "-"
        same = f"{row['codes_equal_fp32'] * 100:.1f}%" if "codes_equal_fp32" in row else "-"
        print(
            f"{mode:12s} {row['rtf']:7.3f} {row['cpu_s_per_audio_s']:8.3f} "
            f"{row['chunk_ms_p50']:8.1f} {row['chunk_ms_p90']:8.1f} "
            f"{row['chunk_ms_max']:8.1f} {'yes' if row['within_budget'] else 'no':>8s} {err:>12s} {same:>12s} "
            f"{row['offline_rtf']:11.3f} {row['offline_max_abs_vs_stream']:10.1e}"
        )
    print("vq06 semantic tokenizer (S3 v1 shape ONNX) and the whole tokenizer:")
    print_rows(results["vq06"])


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"seconds": args.seconds, "threads": args.threads}
    results["vq02"] = _bench_vq02(args)
    add_vq06_results(results, args)
    _print(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0
