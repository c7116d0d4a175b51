"""A tiny EditX release folder (random weights, the real tokenizer) shared by the editx engine and CLI tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepaudio.engines.base import Engine


@pytest.fixture(scope="session")
def editx_stack(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stepaudio.testing.tiny_editx import write_tiny_editx_stack

    return write_tiny_editx_stack(tmp_path_factory.mktemp("editx"), conformance_dir / "text" / "tokenizer.model")


@pytest.fixture(scope="session")
def editx_engine(editx_stack: Path) -> Engine:
    from stepaudio.engines.registry import create_engine

    return create_engine("editx", model_path=str(editx_stack), seed=0, max_new_tokens=40)


@pytest.fixture
def lm_prompts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[int]]]:
    """Every prompt (ids) the in-process EditX LM is asked to continue during the test."""
    from stepaudio.engines.step.native_lm import NativeLM

    prompts: list[list[int]] = []
    stream = NativeLM.stream

    def recording(self: NativeLM, prompt: Any, *args: Any, **kwargs: Any) -> Any:
        prompts.append([int(i) for i in prompt])
        return stream(self, prompt, *args, **kwargs)

    monkeypatch.setattr(NativeLM, "stream", recording)
    yield prompts
