"""HiFT vocoder speed: real-time factor at the real CosyVoice-300M HiFT shape (~20.5M parameters).

Random weights (speed does not depend on the values); fp32 only, as the reference runs HiFT.
`plain` is `HiFTGenerator` (the reference computation with weight norm folded once), `fast` is
`FastHiFT` (Snake folded into the convs, in-place elementwise work, channels-last convs).
RTF = wall time / seconds of audio produced (all batch items). The merged `stepaudio bench decoder`
target calls `run_hift_bench`; this module also runs alone through add_arguments/run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

VARIANTS = ("plain", "fast")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 5.0, 20.0], help="audio durations")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median and min reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--tile-frames", type=int, default=None, help="FastHiFT last-stage tile length (off)")
    parser.add_argument("--json", type=Path, default=None, help="write the result rows to this file")


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    rows = run_hift_bench(
        args.seconds,
        args.batch,
        args.device,
        variants=args.variants,
        repeats=args.repeats,
        warmup=args.warmup,
        tile_frames=args.tile_frames,
    )
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def run_hift_bench(
    durations: Sequence[float],
    batch: int = 1,
    device: str = "cpu",
    *,
    variants: Sequence[str] = VARIANTS,
    repeats: int = 3,
    warmup: int = 1,
    tile_frames: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (variant, duration): wall median/min, process CPU time, RTF, with the case described."""
    import torch

    from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
    from stepaudio.decoder.cosyvoice1.hift_fast import FastHiFT
    from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator

    torch.manual_seed(seed)
    config = HiFTConfig()
    plain = HiFTGenerator(config).to(device).eval()
    models: dict[str, Callable[..., torch.Tensor]] = {"plain": plain}
    if "fast" in variants:
        models["fast"] = FastHiFT(plain, tile_frames=tile_frames)
    n_params = sum(p.numel() for p in plain.parameters())
    rows = []
    for seconds in durations:
        frames = max(1, round(seconds * config.sampling_rate / config.upsample_total))
        audio_s = batch * frames * config.upsample_total / config.sampling_rate
        mel = torch.randn(batch, config.in_channels, frames, device=device)
        for name in variants:
            model = models[name]

            def step(model: Callable[..., torch.Tensor] = model, mel: torch.Tensor = mel) -> None:
                model(mel, generator=torch.Generator(device=device).manual_seed(seed))
                if mel.is_cuda:
                    torch.cuda.synchronize()

            walls, cpus = _measure(step, repeats, warmup)
            rows.append(
                {
                    "component": "hift",
                    "variant": name,
                    "device": device,
                    "dtype": "fp32",
                    "threads": torch.get_num_threads(),
                    "batch": batch,
                    "seconds": seconds,
                    "mel_frames": frames,
                    "params": n_params,
                    "repeats": repeats,
                    "wall_median_s": statistics.median(walls),
                    "wall_min_s": min(walls),
                    "cpu_median_s": statistics.median(cpus),
                    "rtf": statistics.median(walls) / audio_s,
                    "rtf_min": min(walls) / audio_s,
                }
            )
    return rows


def _measure(step: Callable[[], None], repeats: int, warmup: int) -> tuple[list[float], list[float]]:
    import torch

    with torch.inference_mode():
        for _ in range(warmup):
            step()
        walls, cpus = [], []
        for _ in range(max(1, repeats)):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            step()
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
    return walls, cpus


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'variant':8} {'batch':>5} {'seconds':>7} {'frames':>6} {'wall s':>8} {'cpu s':>8} {'RTF':>6} {'RTF min':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['variant']:8} {r['batch']:>5} {r['seconds']:>7.1f} {r['mel_frames']:>6} "
            f"{r['wall_median_s']:>8.3f} {r['cpu_median_s']:>8.3f} {r['rtf']:>6.3f} {r['rtf_min']:>7.3f}"
        )
    return "\n".join(lines)
