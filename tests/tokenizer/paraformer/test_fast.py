"""Reduced-precision encoder weights stay close to the fp32 encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stepaudio.hardware import onednn_can_pack
from stepaudio.tokenizer.paraformer.encoder import ChunkConfig, ParaformerEncoder, ParaformerEncoderConfig
from stepaudio.tokenizer.paraformer.fast import (
    Bf16Linear,
    FbgemmInt8Linear,
    Int8Linear,
    PackedLinear,
    reduce_encoder_weights,
)


def _encoders(mode: str, input_size: int = 48) -> tuple[ParaformerEncoder, ParaformerEncoder]:
    config = ParaformerEncoderConfig(
        input_size=input_size, output_size=32, attention_heads=4, linear_units=64, num_blocks=4
    )
    torch.manual_seed(0)
    base = ParaformerEncoder(config).eval()
    other = ParaformerEncoder(config).eval()
    other.load_state_dict(base.state_dict())
    return base, reduce_encoder_weights(other, mode)


def _run(encoder: ParaformerEncoder, feats: list[torch.Tensor]) -> torch.Tensor:
    chunk = ChunkConfig()
    cache = encoder.new_cache(chunk)
    outs = []
    with torch.inference_mode():
        for f in feats:
            out, cache = encoder.forward_chunk(f, cache, chunk)
            outs.append(out[:, -f.shape[1] :])
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize(
    ("mode", "wrapper", "input_size", "tol"),
    [
        ("bf16", Bf16Linear, 48, 0.03),
        pytest.param("bf16-packed", PackedLinear, 48, 0.03, marks=pytest.mark.skipif(
            not onednn_can_pack(torch.bfloat16), reason="this CPU cannot pack bf16 weights for oneDNN")),
        ("int8", Int8Linear, 48, 0.05),
        ("int8", Int8Linear, 40, 0.05),
        ("fp32-packed", PackedLinear, 40, 1e-5),
        ("int8-packed", FbgemmInt8Linear, 48, 0.05),
        ("int8-packed", FbgemmInt8Linear, 40, 0.05),
    ],
)
def test_reduced_weights_track_fp32(mode: str, wrapper: type, input_size: int, tol: float) -> None:
    base, reduced = _encoders(mode, input_size)
    assert isinstance(reduced.encoders[0].self_attn.linear_q_k_v, wrapper)
    gen = torch.Generator().manual_seed(1)
    feats = [torch.randn(1, 4, input_size, generator=gen) for _ in range(5)]
    want, got = _run(base, feats), _run(reduced, feats)
    assert got.dtype == torch.float32
    rel = float((got - want).norm() / want.norm())
    assert rel < tol
    if mode != "fp32-packed":
        assert rel > 0  # really running in reduced precision


def test_fp32_mode_is_identity_and_unknown_mode_fails() -> None:
    base, same = _encoders("fp32")
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), same.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="weight mode"):
        reduce_encoder_weights(base, "fp8")


def test_preferred_weight_mode_follows_the_measured_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stepaudio.kernels.choices import ChoiceCache, Measured
    from stepaudio.tokenizer.paraformer.fast import WEIGHT_MODE_QUESTION, preferred_weight_mode

    monkeypatch.setenv("STEPAUDIO_CACHE", str(tmp_path))
    monkeypatch.delenv("STEPAUDIO_REMEASURE", raising=False)
    for mode in ("fp32", "fp32-packed"):
        ChoiceCache().put(WEIGHT_MODE_QUESTION, Measured(mode, {"decode": {mode: 1.0}}))
        assert preferred_weight_mode("cpu") == (mode if torch.backends.mkldnn.is_available() else "fp32")
    assert preferred_weight_mode("cuda") == "fp32"


def test_measure_weight_modes_times_both_exact_modes() -> None:
    from stepaudio.tokenizer.paraformer.fast import measure_weight_modes

    if not torch.backends.mkldnn.is_available():
        pytest.skip("needs oneDNN")
    measured = measure_weight_modes()
    for use in ("prefill", "decode"):
        assert set(measured.timings[use]) == {"fp32", "fp32-packed"}
    assert measured.choice in ("fp32", "fp32-packed")
