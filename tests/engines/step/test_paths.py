"""Release folders found under --model-path, and the errors for wrong layouts naming what to pass instead.

The folders here are empty shells with the files that tell the releases apart; the real loading of a tiny
stack in this layout is tested in tests/cli/test_main.py and test_engine.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio.engines.step.paths import (
    CHAT_DIR,
    COSYVOICE_DIR,
    TOKENIZER_DIR,
    TTS_DIR,
    StepModelPaths,
    looks_like,
)
from stepaudio.errors import CheckpointError


def _release(root: Path) -> Path:
    """Empty shells of the three release folders, with the files that tell them apart."""
    for name in (TTS_DIR, CHAT_DIR):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{}")
        (root / name / "tokenizer.model").write_bytes(b"")
    (root / TTS_DIR / COSYVOICE_DIR).mkdir()
    (root / TOKENIZER_DIR).mkdir()
    (root / TOKENIZER_DIR / "speech_tokenizer_v1.onnx").write_bytes(b"")
    return root


def test_each_release_folder_is_recognised_by_its_files(tmp_path: Path) -> None:
    root = _release(tmp_path / "models")
    assert [looks_like(root / n) for n in (TTS_DIR, CHAT_DIR, TOKENIZER_DIR)] == ["tts", "chat", "tokenizer"]
    assert looks_like(root) is None
    paths = StepModelPaths.resolve(root)
    assert (paths.tts, paths.chat, paths.tokenizer, paths.root) == (root / TTS_DIR, root / CHAT_DIR,
                                                                     root / TOKENIZER_DIR, root)
    assert paths.cosyvoice() == root / TTS_DIR / COSYVOICE_DIR


def test_a_release_folder_given_as_model_path_says_to_pass_its_parent(tmp_path: Path) -> None:
    root = _release(tmp_path / "models")
    with pytest.raises(CheckpointError, match=rf"{TTS_DIR} is the {TTS_DIR} folder itself; --model-path takes the "
                                              rf"folder that holds .* \(--model-path {root}\), or pass this one as "
                                              rf"-O tts_path={root / TTS_DIR}"):
        StepModelPaths.resolve(root / TTS_DIR)
    with pytest.raises(CheckpointError, match=f"the {TOKENIZER_DIR} folder itself.*-O tokenizer_path="):
        StepModelPaths.resolve(root / TOKENIZER_DIR)
    with pytest.raises(CheckpointError, match="is a CosyVoice decoder folder"):
        (root / TTS_DIR / COSYVOICE_DIR / "flow.pt").write_bytes(b"")
        StepModelPaths.resolve(root / TTS_DIR / COSYVOICE_DIR)


def test_a_folder_above_the_releases_names_the_one_to_pass(tmp_path: Path) -> None:
    _release(tmp_path / "models")
    with pytest.raises(CheckpointError, match=f"{tmp_path} holds no release folder, but {tmp_path / 'models'} does"):
        StepModelPaths.resolve(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"holds none of .*huggingface-cli download stepfun-ai/Step-Audio-TTS-3B"):
        StepModelPaths.resolve(tmp_path / "empty")


def test_a_missing_part_says_where_to_download_it_or_which_option_to_pass(tmp_path: Path) -> None:
    root = _release(tmp_path / "models")
    (root / TTS_DIR / COSYVOICE_DIR).rmdir()
    with pytest.raises(CheckpointError, match=f"has no {COSYVOICE_DIR}/ decoder folder: its download is incomplete"):
        StepModelPaths.resolve(root).cosyvoice()
    for name in (TTS_DIR / Path("config.json"), TTS_DIR / Path("tokenizer.model")):
        (root / name).unlink()
    (root / TTS_DIR).rmdir()
    paths = StepModelPaths.resolve(root)
    with pytest.raises(CheckpointError, match=rf"no {TTS_DIR} folder in {root}: download it there \(huggingface-cli "
                                              rf"download stepfun-ai/{TTS_DIR} --local-dir {root / TTS_DIR}\) or "
                                              r"pass -O tts_path=DIR"):
        paths.require("tts")
    with pytest.raises(CheckpointError, match="no Step-Audio-Chat folder: pass --model-path DIR holding"):
        StepModelPaths().require("chat")


def test_an_explicit_folder_of_the_wrong_kind_is_named(tmp_path: Path) -> None:
    root = _release(tmp_path / "models")
    paths = StepModelPaths.resolve(root, tts=root / TOKENIZER_DIR)
    with pytest.raises(CheckpointError, match=f"{TOKENIZER_DIR} is the {TOKENIZER_DIR} folder, not {TTS_DIR}: point "
                                              "-O tts_path at"):
        paths.require("tts")
    with pytest.raises(CheckpointError, match="does not exist: fix -O chat_path"):
        StepModelPaths.resolve(root, chat=tmp_path / "nowhere").require("chat")
