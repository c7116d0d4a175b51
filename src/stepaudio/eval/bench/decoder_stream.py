"""Streaming token2wav speed at the real CosyVoice-300M shapes (random weights: speed ignores values).

A 3 s voice prompt (125 flow ids, 258 mel frames) and 1 / 5 / 20 s of generated ids at 41.667 ids/s
are decoded twice: offline (one flow run + one HiFT run) and streamed. Streaming receives the ids
one at a time as fast as it can take them (the LM is assumed ahead), so:
* `first_chunk_s`: wall time from opening the stream to the first audio chunk, i.e. the decoder's
  share of time-to-first-audio (first_hop + lookahead ids must have arrived);
* `stall_s`: if playback starts with the first chunk, the total time the listener would wait for
  later chunks (0 = the stream keeps ahead of playback);
* `rtf`: total streaming wall time / audio seconds; `offline_rtf` the same for the offline path.
The flow re-encodes the prompt for every chunk (it is non-causal and keeps no cache), so the cost
of one chunk is close to an offline run of prompt + window; the hop trades latency for throughput.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from stepaudio.eval.bench.table import format_rows, report_rows

PROMPT_SECONDS = 3.0
TOKEN_RATE = 41.667


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 5.0, 20.0], help="generated audio")
    parser.add_argument("--dtypes", nargs="+", default=["fp32"], choices=("fp32", "bf16", "int8"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--first-hop", type=int, default=12, help="ids in the first chunk")
    parser.add_argument("--hop", type=int, default=50, help="ids per later chunk")
    parser.add_argument("--lookahead", type=int, default=8, help="ids of right context")
    parser.add_argument("--left-context", type=int, default=25, help="ids of left context")
    parser.add_argument("--max-prompt-tokens", type=int, default=None,
                        help="stream with only the last N prompt ids (latency knob; default: whole prompt)")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline comparison")
    parser.add_argument("--plain-hift", action="store_true", help="use HiFTGenerator instead of FastHiFT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")


def run_stream_bench(
    durations: Sequence[float] = (1.0, 5.0, 20.0),
    device: str = "cpu",
    dtype: str = "fp32",
    *,
    config: Any = None,
    offline: bool = True,
    fast_hift: bool = True,
    seed: int = 0,
    flow_config: Any = None,
    hift_config: Any = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per duration (see module docstring). `config` is a StreamingConfig; `flow_config` /
    `hift_config` replace the real shapes (e.g. for a quick smoke run); `progress` prints each row.
    `*_cpu_s` are process CPU times (steadier than wall time on a shared machine)."""
    import torch

    from stepaudio.decoder.cosyvoice1.token2wav import StreamingConfig

    config = config or StreamingConfig()
    t2w, prompt = random_token2wav(device, dtype, fast_hift=fast_hift, seed=seed, flow_config=flow_config,
                                   hift_config=hift_config)
    rate = t2w.flow.config.input_frame_rate
    gen = torch.Generator().manual_seed(seed + 2)
    n_prompt = len(prompt.flow_tokens)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    t2w.offline(torch.randint(0, 100, (20,)).tolist(), prompt, seed=seed)  # warm-up
    rows = []
    for secs in durations:
        tokens = torch.randint(0, t2w.flow.config.vocab_size, (round(secs * rate),), generator=gen).tolist()
        row: dict[str, Any] = {"component": "token2wav-stream", "dtype": dtype, "device": device,
                               "audio_s": secs, "tokens": len(tokens), "first_hop": config.first_hop_tokens,
                               "hop": config.hop_tokens, "lookahead": config.lookahead_tokens,
                               "prompt_tokens": min(n_prompt, config.max_prompt_tokens or n_prompt)}
        row.update(_time_stream(t2w, prompt, tokens, config, seed, sync))
        if offline:
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            wav = t2w.offline(tokens, prompt, seed=seed)
            sync()
            row["offline_s"] = time.perf_counter() - start
            row["offline_cpu_s"] = time.process_time() - start_cpu
            row["offline_rtf"] = row["offline_s"] / (len(wav) / t2w.sample_rate)
        rows.append(row)
        if progress:
            print(json.dumps(row), flush=True)
    return rows


