from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.decoder.cosyvoice1.hift_loading import load_hift
from stepaudio.decoder.cosyvoice1.source import SineGen, SourceModuleHnNSF, draw_sine_inputs, upsample_f0


@pytest.mark.conformance
def test_source_matches_reference_given_phase_and_noise(conformance_dir: Path) -> None:
    folder = conformance_dir / "hift"
    config = HiFTConfig.from_json(folder / "hparams.json")
    model = load_hift(folder / "hift.safetensors", config)
    v = load_file(str(folder / "vectors.safetensors"))
    with torch.no_grad():
        source = model.excitation(v["outputs.f0"], v["inputs.sine_phase"], v["inputs.sine_noise"])
    assert source.shape == v["outputs.source"].shape
    assert source.shape[-1] == v["outputs.f0"].shape[-1] * config.upsample_total
    torch.testing.assert_close(source, v["outputs.source"], atol=1e-6, rtol=0)


def _sine_gen() -> SineGen:
    return SineGen(sampling_rate=16000, harmonic_num=3, sine_amp=0.1, noise_std=0.003, voiced_threshold=10)


def test_upsample_f0_repeats_frames() -> None:
    f0 = torch.tensor([[1.0, 2.0, 3.0]])
    assert upsample_f0(f0, 4).tolist() == [[[1.0] * 4 + [2.0] * 4 + [3.0] * 4]]


def test_draw_sine_inputs_is_seeded_and_harmonic_zero_has_no_phase() -> None:
    a = draw_sine_inputs(2, 9, 50, generator=torch.Generator().manual_seed(3))
    b = draw_sine_inputs(2, 9, 50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    phase, noise = a
    assert phase.shape == (2, 9, 1) and noise.shape == (2, 9, 50)
    assert torch.equal(phase[:, 0], torch.zeros(2, 1))
    assert bool((phase.abs() <= math.pi).all()) and float(phase[:, 1:].abs().min()) > 0


def test_voiced_samples_are_harmonic_sines() -> None:
    gen = _sine_gen()
    n = 64
    f0_up = torch.full((1, 1, n), 200.0)
    phase = torch.tensor([0.0, 0.3, -1.0, 2.0]).view(1, 4, 1)
    out = gen(f0_up, phase, torch.zeros(1, 4, n))
    t = torch.arange(1, n + 1, dtype=torch.float64)  # the cumulative sum includes the current sample
    k = torch.arange(1, 5, dtype=torch.float64)[:, None]
    expected = 0.1 * torch.sin(2 * math.pi * 200.0 * k * t / 16000 + phase[0].double())
    torch.testing.assert_close(out[0].double(), expected, atol=1e-5, rtol=0)


def test_unvoiced_samples_are_noise_only() -> None:
    gen = _sine_gen()
    f0_up = torch.tensor([[[0.0, 5.0, 10.0, 11.0]]])
    noise = torch.ones(1, 4, 4)
    out = gen(f0_up, torch.zeros(1, 4, 1), noise)
    torch.testing.assert_close(out[..., :3], torch.full((1, 4, 3), 0.1 / 3))
    assert not torch.allclose(out[..., 3], torch.full((1, 4), 0.003))  # voiced: sine + 0.003 * noise


def test_end_phase_continues_the_sines_across_chunks() -> None:
    gen = _sine_gen()
    torch.manual_seed(0)
    f0 = torch.rand(1, 12) * 300 + 50
    f0_up = upsample_f0(f0, 40)
    phase, _ = draw_sine_inputs(1, 4, 1, generator=torch.Generator().manual_seed(1))
    zeros = torch.zeros(1, 4, f0_up.shape[-1])
    whole = gen(f0_up, phase, zeros)
    cut = 200
    first = gen(f0_up[..., :cut], phase, zeros[..., :cut])
    second = gen(f0_up[..., cut:], gen.end_phase(f0_up[..., :cut], phase), zeros[..., cut:])
    torch.testing.assert_close(torch.cat([first, second], dim=-1), whole, atol=2e-5, rtol=0)


def test_source_module_mixes_harmonics_then_tanh() -> None:
    torch.manual_seed(0)
    module = SourceModuleHnNSF(16000, harmonic_num=3, sine_amp=0.1, noise_std=0.003, voiced_threshold=10)
    f0_up = torch.full((2, 1, 30), 150.0)
    phase, noise = draw_sine_inputs(2, 4, 30, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = module(f0_up, phase, noise)
        sines = module.l_sin_gen(f0_up, phase, noise)
        weight, bias = module.l_linear.weight[0], module.l_linear.bias[0]
        expected = torch.tanh(torch.einsum("bhn,h->bn", sines, weight) + bias)[:, None]
    assert out.shape == (2, 1, 30)
    torch.testing.assert_close(out, expected)
