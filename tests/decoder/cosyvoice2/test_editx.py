"""EditX's decoder: the dual-codebook regrouping (conformance), the cosyvoice.yaml reader, the flow key map and
offline token2wav from a tiny release folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stepaudio.decoder.cosyvoice2.editx import (
    DualCodebookEmbedding,
    dual_frames,
    editx_config_from_yaml,
    load_editx_flow,
)
from stepaudio.decoder.cosyvoice2.editx_token2wav import EditXPrompt, EditXToken2Wav
from stepaudio.errors import AudioError, CheckpointError
from stepaudio.testing.tiny_decoder import TINY_COSYVOICE_YAML
from stepaudio.testing.tiny_editx import TINY_EDITX_YAML, dual_codebook_ids
from stepaudio.testing.tiny_stack import speech_like


@pytest.fixture(scope="module")
def editx_cases(conformance_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((conformance_dir / "editx" / "prompts.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.conformance
def test_regrouping_matches_the_reference(editx_cases: dict[str, Any]) -> None:
    assert editx_cases["decoder_reshape_cases"]
    for case in editx_cases["decoder_reshape_cases"]:
        assert len(case["mixed"]) % 5 == case["remainder"]
        assert dual_frames(case["mixed"]).tolist() == case["frames"]
    for case in editx_cases["cases"]:
        flow_ids = [i - 65536 for i in case["prompt_code"]]
        assert dual_frames(flow_ids).tolist() == case["decoder_prompt_token"], case["name"]


def test_dual_embedding_concatenates_two_lookups_of_one_table() -> None:
    torch.manual_seed(0)
    embedding = DualCodebookEmbedding(5121, 8)
    frames = torch.tensor([[[3, 1030], [1024, 5120]]])
    out = embedding(frames)
    table = embedding.embedding.weight
    assert out.shape == (1, 2, 8)
    assert torch.equal(out[0, 0], torch.cat([table[3], table[1030]]))
    assert torch.equal(out[0, 1], torch.cat([table[1024], table[5120]]))
    assert embedding.weight is table
    with pytest.raises(CheckpointError, match="even"):
        DualCodebookEmbedding(10, 7)


def test_yaml_gives_sizes_and_refuses_other_families() -> None:
    config = editx_config_from_yaml(TINY_EDITX_YAML)
    assert (config.flow.vocab_size, config.flow.input_size, config.flow.up_rate) == (5121, 32, 2)
    assert config.hift.base_channels == 32 and config.hift.upsample_total == 480
    assert (config.mel.n_fft, config.mel.hop_size, config.mel.sampling_rate) == (1920, 480, 24000)
    with pytest.raises(CheckpointError, match="CausalMaskedDiffWithXvec"):
        editx_config_from_yaml(TINY_COSYVOICE_YAML)  # the v1 decoder's yaml
    with pytest.raises(CheckpointError, match="BigVGAN"):
        editx_config_from_yaml(TINY_EDITX_YAML.replace("hifigan.generator.HiFTGenerator", "bigvgan.bigvgan.BigVGAN"))
    without_embedding = TINY_EDITX_YAML.replace("DualCodebookEmbedding", "Embedding")
    with pytest.raises(CheckpointError, match="DualCodebookEmbedding"):
        editx_config_from_yaml(without_embedding)
    with pytest.raises(CheckpointError, match="mel_conf"):
        editx_config_from_yaml(TINY_EDITX_YAML.split("mel_conf:")[0])
    with pytest.raises(CheckpointError, match="24 kHz"):
        editx_config_from_yaml(TINY_EDITX_YAML.replace("sample_rate: 24000", "sample_rate: 22050")
                               .replace("upsample_rates: [8, 5, 3]", "upsample_rates: [8, 8]"))


def test_flow_key_map_names_the_offending_key(editx_decoder_dir: Path) -> None:
    config = editx_config_from_yaml(editx_decoder_dir / "cosyvoice.yaml").flow
    state = torch.load(editx_decoder_dir / "flow.pt", map_location="cpu")
    assert "input_embedding.embedding.weight" in state and state["input_embedding.embedding.weight"].shape == (5121, 16)
    sa2_style = dict(state)
    sa2_style["input_embedding.weight"] = sa2_style.pop("input_embedding.embedding.weight")
    with pytest.raises(CheckpointError, match="Step-Audio 2"):
        load_editx_flow(sa2_style, config)
    wrong = dict(state, **{"encoder_proj.weight": torch.zeros(3, 3)})
    with pytest.raises(CheckpointError, match=r"encoder_proj\.weight"):
        load_editx_flow(wrong, config)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_editx_flow(dict(state, extra=torch.zeros(1)), config)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"cosyvoice\.yaml missing"):
        EditXToken2Wav.from_dir(tmp_path)


@pytest.mark.usefixtures("one_torch_thread")
def test_offline_decode_lengths_and_prompt_use(editx_decoder: EditXToken2Wav) -> None:
    prompt_wav = speech_like(2.0, 24000, 1)
    prompt_ids = dual_codebook_ids(12, 0)
    prompt = editx_decoder.prompt_features(prompt_wav, 24000, prompt_ids)
    # untrimmed 2 s at 24 kHz -> 100 mel frames, bf16-rounded; 12 groups of codes -> 36 pairs (72 mel frames)
    assert prompt.mel.shape == (100, 80)
    assert torch.equal(prompt.mel, prompt.mel.bfloat16().float())
    assert torch.equal(prompt.embedding, prompt.embedding.bfloat16().float())
    ids = dual_codebook_ids(4, 1)[:-2]  # a partial last group is padded, as the reference does
    mel = editx_decoder.mel(ids, prompt)
    assert mel.shape == (1, 80, 4 * 3 * 2)
    wav = editx_decoder(ids, prompt)
    assert wav.shape == (4 * 3 * 2 * 480,) and wav.dtype == np.float32
    assert np.isfinite(wav).all() and 0 < np.abs(wav).max() <= 0.99
    assert np.array_equal(wav, editx_decoder(ids, prompt))  # fixed flow noise and seeded HiFT draws
    other = editx_decoder.prompt_features(speech_like(2.0, 16000, 9), 16000, dual_codebook_ids(8, 5))
    assert not torch.allclose(editx_decoder.mel(ids, other), mel)
    with pytest.raises(ValueError, match="flow ids"):
        editx_decoder.mel([5120], prompt)
    with pytest.raises(AudioError, match="no audio tokens"):
        EditXPrompt((), prompt.mel, prompt.embedding)
