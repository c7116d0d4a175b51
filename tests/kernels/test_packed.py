from __future__ import annotations

import pytest
import torch

from stepaudio.hardware import onednn_can_pack

needs_bf16_packing = pytest.mark.skipif(not onednn_can_pack(torch.bfloat16),
                                        reason="this CPU cannot pack bf16 weights for oneDNN (no AVX-512)")


def test_packed_int8_matches_dequantised_weights_and_unpacks() -> None:
    from stepaudio.kernels.packed import PackedInt8Linear

    gen = torch.Generator().manual_seed(0)
    q = torch.randint(-127, 128, (24, 64), dtype=torch.int8, generator=gen)
    scale = torch.rand(24, generator=gen) * 0.01 + 1e-3
    layer = PackedInt8Linear(q, scale)
    ref_weight = q.float() * scale[:, None]
    for rows in (1, 7, 40):  # decode and prefill shapes
        x = torch.randn(rows, 64, generator=gen).to(torch.bfloat16)
        out = layer(x)
        ref = x.float() @ ref_weight.t()
        assert out.dtype == torch.bfloat16 and out.shape == (rows, 24)
        assert ((out.float() - ref).norm() / ref.norm()).item() < 0.03
    unpacked_q, unpacked_scale = layer.unpacked()
    assert torch.equal(unpacked_q, q)
    torch.testing.assert_close(unpacked_scale, scale)


@needs_bf16_packing
def test_packed_bf16_equals_plain_bf16_linear() -> None:
    from stepaudio.kernels.packed import PackedBf16Linear

    weight = torch.randn(48, 64).to(torch.bfloat16)
    layer = PackedBf16Linear(weight)
    for shape in ((1, 1, 64), (2, 3, 64), (40, 64)):
        x = torch.randn(*shape).to(torch.bfloat16)
        out = layer(x)
        assert out.shape == (*shape[:-1], 48) and out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), torch.nn.functional.linear(x, weight).float(), atol=0.02, rtol=0.01)
    assert layer.weight_bytes == 2 * 48 * 64


def test_bf16_packing_is_refused_clearly_where_the_cpu_cannot_do_it() -> None:
    from stepaudio.errors import UnsupportedError
    from stepaudio.hardware import onednn_can_pack
    from stepaudio.kernels.packed import PackedBf16Linear

    assert onednn_can_pack(torch.float32)
    weight = torch.randn(32, 16)
    if onednn_can_pack(torch.bfloat16):
        assert PackedBf16Linear(weight)(torch.randn(2, 16)).shape == (2, 32)
    else:
        with pytest.raises(UnsupportedError, match="choose an fp32 or int8 weight format"):
            PackedBf16Linear(weight)
