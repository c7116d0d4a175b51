"""`stepaudio bench step2` at tiny shapes: the weight bytes behind the bound are the model's bytes in each format,
the full-depth rows scale only the layers, token2wav streams in the reference's chunks; `make gpu-check` plans
the target with `--device cuda` and its rows become key numbers."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from stepaudio.decoder.cosyvoice2.config import flow_config_from_yaml, hift24k_config
from stepaudio.eval.bench import step2
from stepaudio.eval.bench.all import TargetResult, key_metrics
from stepaudio.eval.gpu_check import plan_steps
from stepaudio.lm.qwen2.config import STEP_AUDIO2_MINI
from stepaudio.testing.tiny_step2 import TINY_STEP2_FLOW_YAML

TINY = dataclasses.replace(STEP_AUDIO2_MINI, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                           num_key_value_heads=2, num_hidden_layers=3, vocab_size=2048)


def _args(**changes: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    step2.add_arguments(parser)
    args = step2.defaults(parser.parse_args([]))
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def test_lm_rows_put_each_format_against_its_own_bytes() -> None:
    import torch

    args = _args(formats=["fp32", "int8"], layers=1, prefill=8, decode=2, repeats=1, bandwidth_mib=16)
    fp32, int8 = step2.lm_rows(args, torch.device("cpu"), shape=TINY)
    h, i, kv, v = TINY.hidden_size, TINY.intermediate_size, TINY.kv_dim, TINY.vocab_size
    layer = (2 * h * h + 2 * kv * h + 3 * h * i) + (h + 2 * kv) + 2 * h  # matrices, q/k/v biases, two norms
    head = v * h + h  # lm_head and the final norm (the embedding is not read by a decode step)
    rope = TINY.head_dim // 2  # inv_freq, a float32 buffer
    assert fp32["decode_weight_bytes"] == 4 * (layer + head + rope)
    assert fp32["full_depth_weight_bytes"] == fp32["decode_weight_bytes"] + 2 * 4 * layer
    assert int8["applied"] == "int8" and int8["decode_weight_bytes"] < 0.4 * fp32["decode_weight_bytes"]
    for row in (fp32, int8):
        assert row["layers"] == 1 and row["full_depth_layers"] == 3 and not row["cuda_graph"]
        assert row["decode_tok_s"] > 0 and row["prefill_tok_s"] > 0
        assert row["decode_bound_tok_s"] == pytest.approx(row["read_bandwidth_bytes_per_s"]
                                                          / row["decode_weight_bytes"])
        ratio = row["decode_weight_bytes"] / row["full_depth_weight_bytes"]
        assert row["full_depth_decode_tok_s"] == pytest.approx(row["decode_tok_s"] * ratio)


def test_bf16_is_the_format_auto_picks_here() -> None:
    import torch

    from stepaudio.lm.quant import resolve_weight_format

    model, applied = step2.random_qwen2(dataclasses.replace(TINY, num_hidden_layers=1), "bf16", torch.device("cpu"))
    assert applied == resolve_weight_format("auto", "cpu", torch.bfloat16)
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16


def test_token2wav_rows_stream_in_the_reference_chunks() -> None:
    import torch

    rows = step2.token2wav_rows([1.6], torch.device("cpu"), "fp32", flow_config=flow_config_from_yaml(
        TINY_STEP2_FLOW_YAML), hift_config=hift24k_config(base_channels=16, f0_channels=16))
    [row] = rows
    assert row["tokens"] == 40 and row["audio_s"] == pytest.approx(40 * 2 * 480 / 24000)
    # 25 tokens + 3 look-ahead make the first chunk; the other 15 go out with the last one
    assert row["chunks"] == 2 and 0 < row["first_chunk_s"] <= row["stream_s"]
    assert row["offline_rtf"] > 0 and row["stream_rtf"] > 0


def test_gpu_check_runs_the_target_on_cuda_and_reports_its_rows() -> None:
    steps = [s for s in plan_steps(420.0) if s.target == "step2"]
    assert [s.argv for s in steps] == [("--device", "cuda")]
    parser = argparse.ArgumentParser()
    step2.add_arguments(parser)
    args = step2.defaults(parser.parse_args(list(steps[0].argv)))
    assert args.layers == 28 and args.formats == ["bf16"] and not args.no_cuda_graph
    result = {"lm": [{"format": "bf16", "applied": "none", "cuda_graph": True, "full_depth_layers": 28,
                      "full_depth_decode_tok_s": 150.0, "full_depth_decode_bound_tok_s": 280.0,
                      "prefill_tok_s": 9000.0}],
              "token2wav": [{"dtype": "fp32", "audio_s": 5.0, "offline_rtf": 0.05, "first_chunk_s": 0.2,
                             "stream_rtf": 0.1}]}
    rows = key_metrics(TargetResult("step2", (), 0, 1.0, result, ""))
    shown = {r["metric"]: r["shown"] for r in rows}
    assert shown["7B decode tok/s (bf16 CUDA graph, 28 layers)"] == "150 tok/s"
    assert shown["token2wav fp32 first chunk"] == "0.2 s"
