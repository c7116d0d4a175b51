"""Real small models for the lite tests, each loaded once per session (SmolLM2 for chat, Whisper base, Piper).

Tests that need a model package, or Debian's pocketsphinx-testdata recordings, skip with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


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
