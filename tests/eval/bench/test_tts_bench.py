"""`stepaudio bench tts` on tiny shapes: the whole Step TTS path runs and the latency parts add up."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from stepaudio.eval.bench import tts
from stepaudio.lm.step1.config import Step1Config
from stepaudio.testing.tiny_decoder import TINY_COSYVOICE_YAML


def _bench(conformance_dir: Path, tmp_path: Path, layers: int, *options: str) -> list[dict[str, Any]]:
    """`bench tts` on a tiny Step1 shape with the tiny decoder, once; the rows it wrote."""
    cfg = Step1Config(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_attention_groups=2,
                      num_hidden_layers=layers, vocab_size=74752)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    (tmp_path / "cosyvoice.yaml").write_text(TINY_COSYVOICE_YAML)
    parser = argparse.ArgumentParser()
    tts.add_arguments(parser)
    out = tmp_path / "tts.json"
    args = parser.parse_args([
        "--shape", str(tmp_path / "config.json"), "--decoder-yaml", str(tmp_path / "cosyvoice.yaml"),
        "--tokenizer", str(conformance_dir / "text" / "tokenizer.model"), "--dtype", "fp32", "--quant", "none",
        "--repeats", "1", "--json", str(out), *options])
    assert tts.run(args) == 0
    rows: list[dict[str, Any]] = json.loads(out.read_text(encoding="utf-8"))
    return rows


def test_first_audio_and_its_parts(conformance_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   recwarn: pytest.WarningsRecorder) -> None:
    rows = _bench(conformance_dir, tmp_path, 2, "--text", "(高兴1)今天天气真好。")
    assert [row["prefix_reuse"] for row in rows] == ["off", "on"]  # the default times both, same run
    for row in rows:
        assert row["layers"] == 2 and row["chars"] == len("(高兴1)今天天气真好。")
        # first hop + look-ahead (StreamingConfig's defaults: 4 + 8): what the decoder's first chunk waits for
        assert (row["first_hop"], row["lookahead"]) == (4, 8) and row["decoded_tokens"] == 12
        assert row["prompt_tokens"] > 125  # the voice's 3 s of audio tokens and the texts
        parts = row["prefill_s"] + row["decode_s"] + row["decoder_first_chunk_s"]
        assert parts == pytest.approx(row["first_audio_s"], abs=0.05)
        assert row["first_chunk_audio_s"] > 0
    off, on = rows
    assert off["reused_tokens"] == 0
    # the voice prompt (its 125 audio tokens and more) is reused, the new sentence is not
    assert 125 < on["reused_tokens"] < on["prompt_tokens"] - len("今天天气真好。")
    assert not [w for w in recwarn if "budget" in str(w.message)]  # every run stopped early (priming too)
    assert "first_audio_s" in capsys.readouterr().out


def test_missing_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    from stepaudio.errors import CheckpointError

    with pytest.raises(CheckpointError, match="--tokenizer"):
        tts.find_tokenizer(str(tmp_path / "none.model"))


def test_flow_guidance_both_times_each_mode(conformance_dir: Path, tmp_path: Path) -> None:
    rows = _bench(conformance_dir, tmp_path, 1, "--text", "今天天气真好。", "--prefix-reuse", "on",
                  "--flow-guidance", "both")
    assert [(row["prefix_reuse"], row["flow_guidance"]) for row in rows] == [("on", "batched"), ("on", "parallel")]
    assert all(len(row["decoder_first_chunk_all_s"]) == 1 for row in rows)
