from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice2.hift import HiFT24k
from stepaudio.decoder.cosyvoice2.hift_loading import hift_config_from_state, load_hift24k
from stepaudio.errors import CheckpointError


def _old_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """parametrizations.weight.original0/1 -> weight_g/weight_v (torch's older weight_norm)."""
    out = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        out[key.replace("parametrizations.weight.original1", "weight_v")] = value
    return out


def test_widths_come_from_the_weights(t2w_dir: Path, meta: dict[str, object]) -> None:
    config = hift_config_from_state(load_file(str(t2w_dir / "hift.safetensors")))
    sizes = meta["hift"]
    assert isinstance(sizes, dict)
    assert config.base_channels == sizes["base_channels"]
    assert config.f0_predictor.cond_channels == sizes["f0_cond_channels"]
    assert config.nb_harmonics == sizes["nb_harmonics"]
    assert list(config.upsample_rates) == sizes["upsample_rates"]
    assert list(config.upsample_kernel_sizes) == sizes["upsample_kernel_sizes"]


def test_ups_weight_norm_folds_over_the_input_channel(t2w_dir: Path, hift: HiFT24k) -> None:
    state = load_file(str(t2w_dir / "hift.safetensors"))
    g, v = state["ups.0.parametrizations.weight.original0"], state["ups.0.parametrizations.weight.original1"]
    assert g.shape[0] == v.shape[0] != v.shape[1]  # ConvTranspose1d weight is [in, out, k]
    expected = v * g / v.norm(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(hift.generator.ups[0].weight, expected)


def test_old_names_and_generator_prefix_load_the_same(t2w_dir: Path, tmp_path: Path, hift: HiFT24k) -> None:
    state = load_file(str(t2w_dir / "hift.safetensors"))
    torch.save({f"generator.{k}": v for k, v in _old_names(state).items()}, tmp_path / "hift.pt")
    again = load_hift24k(tmp_path / "hift.pt")
    for (name, a), b in zip(hift.generator.state_dict().items(), again.generator.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=name)


def test_missing_key_is_named(t2w_dir: Path) -> None:
    state = load_file(str(t2w_dir / "hift.safetensors"))
    del state["source_downs.1.weight"]
    with pytest.raises(CheckpointError, match=r"source_downs\.1\.weight"):
        load_hift24k(state)
    with pytest.raises(CheckpointError, match="conv_pre"):
        load_hift24k({k: v for k, v in state.items() if not k.startswith("conv_pre")})
