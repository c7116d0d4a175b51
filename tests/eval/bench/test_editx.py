"""`stepaudio bench editx` on tiny shapes: the engine's clone path runs, reuse covers the voice, the parts add up."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from stepaudio.eval.bench import editx
from stepaudio.eval.bench.all import TargetResult, key_metrics
from stepaudio.lm.step1.config import Step1Config


def test_first_audio_with_and_without_reuse(conformance_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Step1Config(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_attention_groups=2,
                      num_hidden_layers=2, vocab_size=74752)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    parser = argparse.ArgumentParser()
    editx.add_arguments(parser)
    out = tmp_path / "editx.json"
    args = parser.parse_args([
        "--shape", str(tmp_path / "config.json"), "--decoder-shape", "tiny", "--prompt-seconds", "2",
        "--tokenizer", str(conformance_dir / "text" / "tokenizer.model"), "--dtype", "fp32", "--quant", "none",
        "--threads", "1", "--text", "今天天气真好。", "--json", str(out)])
    assert editx.run(args) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [row["prefix_reuse"] for row in rows] == ["off", "on"]  # the default times both, same run
    audio_ids = 17 * 5  # 2 s of prompt: 17 groups of 2 + 3 ids
    for row in rows:
        assert row["layers"] == 2 and row["decoded_tokens"] == 30  # 15 frame pairs + 3 look-ahead pairs
        assert row["first_chunk_audio_s"] == pytest.approx((30 - 8) * 0.02)  # 8 frames held for the cross-fade
        assert row["prompt_tokens"] > audio_ids
        parts = row["prefill_s"] + row["decode_s"] + row["decoder_first_chunk_s"]
        assert parts == pytest.approx(row["first_audio_s"], abs=0.05)
    off, on = rows
    assert off["reused_tokens"] == 0
    # the system turn (the voice: name, transcript, audio ids) is reused, the new sentence's turn is not
    assert audio_ids < on["reused_tokens"] < on["prompt_tokens"] - len("今天天气真好。")
    assert "first_audio_s" in capsys.readouterr().out
    metrics = key_metrics(TargetResult("editx", (), 0, 0.0, rows, ""))
    assert [m["metric"] for m in metrics][:2] == ["clone first audio (2 layers, prefix reuse off)",
                                                  f"clone prefill ({off['prompt_tokens']} tokens, 0 reused)"]
