"""Conformer encoder: relative shift, padding masks, conformance against the reference encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice1.conformer import ConformerEncoder, rel_position_encoding, rel_shift
from stepaudio.decoder.cosyvoice1.flow_config import ConformerConfig, flow_config_from_hparams
from stepaudio.decoder.cosyvoice1.flow_loading import load_flow


def _encoder(seed: int = 0) -> ConformerEncoder:
    torch.manual_seed(seed)
    enc = ConformerEncoder(ConformerConfig(input_size=12, output_size=16, attention_heads=2, linear_units=24,
                                           num_blocks=2)).eval()
    with torch.no_grad():
        for layer in enc.encoders:
            layer.self_attn.pos_bias_u.normal_()
            layer.self_attn.pos_bias_v.normal_()
    return enc


def test_rel_shift_picks_distance_i_minus_j() -> None:
    t = 5
    scores = torch.randn(2, 3, t, 2 * t - 1)
    shifted = rel_shift(scores)
    for i in range(t):
        for j in range(t):
            # column k of the unshifted scores holds relative distance T-1-k
            assert torch.equal(shifted[..., i, j], scores[..., i, t - 1 - (i - j)])


def test_position_encoding_rows() -> None:
    pe = rel_position_encoding(4, 8, torch.device("cpu"), torch.float32)
    assert pe.shape == (1, 7, 8)
    assert torch.allclose(pe[0, 3], torch.tensor([0.0, 1.0] * 4))  # distance 0
    assert torch.allclose(pe[0, 0, 0], torch.sin(torch.tensor(3.0)))  # distance 3, first frequency 1
    assert torch.allclose(pe[0, 6, 0], torch.sin(torch.tensor(-3.0)))


def test_padded_batch_equals_single_runs() -> None:
    enc = _encoder()
    a, b = torch.randn(1, 9, 12), torch.randn(1, 6, 12)
    batch = torch.zeros(2, 9, 12)
    batch[0], batch[1, :6] = a[0], b[0]
    with torch.inference_mode():
        out = enc(batch, torch.tensor([9, 6]))
        torch.testing.assert_close(out[0], enc(a)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1, :6], enc(b)[0], atol=1e-5, rtol=1e-5)
        # without the mask the padding would leak into the short item
        assert (enc(batch)[1, :6] - enc(b)[0]).abs().max() > 1e-3


def test_positions_matter() -> None:
    enc = _encoder()
    x = torch.randn(1, 7, 12)
    with torch.inference_mode():
        out = enc(x)
        flipped = enc(x.flip(1)).flip(1)
    assert (out - flipped).abs().max() > 1e-3


@pytest.mark.conformance
def test_conformance_encoder(conformance_dir: Path) -> None:
    d = conformance_dir / "flow"
    model = load_flow(d / "flow.safetensors", flow_config_from_hparams(d / "hparams.json"))
    v = load_file(str(d / "vectors.safetensors"))
    tokens = torch.cat([v["inputs.prompt_token"], v["inputs.token"]], dim=1)
    with torch.inference_mode():
        enc = model.encoder(model.input_embedding(tokens.clamp(min=0)))
        torch.testing.assert_close(enc, v["outputs.encoder_out"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.encode(tokens), v["outputs.encoder_proj_out"], atol=1e-4, rtol=1e-4)
