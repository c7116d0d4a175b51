from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.audio_encoder.frontend import pad_mels
from stepaudio.audio_encoder.loading import load_audio_encoder
from stepaudio.audio_encoder.model import MASKED, AudioEncoder, adapter_lengths, encoder_lengths

Factory = Callable[..., AudioEncoder]
TOL = {"atol": 1e-4, "rtol": 0.0}


def _key_bias(model: AudioEncoder, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The key bias the first block receives [B, keys]."""
    seen: list[torch.Tensor] = []
    hook = model.encoder.blocks[0].attn.register_forward_pre_hook(lambda _m, args: seen.append(args[1]))
    with torch.no_grad():
        model(mels, lengths)
    hook.remove()
    return seen[0][:, 0, 0]


@pytest.mark.parametrize(("frames", "keys"), [(40, 20), (41, 21)])
def test_the_last_conv2_frame_is_never_a_key(tiny_encoder: Factory, frames: int, keys: int) -> None:
    """The reference's quirk: the mask comes from T - 2 at the conv1 rate, subsampled from (T + 1) % 2."""
    model = tiny_encoder()
    bias = _key_bias(model, torch.randn(1, 16, frames), torch.tensor([frames - 2]))
    assert bias.shape == (1, keys)
    assert bias[0, -1] == MASKED and not bias[0, :-1].any()


def test_padded_items_mask_their_padding_keys(tiny_encoder: Factory) -> None:
    model = tiny_encoder()
    batch, lengths = pad_mels([torch.randn(16, 40), torch.randn(16, 21)])
    bias = _key_bias(model, batch, lengths)
    # item 1: length 19 at the conv1 rate, keys at conv1 frames 1, 3, ..., 39: 1..17 are inside
    assert (bias[1] == 0).sum() == 9 and (bias[1, 9:] == MASKED).all()


def test_lengths_and_encode_match_the_batched_forward(tiny_encoder: Factory) -> None:
    model = tiny_encoder(seed=1)
    mels = [torch.randn(16, 40), torch.randn(16, 27), torch.randn(16, 9)]
    batch, lengths = pad_mels(mels)
    with torch.no_grad():
        rows, counts = model(batch, lengths)
    assert encoder_lengths(lengths).tolist() == [9, 6, 2]
    assert counts.tolist() == adapter_lengths(encoder_lengths(lengths), model.config).tolist() == [5, 3, 1]
    assert rows.shape == (3, 5, 20)  # 40 frames: 20 after conv2, 10 pooled, 5 adapted
    encoded = model.encode(mels)
    assert [r.shape[0] for r in encoded] == counts.tolist()
    for row, out, n in zip(encoded, rows, counts.tolist(), strict=True):
        assert torch.equal(row, out[:n])


def test_every_parameter_matters(tiny_encoder: Factory) -> None:
    """Zeroing any one parameter tensor changes the output (none is dead weight in the forward)."""
    model = tiny_encoder(seed=2)
    mels, lengths = pad_mels([torch.randn(16, 24)])
    with torch.no_grad():
        reference, _ = model(mels, lengths)
        for name, param in model.named_parameters():
            saved = param.clone()
            param.zero_()
            changed, _ = model(mels, lengths)
            param.copy_(saved)
            assert not torch.allclose(changed, reference), name


def test_low_precision_follows_fp32(tiny_encoder: Factory) -> None:
    model = tiny_encoder(seed=3)
    mels, lengths = pad_mels([torch.randn(16, 30), torch.randn(16, 12)])
    with torch.no_grad():
        reference, _ = model(mels, lengths)
        for dtype in (torch.bfloat16, torch.float16):
            out, _ = model.to(dtype)(mels.to(dtype), lengths)
            assert out.dtype == dtype and torch.isfinite(out).all()
            assert (out.float() - reference).abs().max() < 0.1 * reference.abs().max()


def test_too_many_frames_for_the_position_table(tiny_encoder: Factory) -> None:
    model = tiny_encoder()
    with pytest.raises(ValueError, match="positions"):
        model(torch.randn(1, 16, 130), torch.tensor([128]))


@pytest.mark.conformance
def test_conformance_batch_and_single(conformance_dir: Path) -> None:
    folder = conformance_dir / "step-audio2"
    vectors = load_file(folder / "encoder" / "vectors.safetensors")
    meta = json.loads((folder / "encoder" / "meta.json").read_text())
    model = load_audio_encoder(folder / "llm")
    with torch.no_grad():
        encoded, encoder_lens = model.encoder(vectors["inputs.mels"], vectors["inputs.mel_lens"])
        adapted, adapter_lens = model(vectors["inputs.mels"], vectors["inputs.mel_lens"])
        single, _ = model(vectors["single.mel"], torch.tensor([vectors["single.mel"].shape[-1] - 2]))
        single_encoded, _ = model.encoder(vectors["single.mel"], torch.tensor([vectors["single.mel"].shape[-1] - 2]))
    assert encoder_lens.tolist() == vectors["outputs.encoder_lens"].tolist() == meta["encoder_lens"]
    assert adapter_lens.tolist() == vectors["outputs.adapter_lens"].tolist() == meta["adapter_lens"]
    assert (
        encoded.shape == vectors["outputs.encoder_out"].shape and adapted.shape == vectors["outputs.adapter_out"].shape
    )
    for i, (n_enc, n_ada) in enumerate(zip(encoder_lens.tolist(), adapter_lens.tolist(), strict=True)):
        torch.testing.assert_close(encoded[i, :n_enc], vectors["outputs.encoder_out"][i, :n_enc], **TOL)
        torch.testing.assert_close(adapted[i, :n_ada], vectors["outputs.adapter_out"][i, :n_ada], **TOL)
    n_enc, n_ada = encoder_lens[0], adapter_lens[0]
    torch.testing.assert_close(single_encoded[0, :n_enc], vectors["single.encoder_out"][0, :n_enc], **TOL)
    torch.testing.assert_close(single[0, :n_ada], vectors["single.adapter_out"][0, :n_ada], **TOL)
    rows = model.encode(
        [vectors["inputs.mels"][0, :, : meta["mel_T"][0]], vectors["inputs.mels"][1, :, : meta["mel_T"][1]]]
    )
    for i, row in enumerate(rows):
        torch.testing.assert_close(row, vectors["outputs.adapter_out"][i, : meta["adapter_lens"][i]], **TOL)
