"""Length regulator: separate prompt/target interpolation, padded batches, conformance `mu`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice1.flow import FlowRequest, prepare_conditioning
from stepaudio.decoder.cosyvoice1.flow_config import LengthRegulatorConfig, flow_config_from_hparams
from stepaudio.decoder.cosyvoice1.flow_loading import load_flow
from stepaudio.decoder.cosyvoice1.length_regulator import InterpolateRegulator


def _regulator() -> InterpolateRegulator:
    torch.manual_seed(0)
    reg = InterpolateRegulator(LengthRegulatorConfig(channels=8, sampling_ratios=(1, 1))).eval()
    with torch.no_grad():
        for p in reg.parameters():
            p.normal_(0, 0.3)
    return reg


def test_prompt_and_target_are_interpolated_separately() -> None:
    reg = InterpolateRegulator(LengthRegulatorConfig(channels=4, sampling_ratios=()))
    with torch.no_grad():  # identity 1x1 conv exposes the interpolation itself
        reg.model[0].weight.copy_(torch.eye(4).unsqueeze(-1))
        reg.model[0].bias.zero_()
    h = torch.cat([torch.zeros(1, 3, 4), torch.ones(1, 5, 4)], dim=1)
    mu, mask = reg(h, [3], [5], [7], [11])
    assert mask is None and mu.shape == (1, 4, 18)
    assert torch.equal(mu[0, :, :7], torch.zeros(4, 7))  # no blur across the prompt boundary
    assert torch.equal(mu[0, :, 7:], torch.ones(4, 11))
    ramp = torch.arange(5.0).view(1, 5, 1).expand(1, 5, 4)
    mu, _ = reg(ramp, [0], [5], [0], [9])
    expected = F.interpolate(ramp.transpose(1, 2), size=9, mode="linear", align_corners=False)
    torch.testing.assert_close(mu, expected)


def test_padded_batch_equals_single_runs() -> None:
    reg = _regulator()
    h1, h2 = torch.randn(1, 10, 8), torch.randn(1, 7, 8)
    batch = torch.zeros(2, 10, 8)
    batch[0], batch[1, :7] = h1[0], h2[0]
    with torch.inference_mode():
        mu, mask = reg(batch, [4, 3], [6, 4], [9, 8], [15, 10])
        assert mask is not None and mask[:, 0].sum(-1).tolist() == [24, 18]
        one, _ = reg(h1, [4], [6], [9], [15])
        two, _ = reg(h2, [3], [4], [8], [10])
    torch.testing.assert_close(mu[0], one[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mu[1, :, :18], two[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(mu[1, :, 18:], torch.zeros(8, 6))


def test_prompt_tokens_without_frames_raise() -> None:
    with pytest.raises(ValueError, match="prompt"):
        _regulator()(torch.randn(1, 5, 8), [2], [3], [0], [4])


@pytest.mark.conformance
def test_conformance_mu(conformance_dir: Path) -> None:
    d = conformance_dir / "flow"
    model = load_flow(d / "flow.safetensors", flow_config_from_hparams(d / "hparams.json"))
    v = load_file(str(d / "vectors.safetensors"))
    req = FlowRequest(v["inputs.token"][0], v["inputs.prompt_token"][0], v["inputs.prompt_feat"][0],
                      v["inputs.embedding"][0])
    with torch.inference_mode():
        c = prepare_conditioning(model, [req])
    torch.testing.assert_close(c.mu.transpose(1, 2), v["outputs.mu"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(c.spks, v["outputs.spk_embedding_projected"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c.cond, v["estimator_step1.cond"][:1], atol=0, rtol=0)
