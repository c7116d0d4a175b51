"""Shared fixtures: the reference conformance vectors live in ../shared/conformance beside the checkout."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_conformance() -> Path | None:
    env = os.environ.get("STEPAUDIO_CONFORMANCE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared" / "conformance", REPO_ROOT / "shared" / "conformance"]
    for path in candidates:
        if (path / "MANIFEST.json").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The conformance directory, its files checked against MANIFEST.json; skips when absent."""
    path = _find_conformance()
    if path is None:
        pytest.skip(
            "reference conformance vectors not found: place shared/conformance beside the checkout "
            "or set STEPAUDIO_CONFORMANCE_DIR"
        )
    manifest = json.loads((path / "MANIFEST.json").read_text())
    for rel, info in manifest["files"].items():
        if rel == "README.md":
            continue
        file = path / rel
        if not file.is_file() or file.stat().st_size != info["bytes"]:
            pytest.fail(f"conformance file {rel} is missing or truncated")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run far faster on one torch thread; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _silent_flac(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    """A FLAC of silence written a minute at a time: an hour is ~180 kB, a decompression bomb built cheaply."""
    import io

    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    total, step = int(seconds * rate), 60 * rate
    with sf.SoundFile(buffer, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as handle:
        for start in range(0, total, step):
            handle.write(np.zeros((min(step, total - start), channels), dtype=np.int16))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def silent_flac() -> object:
    """`silent_flac(seconds, rate=16000, channels=1)`: encoded bytes of a silent FLAC."""
    return _silent_flac
