from __future__ import annotations

import argparse

import pytest
import torch

from stepaudio.decoder.cosyvoice1.flow_config import flow_config_from_yaml
from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.decoder.cosyvoice1.token2wav import StreamingConfig
from stepaudio.eval.bench.decoder_stream import add_arguments, format_table, run_stream_bench
from stepaudio.testing.tiny_decoder import TINY_COSYVOICE_YAML


def test_rows_report_latency_and_rtf_per_duration() -> None:
    torch.set_num_threads(1)  # tiny ops: two threads only add synchronisation on a busy machine
    rows = run_stream_bench(
        (0.5, 1.5), config=StreamingConfig(first_hop_tokens=6, hop_tokens=12, lookahead_tokens=4),
        flow_config=flow_config_from_yaml(TINY_COSYVOICE_YAML),
        hift_config=HiFTConfig.from_cosyvoice_yaml(TINY_COSYVOICE_YAML),
    )  # fmt: skip
    assert [r["audio_s"] for r in rows] == [0.5, 1.5] and [r["tokens"] for r in rows] == [21, 63]
    for row in rows:
        assert 0 < row["first_chunk_s"] <= row["stream_s"] and row["stall_s"] >= 0
        # the first chunk holds at most the audio of first_hop ids (less its held-back cross-fade)
        assert row["chunks"] >= 2 and 0 < row["first_chunk_audio_s"] <= 6 / 41.667 + 0.01
        assert row["rtf"] > 0 and row["offline_rtf"] > 0
    assert "first_chunk_s" in format_table(rows)


def test_arguments_default_to_the_issue_durations() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    assert args.seconds == [1.0, 5.0, 20.0] and args.hop == 50 and args.lookahead == 8
    with pytest.raises(SystemExit):
        parser.parse_args(["--dtypes", "fp16"])
