from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio.engines.base import ChatModel, Synthesizer, Transcriber
from stepaudio.engines.lite.engine import LiteConfig, create_engine
from stepaudio.errors import StepAudioError


def test_engine_creation_is_lazy_and_implements_the_interfaces(tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper", reason="lite extra not installed")
    engine = create_engine(chat_model="smollm2", cache_dir=str(tmp_path), threads=1)
    assert engine.name == "lite"
    assert isinstance(engine.transcriber, Transcriber)
    assert isinstance(engine.chat, ChatModel)
    assert isinstance(engine.synthesizer, Synthesizer) and engine.synthesizer.sample_rate == 22050
    assert list(tmp_path.iterdir()) == []  # nothing assembled or loaded until first use


def test_options_are_checked() -> None:
    config = LiteConfig.from_options({"model_path": "my.gguf", "threads": 1, "device": "cpu", "beam_size": None})
    assert (config.chat_model, config.threads, config.beam_size) == ("my.gguf", 1, 1)
    with pytest.raises(StepAudioError, match="no option colour"):
        LiteConfig.from_options({"colour": "red"})
    with pytest.raises(StepAudioError, match="CPU only"):
        LiteConfig.from_options({"device": "cuda"})


def test_whisper_small_explains_why_it_is_not_packaged() -> None:
    from stepaudio.engines.lite.engine import _resolve

    with pytest.raises(StepAudioError, match="incomplete"):
        _resolve("small", None)
