from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from stepaudio.eval.bench import lm
from stepaudio.lm.step1.config import Step1Config


@pytest.mark.parametrize("quant", ["none", "int8"])
def test_bench_lm_runs_on_a_tiny_config(tmp_path: Path, quant: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Step1Config(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_attention_groups=2,
                      num_hidden_layers=2, vocab_size=64)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    parser = argparse.ArgumentParser()
    lm.add_arguments(parser)
    out = tmp_path / "result.json"
    args = parser.parse_args(
        ["--shape", str(tmp_path / "config.json"), "--dtype", "fp32", "--quant", quant, "--prefill", "8",
         "--decode", "3", "--repeats", "1", "--bandwidth-mib", "8", "--layers", "1", "--json", str(out)]
    )
    assert lm.run(args) == 0
    result = json.loads(out.read_text())
    assert result["layers"] == 1 and result["quant"] == quant
    if quant == "none":  # q, o: 32x32; k, v: 16x32; three 48x32 MLP weights; norms; head 64x32
        assert result["decode_weight_bytes"] == 4 * (2 * 32 * 32 + 2 * 16 * 32 + 3 * 48 * 32 + 3 * 32 + 64 * 32)
    assert result["decode_tok_s"] > 0 and result["decode_bound_tok_s"] > 0 and result["peak_memory_bytes"] > 0
    assert "decode / bound" in capsys.readouterr().out


def test_bench_lm_int4_counts_half_a_byte_a_weight(tmp_path: Path) -> None:
    cfg = Step1Config(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_attention_groups=2,
                      num_hidden_layers=1, vocab_size=64)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    parser = argparse.ArgumentParser()
    lm.add_arguments(parser)
    out = tmp_path / "result.json"
    args = parser.parse_args(
        ["--shape", str(tmp_path / "config.json"), "--dtype", "fp32", "--quant", "int4", "--prefill", "8",
         "--decode", "3", "--repeats", "1", "--bandwidth-mib", "8", "--json", str(out)]
    )
    assert lm.run(args) == 0
    result = json.loads(out.read_text())

    def int4(n_out: int, n_in: int) -> int:  # nibbles, then a bf16 (scale, offset) per group of 128
        return n_out * n_in // 2 + n_out * (n_in // 128) * 4

    layers = 2 * int4(128, 128) + 2 * int4(64, 128) + 2 * int4(256, 128) + int4(128, 256)
    head = 64 * 128 + 4 * 64  # int8 and a float scale per row, as the int8 format gives it on CPU
    assert result["decode_weight_bytes"] == layers + head + 3 * 128 * 4  # and three fp32 norms
    assert result["decode_tok_s"] > 0
