"""Shared pieces of the training tests: a real dataset folder (written with the manifest writer) whose
audio tokens follow a known, strongly skewed distribution, and the tiny release-layout Step stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.data.manifest import DatasetInfo, DatasetRow, DatasetWriter, TokenizerInfo, row_id, write_info
from stepaudio.testing.tiny_stack import speech_like, write_tiny_step_stack
from stepaudio.text.tokenizer import StepTokenizer

# The "data distribution": few vq02 and vq06 codes with Zipf-like weights, in the 2:3 interleave.
VQ02_CODES = (3, 17, 42, 100)
VQ06_CODES = (1024 + 5, 1024 + 77, 1024 + 300, 1024 + 2048, 1024 + 4000)
_CHARS = "今天天气真好我们一起去公园散步吧明天会下雨记得带伞这家店的面条很好吃"
_TAGS = ((), ("高兴1",), ("四川话",), ("高兴1", "慢速1"))


def _weights(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** 1.5
    return w / w.sum()


def skewed_tokens(rng: np.random.Generator, groups: int) -> list[int]:
    out: list[int] = []
    for _ in range(groups):
        out += [int(c) for c in rng.choice(VQ02_CODES, size=2, p=_weights(len(VQ02_CODES)))]
        out += [int(c) for c in rng.choice(VQ06_CODES, size=3, p=_weights(len(VQ06_CODES)))]
    return out


def write_dataset(root: Path, n_rows: int = 40, seed: int = 0, voice: str = "Tingting") -> Path:
    rng = np.random.default_rng(seed)
    write_info(root, DatasetInfo(engine="lite", tokenizer=TokenizerInfo("tiny"), config={"seed": seed}))
    writer = DatasetWriter(root, shard_size=16)
    for i in range(n_rows):
        text = "".join(rng.choice(list(_CHARS), size=int(rng.integers(4, 10)))) + f"{i}。"
        tags = _TAGS[i % len(_TAGS)]
        rid = row_id("lite", voice, tags, text)
        groups = int(rng.integers(6, 12))
        audio = writer.write_audio(rid, speech_like(groups * 0.12, 16000, seed + i), 16000)
        writer.append(DatasetRow(id=rid, text=text, tags=tags, voice=voice, audio=audio, sample_rate=16000,
                                 duration_s=groups * 0.12, audio_tokens=tuple(skewed_tokens(rng, groups)),
                                 engine="lite"))
    return root


@pytest.fixture(scope="session")
def make_dataset():  # type: ignore[no-untyped-def]
    """`make_dataset(root, n_rows=40, seed=0, voice="Tingting") -> root` (conftest is not importable)."""
    return write_dataset


@pytest.fixture(scope="session")
def tokenizer_model(conformance_dir: Path) -> Path:
    return conformance_dir / "text" / "tokenizer.model"


@pytest.fixture(scope="session")
def step_tokenizer(tokenizer_model: Path) -> StepTokenizer:
    return StepTokenizer(tokenizer_model)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def stack(tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step_stack(tmp_path_factory.mktemp("stack"), tokenizer_model)
