from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stepaudio.errors import CheckpointError
from stepaudio.lm.checkpoint import INDEX_NAME
from stepaudio.lm.step1.loading import expected_shapes, load_step1, save_step1
from stepaudio.lm.step1.model import Step1ForCausalLM

Factory = Callable[..., Step1ForCausalLM]


def _assert_same_weights(a: Step1ForCausalLM, b: Step1ForCausalLM) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("shard_bytes", [None, 20_000])
def test_save_load_round_trip(tiny_model: Factory, tmp_path: Path, shard_bytes: int | None) -> None:
    model = tiny_model()
    save_step1(model, tmp_path, max_shard_bytes=shard_bytes)
    sharded = (tmp_path / INDEX_NAME).is_file()
    assert sharded == (shard_bytes is not None)
    if sharded:
        index = json.loads((tmp_path / INDEX_NAME).read_text())
        assert len(set(index["weight_map"].values())) > 1
        assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in model.state_dict().values())
    loaded = load_step1(tmp_path)
    _assert_same_weights(model, loaded)
    ids = torch.randint(0, 64, (1, 9))
    assert torch.equal(loaded(ids), model(ids))


def test_dtype_conversion_on_load(tiny_model: Factory, tmp_path: Path) -> None:
    save_step1(tiny_model().to(torch.bfloat16), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert load_step1(tmp_path).lm_head.weight.dtype == torch.bfloat16
    for dtype in (torch.float16, torch.float32):
        assert load_step1(tmp_path, dtype=dtype).model.layers[0].mlp.up_proj.weight.dtype == dtype


def test_loaded_weights_are_private_to_the_process(tiny_model: Factory, tmp_path: Path) -> None:
    save_step1(tiny_model(), tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    loaded = load_step1(tmp_path)
    with torch.no_grad():
        loaded.lm_head.weight.zero_()
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_shape_mismatch_names_key_and_both_shapes(tiny_model: Factory, tmp_path: Path) -> None:
    save_step1(tiny_model(), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(8, 48)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_step1(tmp_path)
    message = str(err.value)
    assert "model.layers.1.self_attn.k_proj.weight" in message and "[8, 48]" in message and "[16, 48]" in message


def test_missing_and_unexpected_keys(tiny_model: Factory, tmp_path: Path) -> None:
    save_step1(tiny_model(), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"extra\.weight"):
        load_step1(tmp_path)
    load_step1(tmp_path, strict=False)
    del state["lm_head.weight"], state["extra.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"lm_head\.weight"):
        load_step1(tmp_path)


def test_directory_layout_errors(tiny_model: Factory, tmp_path: Path) -> None:
    save_step1(tiny_model(), tmp_path, max_shard_bytes=20_000)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "liboptimus_ths-torch2.5-cu124.cpython-310-x86_64-linux-gnu.so").write_bytes(b"\0")
    load_step1(tmp_path)  # unrelated files are ignored
    next(tmp_path.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="missing: download that shard into"):
        load_step1(tmp_path)
    (tmp_path / INDEX_NAME).write_text('{"weight_map": {"model.embed')  # an index cut short
    with pytest.raises(CheckpointError, match=rf"{INDEX_NAME} is not a valid shard index \(JSONDecodeError: .*\): "
                                              rf"re-download {INDEX_NAME}"):
        load_step1(tmp_path)


def test_expected_shapes_cover_untied_head(tiny_model: Factory) -> None:
    model = tiny_model()
    shapes = expected_shapes(model.config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


@pytest.mark.conformance
def test_conformance_single_and_sharded_are_identical(conformance_dir: Path) -> None:
    single = load_step1(conformance_dir / "step1")
    sharded = load_step1(conformance_dir / "step1" / "sharded")
    _assert_same_weights(single, sharded)
    reference = load_file(conformance_dir / "step1" / "model.safetensors")
    for key, tensor in single.state_dict().items():
        assert torch.equal(tensor, reference[key]), key
