"""vq06 / whole-tokenizer bench: a tiny-shape smoke run of every row and the printed table (no timing asserts)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from stepaudio.eval.bench import tokenizer_vq06 as bench
from stepaudio.tokenizer.s3_model import S3Config, export_s3_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny ops: one thread is faster


def test_rows_cover_vq06_and_the_whole_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx_path = export_s3_onnx(tmp_path / "s3.onnx", S3Config(n_state=32, n_head=4, n_layer=1))
    rows = bench.run_vq06_bench(
        onnx_path, seconds=2.5, threads=1, repeats=1, linguistic=bench.random_linguistic(1, "fp32")
    )
    names = [r["name"] for r in rows]
    assert names[0] == "vq06 offline" and "tokenizer offline" in names
    assert len(names) == 2 + 2 * len(bench.POLICIES)
    window = next(r for r in rows if r["name"] == "vq06 stream window")
    assert window["codes_equal_offline"] == 1.0 and window["push_ms_p50"] >= 0
    whole = next(r for r in rows if r["name"] == "tokenizer stream window")
    assert whole["vq02_equal_offline"] and whole["vq06_codes_equal_offline"] == 1.0
    bench.print_rows(rows)
    out = capsys.readouterr().out
    assert "tokenizer stream ahead1s-prefix-hop0.96" in out


def test_defaults_fill_options_missing_from_the_tokenizer_bench() -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args([])
    assert args.seconds == 10.0 and args.vq02_blocks == 50 and args.threads == 2
    assert set(args.policies.split(",")) == set(bench.POLICIES)
