"""Batched offline encoding equals the streaming step-by-step encoder, for every chunk layout and group size."""

from __future__ import annotations

import pytest
import torch

from stepaudio.tokenizer.paraformer.batch import encode_steps
from stepaudio.tokenizer.paraformer.encoder import ChunkConfig, ParaformerEncoder, ParaformerEncoderConfig


def _encoder() -> ParaformerEncoder:
    torch.manual_seed(0)
    config = ParaformerEncoderConfig(input_size=56, output_size=32, attention_heads=4, linear_units=64, num_blocks=4)
    return ParaformerEncoder(config).eval()


def _sequential(encoder: ParaformerEncoder, steps: list[torch.Tensor], chunk: ChunkConfig) -> list[torch.Tensor]:
    cache = encoder.new_cache(chunk)
    outs = []
    with torch.inference_mode():
        for feats in steps:
            out, cache = encoder.forward_chunk(feats[None], cache, chunk)
            outs.append(out[0, -feats.shape[0] :])
    return outs


@pytest.mark.parametrize(
    "chunk", [ChunkConfig(), ChunkConfig((0, 4, 5), 0), ChunkConfig((0, 4, 5), -1), ChunkConfig((5, 10, 5), 4)]
)
@pytest.mark.parametrize("group", [64, 3, 1])
def test_batched_steps_equal_streaming_steps(chunk: ChunkConfig, group: int) -> None:
    encoder = _encoder()
    gen = torch.Generator().manual_seed(1)
    lengths = [3, *[4] * 13, 3, *[4] * 5, 2]  # a short first step, one short middle step and a short tail
    steps = [torch.randn(n, 56, generator=gen) for n in lengths]
    want = _sequential(encoder, steps, chunk)
    with torch.inference_mode():
        got = encode_steps(encoder, steps, chunk, group=group)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_no_steps_give_no_outputs() -> None:
    assert encode_steps(_encoder(), [], ChunkConfig()) == []
