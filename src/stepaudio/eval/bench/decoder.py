"""`stepaudio bench decoder`: offline real-time factor of the speech decoder at the real shape.

The flow runs at the CosyVoice-300M shape (105M parameters) with random weights (speed does not
depend on the values): a prompt of `--prompt-seconds` plus 1 / 5 / 20 s of generated tokens at
Step-Audio's 41.667 ids per second, 10 Euler steps with guidance. RTF = wall time / seconds of
audio produced (summed over the batch); `cpu_s` is process CPU time, a steadier measure than wall
time on a shared machine (with one thread they agree on an idle one). Parts plug in through
`PARTS` (each takes the parsed arguments and returns rows); HiFT comes from `decoder_hift`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from stepaudio.eval.bench.table import format_rows, report_rows

DTYPES = ("fp32", "bf16", "int8")
SAMPLE_RATE = 22050
HOP = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", nargs="+", default=["flow", "hift"], choices=sorted(PARTS),
                        help="decoder parts to time (HiFT runs in fp32 only)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 5.0, 20.0],
                        help="seconds of generated audio per utterance")
    parser.add_argument("--prompt-seconds", type=float, default=3.0, help="prompt audio length")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1], help="utterances per call")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=DTYPES,
                        help="int8 = fp32 with dynamic int8 linears (CPU only)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--token-rate", type=float, default=41.667, help="flow input ids per second")
    parser.add_argument("--vocab-size", type=int, default=5120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")


def _timed(
    fn: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None]
) -> tuple[Any, list[float], list[float]]:
    """Output, wall times and process CPU times of `repeats` calls after `warmup` calls."""
    out = None
    for _ in range(warmup):
        out = fn()
    wall, cpu = [], []
    for _ in range(max(repeats, 1)):
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return out, wall, cpu


def run_flow_bench(
    seconds: Sequence[float] = (1.0, 5.0, 20.0),
    prompt_seconds: float = 3.0,
    batch_sizes: Sequence[int] = (1,),
    dtypes: Sequence[str] = ("fp32",),
    device: str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    token_rate: float = 41.667,
    vocab_size: int = 5120,
    seed: int = 0,
    config: Any = None,
) -> list[dict[str, Any]]:
    """Time `generate_mel` for every (dtype, seconds, batch); one row each (see module docstring).

    `config` (a FlowConfig) replaces the CosyVoice-300M shape, e.g. for a quick smoke run.
    """
    import torch

    from stepaudio.decoder.cosyvoice1.flow import FlowRequest, MaskedDiffWithXvec, generate_mel
    from stepaudio.decoder.cosyvoice1.flow_config import cosyvoice_300m_config
    from stepaudio.decoder.cosyvoice1.flow_quant import quantize_flow_int8

    if config is None:
        config = cosyvoice_300m_config(vocab_size=vocab_size, input_frame_rate=token_rate)
    vocab_size, token_rate = config.vocab_size, config.input_frame_rate
    torch.manual_seed(seed)
    base = MaskedDiffWithXvec(config).eval()
    n_params = sum(p.numel() for p in base.parameters())
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(seed + 1)
    n_prompt = round(prompt_seconds * token_rate)
    prompt_frames = int(prompt_seconds * SAMPLE_RATE / HOP)
    cases = []
    for secs in seconds:
        n_target = round(secs * token_rate)
        frames = prompt_frames + config.mel_len(n_target)
        for batch in batch_sizes:
            reqs = [
                FlowRequest(torch.randint(0, vocab_size, (n_target,), generator=gen),
                            torch.randint(0, vocab_size, (n_prompt,), generator=gen),
                            torch.randn(prompt_frames, 80, generator=gen), torch.randn(192, generator=gen))
                for _ in range(batch)
            ]
            cases.append((secs, batch, n_target, frames, reqs, torch.randn(batch, 80, frames, generator=gen)))
    rows: list[dict[str, Any]] = []
    reference: dict[tuple[float, int], list[Any]] = {}
    for name in dtypes:
        if name == "int8" and dev.type != "cpu":
            continue
        if name == "int8":
            model = quantize_flow_int8(base).to(dev)
        else:
            model = MaskedDiffWithXvec(config)
            model.load_state_dict(base.state_dict())
            model = model.to(device=dev, dtype=torch.bfloat16 if name == "bf16" else torch.float32).eval()
        for secs, batch, n_target, frames, reqs, noise in cases:

            def call(m: Any = model, r: Any = reqs, z: Any = noise) -> list[Any]:
                return generate_mel(m, r, noise=z)

            mels, times, cpu = _timed(call, repeats, warmup, sync)
            audio = batch * config.mel_len(n_target) * HOP / SAMPLE_RATE
            row: dict[str, Any] = {
                "component": "flow", "dtype": name, "device": str(dev), "batch": batch, "audio_s": round(secs, 3),
                "prompt_s": prompt_seconds, "tokens": n_target, "frames": frames, "params_m": round(n_params / 1e6, 1),
                "median_s": statistics.median(times), "min_s": min(times),
                "rtf": statistics.median(times) / audio, "cpu_s": statistics.median(cpu),
            }
            mels = [m.cpu() for m in mels]
            if name == "fp32":
                reference[(secs, batch)] = mels
            elif (secs, batch) in reference:
                row["max_abs_vs_fp32"] = max(float((a - b).abs().max()) for a, b in zip(
                    mels, reference[(secs, batch)], strict=True))
            rows.append(row)
        del model
    return rows


def _flow_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    return run_flow_bench(args.seconds, args.prompt_seconds, args.batch_sizes, args.dtypes, args.device,
                          args.repeats, args.warmup, args.token_rate, args.vocab_size, args.seed)


def _hift_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    """HiFT rows from `decoder_hift.run_hift_bench`, renamed to this table's columns."""
    from stepaudio.eval.bench.decoder_hift import run_hift_bench

    rows = []
    for batch in args.batch_sizes:
        for row in run_hift_bench(args.seconds, batch, args.device, repeats=args.repeats, warmup=args.warmup,
                                  seed=args.seed):
            rows.append({**row, "dtype": f"{row['dtype']}/{row['variant']}", "audio_s": row["seconds"],
                         "frames": row["mel_frames"], "median_s": row["wall_median_s"],
                         "min_s": row["wall_min_s"], "cpu_s": row["cpu_median_s"]})
    return rows


# part name -> function(args) -> rows
PARTS: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {"flow": _flow_part, "hift": _hift_part}

_COLUMNS = (("component", "{}"), ("dtype", "{}"), ("device", "{}"), ("batch", "{}"), ("audio_s", "{:g}"),
            ("frames", "{}"), ("median_s", "{:.3f}"), ("min_s", "{:.3f}"), ("rtf", "{:.3f}"),
            ("cpu_s", "{:.3f}"), ("max_abs_vs_fp32", "{:.2e}"))


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Fixed-width table of bench rows (missing cells left blank)."""
    return format_rows(rows, _COLUMNS)


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for part in args.parts:
        rows += PARTS[part](args)
    report_rows(rows, _COLUMNS, args.threads, args.json)
    return 0
