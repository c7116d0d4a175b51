"""Runs the public Step-Audio-EditX reference decoder for `stepaudio bench decoder-reference --family editx`.

Run as a script by a Python that can import the reference's `stepvocoder` package (a Step-Audio-EditX checkout
plus torch, hyperpyyaml, onnxruntime, numpy, scipy); it imports nothing from stepaudio, so the two sides never
share a process. It builds the flow and HiFT from the `cosyvoice.yaml` in the work folder through hyperpyyaml
and loads `flow.pt` / `hift.pt` strictly (the files our side wrote: a key-layout check as well), exactly as the
release's `CosyVoice.__init__` does, then decodes every case through the release's `CosyVoice_stream_impl_`:
`token2wav_nonstream` (what the apps call) and `token2wav_stream` (ids given one at a time, as its docstring
says, then `last_chunk=True`).

What the driver sets, none of which changes the arithmetic: the CFM's `rand_noise` buffer is the case's noise;
the HiFT draws (`torch.rand` for the initial phases, `torch.randn_like` for the excitation noise) come from a
seeded generator and a fixed base tiled over the shape, the phases being recorded for our side; the
estimator's streaming scratch buffers, hard-coded for the real shape and 1000 frames, are re-made for the
shape and length at hand. Modules only the release's front end imports (`whisper`, `torchaudio`) are
replaced by empty ones when this Python lacks them. Outputs and times go to the work folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FRONTEND_ONLY = ("whisper", "torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi")


def _import_reference(source: str) -> Any:
    sys.path.insert(0, source)
    for name in FRONTEND_ONLY:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    from stepvocoder.cosyvoice2.cli.cosyvoice import CosyVoice_stream_impl_

    return CosyVoice_stream_impl_


def _build(work: Path, max_frames: int, steps: int) -> tuple[Any, Any]:
    import torch
    from hyperpyyaml import load_hyperpyyaml

    with open(work / "cosyvoice.yaml", encoding="utf-8") as handle:
        configs = load_hyperpyyaml(handle)
    flow, hift = configs["flow"], configs["hift"]
    flow.load_state_dict(torch.load(work / "flow.pt", map_location="cpu"))
    hift.load_state_dict(torch.load(work / "hift.pt", map_location="cpu"))
    flow, hift = flow.eval(), hift.eval()
    est = flow.decoder.estimator
    depth, heads, head_dim = len(est.blocks), est.blocks[0].attn.num_heads, est.blocks[0].attn.head_dim
    hidden = est.blocks[0].norm1.normalized_shape[0]
    est.att_cache_buffer = torch.zeros(depth, 2, heads, max_frames, 2 * head_dim)
    est.cnn_cache_buffer = torch.zeros(depth, 2, 2 * hidden, 2)
    flow.decoder.att_cache_buffer = torch.zeros(steps, depth, 2, heads, max_frames, 2 * head_dim)
    flow.decoder.cnn_cache_buffer = torch.zeros(steps, depth, 2, 2 * hidden, 2)
    return flow, hift


class Draws:
    """HiFT's random draws: phases from a seeded generator (recorded), noise by tiling a fixed base."""

    def __init__(self, seed: int, base: Any) -> None:
        import torch

        self.generator = torch.Generator().manual_seed(seed)
        self.base = base.reshape(-1)
        self.phases: list[Any] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        import torch

        rand, randn_like = torch.rand, torch.randn_like

        def scripted_rand(*shape: Any, **kwargs: Any) -> Any:
            if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
                shape = tuple(shape[0])
            drawn = rand(*shape, generator=self.generator)
            self.phases.append(drawn.clone())
            return drawn.to(kwargs.get("device") or "cpu")

        def tiled(t: Any, **kwargs: Any) -> Any:
            index = torch.arange(t.numel()) % self.base.numel()
            return self.base[index].reshape(t.shape).to(t)

        torch.rand, torch.randn_like = scripted_rand, tiled  # type: ignore[assignment]
        try:
            yield
        finally:
            torch.rand, torch.randn_like = rand, randn_like


def _run_case(impl: Any, flow: Any, case: dict[str, Any], inputs: dict[str, Any], spec: dict[str, Any],
              work: Path) -> dict[str, Any]:
    import torch

    flow.decoder.rand_noise = inputs["noise"].clone()
    mels: list[Any] = []
    offline, chunked = flow.inference, flow.inference_chunk

    def capture_offline(*args: Any, **kwargs: Any) -> Any:
        out = offline(*args, **kwargs)
        mels.append(out.clone())
        return out

    def capture_chunk(*args: Any, **kwargs: Any) -> Any:
        out = chunked(*args, **kwargs)
        mels.append(out[0].clone())
        return out

    prompt_ids, prompt_mel = inputs["prompt_ids"][None], inputs["prompt_mel"][None]
    embedding = inputs["embedding"][None]
    flow.inference = capture_offline
    draws = Draws(case["vocoder_seed"], inputs["hift_noise_base"])
    times = []
    for _ in range(spec["warmup"] + spec["repeats"]):
        mels.clear()
        draws.phases.clear()
        draws.generator.manual_seed(case["vocoder_seed"])
        start = time.perf_counter()
        with draws.active(), torch.inference_mode():
            wav = impl.token2wav_nonstream(inputs["tokens"][None], prompt_ids, prompt_mel, embedding)
        times.append(time.perf_counter() - start)
    flow.inference = offline
    result = {"offline_mel": mels[0].float(), "offline_wav": wav.float(), "offline_phases": list(draws.phases)}

    flow.inference_chunk = capture_chunk
    stream_times, first_audio = [], []
    for repeat in range(spec["warmup"] + spec["repeats"]):
        mels.clear()
        draws = Draws(case["vocoder_seed"] + 1, inputs["hift_noise_base"])
        pieces, first = [], None
        session = f"{case['name']}-{repeat}"
        start = time.perf_counter()
        with draws.active(), torch.inference_mode():
            for token in inputs["tokens"].tolist():
                out = impl.token2wav_stream([token], prompt_ids, prompt_mel, embedding, session, False)
                if out is not None:
                    pieces.append(out)
                    first = first if first is not None else time.perf_counter() - start
            out = impl.token2wav_stream([], prompt_ids, prompt_mel, embedding, session, True)
            if out is not None:
                pieces.append(out)
        stream_times.append(time.perf_counter() - start)
        first_audio.append(first if first is not None else stream_times[-1])
    flow.inference_chunk = chunked
    result |= {"stream_mels": [m.float() for m in mels], "stream_pieces": [p.float() for p in pieces],
               "stream_phases": list(draws.phases)}
    torch.save(result, work / f"ref_{case['name']}.pt")
    skip = spec["warmup"]
    return {"case": case["name"], "offline_s": times[skip:], "stream_s": stream_times[skip:],
            "stream_first_audio_s": first_audio[skip:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work", type=Path, help="folder holding spec.json and the decoder files; outputs go there")
    args = parser.parse_args(argv)
    spec = json.loads((args.work / "spec.json").read_text())
    impl_class = _import_reference(spec["source"])
    import torch

    torch.set_num_threads(spec["threads"])
    flow, hift = _build(args.work, spec["max_estimator_frames"], spec["n_timesteps"])
    impl = impl_class(flow, hift, n_timesteps=spec["n_timesteps"])
    results = []
    for case in spec["cases"]:
        inputs = torch.load(args.work / f"inputs_{case['name']}.pt")
        results.append(_run_case(impl, flow, case, inputs, spec, args.work))
        print(json.dumps(results[-1]), flush=True)
    (args.work / "reference_times.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
