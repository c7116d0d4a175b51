"""`config.json` of a release folder: read from the file or its folder; every family's config reader refuses a
missing, cut-short or non-object file the same way (a `CheckpointError` that says what to re-download)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stepaudio.audio_encoder.config import AudioEncoderConfig
from stepaudio.errors import CheckpointError
from stepaudio.lm.qwen2.config import Qwen2Config
from stepaudio.lm.step1.config import Step1Config
from stepaudio.shards import read_config_json

READERS: list[Callable[[Path], Any]] = [read_config_json, Step1Config.from_json, Qwen2Config.from_json,
                                        AudioEncoderConfig.from_json]


def test_reads_the_file_or_its_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "name": "\u58f0"}', encoding="utf-8")
    assert read_config_json(tmp_path) == read_config_json(tmp_path / "config.json") == {"model_type": "qwen2",
                                                                                         "name": "\u58f0"}


@pytest.mark.parametrize("read", READERS)
def test_bad_config_json_is_a_checkpoint_error(read: Callable[[Path], Any], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        read(tmp_path / "absent")
    (tmp_path / "config.json").write_text('{"hidden_size": 8,')  # a download cut short
    with pytest.raises(CheckpointError, match=r"config.json is not valid JSON \(.*\): re-download this config.json"):
        read(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="holds a JSON list, not an object"):
        read(tmp_path)
