"""`stepaudio bench decoder-reference`: our decoder against the public reference, same weights, same noise.

The reference (Step-Audio's `cosyvoice` package, from the user's own checkout: it is never shipped
here) runs in its own Python process through `reference_driver.py`, which saves the random real-shape
weights as release-layout `flow.pt` / `hift.pt` and its outputs. Our side then loads those files with
the release loaders, runs the same inputs with the same initial noise and sine draws, and reports the
time of both and how far each output is from the reference's float32 output: the max abs mel
difference and the waveform SNR. The reference's shipped configuration is a bf16 flow with a float32
HiFT (`CosyVoice.__init__` casts the flow); its float32 flow is the exact-arithmetic yardstick.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepaudio.eval.bench.reference_driver import timed
from stepaudio.eval.bench.table import format_rows

SAMPLE_RATE = 22050
HOP = 256
DRIVER = Path(__file__).with_name("reference_driver.py")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source", required=True, type=Path,
        help="a Step-Audio checkout (the folder holding cosyvoice/); with --family editx a Step-Audio-EditX "
             "checkout (the folder holding stepvocoder/)",
    )
    parser.add_argument("--family", choices=["v1", "editx"], default="v1",
                        help="v1: Step-Audio's CosyVoice decoder; editx: EditX's CosyVoice-300M-25Hz (offline and "
                             "streamed, float32 reference; see decoder_reference_editx)")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that can import the reference (einops, diffusers, conformer, omegaconf)",
    )
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 5.0, 20.0])
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument(
        "--reference-dtypes",
        nargs="+",
        default=["bf16", "fp32"],
        choices=["fp32", "bf16"],
        help="flow dtypes of the reference (bf16 is what it ships)",
    )
    parser.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"], help="our flow dtypes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--token-rate", type=float, default=41.667)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cosyvoice-yaml", type=Path,
                        help="take the shape from this cosyvoice.yaml (default: the CosyVoice-300M-25Hz shape)")
    parser.add_argument("--work", type=Path, help="keep weights and outputs here (default: a temporary folder)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")


def reference_spec(flow_config: Any, hift_config: Any) -> dict[str, Any]:
    """Our typed configs as the reference constructors' keyword arguments."""
    enc = dataclasses.asdict(flow_config.encoder)
    reg = dataclasses.asdict(flow_config.length_regulator)
    reg["sampling_ratios"] = list(reg["sampling_ratios"])
    cfm = flow_config.cfm
    est = dataclasses.asdict(flow_config.estimator)
    est["channels"] = list(est["channels"])
    h = hift_config
    return {
        "flow": {
            "input_size": flow_config.input_size, "output_size": flow_config.output_size,
            "spk_embed_dim": flow_config.spk_embed_dim, "vocab_size": flow_config.vocab_size,
            "input_frame_rate": flow_config.input_frame_rate, "encoder": enc, "length_regulator": reg,
            "cfm": {"sigma_min": cfm.sigma_min, "solver": cfm.solver, "t_scheduler": cfm.t_scheduler,
                    "inference_cfg_rate": cfm.inference_cfg_rate},
            "estimator": est,
        },
        "hift": {
            "in_channels": h.in_channels, "base_channels": h.base_channels, "nb_harmonics": h.nb_harmonics,
            "sampling_rate": h.sampling_rate, "nsf_alpha": h.nsf_alpha, "nsf_sigma": h.nsf_sigma,
            "nsf_voiced_threshold": h.nsf_voiced_threshold, "upsample_rates": list(h.upsample_rates),
            "upsample_kernel_sizes": list(h.upsample_kernel_sizes),
            "istft_params": {"n_fft": h.n_fft, "hop_len": h.hop_len},
            "resblock_kernel_sizes": list(h.resblock_kernel_sizes),
            "resblock_dilation_sizes": [list(d) for d in h.resblock_dilation_sizes],
            "source_resblock_kernel_sizes": list(h.source_resblock_kernel_sizes),
            "source_resblock_dilation_sizes": [list(d) for d in h.source_resblock_dilation_sizes],
            "lrelu_slope": h.lrelu_slope, "audio_limit": h.audio_limit,
            "f0_predictor": {"num_class": h.f0_predictor.num_class, "in_channels": h.f0_predictor.in_channels,
                             "cond_channels": h.f0_predictor.cond_channels},
        },
    }  # fmt: skip


