"""The reference side-by-side bench: its config mapping and metric here; the whole run against a real
reference checkout when STEPAUDIO_REFERENCE_SOURCE (and a Python that imports it) is given."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stepaudio.decoder.cosyvoice1.flow_config import flow_config_from_yaml
from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.eval.bench.decoder_reference import reference_spec, snr_db
from stepaudio.testing.tiny_decoder import TINY_COSYVOICE_YAML


def test_spec_carries_the_shape_of_the_yaml(tmp_path: Path) -> None:
    yaml_path = tmp_path / "cosyvoice.yaml"
    yaml_path.write_text(TINY_COSYVOICE_YAML)
    spec = reference_spec(flow_config_from_yaml(yaml_path), HiFTConfig.from_cosyvoice_yaml(yaml_path))
    json.dumps(spec)  # the driver receives it as JSON
    est, hift = spec["flow"]["estimator"], spec["hift"]
    assert est["channels"] == [16, 16] and est["num_heads"] == 2 and est["attention_head_dim"] == 8
    assert spec["flow"]["encoder"]["num_blocks"] == 1 and spec["flow"]["input_frame_rate"] == pytest.approx(41.667)
    assert spec["flow"]["cfm"]["inference_cfg_rate"] == pytest.approx(0.7)
    assert hift["base_channels"] == 16 and hift["istft_params"] == {"n_fft": 16, "hop_len": 4}
    assert hift["f0_predictor"]["cond_channels"] == 16


def test_snr_of_identical_scaled_and_noisy_signals() -> None:
    ref = torch.sin(torch.linspace(0, 100, 4000))
    assert snr_db(ref, ref) == math.inf
    assert snr_db(ref, ref * 0.9) == pytest.approx(20.0, abs=1e-4)  # error is a tenth of the amplitude
    assert snr_db(ref, torch.cat([ref, torch.ones(10)])) == math.inf  # compared over the common length


@pytest.mark.reference
def test_tiny_decoder_matches_the_reference(tmp_path: Path) -> None:
    source = os.environ.get("STEPAUDIO_REFERENCE_SOURCE")
    if not source:
        pytest.skip("set STEPAUDIO_REFERENCE_SOURCE to a Step-Audio checkout (and STEPAUDIO_REFERENCE_PYTHON)")
    yaml_path = tmp_path / "cosyvoice.yaml"
    yaml_path.write_text(TINY_COSYVOICE_YAML)
    out = tmp_path / "rows.json"
    python = os.environ.get("STEPAUDIO_REFERENCE_PYTHON", sys.executable)
    cmd = [sys.executable, "-m", "stepaudio", "bench", "decoder-reference", "--source", source, "--python", python,
           "--cosyvoice-yaml", str(yaml_path), "--seconds", "1", "--warmup", "0", "--json", str(out)]
    subprocess.run(cmd, check=True, timeout=600)
    rows = {(r["impl"], r["flow"]): r for r in json.loads(out.read_text())}
    ours = rows[("stepaudio", "fp32")]
    assert ours["mel_max_abs"] < 1e-4 and ours["wav_snr_db"] > 60
    assert rows[("reference", "bf16")]["wav_snr_db"] < ours["wav_snr_db"]
