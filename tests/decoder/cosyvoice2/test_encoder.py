from __future__ import annotations

import torch

from stepaudio.decoder.cosyvoice1.conformer import rel_position_encoding
from stepaudio.decoder.cosyvoice2.config import EncoderConfig
from stepaudio.decoder.cosyvoice2.encoder import UpsampleConformerEncoderV2, rel_shift
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec

TINY = EncoderConfig(input_size=16, output_size=16, num_blocks=2, num_up_blocks=2, attention_heads=2, linear_units=24)


def random_encoder(seed: int = 0) -> UpsampleConformerEncoderV2:
    torch.manual_seed(seed)
    model = UpsampleConformerEncoderV2(TINY)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    return model.eval()


def test_rel_shift_reads_the_distance_of_each_query_key_pair() -> None:
    t1, t2 = 3, 7  # a chunk of 3 queries after 4 cached keys
    width = 2 * t2 - 1
    scores = torch.arange(width, dtype=torch.float32).repeat(t1, 1)[None]  # value = column index
    shifted = rel_shift(scores)[0]
    for i in range(t1):
        for j in range(t2):
            distance = (t2 - t1 + i) - j
            assert shifted[i, j] == t2 - 1 - distance  # the column that encodes this distance
    square = torch.randn(2, 5, 9)
    assert torch.equal(rel_shift(square)[:, 4], square[:, 4, :5])


def test_conformance_encoder(flow: CausalMaskedDiffWithXvec, offline: dict[str, torch.Tensor]) -> None:
    tokens = torch.cat([offline["inputs.prompt_tokens"], offline["inputs.tokens"]], dim=1)
    with torch.inference_mode():
        out = flow.encoder(flow.input_embedding(tokens))
    torch.testing.assert_close(out, offline["outputs.encoder_out"], atol=1e-4, rtol=0)


def test_one_last_chunk_from_nothing_is_the_offline_encoder() -> None:
    model = random_encoder()
    x = torch.randn(1, 9, TINY.input_size)
    with torch.inference_mode():
        chunked, cache = model.forward_chunk(x, None, last_chunk=True)
        torch.testing.assert_close(chunked, model(x), atol=1e-5, rtol=1e-5)
    assert cache.tokens == 9 and cache.up_attention[0].shape[2] == 18


def test_chunks_see_the_past_and_their_lookahead_only() -> None:
    model = random_encoder(1)
    x = torch.randn(1, 14, TINY.input_size)
    look = TINY.pre_lookahead_len
    with torch.inference_mode():
        first, cache = model.forward_chunk(x[:, : 6 + look], None, last_chunk=False)
        second, _ = model.forward_chunk(x[:, 6:], cache, last_chunk=True)
        changed = x.clone()
        changed[:, 6 + look :] += 1.0  # beyond the first chunk's look-ahead
        again, _ = model.forward_chunk(changed[:, : 6 + look], None, last_chunk=False)
    assert first.shape[1] == 12 and second.shape[1] == 16
    torch.testing.assert_close(again, first)


def test_padding_mask_keeps_items_independent() -> None:
    model = random_encoder(2)
    a, b = torch.randn(1, 7, TINY.input_size), torch.randn(1, 5, TINY.input_size)
    batch = torch.cat([a, torch.cat([b, torch.zeros(1, 2, TINY.input_size)], dim=1)])
    with torch.inference_mode():
        out = model(batch, torch.tensor([7, 5]))
        torch.testing.assert_close(out[0], model(a)[0], atol=1e-5, rtol=1e-5)
        # the causal up layer and the look-ahead conv see the zero padding as the offline run's zero padding
        torch.testing.assert_close(out[1, :10], model(b)[0], atol=1e-5, rtol=1e-5)


def test_positions_match_the_shared_table() -> None:
    pos = rel_position_encoding(4, 8, torch.device("cpu"), torch.float32)
    assert pos.shape == (1, 7, 8) and torch.equal(pos[0, 3], torch.tensor([0.0, 1.0] * 4))
