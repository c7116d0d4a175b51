"""Flow checkpoint loading: flow.pt and safetensors, key map, shape and key errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from stepaudio.decoder.cosyvoice1.flow import MaskedDiffWithXvec
from stepaudio.decoder.cosyvoice1.flow_config import ConformerConfig, EstimatorConfig, FlowConfig, LengthRegulatorConfig
from stepaudio.decoder.cosyvoice1.flow_loading import convert_state_dict, flow_key_map, load_flow
from stepaudio.errors import CheckpointError

TINY = FlowConfig(
    input_size=16, vocab_size=30,
    encoder=ConformerConfig(input_size=16, output_size=16, attention_heads=2, linear_units=24, num_blocks=1),
    length_regulator=LengthRegulatorConfig(sampling_ratios=(1,)),
    estimator=EstimatorConfig(channels=(8, 8), attention_head_dim=4, n_blocks=1, num_mid_blocks=1, num_heads=2),
)


def _reference_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the reference names (separate to_q / to_k / to_v)."""
    torch.manual_seed(seed)
    model = MaskedDiffWithXvec(TINY)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.endswith("attn1.to_qkv.weight"):
            prefix = key[: -len("to_qkv.weight")]
            for name, part in zip(("to_q", "to_k", "to_v"), value.chunk(3), strict=True):
                out[f"{prefix}{name}.weight"] = part.clone()
        else:
            out[key] = value.clone()
    return out


def test_key_map_fuses_qkv_only() -> None:
    mapping = flow_key_map(["a.attn1.to_qkv.weight", "encoder.after_norm.weight"])
    assert mapping["a.attn1.to_qkv.weight"] == ("a.attn1.to_q.weight", "a.attn1.to_k.weight", "a.attn1.to_v.weight")
    assert mapping["encoder.after_norm.weight"] == ("encoder.after_norm.weight",)


def test_reference_names_cover_the_real_layout() -> None:
    keys = set(_reference_state())
    for key in ("input_embedding.weight", "spk_embed_affine_layer.bias", "encoder.embed.out.0.weight",
                "encoder.encoders.0.self_attn.pos_bias_u", "encoder.encoders.0.self_attn.linear_pos.weight",
                "length_regulator.model.3.weight", "decoder.estimator.time_mlp.linear_1.weight",
                "decoder.estimator.down_blocks.0.0.block1.block.0.weight",
                "decoder.estimator.down_blocks.0.1.0.attn1.to_q.weight",
                "decoder.estimator.down_blocks.0.2.conv.weight", "decoder.estimator.down_blocks.1.2.weight",
                "decoder.estimator.mid_blocks.0.1.0.ff.net.0.proj.weight",
                "decoder.estimator.up_blocks.0.2.conv.weight", "decoder.estimator.final_proj.bias"):
        assert key in keys, key


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_from_flow_pt_and_safetensors(tmp_path: Path, suffix: str) -> None:
    state = _reference_state()
    path = tmp_path / f"flow{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    model = load_flow(path, TINY, dtype=torch.float32)
    loaded = model.state_dict()
    assert torch.equal(loaded["input_embedding.weight"], state["input_embedding.weight"])
    qkv = loaded["decoder.estimator.mid_blocks.0.1.0.attn1.to_qkv.weight"]
    p = "decoder.estimator.mid_blocks.0.1.0.attn1."
    assert torch.equal(qkv, torch.cat([state[p + "to_q.weight"], state[p + "to_k.weight"], state[p + "to_v.weight"]]))
    assert load_flow(path, TINY, dtype=torch.bfloat16).input_embedding.weight.dtype == torch.bfloat16


def test_shape_mismatch_names_key_and_both_shapes() -> None:
    state = _reference_state()
    state["encoder_proj.weight"] = torch.zeros(80, 17)
    with pytest.raises(CheckpointError, match=r"encoder_proj\.weight.*\(80, 17\).*\(80, 16\)"):
        convert_state_dict(state, MaskedDiffWithXvec(TINY))


def test_missing_and_unexpected_keys() -> None:
    state = _reference_state()
    del state["decoder.estimator.up_blocks.0.1.0.attn1.to_k.weight"]
    with pytest.raises(CheckpointError, match=r"missing key .*up_blocks\.0\.1\.0\.attn1\.to_k\.weight"):
        convert_state_dict(state, MaskedDiffWithXvec(TINY))
    state = _reference_state()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        convert_state_dict(state, MaskedDiffWithXvec(TINY))
    assert "extra.weight" not in convert_state_dict(state, MaskedDiffWithXvec(TINY), strict=False)


def test_unreadable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_flow(tmp_path / "nope.pt", TINY)
    bad = tmp_path / "flow.pt"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="not a readable flow checkpoint") as caught:
        load_flow(bad, TINY)
    assert "\n" not in str(caught.value) and str(caught.value).endswith("re-download flow.pt")
