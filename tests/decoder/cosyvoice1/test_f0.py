from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice1.f0 import ConvRNNF0Predictor
from stepaudio.decoder.cosyvoice1.hift_config import F0PredictorConfig, HiFTConfig
from stepaudio.decoder.cosyvoice1.hift_loading import load_hift


@pytest.mark.conformance
def test_f0_matches_reference(conformance_dir: Path) -> None:
    folder = conformance_dir / "hift"
    model = load_hift(folder / "hift.safetensors", HiFTConfig.from_json(folder / "hparams.json"))
    vectors = load_file(str(folder / "vectors.safetensors"))
    with torch.no_grad():
        f0 = model.predict_f0(vectors["inputs.mel"])
    expected = vectors["outputs.f0"]
    assert f0.shape == expected.shape
    torch.testing.assert_close(f0, expected, atol=1e-3, rtol=0)
    # The vectors contain unvoiced frames (f0 <= 10 Hz); they must be unvoiced for us too.
    assert torch.equal(f0 > 10, expected > 10)


def test_f0_shape_layers_and_sign() -> None:
    torch.manual_seed(0)
    config = F0PredictorConfig(in_channels=12, cond_channels=6, num_layers=3)
    predictor = ConvRNNF0Predictor(config)
    names = {k.rsplit(".", 1)[0] for k in predictor.state_dict()}
    assert names == {"condnet.0", "condnet.2", "condnet.4", "classifier"}
    with torch.no_grad():
        predictor.classifier.bias.fill_(-5.0)  # pushes raw outputs negative; abs() must flip them
        f0 = predictor(torch.randn(3, 12, 17))
    assert f0.shape == (3, 17)
    assert bool((f0 >= 0).all()) and float(f0.max()) > 0


def test_f0_is_local_in_time() -> None:
    """Five k=3 convs see 5 frames each side: frames farther away must not change."""
    torch.manual_seed(1)
    predictor = ConvRNNF0Predictor(F0PredictorConfig(in_channels=8, cond_channels=4))
    mel = torch.randn(1, 8, 30)
    changed = mel.clone()
    changed[..., 0] += 1.0
    with torch.no_grad():
        a, b = predictor(mel), predictor(changed)
    assert not torch.equal(a[:, :6], b[:, :6])
    assert torch.equal(a[:, 6:], b[:, 6:])
