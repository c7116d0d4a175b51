"""The compiled steady step: same features as the eager stream, only steady steps go through it."""

from __future__ import annotations

import shutil

import pytest
import torch

from stepaudio.tokenizer.linguistic import LinguisticTokenizer
from stepaudio.tokenizer.paraformer.compiled import CompiledSteadyStep
from stepaudio.tokenizer.paraformer.encoder import ParaformerEncoder, ParaformerEncoderConfig
from stepaudio.tokenizer.paraformer.fast import reduce_encoder_weights
from stepaudio.tokenizer.paraformer.frontend import Cmvn, FrontendConfig, OnlineFrontend

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs a C++ compiler")


def _tokenizer(mode: str) -> LinguisticTokenizer:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    config = ParaformerEncoderConfig(input_size=560, output_size=16, attention_heads=2, linear_units=32, num_blocks=2)
    encoder = reduce_encoder_weights(ParaformerEncoder(config).eval(), mode)
    cmvn = Cmvn(shift=-torch.rand(560, generator=gen) * 10 - 5, scale=torch.rand(560, generator=gen) * 0.2 + 0.1)
    return LinguisticTokenizer(OnlineFrontend(FrontendConfig(dither=0.0), cmvn), encoder, torch.randn(32, 16))


def test_compiled_stream_equals_the_eager_stream_and_offline() -> None:
    eager, compiled = _tokenizer("fp32"), _tokenizer("fp32-compiled")
    runner = compiled.encoder.steady_step
    assert isinstance(runner, CompiledSteadyStep)
    steady = []

    def counting(*args):  # type: ignore[no-untyped-def]
        out = runner(*args)
        steady.append(out is not None)
        return out

    compiled.warm_up()  # compiles here, not in the stream below
    compiled.encoder.steady_step = counting
    wav = torch.randn(16000 * 3, generator=torch.Generator().manual_seed(1)) * 0.3
    streams = []
    for tok in (eager, compiled):
        stream = tok.stream()
        parts = [stream.push_features(wav[i : i + 3000]) for i in range(0, wav.shape[0], 3000)]
        streams.append(torch.cat([*parts, stream.finish_features()]))
    torch.testing.assert_close(streams[1], streams[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(streams[1], eager.encode_features(wav), atol=1e-4, rtol=1e-4)
    assert compiled.quantize(streams[1]) == eager.quantize(streams[0])
    assert sum(steady) >= 5 and steady[0] and not steady[-1]  # all compiled from the first step; the last eager


def test_short_look_backs_are_padded_and_other_row_counts_run_eager() -> None:
    tok = _tokenizer("fp32-compiled")
    runner = tok.encoder.steady_step
    layers = tok.encoder.layers
    past = [(torch.randn(1, 2, 20, 8), torch.randn(1, 2, 20, 8)) for _ in range(2)]
    x = torch.randn(1, 9, 560)
    for have in (0, 10, 20):  # no look-back yet, a short one, a full one: all compiled, all as eager
        short = [(k[:, :, 20 - have :], v[:, :, 20 - have :]) for k, v in past]
        out = runner(x, short, 20)
        assert out is not None and out[0].shape == (1, 9, 16) and out[1][0][0].shape == (1, 2, have + 9, 8)
        y = x
        with torch.no_grad():
            for layer, kv in zip(layers, short, strict=True):
                y, keys, _ = layer(y, kv if have else None)
        torch.testing.assert_close(out[0], y, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1][-1][0], keys, atol=1e-5, rtol=1e-5)
    assert runner(torch.randn(1, 7, 560), past, 20) is None  # another row count: eager, never a recompile
