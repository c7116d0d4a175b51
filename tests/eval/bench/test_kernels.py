"""`stepaudio bench kernels` shows every automatic choice from the cache (measuring only what is missing)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from stepaudio.decoder.cosyvoice1.token2wav import FLOW_DTYPE_QUESTION
from stepaudio.eval.bench import kernels
from stepaudio.kernels.choices import BF16_QUESTION, ChoiceCache, Measured
from stepaudio.tokenizer.paraformer.fast import WEIGHT_MODE_QUESTION


def test_bench_kernels_prints_the_cached_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STEPAUDIO_CACHE", str(tmp_path))
    monkeypatch.delenv("STEPAUDIO_REMEASURE", raising=False)
    cache = ChoiceCache()
    cache.put(BF16_QUESTION, Measured("fp16", {"prefill": {"bf16": 0.4, "fp16": 0.2},
                                               "decode": {"bf16": 0.01, "fp16": 0.009}}, "then"))
    cache.put(FLOW_DTYPE_QUESTION, Measured("fp32", {"step": {"fp32": 0.1, "bf16": 0.3}}, "then"))
    cache.put(WEIGHT_MODE_QUESTION, Measured("fp32-packed", {"decode": {"fp32": 0.002, "fp32-packed": 0.001}}, "then"))
    parser = argparse.ArgumentParser()
    kernels.add_arguments(parser)
    out = tmp_path / "rows.json"
    assert kernels.run(parser.parse_args(["--json", str(out)])) == 0
    text = capsys.readouterr().out
    assert cache.key.text() in text and str(cache.path) in text
    rows = json.loads(out.read_text())["rows"]
    chosen = {(r["setting"].split()[0], r["use"]): r["candidate"] for r in rows if r["chosen"]}
    assert chosen == {("LM", "prefill"): "fp16", ("LM", "decode"): "fp16", ("flow_dtype", "step"): "fp32",
                      ("vq02", "decode"): "fp32-packed"}
    assert {r["measured_at"] for r in rows} == {"then"}  # read, not measured again
