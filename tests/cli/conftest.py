"""Shared pieces of the command-line tests: a small generated dataset for `stepaudio quantize` and `train`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stepaudio.data.manifest import DatasetInfo, DatasetRow, DatasetWriter, TokenizerInfo, row_id, write_info
from stepaudio.testing.tiny_stack import speech_like


def _write_dataset(root: Path, n: int, seconds: float, tokens: int) -> Path:
    rng = np.random.default_rng(0)
    write_info(root, DatasetInfo(engine="lite", tokenizer=TokenizerInfo("tiny")))
    writer = DatasetWriter(root)
    for i in range(n):
        text = f"第{i}句话，今天天气很好。"
        rid = row_id("lite", "Tingting", [], text)
        audio = writer.write_audio(rid, speech_like(seconds, 16000, i), 16000)
        ids = tuple(int(t) for t in rng.choice([1, 2, 1030, 1031, 1032], size=tokens))
        writer.append(DatasetRow(rid, text, (), "Tingting", audio, 16000, seconds, ids, "lite"))
    return root


@pytest.fixture
def write_dataset() -> Callable[..., Path]:
    """(root, n, seconds, tokens) -> root holding n rows in Tingting's voice: a numbered Chinese sentence,
    speech-like audio of `seconds`, `tokens` audio-token ids drawn from a few (seeded)."""
    return _write_dataset
