from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from stepaudio.eval.bench import lm_batch
from stepaudio.lm.step1.config import Step1Config


@pytest.mark.usefixtures("one_torch_thread")
def test_bench_lm_batch_times_both_ways_on_a_tiny_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Step1Config(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_attention_groups=2,
                      num_hidden_layers=2, vocab_size=64)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    parser = argparse.ArgumentParser()
    lm_batch.add_arguments(parser)
    out = tmp_path / "result.json"
    args = parser.parse_args(["--shape", str(tmp_path / "config.json"), "--dtype", "fp32", "--quant", "none",
                              "--layers", "1", "--requests", "1,3", "--rows", "2", "--prompt", "6", "--new", "5",
                              "--repeats", "1", "--threads", "1", "--json", str(out)])
    assert lm_batch.run(args) == 0
    result = json.loads(out.read_text())
    assert [r["requests"] for r in result["runs"]] == [1, 3]
    for run in result["runs"]:
        assert run["same_tokens"] and run["alone_tok_s"] > 0 and run["batched_tok_s"] > 0
        assert 1.0 <= run["batched_mean_batch"] <= 2.0
        assert run["batched_first_token_max_s"] >= run["batched_first_token_mean_s"] > 0
    assert result["runs"][0]["batched_mean_batch"] == 1.0
    assert "same tokens: True" in capsys.readouterr().out
