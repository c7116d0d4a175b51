"""PNG plots: real files with the expected size, data-dependent pixels, clear errors on nothing to plot."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from stepaudio.errors import StepAudioError

pytest.importorskip("matplotlib", reason="plots need the eval extra (matplotlib)")
from stepaudio.eval.plots import latency_distributions, rtf_vs_concurrency


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_latency_distribution_png(tmp_path: Path) -> None:
    groups = {"speech c=1": [0.16, 0.17, 0.18], "speech c=2": [0.2, 0.5], "chat c=1": [0.6], "empty": []}
    path = latency_distributions(groups, tmp_path / "sub" / "lat.png")
    width, height = _png_size(path)
    assert width >= 600 and height == 450
    other = latency_distributions({**groups, "speech c=1": [1.6, 1.7, 1.8]}, tmp_path / "other.png")
    assert other.read_bytes() != path.read_bytes()  # the pixels follow the data
    with pytest.raises(StepAudioError, match="no latency samples"):
        latency_distributions({"a": []}, tmp_path / "none.png")


def test_rtf_vs_concurrency_png(tmp_path: Path) -> None:
    rows = [{"mode": m, "concurrency": c, "rtf_p50": r, "throughput": t}
            for m, c, r, t in [("speech", 1, 0.1, 9.9), ("speech", 2, 0.12, 15.0), ("speech", 4, 0.3, 13.0),
                               ("chat", 1, 0.2, 4.6), ("chat", 2, None, None)]]
    path = rtf_vs_concurrency(rows, tmp_path / "rtf.png")
    assert _png_size(path) == (1000, 420)
    with pytest.raises(StepAudioError, match="no concurrency levels"):
        rtf_vs_concurrency([], tmp_path / "none.png")
