from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stepaudio.text.tokenizer import StepTokenizer


@pytest.fixture(scope="session")
def text_dir(conformance_dir: Path) -> Path:
    return conformance_dir / "text"


@pytest.fixture(scope="session")
def step_tokenizer(text_dir: Path) -> StepTokenizer:
    return StepTokenizer(text_dir / "tokenizer.model")


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
