"""Times the public Step-Audio reference decoder for `stepaudio bench decoder-reference`.

Run as a script by a Python that can import the reference's `cosyvoice` package (Step-Audio's checkout
plus its einops / diffusers / conformer / omegaconf); it imports nothing from stepaudio, so the two
sides never share a process. It builds the reference flow and HiFT at the shape given in `spec.json`,
initialises them randomly, saves `flow.pt` / `hift.pt` the way the release stores them (separate
q/k/v, weight-normed HiFT convs), draws the inputs, and times `flow.inference` and `hift.inference`
as Step-Audio's `token_to_wav_offline` calls them. Outputs and times go to the work folder.

The reference's estimator only runs in bf16 (it casts its activations in code) and builds HiFT's STFT
window with `.cuda()`; its float32 run disables exactly those casts, and the window stays on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _build(spec: dict[str, Any]) -> tuple[Any, Any]:
    from cosyvoice.flow.decoder import ConditionalDecoder
    from cosyvoice.flow.flow import MaskedDiffWithXvec
    from cosyvoice.flow.flow_matching import ConditionalCFM
    from cosyvoice.flow.length_regulator import InterpolateRegulator
    from cosyvoice.hifigan.f0_predictor import ConvRNNF0Predictor
    from cosyvoice.hifigan.generator import HiFTGenerator
    from cosyvoice.transformer.encoder import ConformerEncoder
    from omegaconf import DictConfig

    f = spec["flow"]
    dropouts = {"dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1}
    encoder = ConformerEncoder(**dropouts, **f["encoder"])
    regulator = InterpolateRegulator(**f["length_regulator"])
    cfm_params = DictConfig({**f["cfm"], "training_cfg_rate": 0.2, "reg_loss_type": "l1"})
    estimator = ConditionalDecoder(dropout=0.0, **f["estimator"])
    decoder = ConditionalCFM(in_channels=240, cfm_params=cfm_params, n_spks=1, spk_emb_dim=f["output_size"],
                             estimator=estimator)  # fmt: skip
    flow = MaskedDiffWithXvec(
        input_size=f["input_size"], output_size=f["output_size"], spk_embed_dim=f["spk_embed_dim"],
        output_type="mel", vocab_size=f["vocab_size"], input_frame_rate=f["input_frame_rate"],
        only_mask_loss=True, encoder=encoder, length_regulator=regulator, decoder=decoder,
    )  # fmt: skip
    h = dict(spec["hift"])
    f0 = ConvRNNF0Predictor(**h.pop("f0_predictor"))
    # HiFTGenerator moves its STFT window with a hard-coded `.cuda()`; on a CPU machine keep it in place
    import torch

    to_cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        hift = HiFTGenerator(f0_predictor=f0, **h)
    finally:
        torch.Tensor.cuda = to_cuda  # type: ignore[method-assign]
    return flow.eval(), hift.eval()


@contextlib.contextmanager
def _without_bf16_casts() -> Iterator[None]:
    """The estimator casts its activations to bf16 in code (`x.to(torch.bfloat16)`); the float32
    yardstick turns exactly those casts into no-ops and changes nothing else."""
    import torch

    original = torch.Tensor.to

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if (args and args[0] is torch.bfloat16) or (not args and kwargs.get("dtype") is torch.bfloat16):
            return self
        return original(self, *args, **kwargs)

    torch.Tensor.to = to  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.Tensor.to = original  # type: ignore[method-assign]


def timed(fn: Any, repeats: int, warmup: int) -> tuple[Any, list[float]]:
    """Output and wall times of `repeats` calls after `warmup` calls (both sides of the bench use it)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def _run_case(
    flow: Any,
    hift: Any,
    case: dict[str, Any],
    inputs: dict[str, Any],
    dtype_name: str,
    spec: dict[str, Any],
    work: Path,
) -> dict[str, Any]:
    """Time `flow.inference` then `hift.inference` on one case; save their outputs."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    model = copy.deepcopy(flow).to(dtype)  # the float32 master stays intact for the next case
    lengths = {
        name: torch.tensor([case[name]], dtype=torch.int32) for name in ("tokens", "prompt_tokens", "prompt_frames")
    }

    def run_flow() -> Any:
        torch.manual_seed(case["noise_seed"])
        with torch.inference_mode():
            return model.inference(
                token=inputs["token"], token_len=lengths["tokens"], prompt_token=inputs["prompt_token"],
                prompt_token_len=lengths["prompt_tokens"], prompt_feat=inputs["prompt_feat"].to(dtype),
                prompt_feat_len=lengths["prompt_frames"], embedding=inputs["embedding"].to(dtype),
            )  # fmt: skip

    casts = _without_bf16_casts() if dtype_name == "fp32" else contextlib.nullcontext()
    with casts:
        mel, flow_times = timed(run_flow, spec["repeats"], spec["warmup"])

    def run_hift() -> Any:
        torch.manual_seed(case["vocoder_seed"])
        with torch.inference_mode():
            return hift.inference(mel=mel.float())

    wav, hift_times = timed(run_hift, spec["repeats"], spec["warmup"])
    wav = wav[0] if isinstance(wav, tuple) else wav
    torch.save({"mel": mel.float(), "wav": wav.float()}, work / f"ref_{dtype_name}_{case['name']}.pt")
    return {"case": case["name"], "dtype": dtype_name, "flow_s": flow_times, "hift_s": hift_times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work", type=Path, help="folder holding spec.json; outputs are written there")
    args = parser.parse_args(argv)
    spec = json.loads((args.work / "spec.json").read_text())
    sys.path.insert(0, spec["source"])
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    flow, hift = _build(spec)
    torch.save(flow.state_dict(), args.work / "flow.pt")
    torch.save(hift.state_dict(), args.work / "hift.pt")
    f = spec["flow"]
    results = []
    for case in spec["cases"]:
        g = torch.Generator().manual_seed(case["seed"])
        inputs = {
            "token": torch.randint(0, f["vocab_size"], (1, case["tokens"]), generator=g),
            "prompt_token": torch.randint(0, f["vocab_size"], (1, case["prompt_tokens"]), generator=g),
            "prompt_feat": torch.randn(1, case["prompt_frames"], f["output_size"], generator=g) - 5.0,
            "embedding": torch.randn(1, f["spk_embed_dim"], generator=g),
        }
        torch.save(inputs, args.work / f"inputs_{case['name']}.pt")
        for dtype_name in spec["dtypes"]:
            results.append(_run_case(flow, hift, case, inputs, dtype_name, spec, args.work))
            print(json.dumps(results[-1]), flush=True)
    (args.work / "reference_times.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