def snr_db(reference: Any, estimate: Any) -> float:
    """10 log10(|ref|^2 / |ref - est|^2) over the common length; inf when they are identical."""
    n = min(reference.numel(), estimate.numel())
    ref, est = reference.reshape(-1)[:n].double(), estimate.reshape(-1)[:n].double()
    err = float(((ref - est) ** 2).sum())
    return math.inf if err == 0 else 10 * math.log10(float((ref**2).sum()) / err)


def _median_time(fn: Callable[[], Any], repeats: int, warmup: int) -> tuple[Any, float]:
    out, times = timed(fn, repeats, warmup)
    return out, statistics.median(times)


def _run_reference(args: argparse.Namespace, work: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    (work / "spec.json").write_text(json.dumps(spec, indent=1))
    if not (args.source / "cosyvoice").is_dir():
        raise SystemExit(f"{args.source} holds no cosyvoice/ package (pass the Step-Audio checkout)")
    proc = subprocess.run([args.python, str(DRIVER), str(work)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"the reference driver failed (exit {proc.returncode}):\n{tail}")
    return list(json.loads((work / "reference_times.json").read_text()))


def _our_rows(
    args: argparse.Namespace, work: Path, spec: dict[str, Any], flow_config: Any, hift_config: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    import torch

    from stepaudio.decoder.cosyvoice1.flow import FlowRequest, generate_mel
    from stepaudio.decoder.cosyvoice1.flow_loading import load_flow
    from stepaudio.decoder.cosyvoice1.hift_fast import FastHiFT
    from stepaudio.decoder.cosyvoice1.hift_loading import load_hift
    from stepaudio.decoder.cosyvoice1.source import draw_sine_inputs, upsample_f0

    torch.set_num_threads(args.threads)
    hift = FastHiFT(load_hift(work / "hift.pt", hift_config))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for dtype_name in args.dtypes:
        dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
        flow = load_flow(work / "flow.pt", flow_config, dtype=dtype)
        for case in spec["cases"]:
            inputs = torch.load(work / f"inputs_{case['name']}.pt")
            request = FlowRequest(
                inputs["token"][0], inputs["prompt_token"][0], inputs["prompt_feat"][0], inputs["embedding"][0]
            )
            frames = case["prompt_frames"] + flow_config.mel_len(case["tokens"])
            noise = torch.randn(1, 80, frames, generator=torch.Generator().manual_seed(case["noise_seed"]))

            def synthesize(f: Any = flow, r: Any = request, z: Any = noise) -> Any:
                return generate_mel(f, [r], noise=z)[0]

            mel, flow_s = _median_time(synthesize, args.repeats, args.warmup)
            # the reference's SineGen draws its phases, then its noise, from the global generator
            gen = torch.Generator().manual_seed(case["vocoder_seed"])
            samples = upsample_f0(torch.zeros(1, mel.shape[-1]), hift_config.upsample_total).shape[-1]
            phase, sine_noise = draw_sine_inputs(1, hift_config.nb_harmonics + 1, samples, generator=gen)

            def vocode(m: Any = mel, p: Any = phase, z: Any = sine_noise) -> Any:
                with torch.inference_mode():
                    return hift(m[None], phase=p, noise=z)

            wav, hift_s = _median_time(vocode, args.repeats, args.warmup)
            out[(case["name"], dtype_name)] = {"flow_s": flow_s, "hift_s": hift_s, "mel": mel, "wav": wav}
        del flow
    return out


def run(args: argparse.Namespace) -> int:
    if args.family == "editx":
        from stepaudio.eval.bench.decoder_reference_editx import run as run_editx

        return run_editx(args)
    import torch

    from stepaudio.decoder.cosyvoice1.flow_config import cosyvoice_300m_config, flow_config_from_yaml
    from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig

    if args.cosyvoice_yaml:
        flow_config = flow_config_from_yaml(args.cosyvoice_yaml)
        hift_config = HiFTConfig.from_cosyvoice_yaml(args.cosyvoice_yaml)
    else:
        flow_config = cosyvoice_300m_config(input_frame_rate=args.token_rate)
        hift_config = HiFTConfig()
    token_rate = flow_config.input_frame_rate
    spec = reference_spec(flow_config, hift_config)
    prompt_tokens = round(args.prompt_seconds * token_rate)
    prompt_frames = int(args.prompt_seconds * SAMPLE_RATE / HOP)
    spec.update(source=str(args.source.resolve()), threads=args.threads, seed=args.seed, repeats=args.repeats,
                warmup=args.warmup, dtypes=args.reference_dtypes, cases=[
                    {"name": f"{s:g}s", "seconds": s, "tokens": round(s * token_rate),
                     "prompt_tokens": prompt_tokens, "prompt_frames": prompt_frames,
                     "seed": args.seed + 10 * i, "noise_seed": args.seed + 10 * i + 1,
                     "vocoder_seed": args.seed + 10 * i + 2}
                    for i, s in enumerate(args.seconds)])  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stepaudio-ref-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"running the reference in {args.python} ...", flush=True)
        reference = _run_reference(args, work, spec)
        print("running ours ...", flush=True)
        ours = _our_rows(args, work, spec, flow_config, hift_config)
        truth = {
            c["name"]: torch.load(work / f"ref_fp32_{c['name']}.pt")
            for c in spec["cases"]
            if "fp32" in args.reference_dtypes
        }
        rows = []
        for r in reference:
            rows.append(
                _row(
                    "reference",
                    r["case"],
                    r["dtype"],
                    statistics.median(r["flow_s"]),
                    statistics.median(r["hift_s"]),
                    torch.load(work / f"ref_{r['dtype']}_{r['case']}.pt"),
                    truth.get(r["case"]),
                )
            )
        for (case, dtype_name), o in ours.items():
            rows.append(_row("stepaudio", case, dtype_name, o["flow_s"], o["hift_s"], o, truth.get(case)))
    shipped = {r["case"]: r["total_s"] for r in rows if r["impl"] == "reference" and r["flow"] == "bf16"}
    exact = {r["case"]: r["total_s"] for r in rows if r["impl"] == "reference" and r["flow"] == "fp32"}
    for row in rows:
        if row["case"] in shipped:
            row["x_vs_shipped"] = shipped[row["case"]] / row["total_s"]
        if row["case"] in exact:
            row["x_vs_fp32"] = exact[row["case"]] / row["total_s"]
        row["rtf"] = row["total_s"] / row["audio_s"]
        row["threads"] = args.threads
    print(format_rows(rows, _COLUMNS))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _row(
    impl: str,
    case: str,
    dtype_name: str,
    flow_s: float,
    hift_s: float,
    outputs: dict[str, Any],
    truth: dict[str, Any] | None,
) -> dict[str, Any]:
    mel = outputs["mel"].reshape(80, -1)
    row: dict[str, Any] = {
        "impl": impl,
        "case": case,
        "flow": dtype_name,
        "flow_s": flow_s,
        "hift_s": hift_s,
        "total_s": flow_s + hift_s,
        "audio_s": mel.shape[-1] * HOP / SAMPLE_RATE,
    }
    if truth is not None:
        ref_mel = truth["mel"].reshape(80, -1)
        row["mel_max_abs"] = float((mel - ref_mel).abs().max())
        row["wav_snr_db"] = snr_db(truth["wav"], outputs["wav"])
    return row


_COLUMNS = (
    ("impl", "{}"),
    ("case", "{}"),
    ("flow", "{}"),
    ("flow_s", "{:.2f}"),
    ("hift_s", "{:.2f}"),
    ("total_s", "{:.2f}"),
    ("rtf", "{:.2f}"),
    ("x_vs_shipped", "{:.2f}"),
    ("x_vs_fp32", "{:.2f}"),
    ("mel_max_abs", "{:.2e}"),
    ("wav_snr_db", "{:.1f}"),
)
