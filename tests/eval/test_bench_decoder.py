"""`stepaudio bench decoder`: argument defaults, table, and a tiny-shape smoke run (no timing asserts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stepaudio.decoder.cosyvoice1.flow_config import (
    CFMConfig,
    ConformerConfig,
    EstimatorConfig,
    FlowConfig,
    LengthRegulatorConfig,
)
from stepaudio.eval.bench import decoder as bench

TINY = FlowConfig(
    input_size=16, vocab_size=50, input_frame_rate=41.667,
    encoder=ConformerConfig(input_size=16, output_size=16, attention_heads=2, linear_units=24, num_blocks=1),
    length_regulator=LengthRegulatorConfig(sampling_ratios=(1,)),
    cfm=CFMConfig(n_timesteps=2),
    estimator=EstimatorConfig(channels=(16, 16), attention_head_dim=8, n_blocks=1, num_mid_blocks=1, num_heads=2),
)


def test_defaults_cover_the_issue_cases() -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args([])
    assert args.seconds == [1.0, 5.0, 20.0] and args.prompt_seconds == 3.0
    assert args.dtypes == ["fp32", "bf16"] and args.parts == ["flow", "hift"] and args.threads == 2


def test_tiny_run_rows_and_table() -> None:
    rows = bench.run_flow_bench(seconds=[0.5], prompt_seconds=0.5, batch_sizes=[1, 2], dtypes=["fp32", "bf16", "int8"],
                                repeats=1, warmup=0, config=TINY)
    assert [(r["dtype"], r["batch"]) for r in rows] == [
        ("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2), ("int8", 1), ("int8", 2)]
    for row in rows:
        assert row["rtf"] > 0 and row["frames"] == int(0.5 * 22050 / 256) + TINY.mel_len(row["tokens"])
        assert ("max_abs_vs_fp32" in row) == (row["dtype"] != "fp32")
    table = bench.format_table(rows)
    assert table.splitlines()[0].split()[:3] == ["component", "dtype", "device"]
    assert len(table.splitlines()) == 7


def test_run_writes_json(tmp_path: Path, monkeypatch) -> None:
    rows = [{"component": "flow", "dtype": "fp32", "device": "cpu", "batch": 1, "audio_s": 1.0, "frames": 10,
             "median_s": 0.1, "min_s": 0.1, "rtf": 0.1, "cpu_s": 0.1}]
    monkeypatch.setitem(bench.PARTS, "flow", lambda args: [dict(r) for r in rows])
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "rows.json"
    assert bench.run(parser.parse_args(["--parts", "flow", "--threads", "1", "--json", str(out)])) == 0
    assert json.loads(out.read_text())[0]["threads"] == 1


def test_hift_rows_are_renamed_to_the_table_columns(monkeypatch) -> None:
    from stepaudio.eval.bench import decoder_hift

    def fake(durations, batch, device, **kwargs):  # type: ignore[no-untyped-def]
        return [{"component": "hift", "variant": "fast", "dtype": "fp32", "device": device, "batch": batch,
                 "seconds": d, "mel_frames": 86, "wall_median_s": 0.2, "wall_min_s": 0.1, "cpu_median_s": 0.3,
                 "rtf": 0.2} for d in durations]

    monkeypatch.setattr(decoder_hift, "run_hift_bench", fake)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    rows = bench.PARTS["hift"](parser.parse_args(["--seconds", "1", "--batch-sizes", "1", "2"]))
    assert [(r["dtype"], r["batch"], r["frames"], r["cpu_s"]) for r in rows] == [("fp32/fast", 1, 86, 0.3),
                                                                              ("fp32/fast", 2, 86, 0.3)]
    assert "fp32/fast" in bench.format_table(rows)
