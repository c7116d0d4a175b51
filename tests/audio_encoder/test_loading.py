from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stepaudio.audio_encoder.frontend import pad_mels
from stepaudio.audio_encoder.loading import INDEX_NAME, expected_shapes, load_audio_encoder
from stepaudio.audio_encoder.model import AudioEncoder
from stepaudio.errors import CheckpointError
from stepaudio.lm.checkpoint import save_weights

Factory = Callable[..., AudioEncoder]
DECODER_KEYS = {"model.embed_tokens.weight": torch.zeros(8, 4), "lm_head.weight": torch.zeros(8, 4)}


def write_release(folder: Path, model: AudioEncoder, *, shard_bytes: int | None = None) -> Path:
    """A Step-Audio 2 folder as released: nested config, encoder and (stand-in) decoder keys, maybe sharded."""
    config = {
        "model_type": "step_audio_2",
        "torch_dtype": str(model.dtype).removeprefix("torch."),
        "audio_encoder_config": model.config.to_dict(),
        "text_config": {"hidden_size": 4},
    }
    save_weights(DECODER_KEYS | model.state_dict(), folder, config, max_shard_bytes=shard_bytes)
    return folder


def _rows(model: AudioEncoder) -> torch.Tensor:
    mels, lengths = pad_mels([torch.randn(16, 20, generator=torch.Generator().manual_seed(0))])
    with torch.no_grad():
        return model(mels.to(model.dtype), lengths)[0]


def test_expected_shapes_cover_every_parameter(tiny_encoder: Factory) -> None:
    model = tiny_encoder()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_shapes(model.config)


@pytest.mark.parametrize("shard_bytes", [None, 40_000])
def test_release_folder_round_trip(tiny_encoder: Factory, tmp_path: Path, shard_bytes: int | None) -> None:
    model = tiny_encoder(seed=4)
    write_release(tmp_path, model, shard_bytes=shard_bytes)
    if shard_bytes:
        shards = set(json.loads((tmp_path / INDEX_NAME).read_text())["weight_map"].values())
        assert len(shards) > 2  # the encoder keys are spread over several files
    loaded = load_audio_encoder(tmp_path)
    assert loaded.dtype == torch.float32 and not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(_rows(loaded), _rows(model))
    half = load_audio_encoder(tmp_path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.adapter.linear2.bias.dtype == torch.bfloat16


def test_shape_mismatch_names_the_key_and_both_shapes(tiny_encoder: Factory, tmp_path: Path) -> None:
    write_release(tmp_path, tiny_encoder())
    state = load_file(tmp_path / "model.safetensors")
    state["encoder.blocks.1.attn.value.bias"] = torch.zeros(7)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_audio_encoder(tmp_path)
    assert "encoder.blocks.1.attn.value.bias" in str(err.value) and "[7]" in str(err.value) and "[24]" in str(err.value)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"drop": "adapter.linear1.bias"}, "lacks 1 encoder key.*adapter.linear1.bias"),
        ({"add": "encoder.blocks.0.attn.key.bias"}, "unexpected.*encoder.blocks.0.attn.key.bias"),
        ({"add": "vision.proj.weight"}, "unexpected.*vision.proj.weight"),
    ],
)
def test_missing_and_unexpected_keys_are_named(
    tiny_encoder: Factory, tmp_path: Path, change: dict[str, str], match: str
) -> None:
    write_release(tmp_path, tiny_encoder())
    state = load_file(tmp_path / "model.safetensors")
    if "drop" in change:
        del state[change["drop"]]
    else:
        state[change["add"]] = torch.zeros(3)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=match):
        load_audio_encoder(tmp_path)


def test_a_shard_listed_but_missing(tiny_encoder: Factory, tmp_path: Path) -> None:
    write_release(tmp_path, tiny_encoder(), shard_bytes=40_000)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"{shard.name}, which is missing"):
        load_audio_encoder(tmp_path)


@pytest.mark.conformance
def test_conformance_weights_load_unchanged(conformance_dir: Path) -> None:
    folder = conformance_dir / "step-audio2" / "llm"
    reference = load_file(folder / "model.safetensors")
    state = load_audio_encoder(folder).state_dict()
    assert set(state) == {k for k in reference if k.startswith(("encoder.", "adapter."))}
    for key, tensor in state.items():
        assert torch.equal(tensor, reference[key]), key
