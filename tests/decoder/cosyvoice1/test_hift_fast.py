from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice1.hift_config import F0PredictorConfig, HiFTConfig
from stepaudio.decoder.cosyvoice1.hift_fast import FastHiFT, FusedResBlock
from stepaudio.decoder.cosyvoice1.hift_loading import load_hift
from stepaudio.decoder.cosyvoice1.source import draw_sine_inputs
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator, ResBlock, Snake


def _randomise_alphas(model: torch.nn.Module, low: float = 0.3, high: float = 3.0) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("alpha"):
                param.uniform_(low, high)


def _alpha(module: torch.nn.Module) -> torch.Tensor:
    assert isinstance(module, Snake)
    return module.alpha


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel", [3, 7, 11])
def test_fused_resblock_equals_resblock(kernel: int, channels_last: bool) -> None:
    torch.manual_seed(kernel)
    block = ResBlock(12, kernel, (1, 3, 5)).eval()
    _randomise_alphas(block)
    with torch.no_grad():  # some alphas too small to fold, one exactly zero, one negative
        _alpha(block.activations2[1])[3] = 1e-3
        _alpha(block.activations1[2])[0] = 0.0
        _alpha(block.activations1[0])[5] = -0.7
    fused = FusedResBlock(block, channels_last=channels_last)
    assert fused.fold1 == [True, True, False] and fused.fold2 == [True, False, True]
    assert fused.receptive_half_width() == 12 * (kernel - 1) // 2
    x = torch.randn(2, 12, 301)
    before = x.clone()
    with torch.no_grad():
        expected = block(x)
        if channels_last:
            x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            actual = fused(x4).squeeze(2)
            assert torch.equal(x4.squeeze(2), before)
        else:
            actual = fused(x)
    assert torch.equal(x, before)  # the input is shared by sibling blocks: never modified
    torch.testing.assert_close(actual, expected, atol=2e-5, rtol=1e-5)


def _tiny(seed: int) -> HiFTGenerator:
    torch.manual_seed(seed)
    model = HiFTGenerator(HiFTConfig(base_channels=16, f0_predictor=F0PredictorConfig(cond_channels=8)))
    _randomise_alphas(model)
    return model.eval()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("tile_frames", [90, 100_000])
def test_tiled_fast_path_equals_plain(tile_frames: int, channels_last: bool) -> None:
    model = _tiny(0)
    fast = FastHiFT(model, tile_frames=tile_frames, channels_last=channels_last)
    assert fast.halo == 60 + 60 + 3  # source ResBlock k11 + ResBlock k11 + conv_post k7
    mel = torch.randn(2, 80, 5)
    s_stft = torch.randn(2, 18, 5 * 64 + 1)
    with torch.no_grad():
        torch.testing.assert_close(fast.backbone(mel, s_stft), model.backbone(mel, s_stft), atol=2e-5, rtol=1e-5)


def test_fast_forward_equals_plain_forward_with_the_same_draws() -> None:
    model = _tiny(1)
    fast = FastHiFT(model, tile_frames=200)
    mel = torch.randn(1, 80, 6)
    phase, noise = draw_sine_inputs(1, 9, 6 * 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(mel, phase, noise)
    torch.testing.assert_close(fast(mel, phase, noise), expected, atol=1e-5, rtol=0)


def test_fast_path_with_a_strided_last_source_down() -> None:
    """Three stages [4, 2, 2]: the generic code path still matches (the last source down is k=1)."""
    torch.manual_seed(3)
    config = HiFTConfig(
        base_channels=16,
        upsample_rates=(4, 2, 2),
        upsample_kernel_sizes=(8, 4, 4),
        source_resblock_kernel_sizes=(7, 7, 11),
        source_resblock_dilation_sizes=((1, 3, 5),) * 3,
        f0_predictor=F0PredictorConfig(cond_channels=8),
    )
    model = HiFTGenerator(config).eval()
    _randomise_alphas(model)
    fast = FastHiFT(model, tile_frames=50, channels_last=False)
    mel = torch.randn(1, 80, 6)
    s_stft = torch.randn(1, 18, 6 * config.upsample_total // config.hop_len + 1)
    with torch.no_grad():
        torch.testing.assert_close(fast.backbone(mel, s_stft), model.backbone(mel, s_stft), atol=2e-5, rtol=1e-5)


@pytest.mark.conformance
def test_fast_path_conformance(conformance_dir: Path) -> None:
    folder = conformance_dir / "hift"
    model = load_hift(folder / "hift.safetensors", HiFTConfig.from_json(folder / "hparams.json"))
    fast = FastHiFT(model, tile_frames=512)
    v = load_file(str(folder / "vectors.safetensors"))
    with torch.no_grad():
        post = fast.backbone(v["inputs.mel"], v["outputs.source_stft"])
        wav = fast.vocode(v["inputs.mel"], v["outputs.source_stft"])
        end_to_end = fast(v["inputs.mel"], v["inputs.sine_phase"], v["inputs.sine_noise"])
    torch.testing.assert_close(post, v["outputs.conv_post_out"], atol=1e-4, rtol=0)
    torch.testing.assert_close(wav, v["outputs.waveform"], atol=1e-5, rtol=0)
    torch.testing.assert_close(end_to_end, v["outputs.waveform"], atol=2e-3, rtol=0)
