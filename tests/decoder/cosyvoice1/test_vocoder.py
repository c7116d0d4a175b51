from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice1.hift_config import F0PredictorConfig, HiFTConfig
from stepaudio.decoder.cosyvoice1.hift_loading import hift_key_map, load_hift
from stepaudio.decoder.cosyvoice1.source import draw_sine_inputs
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator, Snake


@pytest.fixture(scope="module")
def case(conformance_dir: Path) -> tuple[HiFTGenerator, dict[str, torch.Tensor], dict]:
    folder = conformance_dir / "hift"
    model = load_hift(folder / "hift.safetensors", HiFTConfig.from_json(folder / "hparams.json"))
    return model, load_file(str(folder / "vectors.safetensors")), json.loads((folder / "meta.json").read_text())


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


@pytest.mark.conformance
def test_source_stft(case: tuple) -> None:
    model, v, _ = case
    _close(model.source_stft(v["outputs.source"]), v["outputs.source_stft"], 1e-5)


@pytest.mark.conformance
def test_conv_pre_and_conv_post(case: tuple) -> None:
    model, v, _ = case
    with torch.no_grad():
        _close(model.conv_pre(v["inputs.mel"]), v["outputs.conv_pre_out"], 1e-4)
        _close(model.backbone(v["inputs.mel"], v["outputs.source_stft"]), v["outputs.conv_post_out"], 1e-4)


@pytest.mark.conformance
def test_waveform_given_source_stft(case: tuple) -> None:
    model, v, meta = case
    with torch.no_grad():
        wav = model.vocode(v["inputs.mel"], v["outputs.source_stft"])
    assert wav.shape == (1, meta["samples"])
    _close(wav, v["outputs.waveform"], 1e-5)


@pytest.mark.conformance
def test_waveform_end_to_end_from_mel(case: tuple) -> None:
    model, v, _ = case
    with torch.no_grad():
        wav = model(v["inputs.mel"], v["inputs.sine_phase"], v["inputs.sine_noise"])
    _close(wav, v["outputs.waveform"], 2e-3)


@pytest.mark.conformance
def test_parameter_count_matches_reference(case: tuple) -> None:
    model, _, meta = case
    # The reference counts weight_g ([out, 1, ...]) and weight_v separately; ours are folded.
    params = dict(model.named_parameters())
    gains = sum(params[r.name].shape[0] for r in hift_key_map(model) if r.weight_norm)
    assert sum(p.numel() for p in params.values()) + gains == meta["n_params"]


def _tiny(seed: int = 0) -> HiFTGenerator:
    torch.manual_seed(seed)
    model = HiFTGenerator(HiFTConfig(base_channels=16, f0_predictor=F0PredictorConfig(cond_channels=8)))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("alpha"):
                param.uniform_(0.5, 1.5)
    return model.eval()


def test_snake_formula_uses_linear_alpha() -> None:
    snake = Snake(3)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([0.5, 1.0, 2.0]))
    x = torch.linspace(-2, 2, 12).view(1, 3, 4)
    alpha = snake.alpha.detach().view(1, 3, 1)
    torch.testing.assert_close(snake(x).detach(), x + torch.sin(alpha * x) ** 2 / alpha)


def test_output_length_and_limit() -> None:
    model = _tiny()
    config = model.config
    with torch.no_grad():
        model.conv_post.bias.fill_(3.0)  # type: ignore[union-attr]  # large magnitudes: the clamp must act
        wav = model(torch.randn(1, 80, 7), generator=torch.Generator().manual_seed(0))
    assert wav.shape == (1, 7 * config.upsample_total)
    limit = torch.tensor(config.audio_limit, dtype=torch.float32)
    assert torch.equal(wav.abs().max(), limit)  # reached and not exceeded


def test_batch_equals_single_items_and_padding_only_touches_the_tail() -> None:
    model = _tiny(1)
    config = model.config
    lengths = [40, 70]
    t_max = max(lengths)
    mels = torch.randn(2, 80, t_max)
    phase, noise = draw_sine_inputs(2, 9, t_max * config.upsample_total, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batch = model(mels, phase, noise)
        for i, length in enumerate(lengths):
            n = length * config.upsample_total
            single = model(mels[i : i + 1, :, :length], phase[i : i + 1], noise[i : i + 1, :, :n])
            # Padding changes an item only within the receptive field (< 28 frames) of its end.
            keep = (length - 28) * config.upsample_total
            torch.testing.assert_close(batch[i : i + 1, :keep], single[:, :keep], atol=1e-5, rtol=0)
            assert single.shape == (1, n)


def test_generator_makes_forward_deterministic() -> None:
    model = _tiny(2)
    mel = torch.randn(1, 80, 5)
    with torch.no_grad():
        a = model(mel, generator=torch.Generator().manual_seed(7))
        b = model(mel, generator=torch.Generator().manual_seed(7))
        c = model(mel, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_real_shape_parameter_count() -> None:
    with torch.device("meta"):
        model = HiFTGenerator(HiFTConfig())
    assert 20.3e6 < sum(p.numel() for p in model.parameters()) < 20.6e6
