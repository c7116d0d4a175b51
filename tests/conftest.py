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
