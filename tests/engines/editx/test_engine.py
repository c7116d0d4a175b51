"""The editx engine from the registry: options, the release layout as released, and an LM head that is never tied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from stepaudio.engines.base import Engine
from stepaudio.engines.editx.engine import EditXOptions
from stepaudio.engines.editx.paths import DECODER_DIR, EDITX_DIR, TOKENIZER_DIR, EditXPaths
from stepaudio.engines.editx.synthesizer import EditXSynthesizer
from stepaudio.engines.registry import create_engine, engine_names
from stepaudio.errors import CheckpointError, OptionError


def test_registered_with_its_abilities(editx_engine: Engine) -> None:
    assert "editx" in engine_names()
    assert editx_engine.name == "editx"
    assert editx_engine.abilities.clones_voices and not editx_engine.abilities.tool_calls
    assert editx_engine.chat is None and editx_engine.transcriber is None
    assert isinstance(editx_engine.synthesizer, EditXSynthesizer)


def test_release_config_has_no_tie_key_and_the_head_stays_untied(editx_engine: Engine, editx_stack: Path) -> None:
    config = json.loads((editx_stack / EDITX_DIR / "config.json").read_text())
    assert "tie_word_embeddings" not in config
    synth = editx_engine.synthesizer
    assert isinstance(synth, EditXSynthesizer)
    model = synth.model._lm().model
    head, embed = model.lm_head.weight, model.model.embed_tokens.weight
    assert head.data_ptr() != embed.data_ptr() and not torch.equal(head.float(), embed.float())


def test_options_are_checked() -> None:
    with pytest.raises(OptionError, match="did you mean seed"):
        EditXOptions.from_options({"sed": 1})
    with pytest.raises(OptionError, match="integer"):
        EditXOptions.from_options({"max_new_tokens": "many"})
    with pytest.raises(OptionError, match="at least 1"):
        EditXOptions.from_options({"max_new_tokens": 0})
    with pytest.raises(OptionError, match="dtype"):
        EditXOptions.from_options({"dtype": "int3"})
    with pytest.raises(OptionError, match="no ASR"):
        EditXOptions.from_options({"transcriber": "editx"})
    assert EditXOptions.from_options({"seed": "7", "device": "cpu"}).seed == 7
    assert EditXOptions.from_options({"streaming": "off"}).streaming is False
    assert EditXOptions.from_options({"streaming": True, "prefix_cache_mb": "0"}).prefix_cache_mb == 0
    with pytest.raises(OptionError, match="on or off"):
        EditXOptions.from_options({"streaming": "sometimes"})
    with pytest.raises(OptionError, match="at least 0"):
        EditXOptions.from_options({"prefix_cache_mb": -1})


def test_prefix_cache_and_streaming_reach_the_parts(editx_stack: Path) -> None:
    default = create_engine("editx", model_path=str(editx_stack))
    synth = default.synthesizer
    assert isinstance(synth, EditXSynthesizer) and synth.streaming
    cache = synth.model._lm().prefix_cache
    assert cache is not None and cache.stats().max_bytes == EditXOptions().prefix_cache_mb << 20
    off = create_engine("editx", model_path=str(editx_stack), prefix_cache_mb=0, streaming="off")
    assert isinstance(off.synthesizer, EditXSynthesizer) and not off.synthesizer.streaming
    assert off.synthesizer.model._lm().prefix_cache is None


def test_folders_are_found_as_the_release_names_them(editx_stack: Path, tmp_path: Path) -> None:
    paths = EditXPaths.resolve(editx_stack)
    assert paths.tokenizer == editx_stack / TOKENIZER_DIR and paths.decoder == editx_stack / EDITX_DIR / DECODER_DIR
    with pytest.raises(CheckpointError, match="the Step-Audio-EditX folder itself"):
        EditXPaths.resolve(editx_stack / EDITX_DIR)
    with pytest.raises(CheckpointError, match="huggingface-cli download stepfun-ai/Step-Audio-Tokenizer"):
        EditXPaths.resolve(tmp_path)
    with pytest.raises(CheckpointError, match="no Step-Audio-Tokenizer folder: pass --model-path"):
        EditXPaths.resolve()
    broken = tmp_path / "broken"
    shutil.copytree(editx_stack / EDITX_DIR, broken / EDITX_DIR, ignore=shutil.ignore_patterns(DECODER_DIR))
    (broken / TOKENIZER_DIR).mkdir()
    with pytest.raises(CheckpointError, match="CosyVoice-300M-25Hz/ decoder folder"):
        EditXPaths.resolve(broken)
    direct = EditXPaths.resolve(tokenizer=editx_stack / TOKENIZER_DIR, lm=editx_stack / EDITX_DIR)
    assert direct == paths


def test_engine_refuses_a_wrong_model_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        create_engine("editx", model_path=str(tmp_path / "nowhere"))


def test_concurrent_clones_reach_the_lms_batch(editx_stack: Path) -> None:
    """`lm_batch` rows: the server lets that many clones and edits in at once and the LM decodes them together;
    one at a time by default on CPU."""
    assert create_engine("editx", model_path=str(editx_stack)).concurrency == ()
    wide = create_engine("editx", model_path=str(editx_stack), lm_batch=2)
    assert dict(wide.concurrency) == {"synthesizer": 2}
    assert isinstance(wide.synthesizer, EditXSynthesizer)
    lm = wide.synthesizer.model._lm()
    assert lm.lm_batch == 2 and lm.batcher is not None
    with pytest.raises(OptionError, match="lm_batch must be at least 1"):
        EditXOptions.from_options({"lm_batch": 0})
