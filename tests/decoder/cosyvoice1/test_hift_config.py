from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.decoder.cosyvoice1.hift_config import F0PredictorConfig, HiFTConfig, YamlTagged, load_hyperpyyaml
from stepaudio.errors import CheckpointError
from stepaudio.testing.tiny_decoder import cosyvoice_hift_yaml

# Written in the shape of a CosyVoice-300M cosyvoice.yaml (HyperPyYAML tags, refs, other sections); its hift
# section the release's, base_channels as ref arithmetic.
COSYVOICE_YAML = f"""\
__set_seed1: !apply:random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]

sample_rate: 22050
spk_embed_dim: 192
half_base: 256

flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: 512
    spk_embed_dim: !ref <spk_embed_dim>
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                inference_cfg_rate: 0.7

{cosyvoice_hift_yaml("!ref <half_base> * 2")}
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1024
    sampling_rate: !ref <sample_rate>
compute_fbank: !name:cosyvoice.dataset.processor.compute_fbank
    feat_extractor: !ref <feat_extractor>
"""


def test_cosyvoice_yaml_gives_the_real_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(COSYVOICE_YAML)
    config = HiFTConfig.from_cosyvoice_yaml(path)
    assert config == HiFTConfig()
    assert config.f0_predictor == F0PredictorConfig(cond_channels=512)
    assert config.upsample_total == 256 and config.stft_bins == 9
    assert HiFTConfig.from_cosyvoice_yaml(COSYVOICE_YAML) == config  # text accepted too


def test_hyperpyyaml_tags_are_data_not_objects() -> None:
    tree = load_hyperpyyaml(COSYVOICE_YAML)
    assert isinstance(tree["__set_seed1"], YamlTagged) and tree["__set_seed1"].value == [1986]
    assert tree["flow"].tag == "!new:cosyvoice.flow.flow.MaskedDiffWithXvec"
    assert tree["flow"].value["spk_embed_dim"] == 192
    cfm = tree["flow"].value["decoder"].value["cfm_params"].value["content"]
    assert cfm["inference_cfg_rate"] == 0.7
    assert tree["compute_fbank"].value["feat_extractor"].tag == "!name:matcha.utils.audio.mel_spectrogram"


def test_bad_yaml_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no 'hift'"):
        HiFTConfig.from_cosyvoice_yaml("sample_rate: 22050\nflow: 1\n")
    with pytest.raises(CheckpointError, match="unresolved reference"):
        load_hyperpyyaml("a: !ref <missing>\nb: 2\n")
    with pytest.raises(CheckpointError, match="not found"):
        HiFTConfig.from_cosyvoice_yaml(tmp_path / "absent.yaml")


@pytest.mark.conformance
def test_conformance_hparams(conformance_dir: Path) -> None:
    path = conformance_dir / "hift" / "hparams.json"
    raw = json.loads(path.read_text())
    config = HiFTConfig.from_json(path)
    assert config.base_channels == raw["hift"]["base_channels"]
    assert config.n_fft == raw["hift"]["istft_params"]["n_fft"]
    assert config.resblock_dilation_sizes == tuple(tuple(d) for d in raw["hift"]["resblock_dilation_sizes"])
    assert config.f0_predictor.cond_channels == raw["f0_predictor"]["cond_channels"]
