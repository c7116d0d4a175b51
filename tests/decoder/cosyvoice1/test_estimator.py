"""Estimator (ConditionalDecoder): conformance step, condition/step split, padded batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice1.estimator import ConditionalDecoder, timestep_embedding
from stepaudio.decoder.cosyvoice1.flow_config import EstimatorConfig, flow_config_from_hparams
from stepaudio.decoder.cosyvoice1.flow_loading import load_flow

TINY = EstimatorConfig(channels=(16, 16), attention_head_dim=8, n_blocks=1, num_mid_blocks=2, num_heads=2)


def _estimator(seed: int = 0) -> ConditionalDecoder:
    torch.manual_seed(seed)
    est = ConditionalDecoder(TINY).eval()
    with torch.no_grad():
        for name, p in est.named_parameters():
            if name.endswith("bias") or "norm" in name or "block.1" in name:
                p.normal_(0, 0.2)
    return est


def _inputs(b: int, t: int) -> tuple[torch.Tensor, ...]:
    return torch.randn(b, 80, t), torch.randn(b, 80, t), torch.rand(b), torch.randn(b, 80), torch.randn(b, 80, t)


def test_timestep_embedding_layout() -> None:
    emb = timestep_embedding(torch.tensor([0.0, 0.5]), 8)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert torch.allclose(emb[1, 0], torch.sin(torch.tensor(500.0)))


@pytest.mark.parametrize("t", [16, 21, 1])
def test_output_shape_for_odd_lengths(t: int) -> None:
    x, mu, tt, spks, cond = _inputs(2, t)
    with torch.inference_mode():
        out = _estimator()(x, torch.ones(2, 1, t), mu, tt, spks, cond)
    assert out.shape == (2, 80, t) and torch.isfinite(out).all()


def test_condition_split_and_tiled_x_equal_plain_forward() -> None:
    est = _estimator()
    x, mu, tt, spks, cond = _inputs(1, 19)
    zeros = torch.zeros_like
    with torch.inference_mode():
        full = est(torch.cat([x, x]), None, torch.cat([mu, zeros(mu)]), torch.cat([tt, tt]),
                   torch.cat([spks, zeros(spks)]), torch.cat([cond, zeros(cond)]))
        prepared = est.condition(torch.cat([mu, zeros(mu)]), torch.cat([spks, zeros(spks)]),
                                 torch.cat([cond, zeros(cond)]), None, copies=2)
        tiled = est.step(x, torch.cat([tt, tt]), prepared)
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=1e-5)


def test_every_input_matters() -> None:
    est = _estimator()
    args = list(_inputs(1, 12))
    with torch.inference_mode():
        base = est(args[0], None, *args[1:])
        for i in range(5):
            changed = list(args)
            changed[i] = changed[i] + 0.5
            assert (est(changed[0], None, *changed[1:]) - base).abs().max() > 1e-4, i


def test_padded_batch_equals_single_runs() -> None:
    est = _estimator()
    long, short = _inputs(1, 23), _inputs(1, 14)
    batch = [torch.zeros(2, *a.shape[1:]) for a in long]
    for slot, a, b in zip(batch, long, short, strict=True):
        slot[0] = a[0]
        if a.dim() == 3:
            slot[1, :, :14] = b[0]
        else:
            slot[1] = b[0]
    mask = torch.zeros(2, 1, 23)
    mask[0] = 1
    mask[1, :, :14] = 1
    with torch.inference_mode():
        out = est(batch[0], mask, *batch[1:])
        one = est(long[0], None, *long[1:])
        two = est(short[0], None, *short[1:])
    torch.testing.assert_close(out[0], one[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[1, :, :14], two[0], atol=1e-4, rtol=1e-4)
    assert torch.equal(out[1, :, 14:], torch.zeros(80, 9))


def test_bfloat16_runs_close_to_float32() -> None:
    est = _estimator()
    args = _inputs(2, 17)
    with torch.inference_mode():
        ref = est(args[0], None, *args[1:])
        low = est.to(torch.bfloat16)(args[0].bfloat16(), None, *(a.bfloat16() for a in args[1:]))
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()


@pytest.mark.conformance
def test_conformance_estimator_step1(conformance_dir: Path) -> None:
    d = conformance_dir / "flow"
    model = load_flow(d / "flow.safetensors", flow_config_from_hparams(d / "hparams.json"))
    v = load_file(str(d / "vectors.safetensors"))
    e = "estimator_step1."
    with torch.inference_mode():
        out = model.estimator(v[e + "x"], v[e + "mask"], v[e + "mu"], v[e + "t"], v[e + "spks"], v[e + "cond"])
    torch.testing.assert_close(out, v[e + "out"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("amx", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_low_precision_attention_path_matches_sdpa(masked: bool, amx: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from stepaudio.decoder.cosyvoice1 import estimator as module

    monkeypatch.setattr(module, "cpu_has_amx", lambda: amx)  # both CPU paths, whatever this machine has
    monkeypatch.setattr(module, "_SCORE_BLOCK", 11 * 11 - 1)  # force blocks of one head and 16 rows
    q, k, v = torch.randn(3, 2, 3, 40, 8).unbind(0)
    key_mask = None
    if masked:
        key_mask = torch.ones(2, 1, 1, 40, dtype=torch.bool)
        key_mask[1, ..., 27:] = False
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_mask).transpose(1, 2)
    low = module.attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), key_mask)
    assert low.dtype == torch.bfloat16 and low.shape == (2, 40, 3, 8)
    torch.testing.assert_close(low.float(), ref, atol=3e-2, rtol=3e-2)


def test_three_levels_with_unequal_channels_and_padding() -> None:
    torch.manual_seed(1)
    est = ConditionalDecoder(EstimatorConfig(channels=(8, 16, 24), attention_head_dim=4, n_blocks=2,
                                             num_mid_blocks=1, num_heads=2)).eval()
    x, mu, tt, spks, cond = _inputs(1, 13)
    padded = [torch.cat([a, torch.zeros(1, 80, 6)], dim=-1) if a.dim() == 3 else a for a in (x, mu, tt, spks, cond)]
    mask = torch.zeros(1, 1, 19)
    mask[..., :13] = 1
    with torch.inference_mode():
        alone = est(x, None, mu, tt, spks, cond)
        out = est(padded[0], mask, *padded[1:])
    assert alone.shape == (1, 80, 13)
    torch.testing.assert_close(out[..., :13], alone, atol=1e-4, rtol=1e-4)
