from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stepaudio.errors import CheckpointError
from stepaudio.lm.checkpoint import INDEX_NAME
from stepaudio.lm.qwen2.loading import expected_shapes, load_qwen2, save_qwen2
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM

Factory = Callable[..., Qwen2ForCausalLM]


@pytest.mark.parametrize(("tied", "shard_bytes"), [(False, None), (True, None), (False, 20_000)])
def test_save_load_round_trip(tiny_qwen2: Factory, tmp_path: Path, tied: bool, shard_bytes: int | None) -> None:
    model = tiny_qwen2(replace(tiny_qwen2().config, tie_word_embeddings=tied), seed=3)
    save_qwen2(model, tmp_path, max_shard_bytes=shard_bytes)
    assert (tmp_path / INDEX_NAME).is_file() == (shard_bytes is not None)
    stored = set(json.loads((tmp_path / INDEX_NAME).read_text())["weight_map"]) if shard_bytes else set(
        load_file(tmp_path / "model.safetensors")
    )
    assert ("lm_head.weight" in stored) != tied and "model.layers.1.self_attn.k_proj.bias" in stored
    loaded = load_qwen2(tmp_path)
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tied
    ids = torch.randint(0, 64, (1, 9))
    assert torch.equal(loaded(ids), model(ids))


def test_expected_shapes_cover_every_parameter(tiny_qwen2: Factory) -> None:
    model = tiny_qwen2()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_shapes(model.config)


def test_step_audio2_folder_skips_encoder_keys(tiny_qwen2: Factory, tmp_path: Path) -> None:
    """The decoder loads from a combined checkpoint with a nested text_config; other parts are left alone."""
    model = tiny_qwen2(seed=5)
    save_qwen2(model, tmp_path)
    plain = json.loads((tmp_path / "config.json").read_text())
    combined = {"model_type": "step_audio_2", "torch_dtype": "float32", "text_config": plain,
                "audio_encoder_config": {"n_mels": 128}}
    (tmp_path / "config.json").write_text(json.dumps(combined))
    state = load_file(tmp_path / "model.safetensors")
    state |= {"encoder.conv1.weight": torch.zeros(4, 128, 3), "adapter.linear1.weight": torch.zeros(2048, 4)}
    save_file(state, tmp_path / "model.safetensors")
    loaded = load_qwen2(tmp_path)
    ids = torch.randint(0, 64, (1, 5))
    assert torch.equal(loaded(ids), model(ids))
    state["model.layers.0.self_attn.q_norm.weight"] = torch.zeros(8)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"q_norm"):
        load_qwen2(tmp_path)


def test_shape_mismatch_names_key_and_both_shapes(tiny_qwen2: Factory, tmp_path: Path) -> None:
    save_qwen2(tiny_qwen2(), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["model.layers.1.self_attn.v_proj.bias"] = torch.zeros(8)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_qwen2(tmp_path)
    message = str(err.value)
    assert "model.layers.1.self_attn.v_proj.bias" in message and "[8]" in message and "[16]" in message


def test_dtype_conversion_on_load(tiny_qwen2: Factory, tmp_path: Path) -> None:
    save_qwen2(tiny_qwen2().to(torch.bfloat16), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert load_qwen2(tmp_path).dtype == torch.bfloat16
    loaded = load_qwen2(tmp_path, dtype=torch.float32)
    assert loaded.model.layers[0].self_attn.q_proj.bias.dtype == torch.float32


@pytest.mark.conformance
def test_conformance_decoder_weights_load_unchanged(conformance_dir: Path) -> None:
    llm = conformance_dir / "step-audio2" / "llm"
    model = load_qwen2(llm)
    reference = load_file(llm / "model.safetensors")
    state = model.state_dict()
    assert set(state) == {k for k in reference if k.startswith(("model.", "lm_head."))}
    for key, tensor in state.items():
        assert torch.equal(tensor, reference[key]), key
