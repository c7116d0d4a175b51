from __future__ import annotations

import torch

from stepaudio.decoder.cosyvoice2.config import DiTConfig
from stepaudio.decoder.cosyvoice2.dit import Attention, DiT
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec

TINY = DiTConfig(in_channels=32, out_channels=8, depth=2, num_heads=2, head_dim=8, hidden_size=16)


def random_dit(config: DiTConfig = TINY, seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    model = DiT(config)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    return model.eval()


def inputs(frames: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x, mu, cond = (torch.randn(2, 8, frames, generator=g) for _ in range(3))
    return x, mu, torch.rand(2, generator=g), torch.randn(2, 8, generator=g), cond


def test_conformance_estimator_step1(flow: CausalMaskedDiffWithXvec, offline: dict[str, torch.Tensor]) -> None:
    e = {k.removeprefix("estimator_step1."): v for k, v in offline.items() if k.startswith("estimator_step1.")}
    with torch.inference_mode():
        out = flow.decoder.estimator(e["x"], e["mask"], e["mu"], e["t"], e["spks"], e["cond"])
    torch.testing.assert_close(out, e["out"], atol=1e-4, rtol=0)


def test_one_chunk_without_cache_is_the_offline_forward() -> None:
    model = random_dit()
    x, mu, t, spks, cond = inputs(10)
    with torch.inference_mode():
        chunked, cnn, att = model.forward_chunk(x, mu, t, spks, cond, None, None)
        torch.testing.assert_close(chunked, model(x, None, mu, t, spks, cond), atol=1e-5, rtol=1e-5)
    assert cnn.shape == (2, 2, 32, 2) and att.shape == (2, 2, 2, 10, 16)


def test_cached_keys_come_after_the_new_ones() -> None:
    model = random_dit()
    x, mu, t, spks, cond = inputs(10)
    with torch.inference_mode():
        _, cnn, att = model.forward_chunk(x[..., :6], mu[..., :6], t, spks, cond[..., :6], None, None)
        _, _, att2 = model.forward_chunk(x[..., 6:], mu[..., 6:], t, spks, cond[..., 6:], cnn, att)
    assert att2.shape[3] == 10
    torch.testing.assert_close(att2[:, :, :, 4:], att)


def test_a_later_chunk_attends_to_every_cached_frame() -> None:
    torch.manual_seed(0)
    attn = Attention(16, 2, 8).eval()
    x = torch.randn(2, 10, 16)
    with torch.inference_mode():
        full, _ = attn(x)
        _, cache = attn(x[:, :6])
        second, _ = attn(x[:, 6:], None, cache)
    torch.testing.assert_close(second, full[:, 6:], atol=1e-5, rtol=1e-5)


def test_padding_mask_hides_padded_keys() -> None:
    model = random_dit(DiTConfig(in_channels=32, out_channels=8, depth=1, num_heads=2, head_dim=8, hidden_size=16))
    x, mu, t, spks, cond = inputs(10)
    mask = torch.ones(2, 1, 10)
    mask[1, :, 7:] = 0
    with torch.inference_mode():
        masked = model(x, mask, mu, t, spks, cond)
        alone = model(x[1:, :, :7], None, mu[1:, :, :7], t[1:], spks[1:], cond[1:, :, :7])
    torch.testing.assert_close(masked[1:, :, :7], alone, atol=1e-5, rtol=1e-5)
