"""Whole flow: conformance mel, batched requests equal single runs, bf16, noise handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice1.flow import FlowRequest, MaskedDiffWithXvec, generate_mel
from stepaudio.decoder.cosyvoice1.flow_config import (
    CFMConfig,
    ConformerConfig,
    EstimatorConfig,
    FlowConfig,
    LengthRegulatorConfig,
    flow_config_from_hparams,
)
from stepaudio.decoder.cosyvoice1.flow_loading import load_flow

TINY = FlowConfig(
    input_size=16, vocab_size=40, input_frame_rate=25.0,
    encoder=ConformerConfig(input_size=16, output_size=16, attention_heads=2, linear_units=24, num_blocks=1),
    length_regulator=LengthRegulatorConfig(sampling_ratios=(1,)),
    cfm=CFMConfig(n_timesteps=3),
    estimator=EstimatorConfig(channels=(16, 16), attention_head_dim=8, n_blocks=1, num_mid_blocks=1, num_heads=2),
)


def _model() -> MaskedDiffWithXvec:
    torch.manual_seed(0)
    return MaskedDiffWithXvec(TINY).eval()


def _request(n_prompt: int, n_target: int, prompt_frames: int, seed: int) -> FlowRequest:
    g = torch.Generator().manual_seed(seed)
    return FlowRequest(
        tokens=torch.randint(0, 40, (n_target,), generator=g),
        prompt_tokens=torch.randint(0, 40, (n_prompt,), generator=g),
        prompt_feat=torch.randn(prompt_frames, 80, generator=g),
        embedding=torch.randn(192, generator=g),
    )


def test_batch_of_two_equals_single_runs() -> None:
    model = _model()
    a, b = _request(6, 9, 14, 1), _request(4, 5, 9, 2)
    frames_a = 14 + TINY.mel_len(9)
    noise = torch.randn(2, 80, frames_a)
    batch = generate_mel(model, [a, b], noise=noise)
    alone_a = generate_mel(model, [a], noise=noise[:1])
    alone_b = generate_mel(model, [b], noise=noise[1:])
    assert batch[0].shape == (80, TINY.mel_len(9)) and batch[1].shape == (80, TINY.mel_len(5))
    torch.testing.assert_close(batch[0], alone_a[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batch[1], alone_b[0], atol=1e-4, rtol=1e-4)


def test_generator_makes_runs_repeatable_and_negative_ids_clamp() -> None:
    model = _model()
    req = _request(3, 7, 6, 3)
    one = generate_mel(model, [req], generator=torch.Generator().manual_seed(5))
    two = generate_mel(model, [req], generator=torch.Generator().manual_seed(5))
    assert torch.equal(one[0], two[0])
    clamped = FlowRequest(torch.where(req.tokens == 0, -1, req.tokens), req.prompt_tokens, req.prompt_feat,
                          req.embedding)
    three = generate_mel(model, [clamped], generator=torch.Generator().manual_seed(5))
    assert torch.equal(one[0], three[0])


def test_prompt_speaker_and_noise_all_matter() -> None:
    model = _model()
    req = _request(3, 7, 6, 4)
    noise = torch.randn(1, 80, 6 + TINY.mel_len(7))
    base = generate_mel(model, [req], noise=noise)[0]
    other_spk = FlowRequest(req.tokens, req.prompt_tokens, req.prompt_feat, torch.randn(192))
    other_feat = FlowRequest(req.tokens, req.prompt_tokens, req.prompt_feat + 1, req.embedding)
    assert (generate_mel(model, [other_spk], noise=noise)[0] - base).abs().max() > 1e-4
    assert (generate_mel(model, [other_feat], noise=noise)[0] - base).abs().max() > 1e-4
    assert (generate_mel(model, [req], noise=noise * 0.5)[0] - base).abs().max() > 1e-4


def test_bfloat16_flow_runs() -> None:
    model = _model()
    req = _request(3, 8, 6, 6)
    noise = torch.randn(1, 80, 6 + TINY.mel_len(8))
    ref = generate_mel(model, [req], noise=noise)[0]
    low = generate_mel(model.to(torch.bfloat16), [req], noise=noise)[0]
    assert low.dtype == torch.float32 and low.shape == ref.shape
    assert (low - ref).abs().max() < 0.1 * ref.abs().max()


def test_bad_inputs_raise() -> None:
    model = _model()
    with pytest.raises(ValueError, match="no mel frames"):
        generate_mel(model, [_request(3, 0, 6, 7)])
    with pytest.raises(ValueError, match="noise"):
        generate_mel(model, [_request(3, 8, 6, 7)], noise=torch.randn(1, 80, 5))
    with pytest.raises(ValueError, match="no flow requests"):
        generate_mel(model, [])


@pytest.mark.conformance
def test_conformance_final_mel(conformance_dir: Path) -> None:
    d = conformance_dir / "flow"
    model = load_flow(d / "flow.safetensors", flow_config_from_hparams(d / "hparams.json"))
    v = load_file(str(d / "vectors.safetensors"))
    req = FlowRequest(v["inputs.token"][0], v["inputs.prompt_token"][0], v["inputs.prompt_feat"][0],
                      v["inputs.embedding"][0])
    mel = generate_mel(model, [req], noise=v["inputs.noise"])
    torch.testing.assert_close(mel[0][None], v["outputs.mel"], atol=5e-4, rtol=0)
    # the reference's bf16 path differs by up to ~0.1; ours in bf16 stays in that range
    low = generate_mel(model.to(torch.bfloat16), [req], noise=v["inputs.noise"])
    assert (low[0][None] - v["outputs.mel_bf16_reference_path"]).abs().max() < 0.2
