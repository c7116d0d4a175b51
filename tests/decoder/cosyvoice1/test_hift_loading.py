from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from stepaudio.decoder.cosyvoice1.hift_config import F0PredictorConfig, HiFTConfig
from stepaudio.decoder.cosyvoice1.hift_loading import (
    fold_weight_norm,
    hift_key_map,
    load_hift,
    read_checkpoint,
    save_hift_safetensors,
)
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator
from stepaudio.errors import CheckpointError

CONFIG = HiFTConfig(base_channels=16, f0_predictor=F0PredictorConfig(cond_channels=8))


def _weight_normed_reference(new_style: bool, seed: int = 0) -> HiFTGenerator:
    """A copy of a random model with torch's own weight norm on every module the reference wraps,
    gains perturbed so that g != ||v||: its forward is the oracle for our folded weights."""
    torch.manual_seed(seed)
    model = HiFTGenerator(CONFIG).eval()
    wrapped = copy.deepcopy(model)
    modules = dict(wrapped.named_modules())
    for rule in hift_key_map(model):
        if not rule.weight_norm:
            continue
        module = modules[rule.name.removesuffix(".weight")]
        if new_style:
            nn.utils.parametrizations.weight_norm(module)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                nn.utils.weight_norm(module)
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if name.endswith(("weight_g", "original0")):
                param.mul_(torch.rand_like(param) + 0.5)
            if name.endswith("alpha"):
                param.uniform_(0.5, 1.5)
    return wrapped


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("new_style", [False, True])
def test_weight_norm_checkpoints_load_to_the_same_function(new_style: bool) -> None:
    reference = _weight_normed_reference(new_style)
    state = _plain_state(reference)
    marker = "parametrizations.weight.original0" if new_style else "weight_g"
    assert any(marker in k for k in state)
    assert "ups.0.weight_g" not in state or state["ups.0.weight_g"].shape == (16, 1, 1)  # [in, 1, 1]
    model = load_hift(state, CONFIG)
    mel = torch.randn(2, 80, 6)
    with torch.no_grad():
        f0 = reference.f0_predictor(mel)
        torch.testing.assert_close(model.predict_f0(mel), f0, atol=1e-5, rtol=1e-5)
        s_stft = torch.randn(2, CONFIG.n_fft + 2, 6 * CONFIG.upsample_total // CONFIG.hop_len + 1)
        ours = model.backbone(mel, s_stft)
        expected = reference.backbone(mel, s_stft)  # submodules run torch's own weight norm
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_fold_weight_norm_matches_torch_for_conv_transpose() -> None:
    conv = nn.ConvTranspose1d(6, 4, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        nn.utils.weight_norm(conv)
    params = dict(conv.named_parameters())
    with torch.no_grad():
        params["weight_g"].mul_(2.5)
    assert params["weight_g"].shape == (6, 1, 1)
    x = torch.randn(1, 6, 9)
    folded = fold_weight_norm(params["weight_g"].detach(), params["weight_v"].detach())
    expected = conv(x).detach()
    torch.testing.assert_close(nn.functional.conv_transpose1d(x, folded, params["bias"].detach()), expected)


def test_pt_round_trip_with_generator_prefix(tmp_path: Path) -> None:
    reference = _weight_normed_reference(False, seed=3)
    path = tmp_path / "hift.pt"
    torch.save({f"generator.{k}": v for k, v in reference.state_dict().items()}, path)
    model = load_hift(path, CONFIG)
    mel = torch.randn(1, 80, 4)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_f0(mel), reference.f0_predictor(mel), atol=1e-5, rtol=1e-5)


def test_safetensors_round_trip_keeps_every_weight(tmp_path: Path) -> None:
    model = load_hift(_plain_state(_weight_normed_reference(True, seed=4)), CONFIG)
    save_hift_safetensors(model, tmp_path / "hift.safetensors")
    again = load_hift(tmp_path / "hift.safetensors", CONFIG)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert set(read_checkpoint(tmp_path / "hift.safetensors")) == set(model.state_dict())


def test_shape_mismatch_names_key_and_both_shapes() -> None:
    state = _plain_state(_weight_normed_reference(False))
    bad = dict(state)
    bad["resblocks.1.convs1.0.weight_v"] = torch.randn(8, 8, 5)
    with pytest.raises(CheckpointError) as err:
        load_hift(bad, CONFIG)
    message = str(err.value)
    assert "resblocks.1.convs1.0.weight_v" in message
    assert "(8, 8, 5)" in message and "(8, 8, 7)" in message

    bad = dict(state)
    bad["conv_pre.weight_g"] = torch.ones(4, 1, 1)
    with pytest.raises(CheckpointError) as err:
        load_hift(bad, CONFIG)
    assert "conv_pre.weight_g" in str(err.value)
    assert "(4, 1, 1)" in str(err.value) and "(16, 1, 1)" in str(err.value)

    bad = dict(state)
    bad["source_downs.0.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"source_downs\.0\.bias.*\(3,\).*\(8,\)"):
        load_hift(bad, CONFIG)


def test_missing_and_unexpected_keys_are_errors() -> None:
    state = _plain_state(_weight_normed_reference(False))
    missing = dict(state)
    del missing["m_source.l_linear.weight"]
    with pytest.raises(CheckpointError, match=r"m_source\.l_linear\.weight"):
        load_hift(missing, CONFIG)
    extra = dict(state)
    extra["conv_post.something"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"conv_post\.something"):
        load_hift(extra, CONFIG)
    with pytest.raises(CheckpointError, match="not found"):
        load_hift(Path("/nonexistent/hift.pt"), CONFIG)


@pytest.mark.parametrize("name", ["hift.pt", "hift.safetensors"])
def test_a_cut_checkpoint_is_one_line_naming_the_file_to_download_again(tmp_path: Path, name: str) -> None:
    from stepaudio.decoder.cosyvoice1.hift_loading import read_checkpoint

    path = tmp_path / name
    if name.endswith(".pt"):
        torch.save({"w": torch.randn(64, 64)}, path)
    else:
        from safetensors.torch import save_file

        save_file({"w": torch.randn(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"not a readable HiFT checkpoint .*: re-download {name}") as caught:
        read_checkpoint(path)
    assert "\n" not in str(caught.value)
