from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from stepaudio.eval.bench.decoder_hift import add_arguments, run, run_hift_bench


@pytest.mark.slow  # builds the real 20.5M-parameter shape and warms oneDNN for two variants
def test_rows_describe_each_case() -> None:
    rows = run_hift_bench([0.03, 0.05], batch=2, repeats=1, warmup=0)
    assert [(r["variant"], r["seconds"]) for r in rows] == [
        ("plain", 0.03),
        ("fast", 0.03),
        ("plain", 0.05),
        ("fast", 0.05),
    ]
    for row in rows:
        assert 20.3e6 < row["params"] < 20.6e6  # the real CosyVoice-300M HiFT shape
        assert row["batch"] == 2 and row["dtype"] == "fp32"
        audio_s = 2 * row["mel_frames"] * 256 / 22050
        assert abs(row["rtf"] - row["wall_median_s"] / audio_s) < 1e-9
        assert row["wall_min_s"] <= row["wall_median_s"]


def test_cli_entry_writes_json(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "hift.json"
    args = parser.parse_args(
        ["--seconds", "0.03", "--repeats", "1", "--warmup", "0", "--variants", "fast", "--json", str(out)]
    )
    assert run(args) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["variant"] == "fast"
