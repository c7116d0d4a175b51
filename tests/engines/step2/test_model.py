from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.audio_encoder.config import AudioEncoderConfig
from stepaudio.audio_encoder.model import AudioEncoder
from stepaudio.engines.step2.model import Step2Model, load_step2, save_step2
from stepaudio.errors import CheckpointError
from stepaudio.lm.checkpoint import INDEX_NAME
from stepaudio.lm.generate import GenerationConfig, generate
from stepaudio.lm.qwen2.config import Qwen2Config
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM
from stepaudio.lm.sampling import GREEDY
from stepaudio.text.vocab import STEP_AUDIO2, StepAudio2Vocab

TOL = {"atol": 1e-4, "rtol": 1e-4}


def _tiny_vocab(meta: dict[str, Any]) -> StepAudio2Vocab:
    ids = meta["tiny_special_ids"]
    return replace(
        STEP_AUDIO2,
        audio_start_id=ids["<audio_start>"],
        audio_end_id=ids["<audio_end>"],
        audio_patch_id=ids["<audio_patch>"],
    )


def _conformance(conformance_dir: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]]:
    folder = conformance_dir / "step-audio2" / "llm"
    return folder, load_file(folder / "vectors.safetensors"), json.loads((folder / "meta.json").read_text())


def _check_against_reference(model: Step2Model, vectors: dict[str, torch.Tensor]) -> None:
    ids = vectors["inputs.input_ids"].tolist()
    embeds = model.prompt_embeds(ids, list(vectors["inputs.mels"]))
    torch.testing.assert_close(embeds, vectors["outputs.inputs_embeds"], **TOL)
    expected = vectors["outputs.decode_ids"].tolist()
    config = GenerationConfig(max_new_tokens=len(expected), stop_ids=model.lm.config.eos_token_ids, sampling=GREEDY)
    assert generate(model.lm, [ids], config, prompt_embeds=[embeds]) == [expected]


@pytest.mark.conformance
def test_conformance_from_the_release_folder(conformance_dir: Path) -> None:
    folder, vectors, meta = _conformance(conformance_dir)
    _check_against_reference(load_step2(folder, vocab=_tiny_vocab(meta)), vectors)


@pytest.mark.conformance
def test_conformance_resharded_release_round_trip(conformance_dir: Path, tmp_path: Path) -> None:
    """Saved again as shards with an index (as the real release is), the folder gives the same numbers."""
    folder, vectors, meta = _conformance(conformance_dir)
    model = load_step2(folder, vocab=_tiny_vocab(meta))
    save_step2(model, tmp_path, max_shard_bytes=(folder / "model.safetensors").stat().st_size // 6)
    weight_map = json.loads((tmp_path / INDEX_NAME).read_text())["weight_map"]
    assert len(set(weight_map.values())) > 3 and set(weight_map) == set(load_file(folder / "model.safetensors"))
    config = json.loads((tmp_path / "config.json").read_text())
    released = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == released["model_type"] == "step_audio_2"
    assert config["audio_encoder_config"] == released["audio_encoder_config"]
    assert config["text_config"]["num_attention_groups"] == released["text_config"]["num_attention_groups"]
    _check_against_reference(load_step2(tmp_path, vocab=_tiny_vocab(meta)), vectors)


def _tiny_pair(llm_dim: int, hidden: int) -> Step2Model:
    audio = AudioEncoder(
        AudioEncoderConfig(
            n_mels=16,
            n_audio_ctx=32,
            n_audio_state=8,
            n_audio_head=2,
            n_audio_layer=1,
            llm_dim=llm_dim,
            torch_dtype="float32",
        )
    )
    lm = Qwen2ForCausalLM(
        Qwen2Config(
            hidden_size=hidden,
            intermediate_size=16,
            num_attention_heads=2,
            num_key_value_heads=1,
            num_hidden_layers=1,
            vocab_size=32,
            torch_dtype="float32",
        )
    )
    return Step2Model(audio, lm)


def test_folders_that_are_not_one_step_audio2_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_step2(tmp_path)
    save_step2(_tiny_pair(8, 12), tmp_path)
    with pytest.raises(CheckpointError, match="llm_dim 8 does not match the LM's hidden_size 12"):
        load_step2(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"model_type": "qwen2"}))
    with pytest.raises(CheckpointError, match="not a Step-Audio 2 checkpoint"):
        load_step2(tmp_path)


def test_a_text_only_prompt_needs_no_audio(tmp_path: Path) -> None:
    save_step2(_tiny_pair(12, 12), tmp_path)
    model = load_step2(tmp_path, vocab=replace(STEP_AUDIO2, audio_start_id=30, audio_patch_id=31))
    ids = [1, 2, 3]
    assert torch.equal(model.prompt_embeds(ids, []), model.lm.embed(torch.tensor(ids)))
    with pytest.raises(ValueError, match="1 audio anchor"):
        model.prompt_embeds([1, 30, 31, 2], [])
