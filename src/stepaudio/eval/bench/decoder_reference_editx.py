"""`stepaudio bench decoder-reference --family editx`: EditX's decoder against the public reference, side by side.

The reference (the `stepvocoder` package of the user's own Step-Audio-EditX checkout: never shipped here) runs
in its own Python process through `decoder_reference_editx_driver.py`. Our side writes the decoder folder
first: `cosyvoice.yaml` in the release's own format (the CosyVoice-300M-25Hz shape, or `--cosyvoice-yaml`),
random `flow.pt` / `hift.pt` in the release layout; the reference builds its modules from that yaml and loads
those files strictly. Both sides decode the same ids with the same prompt (ids, untrimmed bf16-rounded mel,
x-vector), the same flow noise and the same HiFT draws, offline (`token2wav_nonstream`) and streamed
(`token2wav_stream`, ids one at a time), and we report each side's time and how far ours is from the
reference's float32 output: max |mel difference| and waveform SNR, for the whole offline clip and for the
streamed chunks (same chunking). The release runs this decoder in float32 only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from stepaudio.eval.bench.decoder_reference import snr_db
from stepaudio.eval.bench.table import format_rows
from stepaudio.testing.editx_yaml import TINY_SHAPE, EditXShape, editx_yaml

SAMPLE_RATE = 24000
MEL_HOP = 480
IDS_PER_SECOND = 25 * 5 / 3  # interleaved dual-codebook ids: 5 per 3 frames at 25 Hz
DRIVER = Path(__file__).with_name("decoder_reference_editx_driver.py")
NOISE_FRAMES = 50 * 600  # the reference's `rand_noise` buffer: 600 s of 50 Hz mel frames


# 300m: Step-Audio 2's token2wav sizes with EditX's 5121-row dual-codebook table (REFERENCE-SA2.md §7; [I] for
# EditX: its cosyvoice.yaml was not opened). tiny: `testing.tiny_editx.TINY_SHAPE`.
SHAPES = {"300m": EditXShape(),
          "tiny": TINY_SHAPE}

def random_ids(groups: int, generator: Any) -> Any:
    """Interleaved flow ids of `groups` whole 2+3 groups (vq02 0..1023, vq06 1024..5119)."""
    import torch

    vq02 = torch.randint(0, 1024, (groups, 2), generator=generator)
    vq06 = torch.randint(1024, 5120, (groups, 3), generator=generator)
    return torch.cat([vq02, vq06], dim=1).reshape(-1)


def make_inputs(case: dict[str, Any], config: Any) -> dict[str, Any]:
    """Ids (a partial last group when the length says so), a prompt whose untrimmed mel is longer than its codes,
    bf16-rounded as the release rounds them, the flow noise and the HiFT noise base."""
    import torch

    g = torch.Generator().manual_seed(case["seed"])
    tokens = random_ids(-(-case["tokens"] // 5), g)[: case["tokens"]]
    prompt_ids = random_ids(case["prompt_groups"], g)
    mel = (torch.randn(case["prompt_mel_frames"], config.flow.output_size, generator=g) - 5.0).bfloat16().float()
    return {"tokens": tokens, "prompt_ids": prompt_ids, "prompt_mel": mel,
            "embedding": torch.randn(config.flow.spk_embed_dim, generator=g).bfloat16().float(),
            "noise": torch.randn(1, config.flow.output_size, NOISE_FRAMES, generator=g),
            "hift_noise_base": torch.randn(4099, generator=g)}


def _ours(args: argparse.Namespace, work: Path, config: Any, case: dict[str, Any], reference: dict[str, Any],
          dtype_name: str) -> list[dict[str, Any]]:
    import numpy as np
    import torch

    from stepaudio.decoder.cosyvoice2.cfm import TensorNoise
    from stepaudio.decoder.cosyvoice2.editx import load_editx_flow
    from stepaudio.decoder.cosyvoice2.editx_token2wav import EditXPrompt, EditXToken2Wav
    from stepaudio.decoder.cosyvoice2.hift import ScriptedDraws
    from stepaudio.decoder.cosyvoice2.hift_loading import load_hift24k

    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    inputs = torch.load(work / f"inputs_{case['name']}.pt")
    flow = load_editx_flow(work / "flow.pt", config.flow, dtype=dtype)
    t2w = EditXToken2Wav(flow, load_hift24k(work / "hift.pt", config.hift), config, noise=TensorNoise(inputs["noise"]))
    prompt = EditXPrompt(tuple(inputs["prompt_ids"].tolist()), inputs["prompt_mel"], inputs["embedding"])
    tokens = inputs["tokens"].tolist()
    base = inputs["hift_noise_base"]
    times, stream_times, firsts = [], [], []
    for _ in range(args.warmup + max(1, args.repeats)):
        start = time.perf_counter()
        mel = t2w.mel(tokens, prompt)
        wav, _ = t2w.hift(mel, ScriptedDraws(list(reference["offline_phases"]), base))
        times.append(time.perf_counter() - start)
        stream = t2w.stream(prompt, draws=ScriptedDraws(list(reference["stream_phases"]), base))
        pieces, mels, first = [], [], None  # mels: the flow output of each decoded chunk
        start = time.perf_counter()
        for token in tokens:
            out = stream.push([token])
            if out.size:
                pieces.append(out)
                mels.append(_last_mel(stream))
                first = first if first is not None else time.perf_counter() - start
        pieces.append(stream.finish())
        mels.append(_last_mel(stream))
        stream_times.append(time.perf_counter() - start)
        firsts.append(first if first is not None else stream_times[-1])
    times, stream_times, firsts = times[args.warmup:], stream_times[args.warmup:], firsts[args.warmup:]
    streamed = torch.from_numpy(np.concatenate(pieces))
    ref_stream = torch.cat([p.reshape(-1) for p in reference["stream_pieces"]])
    ref_stream_mel = torch.cat(reference["stream_mels"], dim=2)
    common = {"impl": "stepaudio", "case": case["name"], "flow": dtype_name, "audio_s": case["audio_s"]}
    return [
        common | {"mode": "offline", "total_s": statistics.median(times),
                  "mel_max_abs": float((mel.float() - reference["offline_mel"]).abs().max()),
                  "wav_snr_db": snr_db(reference["offline_wav"], wav)},
        common | {"mode": "stream", "total_s": statistics.median(stream_times), "first_audio_s": min(firsts),
                  "chunks": len(mels), "ref_chunks": len(reference["stream_mels"]),
                  "mel_max_abs": float((torch.cat([m.float() for m in mels], dim=2) - ref_stream_mel).abs().max())
                  if len(mels) == len(reference["stream_mels"]) else float("nan"),
                  "wav_snr_db": snr_db(ref_stream, streamed),
                  "stream_vs_offline_snr_db": snr_db(wav.reshape(-1), streamed)},
    ]


def _last_mel(stream: Any) -> Any:
    if stream.last_mel is None:
        raise RuntimeError("the stream decoded no chunk")
    return stream.last_mel


def run(args: argparse.Namespace) -> int:
    """The `--family editx` run (`decoder_reference.run` dispatches here)."""
    import torch

    from stepaudio.decoder.cosyvoice2.editx_stream import EditXStreamConfig
    from stepaudio.testing.tiny_editx import write_random_editx_decoder

    if not (args.source / "stepvocoder").is_dir():
        raise SystemExit(f"{args.source} holds no stepvocoder/ package (pass the Step-Audio-EditX checkout)")
    torch.set_num_threads(args.threads)
    yaml_text = args.cosyvoice_yaml.read_text(encoding="utf-8") if args.cosyvoice_yaml else editx_yaml(SHAPES["300m"])
    stream = EditXStreamConfig()
    prompt_groups = max(1, round(args.prompt_seconds * 25 / 3))
    prompt_frames = prompt_groups * 3 * 2
    with tempfile.TemporaryDirectory(prefix="stepaudio-editx-ref-") as tmp:
        work = args.work or Path(tmp)
        config = write_random_editx_decoder(work, yaml_text, args.seed, hift_seed=args.seed + 1)
        cases = [{"name": f"{s:g}s", "audio_s": s, "tokens": max(1, round(s * IDS_PER_SECOND)),
                  "prompt_groups": prompt_groups, "prompt_mel_frames": round(args.prompt_seconds * 1.25 * 50),
                  "seed": args.seed + 10 * i, "vocoder_seed": args.seed + 10 * i + 2}
                 for i, s in enumerate(args.seconds)]
        for case in cases:
            torch.save(make_inputs(case, config), work / f"inputs_{case['name']}.pt")
        spec = {"source": str(args.source.resolve()), "threads": args.threads, "repeats": max(1, args.repeats),
                "warmup": args.warmup, "n_timesteps": config.flow.cfm.n_timesteps, "cases": cases,
                "max_estimator_frames": prompt_frames + stream.left_context_frames + 4 * max(stream.chunk_frames)}
        (work / "spec.json").write_text(json.dumps(spec, indent=1))
        print(f"running the reference in {args.python} ...", flush=True)
        proc = subprocess.run([args.python, str(DRIVER), str(work)], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise SystemExit(f"the reference driver failed (exit {proc.returncode}):\n{tail}")
        timing = {t["case"]: t for t in json.loads((work / "reference_times.json").read_text())}
        rows: list[dict[str, Any]] = []
        print("running ours ...", flush=True)
        for case in cases:
            reference = torch.load(work / f"ref_{case['name']}.pt")
            t = timing[case["name"]]
            common = {"impl": "reference", "case": case["name"], "flow": "fp32", "audio_s": case["audio_s"]}
            rows += [common | {"mode": "offline", "total_s": statistics.median(t["offline_s"])},
                     common | {"mode": "stream", "total_s": statistics.median(t["stream_s"]),
                               "first_audio_s": min(t["stream_first_audio_s"]),
                               "stream_vs_offline_snr_db": snr_db(reference["offline_wav"].reshape(-1), torch.cat(
                                   [p.reshape(-1) for p in reference["stream_pieces"]]))}]
            for dtype_name in args.dtypes:
                rows += _ours(args, work, config, case, reference, dtype_name)
    for row in rows:
        row["rtf"] = row["total_s"] / row["audio_s"]
        row["threads"] = args.threads
    print(format_rows(rows, COLUMNS))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


COLUMNS = (
    ("impl", "{}"),
    ("mode", "{}"),
    ("case", "{}"),
    ("flow", "{}"),
    ("total_s", "{:.2f}"),
    ("first_audio_s", "{:.2f}"),
    ("rtf", "{:.2f}"),
    ("chunks", "{}"),
    ("mel_max_abs", "{:.2e}"),
    ("wav_snr_db", "{:.1f}"),
    ("stream_vs_offline_snr_db", "{:.1f}"),
)
