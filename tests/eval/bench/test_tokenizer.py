"""vq02 tokenizer bench: each weight mode's row at a one-block shape, drift against fp32 (no timing asserts)."""

from __future__ import annotations

import argparse

import pytest
import torch

from stepaudio.eval.bench import tokenizer as bench
from stepaudio.eval.bench.tokenizer_vq06 import random_linguistic, speech_like

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny ops: one thread is faster


def test_rows_measure_each_mode_against_fp32() -> None:
    args = argparse.Namespace(seconds=1.3, modes="fp32,fp32-packed,int8-packed", blocks=1, repeats=1,
                              latency_budget_ms=100.0)
    result = bench._bench_vq02(args)
    rows = result["modes"]
    assert list(rows) == ["fp32", "fp32-packed", "int8-packed"]
    assert rows["fp32"]["feature_rel_err"] == 0.0 and rows["fp32"]["codes_equal_fp32"] == 1.0
    assert rows["fp32-packed"]["feature_rel_err"] < 1e-5
    assert 0.0 < rows["int8-packed"]["feature_rel_err"] < 0.1  # approximate, but close
    for row in rows.values():
        assert row["chunks"] == 6  # five whole 240 ms steps and the tail
        assert 0 < row["chunk_ms_p50"] <= row["chunk_ms_max"]
    for mode in ("fp32", "fp32-packed"):  # exact modes: batched offline steps = streamed steps
        assert rows[mode]["offline_max_abs_vs_stream"] < 1e-3
    assert result["frontend_rtf"] > 0


def test_modes_built_from_one_state_share_the_weights() -> None:
    fresh = random_linguistic(1, "fp32")
    shared = random_linguistic(1, "fp32-packed", fresh.encoder.state_dict())
    wav = torch.from_numpy(speech_like(0.6))
    torch.testing.assert_close(shared.encode_features(wav), fresh.encode_features(wav), atol=1e-5, rtol=1e-5)
    assert random_linguistic(1, "fp32").encode(wav) == fresh.encode(wav)  # seeded: same model every time