def random_token2wav(
    device: str = "cpu",
    dtype: str = "fp32",
    *,
    fast_hift: bool = True,
    seed: int = 0,
    flow_config: Any = None,
    hift_config: Any = None,
) -> tuple[Any, Any]:
    """A Token2Wav at the CosyVoice-300M-25Hz shapes with random weights, and a random 3 s voice prompt.

    `dtype` is the flow's: fp32, bf16 or int8 (weight-only); HiFT runs in fp32 as in the reference."""
    import torch

    from stepaudio.decoder.cosyvoice1.flow import MaskedDiffWithXvec
    from stepaudio.decoder.cosyvoice1.flow_config import cosyvoice_300m_config
    from stepaudio.decoder.cosyvoice1.flow_quant import quantize_flow_int8
    from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
    from stepaudio.decoder.cosyvoice1.hift_fast import FastHiFT
    from stepaudio.decoder.cosyvoice1.prompt_features import PromptFeatures
    from stepaudio.decoder.cosyvoice1.token2wav import Token2Wav
    from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator

    torch.manual_seed(seed)
    flow_config = flow_config or cosyvoice_300m_config(vocab_size=5120, input_frame_rate=TOKEN_RATE)
    flow = MaskedDiffWithXvec(flow_config).eval()
    if dtype == "int8":
        flow = quantize_flow_int8(flow)
    else:
        flow = flow.to(device=device, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    plain = HiFTGenerator(hift_config or HiFTConfig()).to(device).eval()
    t2w = Token2Wav(flow, FastHiFT(plain) if fast_hift else plain)
    gen = torch.Generator().manual_seed(seed + 1)
    n_prompt = round(PROMPT_SECONDS * flow_config.input_frame_rate)
    prompt = PromptFeatures(
        torch.randint(0, flow_config.vocab_size, (n_prompt,), generator=gen),
        torch.randn(int(PROMPT_SECONDS * 22050 / 256), 80, generator=gen) - 5,
        torch.randn(192, generator=gen),
    )
    return t2w, prompt


def _time_stream(t2w: Any, prompt: Any, tokens: list[int], config: Any, seed: int, sync: Any) -> dict[str, Any]:
    """Push ids one by one; record when each chunk is ready and how long it plays."""
    sr = t2w.sample_rate
    ready: list[tuple[float, float]] = []  # (time ready, seconds of audio)
    first_cpu = 0.0
    sync()
    start, start_cpu = time.perf_counter(), time.process_time()
    stream = t2w.stream(prompt, config=config, seed=seed)
    for token in tokens:
        for chunk in stream.push([token]):
            sync()
            ready.append((time.perf_counter() - start, len(chunk) / sr))
            first_cpu = first_cpu or time.process_time() - start_cpu
    for chunk in stream.finish():
        sync()
        ready.append((time.perf_counter() - start, len(chunk) / sr))
        first_cpu = first_cpu or time.process_time() - start_cpu
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    audio = sum(d for _, d in ready)
    stall, clock = 0.0, ready[0][0]
    for at, duration in ready:
        if at > clock:
            stall += at - clock
            clock = at
        clock += duration
    return {"first_chunk_s": ready[0][0], "first_chunk_cpu_s": first_cpu, "first_chunk_audio_s": ready[0][1],
            "chunks": len(ready), "stream_s": total, "stream_cpu_s": total_cpu, "rtf": total / audio,
            "stall_s": stall}


_COLUMNS = (("dtype", "{}"), ("device", "{}"), ("audio_s", "{:g}"), ("tokens", "{}"), ("chunks", "{}"),
            ("first_chunk_s", "{:.3f}"), ("first_chunk_cpu_s", "{:.3f}"), ("first_chunk_audio_s", "{:.3f}"),
            ("stall_s", "{:.2f}"),
            ("stream_s", "{:.2f}"), ("stream_cpu_s", "{:.2f}"), ("rtf", "{:.3f}"), ("offline_s", "{:.2f}"),
            ("offline_cpu_s", "{:.2f}"), ("offline_rtf", "{:.3f}"))


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    return format_rows(rows, _COLUMNS)


def run(args: argparse.Namespace) -> int:
    import torch

    from stepaudio.decoder.cosyvoice1.token2wav import StreamingConfig

    torch.set_num_threads(args.threads)
    config = StreamingConfig(first_hop_tokens=args.first_hop, hop_tokens=args.hop,
                             lookahead_tokens=args.lookahead, left_context_tokens=args.left_context,
                             max_prompt_tokens=args.max_prompt_tokens)
    rows: list[dict[str, Any]] = []
    for dtype in args.dtypes:
        rows += run_stream_bench(args.seconds, args.device, dtype, config=config, offline=not args.no_offline,
                                 fast_hift=not args.plain_hift, seed=args.seed, progress=True)
    report_rows(rows, _COLUMNS, args.threads, args.json)
    return 0
